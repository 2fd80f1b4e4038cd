"""``pyquint steinbock``: steinbock's ``classify ilastik prepare|fix|run``, without ilastik."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import click

from ..features import ROUNDINGS
from ..steinbock import fix, prepare, run


class _EchoHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        prefix = "warning: " if record.levelno >= logging.WARNING else ""
        click.echo(prefix + record.getMessage(), err=True)


@contextlib.contextmanager
def _reporting(verbose: bool) -> Iterator[None]:
    """Show the API's log (every file with -v, warnings always); errors reach the central
    handler (cli/_errors.py)."""
    logger = logging.getLogger("pyquint.steinbock")
    handler = _EchoHandler()
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


_verbose = click.option("-v", "--verbose", is_flag=True, help="List every file written.")


@click.group("steinbock", context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """steinbock-compatible `classify ilastik` commands: prepare, fix, run.

    Same options, defaults and files as steinbock 0.16.5 (ilastik_img/*.h5 and
    ilastik_crops/*.h5 byte for byte, pixel_classifier.ilp, ilastik_probabilities/*.tiff),
    but `run` needs no ilastik binary and `fix` also works on steinbock's own crops.
    Run them in the steinbock data folder, as steinbock's commands.
    """


@cli.command("prepare", short_help="Ilastik images, crops and project from img/ (steinbock prepare).")
@click.option("-o", "project_file", type=click.Path(dir_okay=False), default="pixel_classifier.ilp",
              show_default=True, help="Ilastik project file to write.")
@click.option("--img", "img_dir", type=click.Path(exists=True, file_okay=False), default="img",
              show_default=True, help="Folder of steinbock images (*.tiff, CYX), searched recursively.")
@click.option("--panel", "panel_file", type=click.Path(exists=True, dir_okay=False), default="panel.csv",
              show_default=True,
              help="steinbock panel. Rows with keep=0 are dropped; the numeric 'ilastik' column groups "
                   "channels (groups in sorted numeric order, empty = unused). Its kept rows must match "
                   "the image channels: with groups a mismatch is an error (steinbock silently skips "
                   "the image), without groups a warning.")
@click.option("--aggr", "aggr", default="mean", show_default=True,
              help="numpy reduction that merges the channels of a group: mean, median, sum, max, min, "
                   "std, var, prod or their nan-variants.")
@click.option("--mean/--no-mean", "mean", default=True, show_default=True,
              help="Prepend the mean of the grouped channels (times --meanfactor) as channel 0.")
@click.option("--meanfactor", "mean_factor", type=float, default=100.0, show_default=True,
              help="Factor for the mean channel.")
@click.option("--scale", type=int, default=2, show_default=True,
              help="Integer bilinear upscale factor (OpenCV, as steinbock); 1 = none. steinbock's "
                   "CellProfiler pipeline shrinks objects by 0.5, so keep 2 for it.")
@click.option("--cropsize", "crop_size", type=click.IntRange(min=1), default=512, show_default=True,
              help="Side of the one random square crop per image, in scaled pixels. Images smaller "
                   "than this get no crop (a warning says which).")
@click.option("--imgout", "img_out", type=click.Path(file_okay=False), default="ilastik_img",
              show_default=True, help="Output folder of the Ilastik images (/img).")
@click.option("--cropout", "crop_out", type=click.Path(file_okay=False), default="ilastik_crops",
              show_default=True, help="Output folder of the crops (/crop); must be inside the "
                                      "project file's folder.")
@click.option("--seed", type=int, default=None,
              help="Seed for the crop positions (numpy default_rng); the same seed gives steinbock's crops.")
@click.option("--overwrite", is_flag=True,
              help="Rewrite existing Ilastik images/crops and an existing project (which may hold "
                   "labels). Without it existing images and crops are reused and an existing "
                   "project is an error.")
@_verbose
def prepare_cmd(project_file, img_dir, panel_file, aggr, mean, mean_factor, scale, crop_size,
                img_out, crop_out, seed, overwrite, verbose) -> None:
    """Prepare Ilastik images, random crops and a Pixel Classification project.

    Equivalent to `steinbock classify ilastik prepare`: each image's channels are grouped
    by the panel, the mean channel is prepended, the stack is upscaled by --scale and saved
    as ilastik_img/<name>.h5; one crop per image goes to ilastik_crops/ and becomes a
    lane of the project (labels Nucleus, Cytoplasm, Background). Label the crops in
    ilastik (or with pyquint.steinbock.write_labels), then run `pyquint steinbock run`.
    """
    with _reporting(verbose):
        result = prepare(img_dir, panel_file, project_file, aggr=aggr, mean=mean,
                         mean_factor=mean_factor, scale=scale, crop_size=crop_size, img_out=img_out,
                         crop_out=crop_out, seed=seed, overwrite=overwrite)
    reused = f" ({len(result.reused_images)} existing kept)" if result.reused_images else ""
    click.echo(f"{len(result.image_files)} Ilastik images{reused}, {len(result.crop_files)} crops, "
               f"project {result.project_file}")
    if result.skipped_crops:
        click.echo(f"warning: {len(result.skipped_crops)} image(s) too small for --cropsize "
                   f"{crop_size} got no crop", err=True)


@cli.command("fix", short_help="Fix legacy crops and project; safe on steinbock's own.")
@click.option("--ilp", "project_file", type=click.Path(exists=True, dir_okay=False),
              default="pixel_classifier.ilp", show_default=True, help="Ilastik project to fix.")
@click.option("--crop", "crop_dir", type=click.Path(exists=True, file_okay=False), default="ilastik_crops",
              show_default=True, help="Folder of the project's crops (inside the project's folder).")
@click.option("--probabs", "probab_dir", type=click.Path(file_okay=False), default="ilastik_probabilities",
              show_default=True, help="Probability folder written into the export settings.")
@click.option("--backup/--no-backup", default=True, show_default=True,
              help="Copy <ilp>.bak and <crop dir>.bak/ first (only when something changes; an "
                   "existing backup is an error).")
@click.option("--axisorder", "axis_order", default=None,
              help="Axis order of the legacy crops, e.g. zyxc (default: each crop's axistags).")
@_verbose
def fix_cmd(project_file, crop_dir, probab_dir, backup, axis_order, verbose) -> None:
    """Fix existing Ilastik training data (crops and project) for steinbock.

    Legacy crops become float32 CYX /crop datasets, lanes point to the crops relative to the
    project, label blocks follow the crops' axes, local data is cleared and the export
    settings are set to uint16 yxc TIFFs. Unlike steinbock it also accepts steinbock's own
    crops, changes nothing when nothing needs fixing, and a failed fix leaves every file as
    it was.
    """
    with _reporting(verbose):
        result = fix(project_file, crop_dir, probab_dir, backup=backup, axis_order=axis_order)
    if not result.changed:
        click.echo(f"{project_file}: nothing to fix ({len(result.native_crops)} steinbock crops)")
        return
    click.echo(
        f"{project_file}: fixed {len(result.fixed_crops)} crops, {len(result.fixed_lanes)} lanes, "
        f"{len(result.fixed_label_blocks)} label blocks"
        + (", cleared local data" if result.local_data_cleared else "")
        + (", export settings" if result.export_rewritten else "")
        + (f"; backups: {', '.join(map(str, result.backups))}" if result.backups else "")
    )
    click.echo("note: when exporting from ilastik's GUI, renormalize [0.0, 1.0] to [0, 65535]", err=True)


@cli.command("run", short_help="Probability TIFFs from the project's labels, no ilastik needed.")
@click.option("--ilp", "project_file", type=click.Path(exists=True, dir_okay=False),
              default="pixel_classifier.ilp", show_default=True,
              help="Pixel Classification project with labels on its crops (or a trained forest).")
@click.option("--img", "img_dir", type=click.Path(exists=True, file_okay=False), default="ilastik_img",
              show_default=True, help="Folder of Ilastik images (*.h5 with /img).")
@click.option("-o", "out_dir", type=click.Path(file_okay=False), default="ilastik_probabilities",
              show_default=True, help="Output folder: one <image stem>.tiff per image.")
@click.option("--threads", type=click.IntRange(min=0), default=None,
              help="Threads for features, training and prediction (default or 0: all cores).")
@click.option("--mem", type=click.IntRange(min=0), default=None,
              help="Accepted for steinbock compatibility and ignored: pyquint works in tiles.")
@click.option("--retrain", is_flag=True,
              help="Train on the project's labels even if it holds a forest trained by ilastik.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of a retrained forest (same seed, same probabilities).")
@click.option("--rounding", type=click.Choice(ROUNDINGS), default=None,
              help="Feature arithmetic (default: the project's ilastik version's, as in `pyquint "
                   "ilastik predict`): exact = ilastik's fastfilters; fast = within 1e-5 of exact.")
@click.option("--overwrite", is_flag=True, help="Recompute existing outputs (default: skip them, resume).")
@_verbose
def run_cmd(project_file, img_dir, out_dir, threads, mem, retrain, seed, rounding, overwrite,
            verbose) -> None:
    """Pixel classification of every Ilastik image, without an ilastik binary.

    Uses the project's forest if ilastik trained and saved one, else trains a random forest
    (100 trees) on the labels of the project's crops with the project's features (all
    default features with sigma >= 1 if the project selects none). Writes
    <out>/<image stem>.tiff: uint16 Y x X x classes (Nucleus, Cytoplasm, Background as
    R, G, B), value = trunc(p * 65535), as ilastik exports for steinbock; the next step is
    `steinbock segment cellprofiler`.
    """
    with _reporting(verbose):
        result = run(project_file, img_dir, out_dir, n_jobs=threads or None, overwrite=overwrite,
                     retrain=retrain, seed=seed, rounding=rounding)
    skipped = f", {len(result.skipped)} existing skipped" if result.skipped else ""
    source = f" ({result.classifier_source})" if result.classifier_source else ""
    click.echo(f"{len(result.written)} probability images written to {out_dir}{skipped}{source}")
