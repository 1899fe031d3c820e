"""Model registry in the manner of timm: named builders, ``create_model``, ``list_models`` and model cards."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

import torch
from torch import nn

from vidfast import conventions

Builder = Callable[..., nn.Module]
B = TypeVar("B", bound=Builder)

DEFAULT_CLIP: tuple[int, int, int] = (16, 112, 112)


@dataclass(frozen=True)
class ModelCard:
    """What a user needs to know about a registered model before building it.

    ``num_params`` counts the default configuration at 400 classes; ``clip`` is the (T, H, W) input size the
    model was designed for; ``classifier`` names the attribute holding the final linear layer; ``convention``
    names the input convention (:mod:`vidfast.conventions`) of its pretrained weights, whose ``value_scale``,
    ``mean`` and ``std`` the card repeats.
    """

    name: str
    family: str
    depth: int
    num_params: int
    clip: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    classifier: str
    convention: str = "kinetics"
    value_scale: float = 1.0


@dataclass(frozen=True)
class _Entry:
    builder: Builder
    family: str
    depth: int
    classifier: str
    clip: tuple[int, int, int]
    convention: str


_REGISTRY: dict[str, _Entry] = {}


def register_model(
    name: str | None = None,
    *,
    family: str,
    depth: int,
    classifier: str = "fc",
    clip: tuple[int, int, int] = DEFAULT_CLIP,
    convention: str = "kinetics",
) -> Callable[[B], B]:
    """Decorator registering ``builder(num_classes=..., **options) -> nn.Module`` under ``name``.

    ``name`` defaults to the builder's ``__name__``; ``convention`` is the preset of
    :mod:`vidfast.conventions` its pretrained weights use. Registering a name twice is an error.
    """
    conventions.preset(convention)

    def wrap(builder: B) -> B:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(f"model name {key!r} is already registered")
        _REGISTRY[key] = _Entry(builder, family, depth, classifier, clip, convention)
        return builder

    return wrap


def list_models(family: str | None = None) -> list[str]:
    """Registered model names (optionally of one family), sorted by family then depth."""
    names = [n for n, e in _REGISTRY.items() if family is None or e.family == family]
    return sorted(names, key=lambda n: (_REGISTRY[n].family, _REGISTRY[n].depth, n))


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered model name."""
    return name in _REGISTRY


def find_model(family: str, depth: int) -> str | None:
    """The registered name of the ``family`` model of ``depth``, or None."""
    return next((n for n, e in _REGISTRY.items() if e.family == family and e.depth == depth), None)


def model_family(name: str) -> str:
    """Family of a registered model ("resnet", "preact_resnet", "wide_resnet", "resnext", "densenet",
    "r2plus1d", "c3d", "torchvision")."""
    return _entry(name).family


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = (
            f"; did you mean {', '.join(close)}?" if close else f"; known models: {', '.join(list_models())}"
        )
        raise ValueError(f"unknown model name {name!r}{hint}") from None


def model_options(name: str) -> list[str]:
    """Keyword options the builder of ``name`` accepts (besides ``num_classes``)."""
    params = inspect.signature(_entry(name).builder).parameters
    return [p for p in params if p != "num_classes"]


def create_model(name: str, num_classes: int = 400, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with a ``num_classes``-way classifier.

    Options (where the family has them): ``n_input_channels``, ``conv1_t_size``, ``conv1_t_stride``,
    ``no_max_pool``, ``shortcut_type``, ``widen_factor``, ``cardinality``, ``dropout`` and family-specific
    ones (see ``model_options(name)``). The returned model carries ``arch`` (= ``name``) and ``model_kwargs``
    (= the options given) so that a checkpoint can record how to rebuild it.
    """
    entry = _entry(name)
    if not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be a non-negative integer, got {num_classes!r}")
    accepted = model_options(name)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"model {name!r} does not take option(s) {', '.join(unknown)}; it takes: {', '.join(accepted)}"
        )
    model = entry.builder(num_classes=num_classes, **kwargs)
    model.arch = name
    model.model_kwargs = dict(kwargs)
    return model


@cache
def _default_num_params(name: str) -> int:
    with torch.device("meta"):
        model = _entry(name).builder(num_classes=400)
    return sum(p.numel() for p in model.parameters())


def model_card(name: str) -> ModelCard:
    """The :class:`ModelCard` of a registered model (parameter count computed without allocating weights)."""
    entry = _entry(name)
    conv = conventions.preset(entry.convention)
    return ModelCard(
        name=name,
        family=entry.family,
        depth=entry.depth,
        num_params=_default_num_params(name),
        clip=entry.clip,
        mean=conv.mean,
        std=conv.std,
        classifier=entry.classifier,
        convention=conv.name,
        value_scale=conv.value_scale,
    )
