"""Dataset layouts (sources) that list a dataset on disk as manifest candidates; see ``base.py``.

Adding a layout: a module here whose listing function carries ``@register_source("name")``, and its import
line below.
"""

from vidfast.data.sources import activitynet, folder, frame_folders_json, hmdb51, kinetics, ucf101  # noqa: F401
from vidfast.data.sources.base import (
    SOURCES,
    SUBSETS,
    VIDEO_SUFFIXES,
    Listing,
    SourceEntry,
    list_source,
    register_source,
)

__all__ = ["SOURCES", "SUBSETS", "VIDEO_SUFFIXES", "Listing", "SourceEntry", "list_source", "register_source"]
