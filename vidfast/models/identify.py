"""What a weights file is: origin, architecture, classes and input convention, and how sure that is.

Layouts recognised from the file alone:

- a vidfast checkpoint: ``arch`` (a registry name), ``model_kwargs`` and a ``data`` section recording its
  convention (older ones record 0..1 mean/std only);
- the 3D-ResNets-PyTorch 2018 release: ``{epoch, arch: "resnet-34", state_dict (often with "module."),
  optimizer}`` (values 0..255 minus the ActivityNet mean, no std);
- its 2020 code: the same plus ``scheduler`` (values 0..1, Kinetics mean/std);
- torchvision's video models: a bare state dict with ``stem.0.weight``;
- any other bare state dict of a supported architecture (recognised from keys and shapes; its convention is
  then a guess, said as such).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidfast import conventions
from vidfast.conventions import Convention, Override
from vidfast.errors import CheckpointError
from vidfast.models.registry import is_model, model_card, model_family
from vidfast.models.weights import (
    classifier_rows,
    extract_state_dict,
    infer_model_kwargs,
    load_checkpoint,
    match_architecture,
    parse_arch,
    read_checkpoint,
)

log = logging.getLogger(__name__)

ORIGINS = {
    "vidfast": "a vidfast checkpoint",
    "3dr2018": "the 3D-ResNets-PyTorch 2018 release (CVPR 2018 code)",
    "3dr2020": "the 3D-ResNets-PyTorch 2020 code",
    "torchvision": "torchvision's video models",
    "state_dict": "a bare state dict",
}
#: how sure the convention is: written in the file, told by the file's layout, or a guess
CERTAINTIES = ("recorded", "recognised", "guessed")


@dataclass(frozen=True)
class FileIdentity:
    """What :func:`identify` found: ``origin`` (a key of :data:`ORIGINS`), the registry ``arch`` and its
    ``model_kwargs``, ``num_classes``, the ``convention`` the weights expect, ``certainty`` (one of
    :data:`CERTAINTIES`) and ``reason``, one line on how it was told."""

    origin: str
    arch: str
    model_kwargs: dict[str, Any]
    num_classes: int
    convention: Convention
    certainty: str
    reason: str
    task: str = "classify"
    class_names: list[str] = field(default_factory=list)

    def summary(self) -> list[str]:
        """Human-readable lines (``vidfast models show FILE``)."""
        names = f" ({', '.join(self.class_names[:5])}{', ...' if len(self.class_names) > 5 else ''})"
        return [
            f"origin: {ORIGINS[self.origin]}",
            f"arch: {self.arch}" + (f" {self.model_kwargs}" if self.model_kwargs else ""),
            f"task: {self.task}; classes: {self.num_classes}" + (names if self.class_names else ""),
            f"convention: {self.convention.describe()}",
            f"how sure: {self.certainty} ({self.reason})",
        ]


def identify(checkpoint: Mapping[str, Any]) -> FileIdentity:
    """Identify a read checkpoint (see the module docstring). CheckpointError (one line) for a file that is
    none of the supported layouts, naming the architectures it rejected."""
    sd = extract_state_dict(checkpoint)
    arch = checkpoint.get("arch")
    task = str(checkpoint.get("task") or "classify")
    if any(k.startswith("backbone.") for k in sd):
        task = "puzzle"
        sd = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    rows = classifier_rows(sd) or int(checkpoint.get("num_classes") or 0)
    names = [str(n) for n in checkpoint.get("class_names") or []]
    if isinstance(arch, str) and is_model(arch) and isinstance(checkpoint.get("model_kwargs"), Mapping):
        data = checkpoint.get("data") if isinstance(checkpoint.get("data"), Mapping) else None
        try:
            conv = conventions.from_data(data)
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None
        how = "recorded" if data and "mean" in data else "guessed"
        why = ("its data section records it" if how == "recorded"
               else "it records no convention: vidfast's default assumed")
        kwargs = dict(checkpoint["model_kwargs"])
        return FileIdentity("vidfast", arch, kwargs, rows, conv, how, why, task, names)
    if isinstance(arch, str):
        name = parse_arch(arch, sd)
        kwargs = infer_model_kwargs(name, sd)
        origin, how, why = _reference_release(checkpoint)
        conv = conventions.preset("cvpr2018" if origin == "3dr2018" else "3dr2020")
        return FileIdentity(origin, name, kwargs, rows, conv, how, why, task, names)
    name, kwargs = match_architecture(sd)
    if model_family(name) == "torchvision":
        return FileIdentity("torchvision", name, kwargs, rows, conventions.preset("torchvision"),
                            "recognised", "a bare state dict with torchvision's stem.0.weight", task, names)
    guess = conventions.preset("3dr2020")
    return FileIdentity("state_dict", name, kwargs, rows, guess, "guessed",
                        "a bare state dict records no convention: the 3D-ResNets 2020 one assumed; pass "
                        "--preset to choose", task, names)


def _reference_release(checkpoint: Mapping[str, Any]) -> tuple[str, str, str]:
    """(origin, certainty, reason) of a file with a reference-code ``arch`` string."""
    if "scheduler" in checkpoint:
        return "3dr2020", "recognised", "arch string with a 'scheduler' entry: the 2020 code's save format"
    if "optimizer" in checkpoint:
        return "3dr2018", "recognised", "arch string with an 'optimizer' and no 'scheduler': the 2018 release"
    return "3dr2020", "guessed", "arch string without optimizer or scheduler: 2020 code assumed"


def choose_convention(identity: FileIdentity, override: Override = Override(),
                      source: str = "the checkpoint") -> Convention:
    """The file's convention with the user's ``override`` on top.

    An override that changes the values of a convention the file records or its layout tells is refused
    (CheckpointError) unless ``override.force``: such weights normalised otherwise give wrong results. A
    guessed convention that no override replaces is logged as a warning (one line).
    """
    try:
        chosen = conventions.resolve(identity.convention, override)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    if identity.certainty == "guessed" and chosen is identity.convention:
        log.warning("%s: input convention guessed, %s: %s", source, chosen.describe(), identity.reason)
    if identity.certainty != "guessed" and not override.force and not chosen.same_values(identity.convention):
        raise CheckpointError(
            f"{source} is {ORIGINS[identity.origin]} and expects {identity.convention.describe()}; "
            f"{chosen.name} input contradicts it (pass --force to use it anyway)"
        )
    return replace(chosen, clip=chosen.clip or identity.convention.clip)


@dataclass
class OpenedClassifier:
    """A classifier read from any supported file: ``model`` (CPU), what the file is, the convention to feed it
    with, its clip geometry (``clip_len``, ``size``, ``frame_step``: recorded, else the convention's training
    clip, else the model card's) and class names."""

    model: nn.Module
    identity: FileIdentity
    convention: Convention
    clip_len: int
    size: int
    frame_step: int


def open_classifier(path: str | os.PathLike[str], override: Override = Override()) -> OpenedClassifier:
    """Read a classifier checkpoint of any supported layout with its convention (``override`` on top: see
    :func:`choose_convention`). CheckpointError for a puzzle checkpoint or a file that fits nothing."""
    source = read_checkpoint(path)
    found = identify(source)
    if found.task == "puzzle":
        raise CheckpointError(f"{path} is a puzzle (pretext) checkpoint, not a classifier: finetune it first")
    conv = choose_convention(found, override, source=str(path))
    model = load_checkpoint(None, source)
    data = source.get("data") if isinstance(source.get("data"), Mapping) else {}
    clip = conv.clip or model_card(found.arch).clip
    return OpenedClassifier(model, found, conv, int(data.get("clip_len") or clip[0]),
                            int(data.get("size") or clip[1]), int(data.get("frame_step") or 1))


def convert_checkpoint(path: str | os.PathLike[str], out: str | os.PathLike[str],
                       override: Override = Override()) -> OpenedClassifier:
    """Write any supported classifier checkpoint at ``path`` as a vidfast checkpoint at ``out`` carrying its
    input convention (``override`` on top, refused when it contradicts the file unless forced) and clip
    geometry. Returns what was read; nothing is written on error."""
    opened = open_classifier(path, override)
    found, model = opened.identity, opened.model
    checkpoint = {
        "arch": found.arch,
        "model_kwargs": dict(found.model_kwargs),
        "task": "classify",
        "num_classes": model.num_classes,
        "class_names": list(found.class_names),
        "state_dict": model.state_dict(),
        "data": {"clip_len": opened.clip_len, "size": opened.size, "frame_step": opened.frame_step,
                 **opened.convention.to_data()},
        "converted_from": {"file": Path(path).name, "origin": found.origin, "certainty": found.certainty},
    }
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    torch.save(checkpoint, tmp)
    os.replace(tmp, target)
    return opened
