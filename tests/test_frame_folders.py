"""Frame folders end to end: one rule (any .jpg/.jpeg/.png, natural order) from probing to training,
evaluation and prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidfast.data import build_manifest, open_video, probe_path, read_manifest
from vidfast.data.decoders import list_frame_images

FRAMES, SIDE = 12, 32


def _write_folder(folder: Path, shift: int, suffix: str = ".png") -> None:
    """Frames ``frame_1`` .. ``frame_12`` (so name order differs from frame order): frame ``i`` has value
    ``20 * i`` plus a bar at column ``shift + 2 * i``."""
    folder.mkdir(parents=True)
    for i in range(FRAMES):
        image = np.full((SIDE, SIDE, 3), 20 * i, np.uint8)
        image[:, (shift + 2 * i) % SIDE] = 255
        Image.fromarray(image).save(folder / f"frame_{i + 1}{suffix}")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pngs")
    for label, shift in (("left", 0), ("right", 16)):
        for k in range(3):
            _write_folder(root / "videos" / label / f"clip{k}", shift + k)
    build_manifest("folder", root / "videos", root / "manifest.csv", workers=1, progress=False)
    return root / "manifest.csv"


def test_one_frame_rule_natural_order(tmp_path: Path) -> None:
    _write_folder(tmp_path / "mixed", 0, suffix=".jpeg")
    (tmp_path / "mixed" / "notes.txt").write_text("not a frame")
    (tmp_path / "mixed" / ".hidden.png").write_bytes(b"")
    names = [p.name for p in list_frame_images(tmp_path / "mixed")]
    assert names == [f"frame_{i}.jpeg" for i in range(1, FRAMES + 1)]
    with open_video(tmp_path / "mixed") as video:
        values = video.get_frames([0, 1, 9, 11]).float().mean(dim=(1, 2, 3))
    assert (values.diff() > 0).all()  # natural order: frame_2 before frame_10


def test_png_folders_probe_train_eval_and_predict(dataset: Path, tmp_path: Path) -> None:
    from vidfast.deploy.predict import open_scorer, predict_videos
    from vidfast.engine import fit, resolve_config
    from vidfast.engine.evaluate import EvalConfig, evaluate

    manifest = read_manifest(dataset)
    assert [r.status for r in manifest.rows] == ["ok"] * 6 and {r.num_frames for r in manifest.rows} == {12}
    assert probe_path(manifest.rows[0].path).num_frames == FRAMES
    cfg = resolve_config("classify", None, {
        "epochs": 1,
        "data": {"manifest": str(dataset), "clip_len": 4, "size": 16, "batch_size": 3, "workers": 0,
                 "val_split": "train"},
        "model": {"arch": "resnet10", "widen_factor": 0.25},
        "runtime": {"run_dir": str(tmp_path / "run"), "tensorboard": False, "progress": "none",
                    "plots": False},
    })
    result = fit(cfg)
    assert result.status == "completed" and result.steps == 2  # 6 folders, batch 3: nothing skipped
    checkpoint = result.last_checkpoint
    report = evaluate(EvalConfig(manifest=str(dataset), checkpoints=[str(checkpoint)], split="train", clips=2,
                                 workers=0, device="cpu"))
    assert (report.num_videos, report.num_clips, report.skipped) == (6, 12, 0)
    (prediction,) = predict_videos(open_scorer([checkpoint], device="cpu"), [manifest.rows[0].path], topk=2,
                                   clips=2)
    assert prediction.error is None and len(prediction.top) == 2
