"""``pyquint interactive``: one train-and-preview iteration (what the Fiji macro runs)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import PyquintError


@click.group("interactive")
def cli() -> None:
    """The train-and-preview loop (ilastik's live update) for Fiji and scripts.

    Notebook users: pyquint.interactive.InteractiveSession keeps the features between steps.
    """


@cli.command("step")
@click.argument("image", type=click.Path(path_type=Path))
@click.argument("labels", required=False, type=click.Path(path_type=Path))
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the model, the labels so far and the preview (default <image>_pyquint/ beside the image).")
@click.option("--class-names", default=None, help="Comma-separated class names for labels 1..N.")
@click.option("--show-class", default=None, help="Class whose probability is written (name or 1-based index; default the last).")
@click.option("--suggestions", "n_suggestions", default=5, show_default=True, type=click.IntRange(0, 1000),
              help="How many 'label here next' regions to suggest.")
@click.option("--suggestion-size", default=32, show_default=True, type=click.IntRange(1, 4096),
              help="Edge of a suggested region, in pixels.")
@click.option("--trees", default=100, show_default=True, type=click.IntRange(1, 10000))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--trainer", type=click.Choice(["fast", "sklearn"]), default="fast", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def step_cmd(image: Path, labels: Path | None, work_dir: Path | None, class_names: str | None,
             show_class: str | None, n_suggestions: int, suggestion_size: int, trees: int, seed: int,
             trainer: str, as_json: bool) -> None:
    """Add LABELS to the labels saved for IMAGE, train, save the model, write the preview.

    LABELS: a label image (0 = unlabelled, k = class k), e.g. painted from ImageJ's ROI
    Manager; without it the saved labels are used as they are.
    """
    from ..interactive import run_step

    names = [n.strip() for n in class_names.split(",")] if class_names else None
    try:
        report = run_step(image, labels, work_dir=work_dir, class_names=names, show_class=show_class,
                          n_suggestions=n_suggestions, suggestion_size=suggestion_size, n_trees=trees,
                          seed=seed, trainer=trainer)
    except PyquintError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    samples = ", ".join(f"class {c}: {n}" for c, n in report.samples_per_class.items())
    click.echo(f"iteration {report.iteration}: trained on {samples} labelled pixels "
               f"in {report.seconds['total']:.1f} s; {len(report.suggestions)} suggestions")
    click.echo(f"outputs in {report.work_dir}")
