"""``pyquint pixel``: train an ilastik-style pixel classifier and export its predictions."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ..batch import collect_inputs
from ..errors import InputError
from ..features import DEFAULT_ROUNDING, ROUNDINGS
from ..ilastik import load_feature_selection
from ..pixel import PixelClassifier
from ..pixel_batch import ExportSpec, pair_training_folders, predict_files, train_files


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
                   "'steinbock' (every feature at σ >= 1), a JSON object/file "
                   '{"matrix": [[...6 rows...]], "scales": [...]}, or an ilastik .ilp project.')
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
@click.option("--rounding", type=click.Choice(ROUNDINGS), default=DEFAULT_ROUNDING,
              show_default=True,
              help="Feature arithmetic: 'exact' reproduces ilastik >= 1.4 bit for bit, 'muladd' "
                   "ilastik < 1.4, 'vigra' ilastik 1.2, 'fast' is within 1e-5 of 'exact'.")
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
    if images_dir or labels_dir:
        if images or labels or not (images_dir and labels_dir):
            raise InputError("use either IMAGES with --labels, or --images-dir with --labels-dir")
        image_paths, label_paths = pair_training_folders(images_dir, labels_dir)
    else:
        if not images:
            raise InputError("no training images: give IMAGES and --labels, or "
                             "--images-dir and --labels-dir")
        image_paths, label_paths = collect_inputs(images), collect_inputs(labels) if labels else []
        if len(image_paths) != len(label_paths):
            raise InputError(f"{len(image_paths)} image(s) but {len(label_paths)} label "
                             f"image(s); give one --labels per image, in the same order")
    names = [n.strip() for n in class_names.split(",")] if class_names else None
    clf = PixelClassifier(features=load_feature_selection(features, option="--features"),
                          n_trees=trees, seed=seed, class_names=names,
                          class_colors=_parse_colors(class_colors), n_jobs=jobs,
                          rounding=rounding, trainer=trainer)
    train_files(clf, image_paths, label_paths, output, axes=axes, overwrite=overwrite)
    info = clf.training_info_
    click.echo(f"trained on {info['n_samples']} labelled pixels of {info['n_images']} image(s), "
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
    spec = ExportSpec(sources=tuple(sources), format=fmt, filename_format=filename_format,
                      output_dir=output_dir, internal_path=internal_path, axis_order=axis_order,
                      export_dtype=export_dtype, pipeline_drange=in_range,
                      export_drange=out_range, overwrite=overwrite)
    clf = PixelClassifier.load(model)
    if jobs is not None:
        clf.n_jobs = jobs
    result = predict_files(clf, inputs, spec, axes=axes, exclude=[model], keep_going=True,
                           warn=lambda msg: click.echo(f"warning: {msg}", err=True))
    msg = f"wrote {len(result.written)} file(s)"
    if result.skipped:
        msg += f", skipped {len(result.skipped)} existing (use --overwrite to recompute)"
    click.echo(msg)
    if result.failed:
        raise click.ClickException(f"{len(result.failed)} input(s) failed:\n  "
                                   + "\n  ".join(result.failed))
