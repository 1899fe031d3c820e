"""Errors a user can cause; the CLI prints them, like any other exception, as one line."""

from __future__ import annotations


class VidfastError(Exception):
    """Base class of user-facing errors (bad arguments, bad files, missing optional packages)."""


class CheckpointError(VidfastError):
    """A checkpoint that cannot be loaded: missing, corrupt, unsafe to unpickle, or not matching the model."""


class DataError(VidfastError):
    """A dataset, manifest or video that cannot be used."""


class BackendUnavailable(VidfastError):
    """No decoding or inference backend can serve a request; the message lists why each one refused."""
