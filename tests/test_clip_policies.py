"""Clip policies by name: one registered here, outside vidfast, is what training, evaluation and prediction
take when a config or a call names it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from helpers import make_dataset, run_cli

from vidfast.data.policies import POLICIES, ClipOutput, ClipParams, ClipPolicy, create_policy, register_policy
from vidfast.data.samplers import TemporalConfig, center_box, clip_at
from vidfast.errors import VidfastError

#: the frame count of every video the ``ends`` policy planned
PLANNED: list[int] = []


@dataclass(frozen=True)
class EndClips(ClipPolicy):
    """Two clips of a video, its first and its last ``clip_len`` frames (``frame_step`` apart), central
    square."""

    clip_len: int = 16
    frame_step: int = 1
    size: int = 112
    output: ClipOutput = field(default_factory=ClipOutput)

    @property
    def out_size(self) -> tuple[int, int, int]:
        return self.clip_len, self.size, self.size

    def num_samples(self, num_frames: int) -> int:
        return 2

    def plan(self, num_frames: int, height: int, width: int, rng: np.random.Generator | None = None,
             key_frames: np.ndarray | None = None) -> ClipParams:
        PLANNED.append(num_frames)
        temporal = TemporalConfig("center", self.clip_len, self.frame_step)
        starts = (0, max(num_frames - temporal.span, 0))
        frames = np.stack([clip_at(s, num_frames, temporal) for s in starts])
        return ClipParams.plain(frames, np.asarray([center_box(height, width)] * 2), np.zeros(2, bool))


@pytest.fixture(scope="module", autouse=True)
def ends() -> Iterator[None]:
    register_policy("ends", EndClips)
    yield
    del POLICIES["ends"]


def test_registry_names_and_errors() -> None:
    policy = create_policy("ends", clip_len=4, size=16)
    assert isinstance(policy, EndClips) and policy.sample_shape == (3, 4, 16, 16)
    assert {"random", "center", "uniform", "sliding", "ends"} <= set(POLICIES)
    with pytest.raises(ValueError, match="already registered"):
        register_policy("ends", lambda **kwargs: EndClips())
    with pytest.raises(ValueError, match="unknown clip policy 'nope'.*ends"):
        create_policy("nope")
    with pytest.raises(TypeError, match="clips"):
        create_policy("ends", clips=3)


@pytest.mark.slow
def test_a_registered_policy_is_taken_by_train_eval_and_predict(tmp_path) -> None:
    from vidfast.data.reader import Segment, read_clips
    from vidfast.deploy.predict import open_scorer, predict_videos
    from vidfast.engine import fit, resolve_config
    from vidfast.engine.evaluate import EvalConfig, evaluate
    from vidfast.scoring import load_classifier

    manifest, names, paths = make_dataset(tmp_path / "data", classes=2, per_class=3, split="train")
    overrides = {
        "epochs": 1,
        "data": {"manifest": str(manifest), "clip_len": 8, "size": 32, "batch_size": 4, "workers": 0,
                 "clips": {"policy": "ends"}},
        "model": {"arch": "resnet10", "widen_factor": 0.25},
        "runtime": {"run_dir": str(tmp_path / "run"), "tensorboard": False, "progress": "none",
                    "plots": False, "amp": False},
    }
    PLANNED.clear()
    result = fit(resolve_config("classify", None, overrides))
    row = result.history[0]
    assert round(row["clips_per_s"] * row["seconds"]) == 12  # 6 videos x 2 clips, batches of 4
    assert len(PLANNED) == 12 and set(PLANNED) == {16}  # a plan per (video, clip) sample

    PLANNED.clear()
    report = evaluate(EvalConfig(str(manifest), [str(result.last_checkpoint)], split="train", workers=0,
                                 amp=False, policy="ends"))
    assert report.num_videos == 6 and report.num_clips == 12 and report.extra["clips"] == "ends"
    assert len(PLANNED) == 6  # one plan per video: its clips are read together

    scorer = open_scorer([result.last_checkpoint], device="cpu", autocast=False, channels_last=False)
    (prediction,) = predict_videos(scorer, [paths[0]], topk=2, policy="ends")
    loaded = load_classifier(result.last_checkpoint)
    (clips,) = read_clips(Segment(str(paths[0])), loaded.spec.policy("ends"))
    with torch.no_grad():
        expected = loaded.model(clips).softmax(1).mean(0)
    assert [name for name, _ in prediction.top] == [names[i] for i in expected.argsort(descending=True)]
    assert prediction.top[0][1] == pytest.approx(float(expected.max()), abs=1e-5)

    # the same through the command line: --policy on eval and predict
    ckpt = result.last_checkpoint
    PLANNED.clear()
    run = run_cli("eval", manifest, "-c", ckpt, "--policy", "ends", "--split", "train", "--workers", 0,
                  "--no-amp", "--run-dir", tmp_path / "eval", "--json")
    assert run.exit_code == 0, run.stderr
    shown = json.loads(run.stdout)
    assert shown["num_clips"] == 12 and shown["clips"] == "ends" and len(PLANNED) == 6
    run = run_cli("predict", paths[0], "-c", ckpt, "--policy", "ends", "--no-amp", "--topk", 2, "--json")
    assert run.exit_code == 0, run.stderr
    assert [entry["label"] for entry in json.loads(run.stdout)[0]["labels"]] == [n for n, _ in prediction.top]
    unknown = run_cli("eval", manifest, "-c", ckpt, "--policy", "nope", "--split", "train", "--workers", 0)
    assert unknown.exit_code != 0 and "unknown clip policy 'nope'" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    with pytest.raises(VidfastError, match="data.clips: unknown clip policy 'nope'"):
        fit(resolve_config("classify", None, {**overrides, "data": {**overrides["data"],
                                                                      "clips": {"policy": "nope"}}}))
