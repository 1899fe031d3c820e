"""Clip policies by name, as decoders and sources are named: a run config, evaluation and prediction name
the policy they take (``create_policy``), and a new policy is one module that calls ``register_policy``.

A factory takes the clip geometry a run or checkpoint sets (``clip_len`` frames ``frame_step`` apart, ``size``
square), the ``output`` (normalisation, dtype, layout) and its own keyword options, and returns a
:class:`~vidfast.data.policies.ClipPolicy`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vidfast.data.policies.base import ClipOutput, ClipPolicy

#: ``factory(clip_len=, frame_step=, size=, output=, **options) -> ClipPolicy``
PolicyFactory = Callable[..., ClipPolicy]

#: policy name -> factory
POLICIES: dict[str, PolicyFactory] = {}


def register_policy(name: str, factory: PolicyFactory) -> PolicyFactory:
    """Make ``factory`` the policy called ``name`` (a policy module calls this once; a second factory under
    a taken name is a ValueError)."""
    if POLICIES.get(name, factory) is not factory:
        raise ValueError(f"clip policy {name!r} is already registered")
    POLICIES[name] = factory
    return factory


def create_policy(name: str, clip_len: int = 16, frame_step: int = 1, size: int = 112,
                  output: ClipOutput = ClipOutput(), **options: Any) -> ClipPolicy:
    """The policy called ``name`` for this geometry and output, with its ``options``. ValueError for an
    unknown name, TypeError for an option the policy does not take."""
    try:
        factory = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown clip policy {name!r} (known: {', '.join(sorted(POLICIES))})") from None
    return factory(clip_len=clip_len, frame_step=frame_step, size=size, output=output, **options)
