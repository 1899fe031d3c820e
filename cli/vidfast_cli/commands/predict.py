"""``vidfast predict``: video-level labels with scores for one or many files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vidfast.engine.config import EvalConfig
from vidfast_cli import options as opt

#: the options ``vidfast predict`` shares with ``vidfast eval``: the model and how a video's clips are read
SCORING = ("checkpoints", "onnx", "clips", "policy", "device", "amp", "channels_last")
_TIMELINE = "Timeline (needs --onnx)"


@opt.with_convention_options
@opt.with_config(EvalConfig, SCORING, panel="Model", defaults=EvalConfig())
def predict(
    videos: Annotated[list[str], typer.Argument(
        help="Video files (or JPEG frame folders) to classify; with --timeline also URLs (rtsp://, http://) "
             "or - for stdin.")],
    topk: Annotated[int, typer.Option("--topk", min=1, help="Classes to show per video.")] = 5,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list: path, labels [{label, score}], error.")
    ] = False,
    timeline: Annotated[
        bool, typer.Option("--timeline", help="Score sliding windows: per-window and per-second labels.",
                           rich_help_panel=_TIMELINE)
    ] = False,
    window: Annotated[
        str | None, typer.Option("--window", help="Window length, 2s or 32 (frames); rounded to whole model "
                                 "clips. Default: one clip.", rich_help_panel=_TIMELINE)
    ] = None,
    stride: Annotated[
        str | None, typer.Option("--stride", help="Between window starts, 1s or 16 (frames); rounded to the "
                                 "model's frame step. Default: the window.", rich_help_panel=_TIMELINE)
    ] = None,
    smooth: Annotated[
        int, typer.Option("--smooth", min=1, help="Trailing moving average of the scores over this many "
                          "windows (1: none).", rich_help_panel=_TIMELINE)
    ] = 1,
    timeline_out: Annotated[
        Path | None, typer.Option("--timeline-out", help="Write the windows and seconds with their labels to "
                                  "this .csv or .json file.", rich_help_panel=_TIMELINE)
    ] = None,
    render: Annotated[
        Path | None, typer.Option("--render", help="Write the video with the label and a score bar drawn on "
                                  "it (one video; a file, not a stream).", rich_help_panel=_TIMELINE)
    ] = None,
    live: Annotated[
        bool, typer.Option("--live", help="Real-time mode: frames are dropped (counted) when the model falls "
                           "behind; a local file is followed while it is written.", rich_help_panel=_TIMELINE)
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.001, help="Seconds without a frame before a source counts as "
                            "stalled.", rich_help_panel=_TIMELINE)
    ] = 10.0,
    container_format: Annotated[
        str | None, typer.Option("--format", help="Container format of a source that cannot be probed, e.g. "
                                 "mpegts on a pipe.", rich_help_panel=_TIMELINE)
    ] = None,
    overrides: Any = None,
    convention: Any = None,
) -> None:
    """Classify whole videos: the softmax scores of CLIPS evenly spaced clips (or of the samples of a clip
    --policy) are averaged per video.

    With --checkpoint the PyTorch model runs with channels_last_3d in the precision measured fastest among
    those whose convolutions pass a check against fp32 on this machine (--amp/--no-amp force it); with
    --onnx the exported model runs in onnxruntime on the best installed provider. A file that cannot be
    decoded gets one `error: FILE: reason` line on stderr; the other files are still predicted and the exit
    code is 1.
    """
    import json

    cfg = opt.configured(EvalConfig(), overrides)
    checkpoint = [Path(c) for c in cfg.checkpoints]
    onnx = None if cfg.onnx is None else Path(cfg.onnx)
    if timeline or render is not None or live:
        from vidfast.conventions import Override

        if cfg.policy is not None:
            raise typer.BadParameter("--timeline scores windows of the stream: --policy does not apply")
        if convention != Override():
            raise typer.BadParameter("an --onnx model carries its input convention: --preset, --mean, --std "
                                     "and --value-scale do not apply")
        _timelines(videos, onnx, checkpoint, topk, as_json, cfg.device, window=window, stride=stride,
                   smooth=smooth, live=live, timeout=timeout, format=container_format, out=timeline_out,
                   render=render)
        return
    from vidfast.deploy.predict import open_scorer, predict_videos

    scorer = open_scorer(checkpoint, onnx=onnx, device=cfg.device, autocast=cfg.amp,
                         channels_last=cfg.channels_last, convention=convention)
    results = predict_videos(scorer, videos, topk=topk, clips=cfg.clips, policy=cfg.policy)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
    for result in results:
        if result.error is not None:
            typer.echo(f"error: {result.path}: {result.error}", err=True)
        elif not as_json:
            labels = ", ".join(f"{name} {score:.3f}" for name, score in result.top)
            typer.echo(f"{result.path}: {labels}")
    if any(r.error is not None for r in results):
        raise typer.Exit(code=1)


def _timelines(videos: list[str], onnx: Path | None, checkpoint: list[Path], topk: int, as_json: bool,
               device: str, out: Path | None, render: Path | None, **options: Any) -> None:
    """``predict --timeline``: each source's windows as they come (or JSON at the end), then the files."""
    import json

    from vidfast.deploy import OnnxClassifier
    from vidfast.deploy.stream import source_name
    from vidfast.deploy.timeline import OnnxClipScorer, run_timeline, timeline_dict, write_timeline_csv

    if onnx is None or checkpoint:
        raise typer.BadParameter("--timeline, --render and --live run an exported model: give --onnx "
                                 "(`vidfast export` writes one from a checkpoint)")
    if render is not None and len(videos) != 1:
        raise typer.BadParameter("--render draws on one video: give exactly one")
    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        raise typer.BadParameter(f"--timeline-out must end in .csv or .json, got {out}")
    scorer = OnnxClipScorer(OnnxClassifier(onnx, providers=device))
    names = scorer.class_names

    def show(source: str):
        source = source_name(source)

        def line(w) -> None:
            labels = ", ".join(f"{name} {score:.3f}" for name, score in w.top(names, topk))
            typer.echo(f"{source} {w.start:.2f}-{w.end:.2f}s: {labels}")
        return None if as_json else line

    outcomes = [run_timeline(scorer, v, on_window=show(v), render=render, **options) for v in videos]
    if as_json:
        typer.echo(json.dumps([o.to_dict(names, topk) for o in outcomes], indent=2))
    if out is not None:
        if out.suffix.lower() == ".csv":
            write_timeline_csv(out, [(o.source, o.windows) for o in outcomes], names, topk)
        else:
            out.write_text(json.dumps([{"path": o.source, **timeline_dict(o.windows, names, topk)}
                                       for o in outcomes], indent=2))
    for o in outcomes:
        typer.echo(f"timeline {o.source}: {o.stats.summary()}", err=True)
        if o.error is not None:
            typer.echo(f"error: {o.error} ({len(o.windows)} windows before it kept)", err=True)
    if any(o.error is not None for o in outcomes):
        raise typer.Exit(code=1)
