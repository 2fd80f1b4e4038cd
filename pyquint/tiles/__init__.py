"""Images larger than memory: lazy window readers, tile scheduling with a halo, streaming writers.

>>> from pyquint.tiles import predict_tiled                      # doctest: +SKIP
>>> predict_tiled(clf, "big.tif", {"Simple Segmentation": "big_seg.png"}, tile=2048)  # doctest: +SKIP

See ``docs/performance.md`` for memory and speed figures.
"""

from ._batch import frame_name, predict_tiled_files
from ._png import PNG_SIGNATURE, PNGStreamWriter, png_chunks
from ._predict import TILE_SOURCES, Tile, TilePredictor, frame_count, predict_tiled, tile_grid
from ._readers import ArrayImage, LazyImage, open_lazy
from ._synth import make_test_image, mosaic_tile
from ._writers import H5TileWriter, PNGTileWriter, TiffTileWriter, TileWriter, open_writer

__all__ = [
    "PNG_SIGNATURE",
    "TILE_SOURCES",
    "ArrayImage",
    "H5TileWriter",
    "LazyImage",
    "PNGStreamWriter",
    "PNGTileWriter",
    "Tile",
    "TilePredictor",
    "TiffTileWriter",
    "TileWriter",
    "frame_count",
    "frame_name",
    "make_test_image",
    "mosaic_tile",
    "open_lazy",
    "open_writer",
    "png_chunks",
    "predict_tiled",
    "predict_tiled_files",
    "tile_grid",
]
