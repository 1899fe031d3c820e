"""One reader of ``bench/test_decode.py``, run as its own process so that decord 0.6 and decord2 (both the
module ``decord``) can be measured side by side: ``python decode_reader.py KIND PATHS_JSON``.

Each line read from stdin is a seed; the reader then decodes one random 16-frame training clip of every path
(one codec thread, the file opened per clip) and answers one JSON line: ``seconds`` (decode only), ``frames``
(returned) and ``decoded`` (frames from the keyframe before each clip to its end: what a decoder must decode).
``KIND``: ``decord`` (whichever decord the PYTHONPATH gives: ``VideoReader`` + ``get_batch``, a start drawn
uniformly like vidfast's unsnapped sampler) or ``vidfast:BACKEND:SNAP`` (vidfast's training sampler,
``training_clips(keyframe_snap=SNAP)``, planning on the decoder's keyframes, and ``get_frames`` of what it
asks for; ``BACKEND`` ``auto`` is the order measured on this machine).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

CLIP = 16


def _decord_clip(path: str, rng: np.random.Generator) -> tuple[int, int]:
    import decord

    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    start = int(rng.integers(0, len(reader) - CLIP + 1))
    frames = reader.get_batch(list(range(start, start + CLIP))).asnumpy()
    keys = np.asarray(reader.get_key_indices())
    return len(frames), start + CLIP - int(keys[keys <= start].max())


def _vidfast_reader(backend: str, snap: int):
    from vidfast.data.decoders import BACKENDS, backend_priority
    from vidfast.data.policies import training_clips

    if backend == "auto":
        backend = next(n for n in backend_priority("cpu") if BACKENDS[n].threaded is not None)
    opener = BACKENDS[backend].threaded
    policy = training_clips(CLIP, size=112, keyframe_snap=snap)

    def clip(path: str, rng: np.random.Generator) -> tuple[int, int]:
        video = opener(path, 1)
        wanted, _ = policy.plan(video.num_frames, video.height, video.width, rng, video.key_frames).localize()
        frames = video.get_frames(wanted)
        video.close()
        keys = video.key_frames
        return len(frames), int(wanted[-1]) + 1 - int(keys[keys <= wanted[0]].max())

    return backend, clip


def main() -> None:
    kind, paths = sys.argv[1], json.loads(sys.argv[2])
    if kind == "decord":
        import decord

        clip, name = _decord_clip, f"decord {decord.__version__}"
    else:
        _, backend, snap = kind.split(":")
        backend, clip = _vidfast_reader(backend, int(snap))
        name = f"vidfast {backend} keyframe_snap={snap}"
    print(json.dumps({"reader": name}), flush=True)
    for line in sys.stdin:
        rng = np.random.default_rng(int(line))
        frames = decoded = 0
        begin = time.perf_counter()
        for path in paths:
            got, needed = clip(path, rng)
            frames += got
            decoded += needed
        seconds = time.perf_counter() - begin
        print(json.dumps({"seconds": seconds, "frames": frames, "decoded": decoded}), flush=True)


if __name__ == "__main__":
    main()
