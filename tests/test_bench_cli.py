"""``vidfast bench --quick``: every section measured, ratios against the section's first row."""

from __future__ import annotations

import dataclasses
import json
import math

from helpers import run_cli


def test_bench_quick_measures_every_section():
    from vidfast.bench import BenchConfig, run_bench

    rows = run_bench(dataclasses.replace(BenchConfig.quick(), min_seconds=0.05))  # the --quick sizes, short
    by_section: dict[str, list[dict]] = {}
    for row in map(dataclasses.asdict, rows):
        by_section.setdefault(row["section"], []).append(row)
    names = list(by_section)
    assert names[0] == "cube op" and names[1] == "loader"
    assert names[2:] == ["train step b4", "inference b1", "inference b4"]
    for section, entries in by_section.items():
        assert entries[0]["ratio"] == 1.0, section
        for entry in entries:
            assert entry["variant"] != "skipped", entry
            assert entry["rate"] > 0 and math.isfinite(entry["rate"]), entry
    for section in names[2:]:
        variants = [e["variant"] for e in by_section[section]]
        assert variants[:3] == ["fp32 NCDHW", "fp32 + channels_last", "bf16 + channels_last"]
        assert variants[3] in ("auto: fp32 + channels_last", "auto: bf16 + channels_last")
    assert [e["variant"] for e in by_section["inference b1"]][4] == "onnxruntime"


def test_bench_cli_table_json_and_bad_section():
    result = run_cli("bench", "--quick", "--section", "cube")
    assert result.exit_code == 0, result.stderr
    assert "cube_crop_reference" in result.stdout and "copy of the source" in result.stdout
    result = run_cli("bench", "--quick", "--section", "train", "--json")
    assert result.exit_code == 0, result.stderr
    assert [row["section"] for row in json.loads(result.stdout)] == ["train step b4"] * 4
    bad = run_cli("bench", "--quick", "--section", "nope")
    assert bad.exit_code == 1 and bad.stderr.startswith("error: ") and "nope" in bad.stderr
