"""``pyquint macro``: generate ImageJ macros (.ijm) for Fiji or headless ImageJ batch runs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..macros import FLAVOURS, MACROS, generate_macro, macro_filename, regenerate_macros


@click.group("macro")
def cli() -> None:
    """Generate ImageJ macros (.ijm) that do pyquint's steps inside ImageJ/Fiji.

    Each macro comes in two flavours: `ij1` (plain ImageJ 1.x macro language; values
    templated in, overridable via the -batch argument "key=value|key=value") and `fiji`
    (#@ script parameters: a dialog in Fiji's script editor, or
    `--headless --run macro.ijm 'inDir="..."'`). Print to stdout or save with -o:

    \b
      pyquint macro glasbey-batch --flavour ij1 --in-dir seg --out-dir nutil > glasbey.ijm
      pyquint macro list
      pyquint macro regenerate --out imagej_macros
    """


@cli.command("list")
def list_cmd() -> None:
    """List the macros pyquint can generate."""
    for spec in MACROS.values():
        click.echo(f"{spec.name:18s} {spec.title}")


@cli.command("regenerate")
@click.option("--out", "out_dir", default="imagej_macros", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder for <flavour>/<name>.ijm files (default parameters).")
@click.option("--check", is_flag=True,
              help="Write nothing; exit with status 1 if any file in --out is missing or outdated.")
def regenerate_cmd(out_dir: Path, check: bool) -> None:
    """Write every macro in both flavours into a folder (the repository's imagej_macros/)."""
    if check:
        stale = [
            macro_filename(name, flavour)
            for name in MACROS for flavour in FLAVOURS
            if not (out_dir / macro_filename(name, flavour)).is_file()
            or (out_dir / macro_filename(name, flavour)).read_text(encoding="utf-8")
            != generate_macro(name, flavour)
        ]
        if stale:
            raise click.ClickException(
                f"outdated or missing in {out_dir}: {', '.join(stale)} "
                f"(run `pyquint macro regenerate --out {out_dir}`)"
            )
        click.echo(f"{out_dir}: all {len(MACROS) * len(FLAVOURS)} macros are current")
        return
    for path in regenerate_macros(out_dir):
        click.echo(str(path))


def _option_name(name: str) -> str:
    return "--" + "".join("-" + c.lower() if c.isupper() else c for c in name)


def _make_command(spec) -> click.Command:
    def run(flavour: str, output: Path | None, **kwargs) -> None:
        params = {key: value for key, value in kwargs.items() if value is not None}
        if any(p.name == "python" for p in spec.params) and "python" not in params:
            params["python"] = sys.executable  # the Python running this pyquint
        text = generate_macro(spec.name, flavour, **params)
        if output is None:
            click.echo(text, nl=False)
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8", newline="\n")
            click.echo(f"wrote {output}", err=True)

    params: list[click.Parameter] = [
        click.Option(["--flavour", "--flavor"], type=click.Choice(FLAVOURS), default="ij1", show_default=True,
                     help="ij1: plain ImageJ 1.x (getArgument); fiji: #@ script parameters."),
        click.Option(["-o", "--output"], type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Write the macro to this file instead of stdout."),
    ]
    for p in spec.params:
        option = _option_name(p.name)
        default_text = f" [default: {p.default}]" if p.default not in ("", None) else ""
        if p.name == "python":
            default_text = " [default: this Python]"
        if p.kind == "bool":
            params.append(click.Option([f"{option}/--no-{option[2:]}", p.name], default=None,
                                       help=p.help + f" [default: {'yes' if p.default else 'no'}]"))
            continue
        kind = {"float": float, "int": int}.get(p.kind, str)
        if p.kind == "choice":
            kind = click.Choice(p.choices)
        params.append(click.Option([option, p.name], type=kind, default=None, help=p.help + default_text))
    description = spec.description.replace("\n", " ")
    return click.Command(
        spec.name, callback=run, params=params,
        help=f"{spec.title[0].upper()}{spec.title[1:]}.\n\n{description}",
        short_help=spec.title,
    )


for _spec in MACROS.values():
    cli.add_command(_make_command(_spec))
