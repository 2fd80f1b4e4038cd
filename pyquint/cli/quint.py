"""``pyquint quint`` and ``pyquint demo``: the QUINT pipeline from the command line."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import click

from ..data import write_rgb_sample_dataset
from ..lut import parse_color_set
from ..sample_sections import PIXEL_SIZE_UM
from ..workflows.config import QuintConfig, load_config
from ..workflows.quint import plan, run_quint


@click.group("quint")
def cli() -> None:
    """QUINT end to end: section images -> Nutil-ready segmentation PNGs with legend and QC."""


@cli.command("run")
@click.argument("config_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--sections", help="Folder or glob of section images (input.sections).")
@click.option("--resize", type=float, help="Downscale factor, e.g. 0.2 (input.resize).")
@click.option("--axes", help="Axes of the section files, e.g. yxc (input.axes).")
@click.option("--pixel-size", type=float, help="µm per pixel of the section files, for areas in mm² (input.pixel_size).")
@click.option("--labels", help="Folder of training label images, same names as the sections (pixel.labels).")
@click.option("--ilp", help="An ilastik Pixel Classification project instead of label images (pixel.ilp).")
@click.option("--model", help="A saved pyquint pixel model instead of label images (pixel.model).")
@click.option("--retrain", is_flag=True, default=None, help="With --ilp: retrain from the project's labels.")
@click.option("--features", help="Feature selection: all, steinbock or a JSON file (pixel.features).")
@click.option("--trees", type=int, help="Number of trees (pixel.trees, default 100).")
@click.option("--seed", type=int, help="Random seed (pixel.seed); the same seed gives the same result.")
@click.option("--class-names", help="Comma-separated class names for label values 1..N.")
@click.option("--objects/--no-objects", default=None, help="Run the object classification step.")
@click.option("--object-channel", type=int, help="Class (1-based) whose probability is thresholded.")
@click.option("--threshold", type=float, help="Object threshold in [0, 1] (QUINT docs suggest 0.4).")
@click.option("--min-size", type=int, help="Smallest object kept, in pixels (default 10).")
@click.option("--max-size", type=int, help="Largest object kept, in pixels (default 1,000,000).")
@click.option("--object-labels", help="Folder of object label images: 1 = keep, 2 = artefact.")
@click.option("--object-model", help="A saved pyquint object model.")
@click.option("--lut", "lut_name", help="glasbey, 'glasbey on dark', 'glasbey inverted' or a .lut path.")
@click.option("--set", "set_colours", multiple=True, help="Override a class colour: CLASS=R,G,B (repeatable).")
@click.option("--classes", help="Comma-separated classes to colour; the others become index 0.")
@click.option("--rgb/--palette", default=None, help="24-bit RGB PNGs instead of palette PNGs.")
@click.option("--fiji", help="A Fiji.app whose luts/ folder is searched first.")
@click.option("-o", "--out", help="Output folder (output.folder).")
@click.option("--probabilities/--no-probabilities", default=None, help="Also write probability maps.")
@click.option("--engine", type=click.Choice(["python", "imagej"]), help="LUT step in Python or a real ImageJ.")
@click.option("--workers", type=int, help="Sections processed in parallel.")
@click.option("--overwrite", is_flag=True, default=None, help="Recompute sections whose output exists.")
@click.option("--truth", type=click.Path(file_okay=False, path_type=Path),
              help="Ground-truth folder (same names) to report the pixel F1.")
@click.option("--alignment", help="QuickNII/VisuAlign registration JSON: also count objects per atlas region "
              "with PyNutil (pynutil.alignment; pip install 'pyquint[pynutil]').")
@click.option("--atlas", help="With --alignment: a BrainGlobe atlas name (allen_mouse_25um) or a custom "
              "annotation volume (.nrrd/.npy) with --atlas-labels.")
@click.option("--atlas-labels", help="Labels CSV (idx, name, r, g, b) of a custom --atlas volume.")
@click.option("--dry-run", is_flag=True, help="List what would be done and stop.")
def run(config_file: Path | None, dry_run: bool, truth: Path | None, **flags) -> None:
    """Run the QUINT pipeline from CONFIG_FILE (TOML) and/or flags (flags win).

    \b
    Example:
      pyquint quint run --sections sections/ --labels labels/ --objects \\
          --object-labels object_labels/ --lut glasbey --classes 2 -o out/
    Outputs: out/segmentations/<section>.png (Nutil-ready, the _sXXX id kept), legend.png,
    nutil_colours.csv, qc_montage.png, report.html, summary.csv, provenance.json.
    """
    config = load_config(config_file) if config_file else QuintConfig()
    _apply_flags(config, flags)
    if dry_run:
        for section, out, status in plan(config):
            click.echo(f"{status:14s} {section} -> {out}")
        return
    with _warnings_as_messages():
        result = run_quint(config, truth=truth)
    _echo_result(result)


@contextlib.contextmanager
def _warnings_as_messages():
    """pyquint's own warnings (e.g. an object painted with two classes) as one 'warning:' line."""
    with warnings.catch_warnings():
        previous = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if category.__module__.startswith("pyquint"):
                click.echo(f"warning: {message}", err=True)
            else:
                previous(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def _apply_flags(config, flags: dict) -> None:
    mapping = {
        "sections": ("input", "sections"), "resize": ("input", "resize"), "axes": ("input", "axes"),
        "pixel_size": ("input", "pixel_size"),
        "labels": ("pixel", "labels"), "ilp": ("pixel", "ilp"), "model": ("pixel", "model"),
        "retrain": ("pixel", "retrain"), "features": ("pixel", "features"), "trees": ("pixel", "trees"),
        "seed": ("pixel", "seed"), "objects": ("objects", "enabled"),
        "object_channel": ("objects", "channel"), "threshold": ("objects", "threshold"),
        "min_size": ("objects", "min_size"), "max_size": ("objects", "max_size"),
        "object_labels": ("objects", "labels"), "object_model": ("objects", "model"),
        "lut_name": ("lut", "name"), "rgb": ("lut", "rgb"), "fiji": ("lut", "fiji"),
        "out": ("output", "folder"), "probabilities": ("output", "probabilities"),
        "engine": ("run", "engine"), "workers": ("run", "workers"), "overwrite": ("run", "overwrite"),
    }
    for key, (section, attr) in mapping.items():
        if flags.get(key) is not None:
            setattr(getattr(config, section), attr, flags[key])
    if flags.get("alignment"):
        config.pynutil.alignment = flags["alignment"]
    if flags.get("atlas"):
        if Path(flags["atlas"]).suffix.lower() in (".nrrd", ".npy"):
            config.pynutil.atlas_volume = flags["atlas"]
        else:
            config.pynutil.atlas = flags["atlas"]
    if flags.get("atlas_labels"):
        config.pynutil.atlas_labels = flags["atlas_labels"]
    if flags.get("class_names"):
        config.pixel.class_names = [n.strip() for n in flags["class_names"].split(",")]
    if flags.get("classes"):
        config.lut.classes = [int(c) for c in flags["classes"].split(",")]
    if flags.get("set_colours"):
        config.lut.set.update(parse_color_set(flags["set_colours"]))
    if flags.get("object_labels") or flags.get("object_model"):
        config.objects.enabled = True if flags.get("objects") is None else config.objects.enabled


def _echo_result(result) -> None:
    for s in result.sections:
        counts = ", ".join(f"class {c}: {n} objects" for c, n in s.objects.items())
        f1 = f", pixel F1 {s.f1:.3f}" if s.f1 is not None else ""
        click.echo(f"{s.name}: {counts}{f1}{' (resumed)' if s.resumed else ''}")
    if result.mean_f1 is not None:
        click.echo(f"mean pixel F1 of the stained-cell class vs ground truth: {result.mean_f1:.3f}")
    click.echo(f"outputs in {result.output_folder}: " + ", ".join(p.name for p in result.files.values()))
    seg = result.output_folder / "segmentations"
    click.echo(f"Nutil-ready segmentations: {seg}/ ({len(result.sections)} PNG); "
               f"open {result.files.get('report', result.output_folder / 'report.html')} for the next step")


@click.command("demo")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo_output"),
              show_default=True, help="Folder for the sample data and the pipeline's outputs.")
