"""``vidfast data index|synth|transcode``: manifests, a synthetic motion dataset, re-encoding."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Build manifests, synthesize demo datasets, transcode videos.", no_args_is_help=True)

Workers = Annotated[
    int | None,
    typer.Option("--workers", help="Worker processes (default: the CPU count, at most 8; 1 = no pool)."),
]


def _parse_size(text: str) -> tuple[int, int]:
    """``HxW`` (or a single number for a square) -> (H, W)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2:
        raise ValueError(f"--size must be HxW (e.g. 64x64), got {text!r}")
    return values[0], values[1]


@app.command("index")
def index(
    source: Annotated[
        str, typer.Argument(help="folder, ucf101, hmdb51, kinetics, activitynet or frame_folders_json.")
    ],
    root: Annotated[Path, typer.Argument(help="Dataset root folder (videos or JPEG frame folders).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Manifest CSV to write.")],
    annotations: Annotated[
        Path | None,
        typer.Option("--annotations", help="Official annotations: ucf101 the ucfTrainTestlist folder, "
                     "hmdb51 testTrainMulti_7030_splits, kinetics the CSV (or a folder of CSVs), activitynet "
                     "the JSON, frame_folders_json the 3D-ResNets JSON."),
    ] = None,
    split: Annotated[int, typer.Option("--split", help="Official split 1-3 (ucf101, hmdb51).")] = 1,
    fraction: Annotated[
        float | None,
        typer.Option("--fraction", help="Keep a stratified, seeded fraction of the train rows (e.g. 0.125)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --fraction and --val-fraction.")] = 0,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", help="Hold out a stratified, seeded fraction of train as val.")
    ] = 0.0,
    workers: Workers = None,
) -> None:
    """Probe a dataset on disk and write its manifest (columns path, label, label_name, split, start, end,
    num_frames, fps, width, height, status, reason). Probing is parallel, cached beside the manifest and
    resumable; bad files are kept as status=bad rows and counted by reason."""
    from vidfast.data.manifest import build_manifest, summarize

    manifest = build_manifest(source, root, out, annotations=annotations, split=split, fraction=fraction,
                              seed=seed, val_fraction=val_fraction, workers=workers)
    for line in summarize(manifest):
        typer.echo(line)
    typer.echo(f"wrote {out}")


@app.command("synth")
def synth(
    root: Annotated[Path, typer.Argument(help="Folder to write ROOT/<class>/<video> into.")],
    classes: Annotated[
        int, typer.Option("--classes", help="Number of motion classes (aligned: 1-14, control: 1-6).")
    ] = 4,
    per_class: Annotated[int, typer.Option("--per-class", help="Videos per class.")] = 8,
    frames: Annotated[int, typer.Option("--frames", help="Frames per video.")] = 32,
    size: Annotated[str, typer.Option("--size", help="Frame size HxW (even numbers).")] = "64x64",
    codec: Annotated[str, typer.Option("--codec", help="h264, mpeg4, vp9, vp8 or mjpeg.")] = "h264",
    seed: Annotated[int, typer.Option("--seed", help="Seed (the dataset is deterministic from it).")] = 0,
    catalogue: Annotated[
        str, typer.Option("--catalogue", help="aligned: drifts right/left/down/up first (the four 90-degree "
                          "rotations of one motion), then spins, swings, diagonals; control: spin cw/ccw, "
                          "slide, swing (any direction), fast slide, wide swing: no 90-degree rotation maps "
                          "one class onto another.")
    ] = "aligned",
    gravity: Annotated[
        str, typer.Option("--gravity", help="Where the falling particles fall: down (every video) or random "
                          "(one of the four directions drawn per video, so that 'down' names no class).")
    ] = "down",
) -> None:
    """Write a labelled dataset whose classes differ only in motion (direction, speed, rotation, swing of a
    textured disc over a textured background), so no single frame tells the class."""
    from vidfast.data.synth import CATALOGUES, synthesize_dataset

    paths = synthesize_dataset(root, classes=classes, per_class=per_class, frames=frames,
                               size=_parse_size(size), codec=codec, seed=seed, catalogue=catalogue,
                               gravity=gravity)
    names = ", ".join(m.name for m in CATALOGUES[catalogue][:classes])
    typer.echo(f"wrote {len(paths)} videos of {classes} classes ({names}) to {root}")


@app.command("transcode")
def transcode(
    manifest: Annotated[Path, typer.Argument(help="Manifest CSV (its ok rows are transcoded).")],
    outdir: Annotated[Path, typer.Argument(help="Output folder; the new manifest is OUTDIR/manifest.csv.")],
    short_side: Annotated[int, typer.Option("--short-side", help="Output short side in pixels.")] = 128,
    gop: Annotated[int, typer.Option("--gop", help="Keyframe interval in frames.")] = 16,
    codec: Annotated[str, typer.Option("--codec", help="h264, vp9 or mjpeg.")] = "h264",
    crf: Annotated[int | None, typer.Option("--crf", help="Quality for h264/vp9 (lower = better).")] = None,
    frames_fps: Annotated[
        float, typer.Option("--frames-fps", help="Frame rate given to JPEG frame folders.")
    ] = 25.0,
    fast_decode: Annotated[
        bool,
        typer.Option("--fast-decode/--no-fast-decode",
                     help="h264: encode for decoding speed (x264 tune=fastdecode, a few % more bytes)."),
    ] = True,
    b_frames: Annotated[
        bool,
        typer.Option("--b-frames/--no-b-frames",
                     help="h264: allow B-frames (~6.5% fewer bytes). Without them (default) frames decode in "
                     "display order: no wait for the next keyframe at a clip's end (bench/test_decode.py)."),
    ] = False,
    workers: Workers = None,
) -> None:
    """Re-encode a manifest's videos (short side, keyframe interval, codec) in parallel with resume, cut
    trimmed rows to their segment, and write the new manifest."""
    from vidfast.data.manifest import summarize
    from vidfast.data.transcode import transcode_manifest

    new, kept = transcode_manifest(manifest, outdir, short_side=short_side, gop=gop, codec=codec,
                                   workers=workers, crf=crf, frames_fps=frames_fps,
                                   fast_decode=fast_decode, b_frames=b_frames)
    for line in summarize(new):
        typer.echo(line)
    if kept:
        typer.echo(f"{kept} outputs were already done and kept")
    typer.echo(f"wrote {Path(outdir) / 'manifest.csv'}")
