"""OME-Zarr / zarr for the tile path (kept for imports): :class:`ZarrImage` lives with the other
lazy readers (``_readers``), :class:`OmeZarrTileWriter` with the other tile writers (``_writers``)."""

from __future__ import annotations

from ._readers import ZarrImage
from ._writers import OmeZarrTileWriter

__all__ = ["OmeZarrTileWriter", "ZarrImage"]