@click.option("--engine", type=click.Choice(["python", "imagej"]), default="python", show_default=True)
@click.option("--overwrite", is_flag=True, help="Recompute outputs that exist.")
def demo(out: Path, engine: str, overwrite: bool) -> None:
    """Run the QUINT pipeline on pyquint's synthetic RGB brightfield DAB sections.

    Writes the sample sections (as sample_data/: brown DAB cells on a haematoxylin
    counterstain, edge staining and vessels as brown as the cells, a fold, bubbles, dust) with
    their sparse labels to OUT/input/, trains a pixel classifier (ilastik's features, 100
    trees) and an object classifier (cells vs artefacts), colours the cells Glasbey red
    (label 2) for Nutil in OUT/segmentations/, and prints the pixel F1 of the stained-cell
    class against the generator's ground truth.
    """
    data = write_rgb_sample_dataset(out / "input", "dab", n_sections=3, seed=0)
    config = QuintConfig(base_dir=Path.cwd())
    config.input.sections = str(data / "sections")
    config.input.pixel_size = PIXEL_SIZE_UM
    config.pixel.labels = str(data / "labels")
    config.pixel.class_names = ["Background", "Stain"]
    config.objects.enabled = True
    config.objects.channel = 2
    config.objects.labels = str(data / "object_labels")
    config.lut.name = "glasbey"
    config.lut.classes = [2]
    config.output.folder = str(out)
    config.run.engine = engine
    config.run.overwrite = overwrite
    result = run_quint(config, truth=data / "truth", truth_value=1, evaluate_class=2)
    _echo_result(result)
