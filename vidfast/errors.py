"""Errors a user can cause. The CLI prints these as one line; anything else is a bug and keeps its traceback."""

from __future__ import annotations


class VidfastError(Exception):
    """Base class of user-facing errors (bad arguments, bad files, missing optional packages)."""


class CheckpointError(VidfastError):
    """A checkpoint that cannot be loaded: missing, corrupt, unsafe to unpickle, or not matching the model."""


class DataError(VidfastError):
    """A dataset, manifest or video that cannot be used."""


class BackendUnavailable(VidfastError):
    """No decoding or inference backend can serve a request; the message lists why each one refused."""
