"""``pyquint ilastik``: inspect ilastik projects and run ilastik-style headless prediction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..features import ROUNDINGS
from ..ilastik import read_project
from ..ilastik.headless import predict_project
from ..ilastik.objects import predict_object_project

SOURCES_HELP = "Probabilities, Simple Segmentation, Uncertainty, Features or Labels"


@click.group("ilastik")
def cli() -> None:
    """Read ilastik projects (.ilp) and predict with them, without ilastik.

    Projects are only ever opened read-only, so this works on read-only files and while
    ilastik has the project open.
    """


@cli.command("predict", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("args", nargs=-1, required=True, metavar="PROJECT.ilp IMAGES...")
@click.option("--project", "project_opt", type=click.Path(dir_okay=False),
              help="The project, as ilastik's --project=P.ilp (then every argument is an image).")
@click.option("--raw_data", "--raw-data", "raw_data", multiple=True,
              help="More input images (ilastik's role flag for 'Raw Data').")
@click.option("--prediction_maps", "--prediction-maps", "prediction_maps", multiple=True,
              help="Object Classification projects: the probability map of each --raw_data image "
                   "(same order).")
@click.option("--table", is_flag=True,
              help="Object Classification projects: also write {nickname}_table.csv.")
@click.option("--export_source", "--export-source", "export_source", multiple=True,
              help=f"What to export: {SOURCES_HELP} (case-insensitive; default Probabilities). "
                   "Repeat it to write several results from one feature computation.")
@click.option("--output_format", "--output-format", "output_format",
              help="hdf5, compressed hdf5, png, tiff, npy, ome-zarr, or 'png sequence' / 'tif "
                   "sequence' (one file per time point or slice; needs {slice_index} in "
                   "--output_filename_format) (default: the project's setting, else hdf5).")
@click.option("--output_filename_format", "--output-filename-format", "output_filename_format",
              help="Output path pattern with {dataset_dir}, {nickname}, {result_type} "
                   "(default: the project's, else {dataset_dir}/{nickname}_{result_type}); "
                   "relative paths are taken from the current folder, as ilastik does.")
@click.option("--output_internal_path", "--output-internal-path", "output_internal_path",
              help="HDF5 dataset name (default exported_data).")
@click.option("--export_dtype", "--export-dtype", "export_dtype",
              help="Convert to this type (uint8, uint16, float32, ...), using the dranges.")
@click.option("--pipeline_result_drange", "--pipeline-result-drange", "pipeline_result_drange",
              help='Input value range mapped linearly onto --export_drange, e.g. "(0.0,1.0)".')
@click.option("--export_drange", "--export-drange", "export_drange",
              help='Output value range, e.g. "(0,255)"; float to int rounds half to even.')
@click.option("--input_axes", "--input-axes", "input_axes",
              help="Axes of the input images if their files do not say (e.g. cyx).")
@click.option("--output_axis_order", "--output-axis-order", "output_axis_order",
              help="Axis order of the exports (default: the input's own order, c appended).")
@click.option("--scale-level", "--scale_level", "scale_level", type=click.IntRange(0), default=0,
              help="Resolution level of OME-Zarr inputs (0 = full resolution).")
@click.option("--retrain", is_flag=True,
              help="Train a new forest from the project's labels (and its lanes' images) instead "
                   "of using the stored one. Projects without a stored forest always retrain.")
@click.option("--seed", type=int, default=None, help="Seed of a retrained forest.")
@click.option("--rounding", type=click.Choice(ROUNDINGS), default=None,
              help="Feature arithmetic (default: fast for ilastik >= 1.4 projects, muladd before; "
                   "vigra: ilastik's vigra filters, the best match for 1.2 projects).")
@click.option("--threads", type=int, default=None, help="Threads (default: all cores).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (default: skip them, "
                                                 "so an interrupted batch resumes).")
@click.option("--readonly", is_flag=True, hidden=False,
              help="Accepted for ilastik compatibility; pyquint never writes to the project.")
@click.option("--headless", is_flag=True, hidden=True)
def predict_cmd(args: tuple[str, ...], project_opt: str | None, raw_data: tuple[str, ...],
                prediction_maps: tuple[str, ...], table: bool, **options: Any) -> None:
    """Predict IMAGES with the classifier of PROJECT.ilp and write ilastik's export files.

    Like `run_ilastik.sh --headless --project=PROJECT.ilp IMAGES...`: the project's feature
    selection and its stored forest (evaluated exactly) or, with --retrain, a forest trained
    from its labels. Files are named like ilastik's, e.g. `img_Simple Segmentation.png`
    beside each image. Both `--export_source="Simple Segmentation"` and
    `--export_source "Simple Segmentation"` work; dashes may replace underscores.

    Object Classification projects take --raw_data and --prediction_maps pairs and write
    Object Predictions / Object Probabilities / Object Identities (and --table).

    \b
    Example:
      pyquint ilastik predict pc.ilp cells.png --export_source="Simple Segmentation" \\
          --output_format=png
      pyquint ilastik predict oc.ilp --raw_data cells.png \\
          --prediction_maps "cells_Probabilities.h5" --export_source "Object Predictions"
    """
    options.pop("readonly")
    options.pop("headless")
    items = list(args)
    project = project_opt
    if project is None:
        project = items.pop(0)
    images = items + list(raw_data)
    if not images:
        raise click.UsageError("no images given after the project")
    threads = options.pop("threads")

    if read_project(Path(project)).kind == "object":
        fmt = (options["output_format"] or "h5").replace("compressed ", "").replace("hdf5", "h5")
        written = predict_object_project(
            project, images, list(prediction_maps),
            export_source=options["export_source"] or ("Object Predictions",),
            output_format=fmt, table=table, retrain=options["retrain"], seed=options["seed"],
            overwrite=options["overwrite"])
        for path in written:
            click.echo(str(path))
        return
    if prediction_maps or table:
        raise click.UsageError("--prediction_maps and --table apply to Object Classification projects")
    sources = options.pop("export_source") or ("Probabilities",)
    written = predict_project(project, images, export_source=sources, n_jobs=threads,
                              **options)
    for path in written:
        click.echo(str(path))


def _describe(project: Any) -> dict[str, Any]:
    counts = project.label_counts().tolist() if project.label_blocks else [0] * len(project.label_names)
    colors = project.label_colors.tolist() if project.label_colors is not None else []
    labels = [
        {"value": i + 1, "name": name, "color": colors[i] if i < len(colors) else None,
         "pixels": counts[i] if i < len(counts) else 0}
        for i, name in enumerate(project.label_names)
    ]
    lanes = [
        {"lane": lane.index, "role": lane.role, "nickname": lane.nickname, "location": lane.location,
         "path": lane.file_path, "axes": lane.axes, "shape": list(lane.shape) if lane.shape else None,
         "canonical_axes": lane.canonical_axes if lane.role == "Raw Data" else None,
         "found": lane.exists,
         "label_blocks": sum(1 for b in project.label_blocks if b.lane == lane.index),
         "frame_labels": (project.frame_label_counts(lane.index) if lane.role == "Raw Data"
                          else {})}
        for role_lanes in project.roles.values() for lane in role_lanes
    ]
    features = None
    if project.selection_matrix is not None:
        sel = project.feature_selection()
        rows = {fid: [s for s, on in zip(project.scales, row) if on]
                for fid, row in zip(project.feature_ids, project.selection_matrix)}
        shape = project.lane_shape(0) if project.lanes else None
        n_in = shape[-1] if shape else 1
        ndim = len(project.lanes[0].canonical_axes.replace("t", "")) - 1 if project.lanes else 2
        features = {"selected": rows, "scales": list(project.scales),
                    "compute_in_2d": project.compute_in_2d,
                    "channels": sel.n_channels(n_in, ndim)}
    forest = {k: v for k, v in project.forest_info.items() if k != "feature_names"}
    return {
        "path": str(project.path), "ilastik_version": project.version, "workflow": project.workflow,
        "saved": project.time, "labels": labels, "label_blocks": len(project.label_blocks),
        "lanes": lanes, "missing_files": project.missing_files, "features": features,
        "forest": forest or None, "export_settings": project.export_settings,
        "threshold_settings": project.threshold_settings or None,
    }


def info_names(info: dict[str, Any]) -> list[str]:
    """Label names for per-frame counts (``Label k`` where the project names none)."""
    names = [lab["name"] for lab in info["labels"]]
    n = max((len(c) for lane in info["lanes"] for c in lane["frame_labels"].values()), default=0)
    return names + [f"Label {k + 1}" for k in range(len(names), n)]


@cli.command("info", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("project", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info_cmd(project: str, as_json: bool) -> None:
    """Print what an ilastik project holds: version, workflow, labels (names, colours, pixel
    counts), lanes and missing files, feature selection, stored forests, export settings."""
    info = _describe(read_project(Path(project)))
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    click.echo(f"{info['path']}")
    click.echo(f"  ilastik {info['ilastik_version']}, workflow {info['workflow']!r}, saved {info['saved']}")
    click.echo(f"  labels ({info['label_blocks']} blocks):")
    for lab in info["labels"]:
        click.echo(f"    {lab['value']}: {lab['name']!r} colour {lab['color']} - {lab['pixels']} pixels")
    click.echo("  lanes:")
    for lane in info["lanes"]:
        found = "" if lane["found"] else "  [MISSING]"
        click.echo(f"    {lane['lane']} {lane['role']}: {lane['nickname']} ({lane['location']}: "
                   f"{lane['path']}) axes {lane['axes']} shape {lane['shape']}{found}")
        if lane["canonical_axes"]:
            click.echo(f"      classified as {lane['canonical_axes']}")
        for t, counts in lane["frame_labels"].items():
            where = f"frame t={t}" if "t" in (lane["canonical_axes"] or "") else "labels"
            click.echo(f"      {where}: " + ", ".join(
                f"{name} {n}" for name, n in zip(info_names(info), counts)))
    if info["missing_files"]:
        click.echo(f"  missing files: {', '.join(info['missing_files'])}")
    feats = info["features"]
    if feats is None:
        click.echo("  features: none selected")
    else:
        click.echo(f"  features ({feats['channels']} channels):")
        for fid, scales in feats["selected"].items():
            if scales:
                click.echo(f"    {fid}: σ = {', '.join(str(s) for s in scales)}")
    forest = info["forest"]
    if forest:
        click.echo(f"  forest: {forest['n_forests']} vigra forests, {forest['n_trees']} trees, "
                   f"{forest.get('n_features')} features, labels {forest.get('known_labels')}")
    else:
        click.echo("  forest: none stored (ilastik retrains from the labels)")
    if info["export_settings"]:
        click.echo("  export settings:")
        for key, value in info["export_settings"].items():
            click.echo(f"    {key}: {value}")
    if info["threshold_settings"]:
        click.echo(f"  threshold settings: {info['threshold_settings']}")
