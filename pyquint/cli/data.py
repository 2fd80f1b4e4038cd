"""``pyquint data``: write the bundled synthetic sample sections."""

from __future__ import annotations

from pathlib import Path

import click

from ..data import write_sample_dataset


@click.group("data")
def cli() -> None:
    """Synthetic DAB-like brain sections with ground truth and training labels."""


@cli.command("sample")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write sections/, labels/, object_labels/ and truth/ into.")
@click.option("-n", "--sections", "n_sections", default=3, show_default=True, type=click.IntRange(1, 999),
              help="Number of sections (named brain_s001.png, brain_s002.png, ...).")
@click.option("--seed", default=0, show_default=True, help="Seed of the first section (section i uses seed+i).")
@click.option("--size", nargs=2, type=int, default=(256, 320), show_default=True,
              help="Rows and columns of each section.")
def sample(out: Path, n_sections: int, seed: int, size: tuple[int, int]) -> None:
    """Write synthetic sections: stained cells, edge streaks of the same darkness, texture.

    The same seed always gives the same files. Pixel labels: 1 = Background, 2 = Stain;
    object labels: 1 = label (cell), 2 = artefact (streak); truth: 1 = cell, 2 = streak.
    """
    write_sample_dataset(out, n_sections=n_sections, seed=seed, shape=tuple(size))
    click.echo(f"wrote {n_sections} sections to {out}")
