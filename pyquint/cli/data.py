"""``pyquint data``: write the bundled synthetic sample sections."""

from __future__ import annotations

from pathlib import Path

import click

from ..data import write_rgb_sample_dataset, write_sample_dataset


@click.group("data")
def cli() -> None:
    """Synthetic brain sections with ground truth and training labels."""


@cli.command("sample")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write sections/, labels/, object_labels/ and truth/ into.")
@click.option("--kind", type=click.Choice(["dab", "fluorescence", "grey"]), default="dab", show_default=True,
              help="dab: RGB brightfield DAB on haematoxylin (as sample_data/); fluorescence: RGB "
                   "fluorescence (as sample_data/fluorescence/); grey: the small one-channel test sections.")
@click.option("-n", "--sections", "n_sections", default=3, show_default=True, type=click.IntRange(1, 999),
              help="Number of sections (named brain_s001.png, brain_s002.png, ...).")
@click.option("--seed", default=0, show_default=True, help="Seed of the first section (section i uses seed+i).")
@click.option("--size", nargs=2, type=int, default=None,
              help="Rows and columns of each section [default: 448 576 (RGB), 256 320 (grey)].")
def sample(out: Path, kind: str, n_sections: int, seed: int, size: tuple[int, int] | None) -> None:
    """Write synthetic sections with ground truth, pixel labels and object labels.

    The same seed always gives the same files. Pixel labels: 1 = Background, 2 = Stain;
    object labels: 1 = label (cell), 2 = artefact; truth: 0 = background, 1 = cell,
    2 = artefact (edge staining, vessels, fold, bubbles, dust; streaks for grey).
    """
    try:
        if kind == "grey":
            write_sample_dataset(out, n_sections=n_sections, seed=seed, shape=tuple(size or (256, 320)))
        else:
            write_rgb_sample_dataset(out, kind, n_sections=n_sections, seed=seed, shape=tuple(size or (448, 576)))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--size") from None
    click.echo(f"wrote {n_sections} {kind} sections to {out}")
