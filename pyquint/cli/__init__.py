"""The ``pyquint`` command line: a thin layer over the Python API.

Each command group lives in its own module (``pyquint/cli/<name>.py``) exposing a click
object named ``cli``; groups are imported lazily so that ``pyquint --help`` stays fast and a
broken optional dependency only affects its own command.
"""

from __future__ import annotations

import importlib
import os

import click

from .. import __version__, _outputs
from ._errors import guarded, install_signal_handlers

# command name -> (module, short help). Keep the help here so ``--help`` needs no imports.
COMMANDS: dict[str, tuple[str, str]] = {
    "pixel": ("pyquint.cli.pixel", "Pixel classification: train a forest, predict, export as ilastik."),
    "features": ("pyquint.cli.features", "Compute and export ilastik's pixel features."),
    "objects": ("pyquint.cli.objects", "Object classification: threshold + size filter, features, forest."),
    "lut": ("pyquint.cli.lut", "Lookup tables: apply Glasbey/custom LUTs, convert, show, make."),
    "imagej": ("pyquint.cli.imagej", "Drive a real ImageJ/Fiji: discovery, LUTs, macro runs."),
    "macro": ("pyquint.cli.macro", "Generate ImageJ macros (.ijm) for Fiji or headless batch."),
    "ilastik": ("pyquint.cli.ilastik", "Read/write ilastik projects; headless predict without ilastik."),
    "steinbock": ("pyquint.cli.steinbock", "steinbock-compatible `classify ilastik` prepare/fix/run."),
    "quint": ("pyquint.cli.quint", "QUINT end to end: sections -> Nutil-ready segmentations."),
    "large": ("pyquint.cli.large", "Images larger than RAM: tile-by-tile prediction, Dask clusters."),
    "data": ("pyquint.cli.data", "Generate the bundled synthetic sample sections."),
    "demo": ("pyquint.cli.quint", "Run the QUINT pipeline on the bundled sample data."),
    "interactive": ("pyquint.cli.interactive", "Train and preview step by step (the Fiji training loop)."),
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported only when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, help_text = COMMANDS[cmd_name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise

            @click.command(cmd_name, help=help_text + " (not available in this build)")
            def _missing() -> None:
                raise click.ClickException(f"the '{cmd_name}' command is not available")

            return _missing
        attr = "demo" if cmd_name == "demo" else "cli"
        return getattr(module, attr)

    def invoke(self, ctx: click.Context):
        # Every failure of every command is reported in one place (pyquint/cli/_errors.py).
        restore = install_signal_handlers()
        _outputs.LOCK_OUTPUT_FOLDERS = True
        try:
            return guarded(lambda: super(LazyGroup, self).invoke(ctx))
        finally:
            _outputs.LOCK_OUTPUT_FOLDERS = False
            _outputs.release_folder_locks()
            restore()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pyquint")
@click.option("--debug", is_flag=True, help="Show tracebacks (also PYQUINT_DEBUG=1).")
def main(debug: bool) -> None:
    """pyquint: ilastik-compatible segmentation for QUINT and steinbock, without a GUI.

    Every command works on files or folders, shows progress bars on long work, writes its
    outputs atomically, never overwrites an input, and resumes an interrupted batch (existing
    outputs are skipped unless --overwrite). Run `pyquint COMMAND --help` for details.
    """
    # OpenMP busy-waiting costs several times the work on 2-core machines.
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    if debug:
        os.environ["PYQUINT_DEBUG"] = "1"
