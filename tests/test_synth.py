"""The synthetic motion dataset: layout, determinism, and classes that live in time, not in single frames."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from vidfast.data.synth import MOTIONS, render_motion_video, synthesize_dataset


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_layout_and_determinism(tmp_path: Path) -> None:
    paths = synthesize_dataset(tmp_path / "a", classes=3, per_class=2, frames=8, size=(32, 48), seed=7)
    assert [p.relative_to(tmp_path / "a").as_posix() for p in paths] == [
        f"{m.name}/{m.name}_{i:03d}.mp4" for m in MOTIONS[:3] for i in range(2)]
    video = _decode(paths[0])
    assert video.shape == (8, 32, 48, 3)
    again = synthesize_dataset(tmp_path / "b", classes=3, per_class=3, frames=8, size=(32, 48), seed=7)
    # same seed: the same rendered frames (more per class are appended); the files are compared decoded, up
    # to codec noise, since libx264 now and then encodes the same frames into other bytes (synthesize_dataset)
    for p, q in zip(paths, [again[0], again[1], again[3], again[4], again[6], again[7]], strict=True):
        assert np.abs(_decode(p).astype(int) - _decode(q)).mean() < 5.0
    for k, i in ((0, 1), (2, 0)):
        first, second = (render_motion_video(MOTIONS[k], 8, (32, 48), np.random.default_rng([7, k, i]), 3.0,
                                             16.0) for _ in range(2))
        assert np.array_equal(first, second)
    (third,) = synthesize_dataset(tmp_path / "d", classes=1, per_class=1, frames=8, size=(32, 48), seed=7,
                                  first=2)
    assert third.name == again[2].name and np.abs(_decode(third).astype(int) - _decode(again[2])).mean() < 5.0
    other = synthesize_dataset(tmp_path / "c", classes=1, per_class=1, frames=8, size=(32, 48), seed=8)
    assert np.abs(_decode(other[0]).astype(int) - video).mean() > 10


def test_codec_and_argument_checks(tmp_path: Path) -> None:
    (path,) = synthesize_dataset(tmp_path, classes=1, per_class=1, frames=4, size=(16, 16), codec="vp9")
    assert path.suffix == ".webm" and _decode(path).shape == (4, 16, 16, 3)
    bad = [({"classes": len(MOTIONS) + 1}, "classes"), ({"per_class": 0}, "per_class"),
           ({"frames": 1}, "frames"), ({"size": (15, 16)}, "size"), ({"codec": "hevc"}, "codec")]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            synthesize_dataset(tmp_path, **kwargs)


def _global_flow(video: np.ndarray) -> np.ndarray:
    """One least-squares optical-flow vector (dy, dx) for the whole video (Lucas-Kanade over all pixels, at
    half resolution so that displacements stay below a pixel)."""
    gray = video.astype(np.float64).mean(-1)
    t, h, w = gray.shape
    gray = gray[:, : h // 2 * 2, : w // 2 * 2].reshape(t, h // 2, 2, w // 2, 2).mean((2, 4))
    gy = (np.roll(gray, -1, 1) - np.roll(gray, 1, 1)) / 2
    gx = (np.roll(gray, -1, 2) - np.roll(gray, 1, 2)) / 2
    gt = gray[1:] - gray[:-1]
    gy, gx = (gy[1:] + gy[:-1]) / 2, (gx[1:] + gx[:-1]) / 2
    a = np.array([[(gy * gy).sum(), (gy * gx).sum()], [(gy * gx).sum(), (gx * gx).sum()]])
    return np.linalg.solve(a, -np.array([(gy * gt).sum(), (gx * gt).sum()]))


def _nearest_centroid_loo(features: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out accuracy of a nearest-class-mean classifier."""
    hits = 0
    for i in range(len(labels)):
        keep = np.arange(len(labels)) != i
        means = np.stack([features[keep & (labels == c)].mean(0) for c in np.unique(labels)])
        hits += int(np.argmin(((means - features[i]) ** 2).sum(1)) == labels[i])
    return hits / len(labels)


def test_classes_are_told_by_motion_not_by_a_single_frame(tmp_path: Path) -> None:
    per_class = 8
    paths = synthesize_dataset(tmp_path, classes=4, per_class=per_class, frames=16, size=(48, 48), seed=3)
    videos = [_decode(p) for p in paths]
    labels = np.repeat(np.arange(4), per_class)

    # motion: the estimated flow direction gives every class (right, left, down, up), once the flow common to
    # every class (the falling particles, a time arrow that tells no class) is taken away
    directions = np.array([m.direction for m in MOTIONS[:4]])  # (dy, dx)
    flows = np.stack([_global_flow(v) for v in videos])
    predicted = np.argmax((flows - flows.mean(0)) @ directions.T, axis=1)
    assert (predicted == labels).mean() >= 0.9

    # appearance: single frames (pixels and colour statistics) carry no class information
    first = np.stack([v[0, ::4, ::4].reshape(-1) for v in videos]).astype(np.float64)
    stats = np.stack([np.concatenate([v[0].mean((0, 1)), v[0].std((0, 1))]) for v in videos])
    assert _nearest_centroid_loo(first, labels) <= 0.5
    assert _nearest_centroid_loo(stats, labels) <= 0.5
    # ...while the same classifier on frame differences' motion features separates them
    assert _nearest_centroid_loo(flows, labels) >= 0.9


def _motion_energy(video: np.ndarray) -> np.ndarray:
    """Mean absolute frame difference ``[T-1]``, scaled to mean 1: how fast the scene changes over time."""
    energy = np.abs(np.diff(video.astype(np.float64), axis=0)).mean((1, 2, 3))
    return energy / energy.mean()


