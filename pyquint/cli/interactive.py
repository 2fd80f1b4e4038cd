"""``pyquint interactive``: train-and-preview iterations for the Fiji macro (one-shot or served)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..interactive import run_step, work_dir_for
from ..interactive_server import serve, start_server, step_summary, stop_server


@click.group("interactive")
def cli() -> None:
    """The train-and-preview loop (ilastik's live update) for Fiji and scripts.

    `step` runs one iteration; `serve` keeps a process for an image that answers the fiji-train
    macro's requests (features and compiled code stay loaded); `stop` ends it. Notebook users:
    pyquint.interactive.InteractiveSession keeps the features between steps.
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
    names = [n.strip() for n in class_names.split(",")] if class_names else None
    report = run_step(image, labels, work_dir=work_dir, class_names=names, show_class=show_class,
                      n_suggestions=n_suggestions, suggestion_size=suggestion_size, n_trees=trees,
                      seed=seed, trainer=trainer)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(step_summary(report))
    click.echo(f"outputs in {report.work_dir}")


@cli.command("serve")
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The image's work folder (default <image>_pyquint/ beside the image).")
@click.option("--idle-timeout", default=600.0, show_default=True, type=click.FloatRange(min=1),
              help="Exit after this many seconds without a request.")
@click.option("--detach", is_flag=True,
              help="Start the server in the background and return once it is up (what the macro runs).")
def serve_cmd(image: Path, work_dir: Path | None, idle_timeout: float, detach: bool) -> None:
    """Keep a pyquint process for IMAGE that answers the fiji-train macro's requests.

    It keeps the image's features and pyquint's compiled code between the macro's runs (about
    0.8 GB for a 2000 x 2000 view) and talks through files in the work folder (server.json,
    request.txt, answer.txt, server.log). It exits after --idle-timeout seconds without a
    request, or with `pyquint interactive stop`.
    """
    if detach:
        info = start_server(image, work_dir=work_dir, idle_timeout=idle_timeout)
        click.echo(f"pyquint server {info.pid} serves {info.work_dir}")
        return
    serve(image, work_dir=work_dir, idle_timeout=idle_timeout)


@cli.command("stop")
@click.argument("target", type=click.Path(path_type=Path))
def stop_cmd(target: Path) -> None:
    """Stop the server of TARGET (an image, or its work folder <image>_pyquint/)."""
    work = target if target.is_dir() else work_dir_for(target)
    stopped = stop_server(work)
    click.echo(f"stopped the pyquint server of {work}" if stopped else f"no pyquint server runs for {work}")
