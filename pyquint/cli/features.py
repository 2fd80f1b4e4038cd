"""``pyquint features``: compute ilastik's pixel features and export them as ilastik does."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..features import EXPORT_ROUNDING, ROUNDINGS, feature_names
from ..features.batch import compute_files
from ..ilastik import load_feature_selection
from ..io import atomic_output


def load_selection(spec: str):
    """``all``, ``steinbock``, a JSON file (``FeatureSelection.to_dict``) or an ilastik ``.ilp``."""
    return load_feature_selection(spec, option="--selection")


def _selection_json(d: dict) -> str:
    """JSON with one matrix row per line, so the file is easy to edit by hand."""
    rows = ",\n".join(f"  {json.dumps(row)}" for row in d["matrix"])
    return (
        "{\n"
        f' "feature_ids": {json.dumps(d["feature_ids"])},\n'
        f' "scales": {json.dumps(d["scales"])},\n'
        f' "matrix": [\n{rows}\n ],\n'
        f' "compute_in_2d": {json.dumps(d["compute_in_2d"])}\n'
        "}\n"
    )


_SELECTION_HELP = (
    "Features to compute: 'all' (ilastik's select-all, 49 channels for a grey 2-D image), "
    "'steinbock' (every feature at σ ≥ 1, 40 channels), a JSON file as written by "
    "`pyquint features selection`, or an ilastik .ilp project (its saved selection)."
)


@click.group("features")
def cli() -> None:
    """ilastik's pixel features (Gaussian smoothing, LoG, gradient magnitude, DoG, structure
    tensor and Hessian eigenvalues), computed exactly as ilastik ≥ 1.4 does."""


@cli.command("compute")
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the {nickname}_Features.h5 files.")
@click.option("-s", "--selection", default="all", show_default=True, help=_SELECTION_HELP)
@click.option("--axes", default=None,
              help="Axes of the input files when they cannot be read from the file, e.g. 'cyx' or 'zyx'.")
@click.option("--rounding", type=click.Choice(ROUNDINGS), default=EXPORT_ROUNDING, show_default=True,
              help="exact: bit-identical to ilastik ≥ 1.4 (fastfilters with FMA); muladd: ilastik < 1.4 "
                   "builds; fast: OpenCV, several times faster, a few float32 ulps away.")
@click.option("--threads", type=int, default=None, help="Threads (default: up to 4).")
@click.option("--compression", type=click.Choice(["none", "gzip", "lzf"]), default="none", show_default=True,
              help="HDF5 compression of the output dataset.")
@click.option("--overwrite", is_flag=True, help="Recompute outputs that already exist (default: skip them).")
def compute(images: tuple[str, ...], out_dir: Path, selection: str, axes: str | None, rounding: str,
            threads: int | None, compression: str, overwrite: bool) -> None:
    """Compute features of IMAGES (files or folders) into OUT/{nickname}_Features.h5.

    Each output holds the dataset `exported_data` (float32, channels last: yxc or zyxc, as
    ilastik's "Features" export) with the vigra `axistags` attribute, plus a
    `feature_names` attribute with ilastik's channel names. Existing outputs are skipped
    unless --overwrite, so an interrupted batch resumes.
    """
    result = compute_files(images, out_dir, load_selection(selection), axes=axes, rounding=rounding,
                           n_jobs=threads, compression=None if compression == "none" else compression,
                           overwrite=overwrite)
    click.echo(f"{len(result.written)} written, {result.skipped} skipped (already there; --overwrite recomputes) in {out_dir}")


@cli.command("names")
@click.option("-s", "--selection", default="all", show_default=True, help=_SELECTION_HELP)
@click.option("-c", "--channels", default=1, show_default=True, type=click.IntRange(1, None),
              help="Number of input channels.")
@click.option("--ndim", default=2, show_default=True, type=click.Choice(["2", "3"]),
              help="Spatial dimensions of the input.")
def names(selection: str, channels: int, ndim: str) -> None:
    """Print the output channel names, one a line, in ilastik's order."""
    sel = load_selection(selection)
    for i, name in enumerate(feature_names(sel, channels, int(ndim))):
        click.echo(f"{i}\t{name}")


@cli.command("selection")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-s", "--selection", default="all", show_default=True, help=_SELECTION_HELP)
def selection_cmd(output: Path, selection: str) -> None:
    """Write a feature selection as an editable JSON file (feature_ids × scales matrix)."""
    sel = load_selection(selection)
    with atomic_output(output) as tmp:
        tmp.write_text(_selection_json(sel.to_dict()), encoding="utf-8")
    click.echo(f"wrote {output}")
