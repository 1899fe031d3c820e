"""``vidfast bench --quick``: every section measured, ratios against the section's first row."""

from __future__ import annotations

import json
import math

from test_eval import run_cli


def test_bench_quick_measures_every_section():
    result = run_cli("bench", "--quick", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    by_section: dict[str, list[dict]] = {}
    for row in rows:
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
        assert [e["variant"] for e in by_section[section]][:2] == ["fp32 NCDHW", "bf16 + channels_last"]
    assert [e["variant"] for e in by_section["inference b1"]][2] == "onnxruntime"


def test_bench_table_and_bad_section():
    result = run_cli("bench", "--quick", "--section", "cube")
    assert result.exit_code == 0, result.stderr
    assert "cube_crop_reference" in result.stdout and "copy of the source" in result.stdout
    bad = run_cli("bench", "--quick", "--section", "nope")
    assert bad.exit_code == 1 and bad.stderr.startswith("error: ") and "nope" in bad.stderr
