"""``pyquint imagej``: discovery, ImageJ's own LUT application, macro runs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..batch import collect_inputs
from ..imagej import apply_lut_imagej_batch, imagej_info, prepare_home, run_macro, start_jvm


@click.group("imagej")
def cli() -> None:
    """Drive a real ImageJ/Fiji from pyquint.

    ImageJ is found in this order: --imagej, PYQUINT_FIJI / FIJI_HOME (a Fiji.app),
    PYQUINT_IJ_JAR (an ij.jar), a Fiji.app in the usual places, the system ij.jar
    (Debian/Ubuntu: apt-get install libij-java). Macros that open images need Xvfb
    (apt-get install xvfb xauth) or a display.
    """


@cli.command("info")
@click.option("--imagej", "imagej", default=None, help="Fiji.app folder or ij.jar to use.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def info_cmd(imagej: str | None, as_json: bool) -> None:
    """Report the ImageJ, Java, Xvfb and Python bridges pyquint would use.

    Exits with status 1 (after the report) when ImageJ or Java is missing.
    """
    info = imagej_info(imagej)
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        ij = info["imagej"]
        if "error" in ij:
            click.echo("ImageJ:        not found")
        else:
            where = f" in {ij['root']}" if ij["root"] else ""
            click.echo(f"ImageJ:        {ij['version'] or '?'} ({ij['kind']}) {ij['jar']}{where} [found via {ij['source']}]")
            if ij["luts"]:
                click.echo(f"LUT folder:    {ij['luts']}")
            if ij["launcher"]:
                click.echo(f"Fiji launcher: {ij['launcher']}")
        click.echo(f"Java:          {info['java'] or 'not found'}")
        click.echo(f"xvfb-run:      {info['xvfb_run'] or 'not found'}   DISPLAY: {info['display'] or '(unset)'}")
        click.echo(f"JPype:         {info['jpype1'] or 'not installed'}   scyjava: {info['scyjava'] or 'not installed'}"
                   f"   pyimagej: {info['pyimagej'] or 'not installed'}")
        click.echo(f"Macro engine:  {info['macro_engine']}   ImageJ home for macros: {info['home']}")
        for problem in info["problems"]:
            click.echo(f"problem: {problem}")
    if "error" in info["imagej"] or info["java"] is None:
        raise SystemExit(1)


@cli.command("run-macro")
@click.argument("macro", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("args", nargs=-1)
@click.option("--timeout", default=600.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds before ImageJ (and Xvfb) are killed.")
@click.option("--imagej", default=None, help="Fiji.app folder or ij.jar to use.")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="ImageJ home with plugins/ and luts/ (default: Fiji.app, or pyquint's cache with its Glasbey LUTs).")
@click.option("--fiji-luts", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Copy these *.lut files (e.g. Fiji.app/luts) into the ImageJ home first.")
@click.option("--engine", type=click.Choice(["auto", "worker", "java", "fiji"]), default="auto", show_default=True,
              help="worker: ImageJ in a JPype subprocess that reports dialogs as errors; java: plain "
                   "`java -jar ij.jar -batch` (errors end only at the timeout); fiji: Fiji's --headless --run.")
@click.option("--memory", default=None, help="Java heap, e.g. 4g.")
def run_macro_cmd(macro: Path, args: tuple[str, ...], timeout: float, imagej: str | None,
                  home: Path | None, fiji_luts: Path | None, engine: str, memory: str | None) -> None:
    """Run MACRO (.ijm) in ImageJ batch mode and print its output.

    ARGS become the macro's getArgument(), joined with '|'. When every ARG is KEY=VALUE they
    are also the values of a Fiji script's #@ parameters (bound for plain ImageJ).

    \b
      pyquint imagej run-macro imagej_macros/ij1/glasbey_batch.ijm inDir=seg outDir=nutil
    """
    packed: object = list(args)
    if args and all("=" in a for a in args):
        packed = dict(a.split("=", 1) for a in args)
    if home is not None or fiji_luts is not None:
        home = prepare_home(home, fiji_luts=fiji_luts)
    result = run_macro(macro, packed, timeout=timeout, imagej=imagej, home=home,
                       engine=engine, memory=memory)
    click.echo(result.output, nl=False)


@cli.command("apply-lut")
@click.argument("lut")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the palette PNGs (<name>.png).")
@click.option("--imagej", default=None, help="Fiji.app folder or ij.jar to use.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (default: skip them, resume).")
def apply_lut_cmd(lut: str, inputs: tuple[str, ...], output_dir: Path, imagej: str | None, overwrite: bool) -> None:
    """Apply LUT to label images with ImageJ's own LutLoader and PNG writer (one JVM).

    LUT is a LUT file (any format ImageJ reads) or a pyquint LUT name (glasbey, ...).
    INPUTS are label images or folders of them (values 0..255).
    """
    files = collect_inputs(inputs, (".png", ".tif", ".tiff", ".npy", ".h5"))
    outputs = [output_dir / (Path(f).stem + ".png") for f in files]
    start_jvm(imagej)
    written = apply_lut_imagej_batch(files, outputs, lut, overwrite=overwrite)
    click.echo(f"{len(written)} written, {len(files) - len(written)} skipped (exist) in {output_dir}")


@cli.command("prepare-home")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to set up (default: pyquint's cache, or $PYQUINT_IMAGEJ_HOME).")
@click.option("--fiji-luts", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Also copy these *.lut files (e.g. Fiji.app/luts).")
def prepare_home_cmd(home: Path | None, fiji_luts: Path | None) -> None:
    """Create an ImageJ home (plugins/ + luts/ with pyquint's Glasbey LUTs) and print its path.

    Use it with plain ij.jar: java -Dplugins.dir=HOME -jar ij.jar -batch macro.ijm "args".
    """
    click.echo(str(prepare_home(home, fiji_luts=fiji_luts)))
