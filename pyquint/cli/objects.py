"""``pyquint objects``: ilastik-style object classification from the command line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import InputError
from ..objects.batch import (
    THRESHOLD_DEFAULTS,
    BatchResult,
    predict_files,
    threshold_files,
    train_from_files,
)
from ..objects.features import DEFAULT_FEATURES, FEATURES

# "channel"/"core_channel" are 0-based in the API and in model files (as ilastik stores them);
# the command line counts classes from 1, as label values and `quint run --object-channel` do.


def _threshold_options(defaults: bool) -> Callable:
    """Threshold + size filter options; with ``defaults=False`` unset options fall back to
    the model's stored settings (then to ilastik's defaults)."""

    def d(key: str) -> Any:
        return THRESHOLD_DEFAULTS[key] if defaults else None

    note = "" if defaults else " [default: the model's setting, else ilastik's]"
    opts = [
        click.option("--channel", type=click.IntRange(1), default=None,
                     help="Class whose probability is thresholded, 1-based as label values "
                          "(2 = Stain with --class-names Background,Stain) [default: "
                          + ("the model's setting, else " if not defaults else "") + "the last class]."),
        click.option("--method", type=click.Choice(["simple", "hysteresis"]), default=d("method"),
                     show_default=defaults,
                     help="simple: p >= threshold. hysteresis: grow objects from cores "
                          "p_core >= high-threshold." + note),
        click.option("--threshold", type=float, default=d("threshold"), show_default=defaults,
                     help="Threshold in [0, 1], inclusive (QUINT's docs suggest 0.4)." + note),
        click.option("--high-threshold", type=float, default=d("high_threshold"), show_default=defaults,
                     help="Core threshold for hysteresis, in [0, 1]." + note),
        click.option("--core-channel", type=click.IntRange(1), default=None,
                     help="Class (1-based) of the cores for hysteresis [default: --channel]."),
        click.option("--sigma", type=str, default=None if not defaults else "1.0", show_default=defaults,
                     help="Gaussian smoothing sigma, one value or comma-separated per axis "
                          "(y,x or z,y,x); below 0.1 = no smoothing." + note),
        click.option("--min-size", type=int, default=d("min_size"), show_default=defaults,
                     help="Smallest object kept, in pixels (inclusive)." + note),
        click.option("--max-size", type=int, default=d("max_size"), show_default=defaults,
                     help="Largest object kept, in pixels (inclusive)." + note),
    ]

    def decorate(f: Callable) -> Callable:
        for opt in reversed(opts):
            f = opt(f)
        return f

    return decorate


def _settings(**given: Any) -> dict[str, Any]:
    """The command line's threshold values for the API: channels from 1 to 0-based, sigma
    text to a number or one number per axis; unset values stay None."""
    for key in ("channel", "core_channel"):
        if given.get(key) is not None:
            given[key] = given[key] - 1
    sigma = given.get("sigma")
    if isinstance(sigma, str):
        try:
            values = [float(v) for v in sigma.split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(f"{sigma!r} is not a number or comma-separated numbers",
                                     param_hint="--sigma") from None
        given["sigma"] = values[0] if len(values) == 1 else values
    return given


def _report(result: BatchResult) -> None:
    for line in result.warnings:
        click.echo(f"warning: {line}", err=True)


@click.group("objects")
def cli() -> None:
    """Object classification as ilastik does it (QUINT's second approach).

    threshold: probability maps -> objects (ilastik's "Threshold and Size Filter").
    train: objects + a few labelled objects -> object model (e.g. keep round cells,
    drop long thin edge staining of the same colour). predict: object predictions,
    probabilities, identities and the {nickname}_table.csv, named as ilastik names them.
    Files are matched by name (raw x.png <-> x_Probabilities.h5 / x.h5 / labels x.png).
    """


@cli.command("threshold")
@click.argument("proba", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder for {nickname}_Object Identities.<format>.")
@_threshold_options(defaults=True)
@click.option("--format", "fmt", type=click.Choice(["h5", "tif", "npy"]), default="h5", show_default=True,
              help="Output format (uint32 labels do not fit in PNG).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (default: skip them, i.e. resume).")
def threshold_cmd(proba: tuple[Path, ...], out: Path, fmt: str, overwrite: bool, **opts: Any) -> None:
    """Threshold + size filter probability maps (files or folders) into object labels.

    Probabilities may be pyquint/ilastik H5 (exported_data), TIFF or PNG; uint8 is read as
    k/255 and uint16 as k/65535. Objects are 4-connected (6 in 3-D), ids in scan order.
    """
    result = threshold_files(proba, out, _settings(**opts), fmt=fmt, overwrite=overwrite)
    _report(result)
    click.echo(f"thresholded {result.done} file(s), skipped {result.skipped} existing; output in {out}")
    if result.failures:
        raise InputError(f"{len(result.failures)} input(s) failed: " + "; ".join(result.failures))


def _check_sources(proba: tuple[Path, ...], objects: tuple[Path, ...]) -> None:
    if bool(proba) == bool(objects):
        raise click.UsageError("give either --proba (probability maps to threshold) or --objects "
                               "(object label images), not both or neither")


_input_options = [
    click.option("--raw", multiple=True, required=True, type=click.Path(exists=True, path_type=Path),
                 help="Raw images (files or folders; repeat the option for more)."),
    click.option("--proba", multiple=True, type=click.Path(exists=True, path_type=Path),
                 help="Probability maps matching the raw images by name; they are thresholded."),
    click.option("--objects", "objects_", multiple=True, type=click.Path(exists=True, path_type=Path),
                 help="Ready object label images (uint ids) instead of --proba."),
]


def _inputs(f: Callable) -> Callable:
    for opt in reversed(_input_options):
        f = opt(f)
    return f


@cli.command("train")
@_inputs
@click.option("--labels", "labels_", multiple=True, required=True, type=click.Path(exists=True, path_type=Path),
              help="Object labels matching the raw images by name: label images (a labelled pixel "
                   "inside an object labels it; 1 = first class ...) or CSV tables (labelimage_oid, class).")
@click.option("-m", "--model", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Model file to write (HDF5; no pickle).")
@click.option("--features", default=None,
              help="Comma-separated object features (ilastik ids or display names); default: "
                   "intensity statistics + shape. See `pyquint objects list-features`.")
@click.option("--class-names", default="label,artefact", show_default=True,
              help="Comma-separated class names; label value i is the i-th name.")
@click.option("--trees", default=100, show_default=True, type=click.IntRange(1), help="Number of trees.")
@click.option("--seed", default=None, type=click.IntRange(0, 2**32 - 1),
              help="Seed (same seed + data = same model); drawn and stored when omitted.")
@_threshold_options(defaults=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing model file.")
def train_cmd(raw, proba, objects_, labels_, model, features, class_names, trees, seed, overwrite,
              **opts) -> None:
    """Train an object classifier from a few labelled objects."""
    _check_sources(proba, objects_)
    result = train_from_files(
        raw, labels_, model, proba=proba, objects=objects_, settings=_settings(**opts), overwrite=overwrite,
        features=[f.strip() for f in features.split(",")] if features else None, n_trees=trees, seed=seed,
        class_names=tuple(c.strip() for c in class_names.split(",")))
    _report(result)
    click.echo(f"trained on {result.classifier.n_training_objects_} labelled objects of {result.done} "
               f"image(s); model written to {model}")


@cli.command("predict")
@_inputs
@click.option("-m", "--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Object model written by `pyquint objects train`.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder.")
@click.option("--export-source", "sources", multiple=True,
              type=click.Choice(["Object Predictions", "Object Probabilities", "Object Identities"],
                                case_sensitive=False),
              help="What to export (repeatable); default: Object Predictions, as ilastik headless.")
@click.option("--format", "fmt", type=click.Choice(["h5", "tif", "png", "npy"]), default="h5",
              show_default=True, help="Image format (png only for Object Predictions).")
@click.option("--table/--no-table", default=True, show_default=True,
              help="Also write {nickname}_table.csv with every object's features.")
@click.option("--labels", "labels_", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Optional training labels, to fill the table's 'User Label' column.")
@_threshold_options(defaults=False)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (default: skip them, i.e. resume).")
def predict_cmd(raw, proba, objects_, model, out, sources, fmt, table, labels_, overwrite, **opts) -> None:
    """Classify objects and write ilastik's object exports and table."""
    _check_sources(proba, objects_)
    result = predict_files(model, raw, out, proba=proba, objects=objects_, sources=sources or ["Object Predictions"],
                           fmt=fmt, table=table, labels=labels_, settings=_settings(**opts), overwrite=overwrite)
    _report(result)
    click.echo(f"predicted {result.done} image(s), skipped {result.skipped} with existing outputs; "
               f"output in {out}")


@cli.command("list-features")
def list_features_cmd() -> None:
    """List the object features: ilastik id, display name (table column), plugin."""
    for name, info in FEATURES.items():
        mark = "*" if name in DEFAULT_FEATURES else " "
        extra = ", per channel" if info.per_channel else ""
        click.echo(f"{mark} {name:<24} {info.display:<36} {info.plugin}{extra}")
    click.echo("* = used by default")
