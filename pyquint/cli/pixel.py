"""``pyquint pixel``: train an ilastik-style pixel classifier and export its predictions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..batch import (
    collect_inputs,
    guard_outputs,
    lock_outputs,
    progress,
    same_file,
    unlike_training,
)
from ..errors import InputError, PyquintError
from ..io import read_image, to_canonical

_SECTION = re.compile(r"^(.*?)([_-]s\d+)$", re.IGNORECASE)
_LABEL_WORDS = ("labels", "label", "Labels", "Label")


def _fail(exc: PyquintError) -> click.ClickException:
    return click.ClickException(str(exc))


# --------------------------------------------------------------------------- train helpers
def _parse_features(text: str) -> Any:
    from ..features import FeatureSelection

    key = text.strip()
    if key.lower() == "all":
        return FeatureSelection.all()
    if key.lower() == "steinbock":
        return FeatureSelection.steinbock()
    path = Path(key)
    if not key.startswith("{") and path.is_file():
        try:
            key = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read the feature selection: {exc}") from exc
    elif not key.startswith("{"):
        raise InputError(f"--features must be 'all', 'steinbock', a JSON object or a JSON file, "
                         f"not {text!r}")
    try:
        data = json.loads(key)
    except ValueError as exc:
        raise InputError(f"--features: invalid JSON ({exc})") from exc
    return FeatureSelection.from_dict(data)


def _parse_colors(text: str | None) -> list[tuple[int, int, int]] | None:
    if not text:
        return None
    colors = []
    for item in text.split(","):
        item = item.strip().lstrip("#")
        if not re.fullmatch(r"[0-9a-fA-F]{6}", item):
            raise InputError(f"--class-colors: {item!r} is not a hex colour like #ffe119")
        colors.append(tuple(int(item[i:i + 2], 16) for i in (0, 2, 4)))
    return colors


def _label_candidates(stem: str) -> list[str]:
    names = [stem] + [f"{stem}{sep}{w}" for w in _LABEL_WORDS for sep in ("_", "-")]
    m = _SECTION.match(stem)
    if m:  # brain_s001 -> brain_labels_s001 (Nutil's _sXXX stays last)
        names += [f"{m.group(1)}_{w}{m.group(2)}" for w in _LABEL_WORDS]
    return names


def _pair_folders(images_dir: Path, labels_dir: Path) -> tuple[list[Path], list[Path]]:
    """Match images to label images by name (same name, or with a ``_labels`` suffix)."""
    images = collect_inputs([images_dir])
    labels = collect_inputs([labels_dir])
    by_stem: dict[str, Path] = {}
    for p in labels:
        by_stem.setdefault(p.stem, p)
    same = same_file(images_dir, labels_dir)
    label_files = set()
    pairs = []
    for img in images:
        match = next((by_stem[c] for c in _label_candidates(img.stem)
                      if c in by_stem and not same_file(by_stem[c], img)), None)
        if match is not None:
            pairs.append((img, match))
            label_files.add(match.resolve())
        elif not same:
            raise InputError(f"{img}: no label image for it in {labels_dir} (looked for "
                             f"{', '.join(_label_candidates(img.stem)[:3])}, ...)")
    pairs = [(i, lab) for i, lab in pairs if i.resolve() not in label_files]
    if not pairs:
        raise InputError(f"no image in {images_dir} has a label image in {labels_dir}")
    return [i for i, _ in pairs], [lab for _, lab in pairs]


def _read_canonical(path: Path, axes: str | None) -> np.ndarray:
    data, ax = read_image(path, axes)
    canon, _ = to_canonical(data, ax)
    if canon.ndim not in (3, 4):
        raise InputError(f"{path}: time series are not supported for pixel classification "
                         f"(axes {ax!r}); export single time points")
    return canon


_ROI_FIELDS = re.compile(r"\{(roi|[tzyxc]_(start|stop))\}")


def _output_names(path: Path, sources: list[str], fmt: str, filename_format: str | None,
                  output_dir: Path | None, axes: str | None, axis_order: str | None,
                  clf: Any) -> dict[str, Path]:
    """Output file of each source; the image is read only when the pattern uses its shape."""
    from ..export import export_filename, output_axes_for

    if not filename_format or not _ROI_FIELDS.search(filename_format):
        return {s: export_filename(path, s, fmt, filename_format, dataset_dir=output_dir)
                for s in sources}
    data, in_axes = read_image(path, axes)
    canon, canon_axes = to_canonical(data, in_axes)
    target = axis_order.lower() if axis_order else output_axes_for(in_axes)
    channels = {"Probabilities": clf.n_classes_, "Features": len(clf.feature_names_)}
    names = {}
    for s in sources:
        shape = dict(zip(canon_axes, canon.shape))
        shape["c"] = channels.get(s, 1)
        out_shape = [shape.get(a, 1) for a in target]
        names[s] = export_filename(path, s, fmt, filename_format, shape=out_shape, axes=target,
                                   dataset_dir=output_dir)
    return names


# --------------------------------------------------------------------------- commands
@click.group("pixel")
def cli() -> None:
    """ilastik-style pixel classification: train a random forest on sparse labels, predict.

    Label images use ilastik's convention: 0 = unlabelled, 1..N = classes. Predictions are
    exported exactly as ilastik exports them (Probabilities, Simple Segmentation,
    Uncertainty, Features) in HDF5, PNG or TIFF.
    """


@cli.command("train")
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("-l", "--labels", "labels", multiple=True, type=click.Path(path_type=Path),
              help="Label image for each IMAGE, in the same order (repeat the option). "
                   "0 = unlabelled, 1..N = classes, same size as its image.")
@click.option("--images-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of training images (instead of IMAGES).")
@click.option("--labels-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of label images matched to --images-dir by name: the same name, or "
                   "the name with _labels added (brain_s001 -> brain_labels_s001 too).")
@click.option("--features", "features", default="all", show_default=True,
              help="Feature selection: 'all' (ilastik's select-all, 49 channels for grey 2-D), "
                   "'steinbock' (every feature at σ >= 1), or a JSON object/file "
                   '{"matrix": [[...6 rows...]], "scales": [...]}.')
@click.option("--trees", default=100, show_default=True, type=click.IntRange(1, 10000),
              help="Number of trees (ilastik uses 100).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=None,
              help="Random seed: the same seed and data give the same model. Default: random "
                   "(the seed drawn is stored in the model).")
@click.option("--class-names", default=None,
              help="Comma-separated class names for labels 1, 2, ... (default 'Label 1', ...). "
                   "Also fixes the number of classes.")
@click.option("--class-colors", default=None,
              help="Comma-separated hex colours of the classes, e.g. '#ffe119,#0082c8' "
                   "(default: ilastik's label colours).")
@click.option("--rounding", type=click.Choice(["fast", "exact", "muladd"]), default="fast",
              show_default=True,
              help="Feature arithmetic: 'exact' reproduces ilastik >= 1.4 bit for bit, 'muladd' "
                   "ilastik < 1.4, 'fast' is within 1e-5 of 'exact'.")
@click.option("--trainer", type=click.Choice(["fast", "sklearn"]), default="fast", show_default=True,
              help="Forest trainer: pyquint's compiled vigra-like trainer (default, ~10x faster) "
                   "or scikit-learn with ilastik's settings (same rules, other trees for the same seed).")
@click.option("--axes", default=None,
              help="Axes of the input images when the files do not say (e.g. 'cyx').")
@click.option("--jobs", type=click.IntRange(1, 1024), default=None, help="Threads (default: all cores).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Model file to write (HDF5, e.g. model.h5).")
@click.option("--overwrite", is_flag=True, help="Replace an existing model file.")
def train(images: tuple[Path, ...], labels: tuple[Path, ...], images_dir: Path | None,
          labels_dir: Path | None, features: str, trees: int, seed: int | None,
          class_names: str | None, class_colors: str | None, rounding: str, trainer: str,
          axes: str | None, jobs: int | None, output: Path, overwrite: bool) -> None:
    """Train a pixel classifier from IMAGES and their label images; write a model file.

    Every labelled (non-zero) pixel of every image is a training sample, as in ilastik.

    \b
    Examples:
      pyquint pixel train a.png b.png -l a_labels.png -l b_labels.png -o model.h5
      pyquint pixel train --images-dir sections --labels-dir labels --seed 1 -o model.h5
    """
    from ..pixel import PixelClassifier

    try:
        if images_dir or labels_dir:
            if images or labels or not (images_dir and labels_dir):
                raise InputError("use either IMAGES with --labels, or --images-dir with --labels-dir")
            image_paths, label_paths = _pair_folders(images_dir, labels_dir)
        else:
            if not images:
                raise InputError("no training images: give IMAGES and --labels, or "
                                 "--images-dir and --labels-dir")
            image_paths, label_paths = collect_inputs(images), collect_inputs(labels) if labels else []
            if len(image_paths) != len(label_paths):
                raise InputError(f"{len(image_paths)} image(s) but {len(label_paths)} label "
                                 f"image(s); give one --labels per image, in the same order")
        if output.exists() and not overwrite:
            raise InputError(f"{output} exists; use --overwrite to replace it")
        guard_outputs(list(image_paths) + list(label_paths), [output])
        names = [n.strip() for n in class_names.split(",")] if class_names else None
        clf = PixelClassifier(features=_parse_features(features), n_trees=trees, seed=seed,
                              class_names=names, class_colors=_parse_colors(class_colors),
                              n_jobs=jobs, rounding=rounding, trainer=trainer)
        imgs, labs = [], []
        for img_path, lab_path in progress(list(zip(image_paths, label_paths)), "reading"):
            imgs.append(_read_canonical(img_path, axes))
            lab = _read_canonical(lab_path, None)
            if lab.shape[-1] != 1:
                raise InputError(f"{lab_path}: a label image needs one channel, not {lab.shape[-1]}")
            if lab.shape[:-1] != imgs[-1].shape[:-1]:
                raise InputError(f"{lab_path}: label image of shape {lab.shape[:-1]} does not match "
                                 f"its image {img_path} of shape {imgs[-1].shape[:-1]}")
            labs.append(lab)
        clf.fit(imgs, labs)  # records the images' value range for warnings on unlike input
        clf.save(output, overwrite=overwrite)
    except PyquintError as exc:
        raise _fail(exc) from None
    info = clf.training_info_
    click.echo(f"trained on {info['n_samples']} labelled pixels of {len(imgs)} image(s), "
               f"{clf.n_classes_} classes, {len(clf.feature_names_)} features, seed {clf.seed_}; "
               f"wrote {output}")


@cli.command("predict")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--export-source", "--export_source", "sources", multiple=True,
              help="What to export (repeat for several; case-insensitive): Probabilities "
                   "(default), 'Simple Segmentation', Uncertainty, Features, Labels.")
@click.option("--output-format", "--output_format", "fmt", default="hdf5", show_default=True,
              help="hdf5, 'compressed hdf5', png, tif, tiff or npy. PNG writes segmentations "
                   "unchanged (1..N) and maps float results' own min..max to 0..255, like ilastik.")
@click.option("--output-filename-format", "--output_filename_format", "filename_format",
              default=None,
              help="Output name pattern, default '{dataset_dir}/{nickname}_{result_type}' (the "
                   "extension is added). Placeholders: {dataset_dir} {nickname} {result_type} "
                   "{roi} {x_start} {x_stop} {y_start} ... Relative patterns are relative to "
                   "the current folder.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the outputs ({dataset_dir} becomes this folder).")
@click.option("--output-internal-path", "--output_internal_path", "internal_path",
              default="exported_data", show_default=True, help="HDF5 dataset name.")
@click.option("--output-axis-order", "--output_axis_order", "axis_order", default=None,
              help="Axis order of the outputs (default: the input's own axes with c appended).")
@click.option("--export-dtype", "--export_dtype", "export_dtype", default=None,
              help="Convert outputs to this type (uint8, uint16, float32, ...).")
@click.option("--pipeline-result-drange", "--pipeline_result_drange", "in_range", default=None,
              help="Value range of the results, e.g. '(0.0,1.0)'; with --export-drange, maps "
                   "linearly (e.g. probabilities to '(0,255)' with --export-dtype uint8).")
@click.option("--export-drange", "--export_drange", "out_range", default=None,
              help="Value range to map --pipeline-result-drange onto.")
@click.option("--axes", default=None, help="Axes of the inputs when the files do not say (e.g. 'cyx').")
@click.option("--jobs", type=click.IntRange(1, 1024), default=None, help="Threads (default: all cores).")
@click.option("--overwrite", is_flag=True,
              help="Recompute outputs that exist (default: skip them, so a stopped batch resumes).")
def predict(model: Path, inputs: tuple[Path, ...], sources: tuple[str, ...], fmt: str,
            filename_format: str | None, output_dir: Path | None, internal_path: str,
            axis_order: str | None, export_dtype: str | None, in_range: str | None,
            out_range: str | None, axes: str | None, jobs: int | None, overwrite: bool) -> None:
    """Classify the pixels of INPUTS (files or folders) with MODEL and export the results.

    Outputs that already exist are skipped unless --overwrite; an output never replaces an
    input (choose another --output-dir or name pattern).

    \b
    Examples:
      pyquint pixel predict model.h5 sections/ --export-source "Simple Segmentation" \\
          --output-format png -o segmentations/
      pyquint pixel predict model.h5 img.h5/raw --export-source probabilities
    """
    from ..export import (
        EXPORT_FORMATS,
        EXPORT_SOURCES,
        export_filename,
        normalize_format,
        normalize_source,
        write_export,
    )
    from ..frames import predict_sources_by_frame
    from ..pixel import PixelClassifier

    try:
        srcs = list(dict.fromkeys(normalize_source(s) for s in sources)) or ["Probabilities"]
        fmt = normalize_format(fmt)
        clf = PixelClassifier.load(model)
        if jobs is not None:
            clf.n_jobs = jobs
        paths = [p for p in collect_inputs(inputs) if not same_file(p, model)]
        plan = {p: _output_names(p, srcs, fmt, filename_format, output_dir, axes, axis_order, clf)
                for p in paths}
        # Outputs of an earlier run found in an input folder are not inputs of this one.
        made_by = {o.resolve(): Path(p).resolve() for p, outs in plan.items() for o in outs.values()}
        if not filename_format or not _ROI_FIELDS.search(filename_format):
            # earlier runs may have exported other sources or formats into an input folder
            for p in plan:
                for other_source in EXPORT_SOURCES:
                    for other_fmt in EXPORT_FORMATS:
                        o = export_filename(p, other_source, other_fmt, filename_format,
                                            dataset_dir=output_dir)
                        made_by.setdefault(o.resolve(), Path(p).resolve())
        plan = {p: outs for p, outs in plan.items()
                if made_by.get(Path(p).resolve(), Path(p).resolve()) == Path(p).resolve()
                or Path(p) in inputs}
        if not plan:
            raise InputError("no input images left (the inputs are all outputs of this command)")
        guard_outputs(list(plan), [o for outs in plan.values() for o in outs.values()])
        lock_outputs([o for outs in plan.values() for o in outs.values()])
        todo = {p: {s: o for s, o in outs.items() if overwrite or not o.exists()}
                for p, outs in plan.items()}
        todo = {p: outs for p, outs in todo.items() if outs}
        n_skipped = sum(len(o) for o in plan.values()) - sum(len(o) for o in todo.values())
    except PyquintError as exc:
        raise _fail(exc) from None
    written = 0
    failures = []
    for path, outs in progress(list(todo.items()), "pixel predict", total=len(todo)):
        try:
            data, in_axes = read_image(path, axes)
            canon, canon_axes = to_canonical(data, in_axes)
            unlike = unlike_training(canon, clf.training_info_, path)
            if unlike:
                click.echo(f"warning: {unlike}", err=True)
            # time series: each frame on its own, as ilastik does
            results = predict_sources_by_frame(clf, canon, canon_axes, list(outs))
            for source, out in outs.items():
                write_export(path, source, results[source], canon_axes, in_axes, fmt=fmt,
                             internal_path=internal_path, output_axes=axis_order,
                             export_dtype=export_dtype, pipeline_drange=in_range,
                             export_drange=out_range, path=out)
                written += 1
        except PyquintError as exc:
            failures.append(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
    msg = f"wrote {written} file(s)"
    if n_skipped:
        msg += f", skipped {n_skipped} existing (use --overwrite to recompute)"
    click.echo(msg)
    if failures:
        raise click.ClickException(f"{len(failures)} input(s) failed:\n  " + "\n  ".join(failures))
