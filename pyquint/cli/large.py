"""``pyquint large``: images larger than RAM, tile by tile, optionally on a Dask cluster."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
import numpy as np

from ..distributed import get_client
from ..errors import InputError
from ..features import ROUNDINGS
from ..ilastik import classifier_from_project
from ..io import split_h5_path
from ..lut import load_lut
from ..pixel import PixelClassifier
from ..tiles import make_test_image as write_test_image
from ..tiles import predict_tiled_files

# CLI choice -> pyquint.export format name
_FORMATS = {"png": "png", "tiff": "tif", "hdf5": "hdf5", "compressed-hdf5": "compressed hdf5",
            "ome-zarr": "ome-zarr"}


@click.group("large")
def cli() -> None:
    """Images larger than RAM: tile-by-tile prediction, Dask clusters.

    Each tile is read with a halo of real pixels around it (enough for the largest feature
    scale), so the result equals whole-image prediction; results are written tile by tile
    (streamed PNG, tiled TIFF, chunked HDF5), so memory depends on the tile size only.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")


def _load_classifier(model: Path, rounding: str | None) -> PixelClassifier:
    if model.suffix.lower() == ".ilp":
        return classifier_from_project(model, rounding=rounding)
    clf = PixelClassifier.load(model)
    if rounding:
        clf.rounding = rounding
    return clf


def _palette(spec: str | None, classifier) -> np.ndarray | None:
    """A 256 × 3 uint8 table: ``classes`` (the model's class colours) or a LUT name/file."""
    if spec is None:
        return None
    if spec == "classes":
        table = np.zeros((256, 3), np.uint8)
        for i, colour in enumerate(classifier.class_colors_):
            table[i + 1] = colour
        return table
    return np.asarray(load_lut(spec).table, dtype=np.uint8)[:, :3]


@cli.command("predict")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder; files are named like ilastik's: {nickname}_{source}.{ext}.")
@click.option("--export-source", "sources", multiple=True, default=("Simple Segmentation",),
              show_default=True,
              help="Probabilities, 'Simple Segmentation', Uncertainty or Features (repeatable; "
                   "case-insensitive). All are computed in one pass.")
@click.option("--output-format", "fmts", type=click.Choice(sorted(_FORMATS)), multiple=True,
              default=("png",), show_default=True,
              help="png: streamed 8-bit PNG (probabilities 0..1 -> 0..255); tiff: tiled, deflate; "
                   "hdf5 / compressed-hdf5: ilastik's exported_data layout (gzip level 1); "
                   "ome-zarr: OME-Zarr 0.4 (cyx, 512² chunks, needs pyquint[omezarr]). "
                   "Repeatable: every format is written from the same pass.")
@click.option("--lut", help="Colour 1-channel uint8 outputs (PNG/TIFF palette): 'classes' (the "
                            "model's class colours), glasbey, 'glasbey on dark', 'glasbey "
                            "inverted' or a .lut file.")
@click.option("--tile", default=2048, show_default=True, type=click.IntRange(16),
              help="Tile edge in pixels. Memory per tile in flight ≈ 2 × (tile + 2·halo)² × "
                   "features × 4 bytes (about 1.7 GB at 2048 with 49 features).")
@click.option("--halo", type=click.IntRange(0),
              help="Context around each tile (default: exact, from the feature scales).")
@click.option("--workers", type=click.IntRange(1),
              help="Tiles in parallel (threads; default: one per two cores, within half the free "
                   "memory). With --scheduler: tiles in flight (default 4).")
@click.option("--scheduler", help="tcp://host:port of a dask.distributed scheduler: tiles run on "
                                  "its workers (which must see IMAGES); writing stays local.")
@click.option("--rounding", type=click.Choice(ROUNDINGS), default=None,
              help="Feature arithmetic (default: the model's; for an .ilp, its ilastik version's).")
@click.option("--axes", help="Stored axes of the images when the file does not say, e.g. cyx.")
@click.option("--scale-level", type=click.IntRange(0), default=0,
              help="Resolution level of OME-Zarr inputs (0 = full resolution).")