def _tiny_model_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                         test_y: np.ndarray) -> float:
    """Held-out accuracy of a tiny model (one linear layer + softmax, trained with Adam) on the features."""
    import torch

    torch.manual_seed(0)
    x, y = torch.as_tensor(train_x, dtype=torch.float32), torch.as_tensor(train_y)
    mean, std = x.mean(0), x.std(0) + 1e-6
    model = torch.nn.Linear(x.shape[1], int(train_y.max()) + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model((x - mean) / std), y).backward()
        optimizer.step()
    with torch.no_grad():
        predicted = model((torch.as_tensor(test_x, dtype=torch.float32) - mean) / std).argmax(1).numpy()
    return float((predicted == test_y).mean())


@pytest.mark.parametrize(("decay", "particles"), [(3.0, 48.0), (3.0, 0.0), (1.0, 48.0), (1.0, 0.0)])
def test_time_arrow_tells_a_reversed_clip_but_a_frame_tells_no_class(
    tmp_path: Path, decay: float, particles: float
) -> None:
    """With friction (decay 3) or gravity (falling particles), each alone or both (the default), a tiny model
    tells a clip played backwards from one played forwards on held-out videos of every class; with neither
    (the control) it cannot. Single frames stay class-uninformative for the same tiny model."""
    per_class, classes = 10, 4
    paths = synthesize_dataset(tmp_path, classes=classes, per_class=per_class, frames=16, size=(32, 32),
                               seed=5, decay=decay, particles=particles)
    videos = [_decode(p) for p in paths]
    labels = np.repeat(np.arange(classes), per_class)
    train = np.arange(len(videos)) % per_class < per_class // 2  # half of every class trains, half tests

    arrow = np.stack([_motion_energy(v[::s]) for s in (1, -1) for v in videos])  # forward, then reversed
    is_reversed = np.repeat([0, 1], len(videos))
    both = np.concatenate([train, train])
    accuracy = _tiny_model_accuracy(arrow[both], is_reversed[both], arrow[~both], is_reversed[~both])
    if decay > 1 or particles > 0:
        assert accuracy >= 0.9
    else:
        assert accuracy <= 0.75

    frames = np.stack([np.concatenate([v[8, ::4, ::4].reshape(-1), v[8].mean((0, 1)), v[8].std((0, 1))])
                       for v in videos]).astype(np.float64)
    assert _tiny_model_accuracy(frames[train], labels[train], frames[~train], labels[~train]) <= 0.45


def test_falling_particles_are_streaks_as_long_as_their_fall() -> None:
    """Motion blur: every particle's streak is as long as it fell during the frame, so the streaks lengthen
    from the first frame to the last (a time cue in every cell of the frame) and match the positions."""
    from vidfast.data.synth import _falling_particles

    y, _, streak, _ = _falling_particles(np.random.default_rng(0), 32, 48, 48, 48.0)
    assert y.shape == streak.shape == (32, 108)
    fell = np.diff(y, axis=0) % 48  # no particle falls a whole frame height in one frame
    assert np.array_equal(fell, streak[1:])
    assert streak[:8].mean() < streak[8:16].mean() < streak[16:24].mean() < streak[24:].mean()


def test_control_catalogue_is_not_mapped_onto_itself_by_a_rotation() -> None:
    """On the generator's parameters: no 90-degree rotation turns a control class into another control class
    (each is unchanged), while the aligned catalogue's first four classes are each other's rotations."""
    from vidfast.data.synth import CONTROL_MOTIONS, rotated, same_motion

    for motion in CONTROL_MOTIONS:
        for turns in (1, 2, 3):
            image = rotated(motion, turns)
            assert same_motion(image, motion), (motion.name, turns)
            assert not any(same_motion(image, other) for other in CONTROL_MOTIONS if other is not motion)
    right, left, down, up = MOTIONS[:4]
    assert same_motion(rotated(right, 1), up) and same_motion(rotated(right, 2), left)
    assert same_motion(rotated(right, 3), down) and same_motion(rotated(down, 1), right)
    assert same_motion(rotated(MOTIONS[4], 1), MOTIONS[4])  # a spin keeps its sense


@pytest.mark.parametrize("gravity", ["down", "random"])
def test_gravity_is_down_or_drawn_per_video(gravity: str) -> None:
    """Particles over a spinning disc (no drift): the global flow is their fall, down the frame in every
    video with gravity "down", along both axes and both ways across videos with "random"; the frames stay
    deterministic from the seed."""
    from vidfast.data.synth import CONTROL_MOTIONS

    spin = CONTROL_MOTIONS[0]
    flows = []
    for i in range(12):
        video = render_motion_video(spin, 16, (32, 32), np.random.default_rng([2, 0, i]), 1.0, 48.0, gravity)
        again = render_motion_video(spin, 16, (32, 32), np.random.default_rng([2, 0, i]), 1.0, 48.0, gravity)
        assert np.array_equal(video, again)
        flows.append(_global_flow(video))
    falls = [(int(np.sign(dy)), 0) if abs(dy) > abs(dx) else (0, int(np.sign(dx))) for dy, dx in flows]
    downs = falls.count((1, 0))
    if gravity == "down":  # the flow estimate is noisy (particles wrap around the frame): most, not all
        assert downs >= 9 and np.mean([f[0] for f in flows]) > 0
    else:
        assert downs <= 6 and len(set(falls)) >= 3
    with pytest.raises(ValueError, match="gravity"):
        synthesize_dataset("unused", gravity="sideways")
