"""Safe reading and loading of model weight files: vidfast checkpoints and those of the 3D-ResNets-PyTorch
project and torchvision (training checkpoints, written atomically and resumed, are
:mod:`vidfast.engine.checkpoint`'s).

Every file goes through ``torch.load(weights_only=True)``: a file that needs arbitrary unpickling is refused
and never executed. Checkpoints may be a raw state dict or a dict with ``state_dict`` and ``arch``, which is
either a vidfast registry name (``"resnet18"``, with ``model_kwargs``) or a reference-code name
(``"resnet-18"``, ``"preresnet-200"``, ``"resnext-101"``, ``"densenet-121"``, ``"resnet2p1d-18"``, or just
``"resnet"``, the depth and the options then being read off the weights).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vidfast.errors import CheckpointError
from vidfast.models.densenet import DENSENET_BLOCKS
from vidfast.models.puzzle import PuzzleNet
from vidfast.models.registry import create_model, find_model, is_model, list_models, model_family
from vidfast.models.resnet import BOTTLENECK_MIN_DEPTH, STAGE_BLOCKS, STEM_WIDTH

log = logging.getLogger(__name__)

#: family names used by the reference code's ``--model`` option (and in its ``arch`` strings)
REFERENCE_FAMILIES: dict[str, str] = {
    "resnet": "resnet",
    "preresnet": "preact_resnet",
    "wideresnet": "wide_resnet",
    "resnext": "resnext",
    "densenet": "densenet",
    "resnet2p1d": "r2plus1d",
    "c3d": "c3d",
}
RESNET_LIKE = ("resnet", "preact_resnet", "wide_resnet", "resnext", "r2plus1d")
#: wrapper prefixes added by DataParallel / DistributedDataParallel and torch.compile
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
#: renames from the reference code's first DenseNet release (``conv0``, ``norm.1`` ...) to today's names
LEGACY_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^features\.(conv|norm)0\."), r"features.\g<1>1."),
    (re.compile(r"\.(norm|conv|relu)\.([12])\."), r".\1\2."),
)
_MAX_LISTED = 5

PathLike = str | os.PathLike[str]


def read_checkpoint(path: PathLike) -> dict[str, Any]:
    """Load a checkpoint file safely: ``torch.load(path, map_location="cpu", weights_only=True)``.

    Raises :class:`CheckpointError` (one line) when the file is missing, corrupt, not a dict, or would need
    arbitrary unpickling (such a file is refused without running any of it).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "weights only" in msg.lower() or "weights_only" in msg:
            culprit = re.search(r"Unsupported global: GLOBAL ([\w.]+)", msg)
            what = f" (it references {culprit.group(1)})" if culprit else ""
            raise CheckpointError(
                f"refusing to load {p}: it is not a plain weights file and unpickling it could run arbitrary "
                f"code{what}"
            ) from None
        raise CheckpointError(f"cannot read checkpoint {p}: corrupt file ({_first_line(msg)})") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, ValueError, zip errors ... for broken files
        raise CheckpointError(
            f"cannot read checkpoint {p}: {type(e).__name__}: {_first_line(str(e))}"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {p} holds a {type(obj).__name__}, expected a dict")
    return obj


def _first_line(msg: str) -> str:
    return msg.strip().splitlines()[0] if msg.strip() else "no details"


def strip_prefixes(key: str, prefixes: Sequence[str] = WRAPPER_PREFIXES) -> str:
    """``key`` without any of ``prefixes`` in front, repeatedly (``"module._orig_mod.fc.weight"`` ->
    ``"fc.weight"``)."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in prefixes:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def extract_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """The state dict of a checkpoint (its ``state_dict`` entry, or the checkpoint itself when it is one),
    with ``module.`` / ``_orig_mod.`` prefixes stripped and legacy DenseNet names renamed."""
    sd = checkpoint.get("state_dict", checkpoint)
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(v, Tensor) for v in sd.values()):
        raise CheckpointError(
            "checkpoint has no state dict (expected a 'state_dict' entry or a dict of tensors)"
        )
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        key = strip_prefixes(key)
        for pattern, repl in LEGACY_RENAMES:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


def parse_arch(arch: str, state_dict: Mapping[str, Tensor] | None = None) -> str:
    """Registry name for a vidfast name (``"resnet18"``) or a reference-code one (``"resnet-18"``,
    ``"preresnet-50"``; a bare family such as ``"resnet"`` takes its depth from ``state_dict``)."""
    if is_model(arch):
        return arch
    m = re.fullmatch(r"([a-z0-9_]+?)(?:[-_]?(\d+))?", arch.strip().lower())
    family = REFERENCE_FAMILIES.get(m.group(1), m.group(1)) if m else None
    if m is None or family not in REFERENCE_FAMILIES.values():
        raise CheckpointError(f"unknown architecture {arch!r} in checkpoint")
    if m.group(2) is not None:
        depth = int(m.group(2))
    elif state_dict is None:
        raise CheckpointError(f"architecture {arch!r} names no depth")
    else:
        depth = infer_depth(family, state_dict)
    name = find_model(family, depth)
    if name is None:
        raise CheckpointError(f"no {family} model of depth {depth} (architecture {arch!r})")
    return name


def infer_depth(family: str, sd: Mapping[str, Tensor]) -> int:
    """Depth of a ``family`` model from the block counts in its state dict."""
    if family == "densenet":
        counts = _max_index(sd, r"features\.denseblock(\d)\.denselayer(\d+)\.", base=1)
        for depth, blocks in DENSENET_BLOCKS.items():
            if counts == blocks:
                return depth
    elif family in RESNET_LIKE:
        counts = _max_index(sd, r"layer(\d)\.(\d+)\.", base=0)
        bottleneck = any(re.match(r"layer\d\.\d+\.conv3\.", k) for k in sd)
        for depth, blocks in STAGE_BLOCKS.items():
            if counts == blocks and (depth >= BOTTLENECK_MIN_DEPTH) == bottleneck:
                return depth
    raise CheckpointError(f"cannot infer the depth of a {family} model from the checkpoint's keys")


def _max_index(sd: Mapping[str, Tensor], pattern: str, base: int) -> tuple[int, ...]:
    found: dict[int, int] = {}
    for key in sd:
        m = re.match(pattern, key)
        if m:
            stage, index = int(m.group(1)), int(m.group(2)) + 1 - base
            found[stage] = max(found.get(stage, 0), index)
    return tuple(found[s] for s in sorted(found))


def infer_model_kwargs(name: str, sd: Mapping[str, Tensor]) -> dict[str, Any]:
    """Options of a checkpoint without ``model_kwargs`` (reference-code files), read off the weight shapes:
    input channels, stem temporal size, widths, shortcut type, ResNeXt cardinality, Wide-ResNet ``k``.
    Parameter-free options (``conv1_t_stride``, ``no_max_pool``) cannot be seen and keep their defaults."""
    family = model_family(name)
    kw: dict[str, Any] = {}

    def shape(key: str) -> torch.Size | None:
        return sd[key].shape if key in sd else None

    if family in RESNET_LIKE:
        stem = shape("conv1_t.weight") if family == "r2plus1d" else shape("conv1.weight")
        stem_in = shape("conv1_s.weight") if family == "r2plus1d" else stem
        if stem is None or stem_in is None:
            return kw
        kw["n_input_channels"] = stem_in[1]
        kw["conv1_t_size"] = stem[2]
        if stem[0] != STEM_WIDTH:
            kw["widen_factor"] = stem[0] / STEM_WIDTH
        kw["shortcut_type"] = "B" if any(".downsample.0.weight" in k for k in sd) else "A"
        first = shape("layer1.0.conv1.weight")
        if family == "wide_resnet" and first is not None:
            kw["k"] = first[0] // stem[0]
        grouped = shape("layer1.0.conv2.weight")
        if family == "resnext" and grouped is not None:
            kw["cardinality"] = grouped[0] // grouped[1]
    elif family == "densenet":
        stem, growth = shape("features.conv1.weight"), shape("features.denseblock1.denselayer1.conv2.weight")
        bottle = shape("features.denseblock1.denselayer1.conv1.weight")
        if stem is None or growth is None or bottle is None:
            return kw
        kw.update(
            n_input_channels=stem[1],
            conv1_t_size=stem[2],
            num_init_features=stem[0],
            growth_rate=growth[0],
            bn_size=bottle[0] // growth[0],
        )
    elif family == "c3d":
        stem = shape("conv1a.weight")
        if stem is not None:
            kw["n_input_channels"] = stem[1]
            if stem[0] != 64:
                kw["widen_factor"] = stem[0] / 64
    return kw


def match_architecture(sd: Mapping[str, Tensor]) -> tuple[str, dict[str, Any]]:
    """The registered model (name, options) whose state dict has exactly the keys and shapes of ``sd``
    (classifier rows aside), from keys and shapes alone: the 3D-ResNets-PyTorch families, C3D and the
    torchvision trio. CheckpointError naming every rejected candidate and why when none fits."""
    rejected: list[str] = []
    families = dict.fromkeys(model_family(n) for n in list_models())
    for family in families:
        if family in RESNET_LIKE or family == "densenet":
            try:
                depth = infer_depth(family, sd)
            except CheckpointError:
                rejected.append(f"{family} (block counts fit no depth)")
                continue
            names = [n for n in list_models(family) if n == find_model(family, depth)]
        else:
            names = list_models(family)
        for name in names:
            kwargs = infer_model_kwargs(name, sd)
            problem = _shape_mismatch(name, kwargs, sd)
            if problem is None:
                return name, kwargs
            rejected.append(f"{name} ({problem})")
    raise CheckpointError(
        "the weights fit no supported architecture; rejected: " + "; ".join(rejected)
    )


def _shape_mismatch(name: str, kwargs: Mapping[str, Any], sd: Mapping[str, Tensor]) -> str | None:
    """None when ``create_model(name, **kwargs)`` has exactly ``sd``'s keys and shapes (classifier rows
    aside), else a short reason. Built on the meta device: no weights are allocated."""
    rows = classifier_rows(sd) or 400
    try:
        with torch.device("meta"):
            expected = create_model(name, num_classes=rows, **kwargs).state_dict()
    except (ValueError, TypeError) as exc:
        return f"options {dict(kwargs)} do not build: {exc}"
    wanted = {k for k in expected if not k.endswith("num_batches_tracked")}
    given = {k for k in sd if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(wanted - given), sorted(given - wanted)
    if missing or unexpected:
        first = (missing or unexpected)[0]
        return f"{len(missing)} missing, {len(unexpected)} unexpected key(s), e.g. {first}"
    misshaped = [k for k in wanted if sd[k].shape != expected[k].shape]
    if misshaped:
        return f"{len(misshaped)} mis-shaped key(s), e.g. {misshaped[0]}"
    return None


def classifier_rows(sd: Mapping[str, Tensor]) -> int | None:
    """Rows of the final linear layer of ``sd`` (its class count), None without one."""
    for key in ("fc.weight", "classifier.weight"):
        if key in sd:
            return int(sd[key].shape[0])
    return None


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


def _apply_state_dict(
    model: nn.Module, sd: Mapping[str, Tensor], strict: bool, optional_prefixes: tuple[str, ...] = ()
) -> None:
    """Copy ``sd`` into ``model``; keys under ``optional_prefixes`` and ``num_batches_tracked`` buffers may be
    missing. With ``strict``, any other missing, unexpected or mis-shaped key raises one CheckpointError."""
    expected = model.state_dict()
    missing = [
        k
        for k in expected
        if k not in sd and not k.endswith("num_batches_tracked") and not k.startswith(optional_prefixes)
    ]
    unexpected = [k for k in sd if k not in expected]
    misshaped = [k for k in sd if k in expected and sd[k].shape != expected[k].shape]
    if strict and (missing or unexpected or misshaped):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_listed(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_listed(unexpected)}")
        if misshaped:
            details = [f"{k} {list(sd[k].shape)} vs {list(expected[k].shape)}" for k in misshaped]
            parts.append(f"{len(misshaped)} mis-shaped key(s) (checkpoint vs model): {_listed(details)}")
        cls = getattr(model, "classifier_name", None)
        hint = (
            "; pass num_classes to replace the classifier"
            if cls and misshaped and all(k.startswith(cls + ".") for k in misshaped)
            else ""
        )
        name = getattr(model, "arch", type(model).__name__)
        raise CheckpointError(f"checkpoint does not match {name}: " + "; ".join(parts) + hint)
    if missing or unexpected or misshaped:
        log.warning(
            "non-strict checkpoint load: skipped %d missing, %d unexpected and %d mis-shaped key(s)",
            len(missing),
            len(unexpected),
            len(misshaped),
        )
    usable = {k: v for k, v in sd.items() if k in expected and v.shape == expected[k].shape}
    model.load_state_dict(usable, strict=False)


def load_checkpoint(
    model: nn.Module | str | None,
    checkpoint: PathLike | Mapping[str, Any],
    num_classes: int | None = None,
    strict: bool = True,
) -> nn.Module:
    """Load a checkpoint (path or already-read dict) into ``model`` and return it.

    ``model`` is a module, a model name (vidfast or reference style; must agree with the checkpoint's
    ``arch``), or None (built from the checkpoint's ``arch`` and ``model_kwargs``, or options read off the
    weights; without ``arch`` the architecture is recognised from keys and shapes alone, see
    :func:`match_architecture`). ``num_classes`` different from the checkpoint's replaces the classifier
    with a fresh one (fine-tuning). A cubic-puzzle checkpoint (``backbone.*`` keys) loaded into a plain
    model gives the backbone weights and a fresh classifier; a plain checkpoint loaded into a
    :class:`PuzzleNet` fills its backbone.
    Mismatches raise one :class:`CheckpointError` listing missing, unexpected and mis-shaped keys.
    """
    ckpt = read_checkpoint(checkpoint) if isinstance(checkpoint, str | os.PathLike) else checkpoint
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"checkpoint must be a dict, got {type(ckpt).__name__}")
    sd = extract_state_dict(ckpt)
    puzzle = any(k.startswith("backbone.") for k in sd)

    if isinstance(model, PuzzleNet):
        if puzzle:
            _apply_state_dict(model, sd, strict)
        else:
            cls = model.backbone.classifier_name + "."
            _apply_state_dict(model.backbone, {k: v for k, v in sd.items() if not k.startswith(cls)}, strict)
        return model
    if puzzle:
        sd = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}

    if model is None or isinstance(model, str):
        arch = ckpt.get("arch")
        kwargs = ckpt.get("model_kwargs")
        if model is None and not isinstance(arch, str):
            name, kwargs = match_architecture(sd)
        else:
            name = parse_arch(model if isinstance(model, str) else arch, sd)
        if isinstance(model, str) and isinstance(arch, str) and parse_arch(arch, sd) != name:
            raise CheckpointError(f"checkpoint holds a {arch!r} model, not {model!r}")
        if not isinstance(kwargs, Mapping):
            kwargs = infer_model_kwargs(name, sd)
        stored = classifier_rows(sd) or ckpt.get("num_classes") or 400
        try:
            model = create_model(
                name, num_classes=num_classes if num_classes is not None else stored, **kwargs
            )
        except (ValueError, TypeError) as e:
            raise CheckpointError(
                f"cannot build {name} from the checkpoint's options {dict(kwargs)}: {e}"
            ) from None
    elif num_classes is not None and getattr(model, "num_classes", num_classes) != num_classes:
        model.reset_classifier(num_classes)

    optional: tuple[str, ...] = ()
    cls = getattr(model, "classifier_name", None)
    if cls is not None:
        head = {k: v for k, v in sd.items() if k.startswith(cls + ".")}
        expected = model.state_dict()
        fresh_head = puzzle or (
            num_classes is not None
            and (not head or any(k not in expected or expected[k].shape != v.shape for k, v in head.items()))
        )
        if fresh_head:
            sd = {k: v for k, v in sd.items() if k not in head}
            optional = (cls + ".",)
    _apply_state_dict(model, sd, strict, optional)
    return model