@click.option("--output-filename-format", "name_format",
              help="Output names: {dataset_dir} (the -o folder), {nickname}, {result_type} and, "
                   "for time series, {slice_index} (the time point, zero-padded as ilastik pads "
                   "its sequences). Default {dataset_dir}/{nickname}_{result_type}, and for "
                   "series pyquint's ..._t0000, _t0001, ...")
@click.option("--overwrite", is_flag=True,
              help="Recompute outputs that exist (default: make only the missing ones, so a "
                   "stopped batch resumes).")
def predict(model: Path, images: tuple[str, ...], out: Path, sources: tuple[str, ...],
            fmts: tuple[str, ...],
            lut: str | None, tile: int, halo: int | None, workers: int | None,
            scheduler: str | None, rounding: str | None, axes: str | None, scale_level: int,
            name_format: str | None, overwrite: bool) -> None:
    """Predict MODEL (a pyquint model or an ilastik .ilp) on IMAGES, tile by tile.

    IMAGES are files or folders: HDF5 (file.h5/dataset), TIFF (tiled or stripped), .npy and
    OME-Zarr / zarr (image.zarr, --scale-level) are read window by window; other formats are
    loaded whole. Time series (HDF5, zarr, TIFF hyperstacks, .npy with a t axis) are
    predicted frame by frame into one output per time point, {nickname}_{source}_t0000.{ext}
    ..., or named by --output-filename-format with {slice_index} as ilastik names sequences.

    \b
    Example (a 30,000 × 30,000 section, Nutil-ready Glasbey PNG):
      pyquint large predict model.h5 section.tif --export-source "Simple Segmentation" \\
          --output-format png --lut glasbey -o out/
    """
    clf = _load_classifier(model, rounding)
    palette = _palette(lut, clf)
    client = get_client(scheduler) if scheduler else None
    try:
        result = predict_tiled_files(
            clf, images, out, sources=sources, formats=[_FORMATS[f] for f in fmts],
            overwrite=overwrite, tile=tile, halo=halo, n_workers=workers,
            executor=client.get_executor() if client is not None else None,
            palette=palette, axes=axes, scale_level=scale_level,
            name_format=name_format, report=click.echo)
    finally:
        if client is not None:
            client.close()
    if result.skipped:
        click.echo(f"skipped {len(result.skipped)} existing output(s) (--overwrite to redo)")


@cli.command("make-test-image")
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--size", nargs=2, type=click.IntRange(1), default=(30000, 30000), show_default=True,
              help="Rows and columns.")
@click.option("--seed", default=0, show_default=True, help="Same seed, same image.")
@click.option("--tile", default=512, show_default=True, type=click.IntRange(96),
              help="Edge of each synthetic section in the mosaic.")
@click.option("--patterns", default=8, show_default=True, type=click.IntRange(1),
              help="Distinct sections the mosaic draws from (each under a random rotation/flip).")
@click.option("--compress", is_flag=True, help="Deflate (TIFF) / gzip (HDF5) compression.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
def make_test_image(output: str, size: tuple[int, int], seed: int, tile: int, patterns: int,
                    compress: bool, overwrite: bool) -> None:
    """Write a synthetic uint8 section mosaic to OUTPUT (.h5, .tif or .npy), tile by tile.

    The image is never whole in memory, so sizes like 30000 × 30000 (900 MP) work on any
    machine. Each tile is a synthetic DAB-like section (stained cells, streaks, texture).
    """
    file = split_h5_path(output)[0]
    if file.exists() and not overwrite:
        raise InputError(f"{file} exists; use --overwrite to replace it")
    suffix = file.suffix.lower()
    compression = ("zlib" if suffix in (".tif", ".tiff") else "gzip") if compress else None
    start = time.perf_counter()
    write_test_image(output, size, seed=seed, tile=tile, n_patterns=patterns, compression=compression)
    click.echo(f"wrote {file} ({size[0]} × {size[1]}) in {time.perf_counter() - start:.1f} s")
