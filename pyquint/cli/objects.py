"""``pyquint objects``: ilastik-style object classification from the command line."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..batch import collect_inputs, guard_outputs, progress
from ..errors import PyquintError
from ..io import read_image, to_canonical

_PROBA_SUFFIXES = ("_Probabilities", "_Object Identities", "_Simple Segmentation")
# "channel"/"core_channel" are 0-based here and in model files (as ilastik stores them); the
# command line counts classes from 1, as label values and `quint run --object-channel` do.
THRESHOLD_DEFAULTS = {"channel": None, "method": "simple", "threshold": 0.5, "high_threshold": 0.8,
                      "core_channel": None, "sigma": 1.0, "min_size": 10, "max_size": 1_000_000}


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


def _threshold_settings(stored: dict | None, **given: Any) -> dict[str, Any]:
    """Settings for :func:`threshold_objects`; ``given`` holds the command line's values, whose
    channels count from 1 (stored and returned channels count from 0, or are None = last)."""
    settings = dict(THRESHOLD_DEFAULTS)
    settings.update({k: v for k, v in (stored or {}).items() if k in THRESHOLD_DEFAULTS})
    for key in ("channel", "core_channel"):
        if given.get(key) is not None:
            given[key] = given[key] - 1
    settings.update({k: v for k, v in given.items() if v is not None})
    sigma = settings["sigma"]
    if isinstance(sigma, str):
        try:
            values = [float(s) for s in sigma.split(",") if s.strip()]
        except ValueError:
            raise click.BadParameter(f"{sigma!r} is not a number or comma-separated numbers",
                                     param_hint="--sigma") from None
        sigma = values[0] if len(values) == 1 else values
    settings["sigma"] = sigma
    return settings


def resolve_channels(settings: dict, n_channels: int, source: object) -> dict[str, Any]:
    """``settings`` with concrete 0-based channels for maps of ``n_channels`` (None = the last
    class); a channel outside the maps is an error that counts classes from 1."""
    out = dict(settings)
    if out.get("channel") is None:
        out["channel"] = n_channels - 1
    if out.get("core_channel") is None:
        out["core_channel"] = out["channel"]
    for key, flag in (("channel", "--channel"), ("core_channel", "--core-channel")):
        if not 0 <= int(out[key]) < n_channels:
            raise PyquintError(
                f"{source}: {flag} {int(out[key]) + 1} is out of range: the probability maps have "
                f"{n_channels} channel(s), classes 1..{n_channels}")
    return out


def _spatial(sigma: Any, ndim: int) -> Any:
    return (sigma,) * ndim if np.isscalar(sigma) else tuple(sigma)


def _key(path: Path) -> str:
    from ..objects.export import nickname

    nick = nickname(path)
    for suffix in _PROBA_SUFFIXES:
        if nick.endswith(suffix):
            return nick[: -len(suffix)]
    return nick


def _pair(raws: Sequence[Path], others: Sequence[Path], what: str) -> list[Path]:
    """For each raw file, the file of ``others`` with the same name (``x.png`` <-> ``x.h5``,
    ``x_Probabilities.h5``)."""
    index: dict[str, Path] = {}
    for p in others:
        k = _key(Path(p))
        if k in index:
            raise click.ClickException(f"two {what} files for {k!r}: {index[k]} and {p}")
        index[k] = Path(p)
    missing = [str(r) for r in raws if _key(Path(r)) not in index]
    if missing:
        raise click.ClickException(
            f"no {what} file with the name of {', '.join(missing[:3])}"
            + (f" (and {len(missing) - 3} more)" if len(missing) > 3 else "")
            + f"; {what} files are matched to raw images by name")
    return [index[_key(Path(r))] for r in raws]


def _read_raw(path: Path) -> np.ndarray:
    data, axes = read_image(path)
    data, canon = to_canonical(data, axes)
    if canon.startswith("t"):
        raise PyquintError(f"{path}: time series are not supported")
    return data


def _read_spatial(path: Path, shape: tuple[int, ...], what: str) -> np.ndarray:
    data, axes = read_image(path)
    data, _ = to_canonical(data, axes)
    if data.shape[-1] != 1:
        raise PyquintError(f"{path}: a {what} image needs one channel, not {data.shape[-1]}")
    data = data[..., 0]
    if data.shape != tuple(shape):
        raise PyquintError(f"{path}: {what} image of shape {data.shape} does not match the raw "
                           f"image of shape {tuple(shape)}")
    if data.dtype.kind not in "iu":
        raise PyquintError(f"{path}: a {what} image must hold integers, not {data.dtype}")
    return data


def _objects_for(raw: np.ndarray, raw_path: Path, proba_path: Path | None,
                 objects_path: Path | None, settings: dict) -> tuple[np.ndarray, dict]:
    """Object labels of one image and the threshold settings used (channels resolved)."""
    from ..objects import load_probabilities, threshold_objects

    spatial = raw.shape[:-1]
    if objects_path is not None:
        return _read_spatial(objects_path, spatial, "object label").astype(np.uint32), settings
    proba, _ = load_probabilities(proba_path)
    if proba.shape[:-1] != spatial:
        raise PyquintError(f"{proba_path}: probability map of shape {proba.shape[:-1]} does not "
                           f"match the raw image {raw_path} of shape {spatial}")
    settings = resolve_channels(settings, proba.shape[-1], proba_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        objects = threshold_objects(proba, **{**settings, "sigma": _spatial(settings["sigma"], len(spatial))})
    return objects, settings


def _run(f: Callable, *args: Any, **kwargs: Any) -> Any:
    try:
        return f(*args, **kwargs)
    except PyquintError as exc:
        raise click.ClickException(str(exc)) from None


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
    from ..objects.export import export_path, write_object_image
    from ..objects.threshold import check_threshold_settings

    settings = _threshold_settings(None, **opts)
    # once, before any file; a channel left None is the maps' last class, resolved per file
    _run(check_threshold_settings, {k: v for k, v in settings.items() if v is not None},
         "objects threshold")
    files = _run(collect_inputs, proba)
    # outputs of an earlier run found in an input folder are not inputs of this one (resume)
    made = {export_path(out, _key(p), "Object Identities", fmt).resolve() for p in files}
    given = {Path(p).resolve() for p in proba}
    files = [p for p in files if p.resolve() in given or not (
        p.resolve() in made or p.stem.endswith("_Object Identities"))] or files
    outputs = [export_path(out, _key(p), "Object Identities", fmt) for p in files]
    _run(guard_outputs, files, outputs)
    done = skipped = 0
    failures = []
    for src, dst in progress(list(zip(files, outputs)), "threshold", len(files)):
        if dst.exists() and not overwrite:
            skipped += 1
            continue
        from ..objects import load_probabilities, threshold_objects

        try:  # a bad file is reported and the batch goes on
            data, _ = _run(load_probabilities, src)
            resolved = _run(resolve_channels, settings, data.shape[-1], src)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                labels = _run(threshold_objects, data,
                              **{**resolved, "sigma": _spatial(settings["sigma"], data.ndim - 1)})
        except click.ClickException as exc:
            failures.append(exc.message if str(src) in exc.message else f"{src}: {exc.message}")
            continue
        if caught:
            click.echo(f"warning: {src}: no objects found", err=True)
        _run(write_object_image, dst, "Object Identities", labels)
        done += 1
    click.echo(f"thresholded {done} file(s), skipped {skipped} existing; output in {out}")
    if failures:
        raise click.ClickException(f"{len(failures)} input(s) failed: " + "; ".join(failures))


def _sources(raw: tuple[Path, ...], proba: tuple[Path, ...], objects: tuple[Path, ...]):
    if bool(proba) == bool(objects):
        raise click.UsageError("give either --proba (probability maps to threshold) or --objects "
                               "(object label images), not both or neither")
    raws = _run(collect_inputs, raw)
    if proba:
        return raws, _pair(raws, _run(collect_inputs, proba), "probability"), [None] * len(raws)
    return raws, [None] * len(raws), _pair(raws, _run(collect_inputs, objects), "object label")


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
    from ..objects.classifier import ObjectClassifier

    if model.exists() and not overwrite:
        raise click.ClickException(f"{model} exists; use --overwrite to replace it")
    settings = _threshold_settings(None, **opts)
    raws, probas, objs = _sources(raw, proba, objects_)
    label_files = _pair(raws, _run(collect_inputs, labels_, (".png", ".tif", ".tiff", ".h5", ".npy", ".csv")),
                        "label")
    _run(guard_outputs, [*raws, *[p for p in probas if p], *[o for o in objs if o], *label_files], [model])
    raw_data, obj_data, lab_data = [], [], []
    for r, p, o, lab in progress(list(zip(raws, probas, objs, label_files)), "objects", len(raws)):
        image = _run(_read_raw, r)
        raw_data.append(image)
        objects, used = _run(_objects_for, image, r, p, o, settings)
        obj_data.append(objects)
        lab_data.append(lab if lab.suffix.lower() == ".csv"
                        else _labels_by_object(objects, _run(_read_spatial, lab, image.shape[:-1], "label"), lab))
    clf = ObjectClassifier(
        features=[f.strip() for f in features.split(",")] if features else None,
        n_trees=trees, seed=seed, class_names=tuple(c.strip() for c in class_names.split(",")),
        threshold=used if probas[0] is not None else None,
    )
    _run(clf.fit, raw_data, obj_data, lab_data)
    _run(clf.save, model)
    click.echo(f"trained on {clf.n_training_objects_} labelled objects of {len(raws)} image(s); "
               f"model written to {model}")


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
    from ..objects import compute_object_features
    from ..objects.classifier import (
        ObjectClassifier,
        object_labels_from_image,
        proba_to_classes,
        read_object_label_table,
    )
    from ..objects.export import (
        OBJECT_EXPORT_SOURCES,
        export_path,
        nickname,
        object_images,
        table_path,
        write_object_image,
        write_table,
    )

    clf = _run(ObjectClassifier.load, model)
    settings = _threshold_settings(clf.threshold, **opts)
    canonical = {s.lower(): s for s in OBJECT_EXPORT_SOURCES}
    sources = [canonical[s.lower()] for s in sources] or ["Object Predictions"]
    raws, probas, objs = _sources(raw, proba, objects_)
    label_files = (_pair(raws, _run(collect_inputs, labels_, (".png", ".tif", ".tiff", ".h5", ".npy", ".csv")),
                         "label") if labels_ else [None] * len(raws))
    plan = []
    for r in raws:
        outs = [export_path(out, nickname(r), s, fmt) for s in sources]
        if table:
            outs.append(table_path(out, nickname(r)))
        plan.append(outs)
    inputs = [*raws, model, *[p for p in probas if p], *[o for o in objs if o], *[x for x in label_files if x]]
    _run(guard_outputs, inputs, [p for outs in plan for p in outs])
    done = skipped = 0
    for r, p, o, lab, outs in progress(list(zip(raws, probas, objs, label_files, plan)), "predict", len(raws)):
        if not overwrite and all(x.exists() for x in outs):
            skipped += 1
            continue
        image = _run(_read_raw, r)
        objects, _ = _run(_objects_for, image, r, p, o, settings)
        if objects.max() == 0:
            click.echo(f"warning: {r}: no objects found; writing empty outputs", err=True)
        names = _table_features(clf.feature_names_) if table else clf.feature_names_
        feats = _run(compute_object_features, image, objects, names)
        prob = _run(clf.predict_proba_features, feats)
        classes = proba_to_classes(prob)
        images = object_images(objects, classes, prob)
        for s, dst in zip(sources, outs):
            _run(write_object_image, dst, s, images[s])
        if table:
            user = None
            if lab is not None:
                user = (read_object_label_table(lab) if lab.suffix.lower() == ".csv"
                        else object_labels_from_image(objects, _run(_read_spatial, lab, objects.shape, "label")))
                user = {k: clf.class_value(v, str(lab)) for k, v in user.items() if k <= objects.max()}
            _run(write_table, outs[-1], feats, clf.class_names, classes, prob, user)
        done += 1
    click.echo(f"predicted {done} image(s), skipped {skipped} with existing outputs; output in {out}")


def _labels_by_object(objects: np.ndarray, label_image: np.ndarray, source: Path) -> dict[int, int]:
    """Object id -> class from painted labels; mixed objects are reported with the file name."""
    from ..objects.classifier import ObjectLabelWarning, object_labels_from_image

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ObjectLabelWarning)
        mapping = _run(object_labels_from_image, objects, label_image)
    for w in caught:
        if issubclass(w.category, ObjectLabelWarning):
            click.echo(f"warning: {source}: {w.message}", err=True)
        else:  # pragma: no cover - other warnings pass through unchanged
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return mapping


def _table_features(model_features: Sequence[str]) -> list[str]:
    # ilastik always adds its "default features" (Count, RegionCenter, bounding box).
    base = ["Count", "RegionCenter", "Coord<Minimum>", "Coord<Maximum>"]
    return list(dict.fromkeys([*base, *model_features]))


@cli.command("list-features")
def list_features_cmd() -> None:
    """List the object features: ilastik id, display name (table column), plugin."""
    from ..objects.features import DEFAULT_FEATURES, FEATURES

    for name, info in FEATURES.items():
        mark = "*" if name in DEFAULT_FEATURES else " "
        extra = ", per channel" if info.per_channel else ""
        click.echo(f"{mark} {name:<24} {info.display:<36} {info.plugin}{extra}")
    click.echo("* = used by default")
