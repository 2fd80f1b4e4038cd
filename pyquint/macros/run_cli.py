"""Run the pyquint CLI for an ImageJ macro's ``exec()`` (``python -m pyquint.macros.run_cli``).

ImageJ's ``exec(a, b, ...)`` returns only the program's stdout, never its exit status, and
does not drain stderr (a chatty program could block on a full pipe). This wrapper therefore
sends stderr to stdout, turns progress bars off and ends with one status line the macro can
test::

    [pyquint exit status 0]
    [pyquint exit status 2] Error: model.h5: no such file

Usage (argument order fixed so a macro can call it with a fixed number of arguments)::

    python -m pyquint.macros.run_cli "COMMAND WORDS" "OPTIONS" [ARG ...]

``COMMAND WORDS`` are split on spaces (``"pixel predict"``); ``OPTIONS`` is split like a
shell would (``'--export-source "Simple Segmentation"'``); each further ``ARG`` is passed
as one argument, except empty ones and ``--name=`` with an empty value, which are dropped
(so a macro can leave optional values blank).

The CLI runs in a child process (``python -m pyquint``): this module sits below the CLI in
pyquint's layers and never imports it; the child's output is passed through line by line.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

STATUS_PREFIX = "[pyquint exit status "
_EMPTY_OPTION = re.compile(r"^--[\w-]+=$")


def build_argv(command: str, options: str, args: list[str]) -> list[str]:
    """The pyquint CLI argv for ``command``, ``options`` and positional ``args``."""
    argv = command.split()
    argv += [a for a in args if a != "" and not _EMPTY_OPTION.match(a)]
    argv += shlex.split(options)
    return argv


class _Recorder:
    """A text stream that writes through and keeps what was written (to find the error)."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.text: list[str] = []

    def write(self, s: str) -> int:
        self.text.append(s if isinstance(s, str) else bytes(s).decode(errors="replace"))
        return self._stream.write(s)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _run_child(cli_argv: list[str]) -> int:
    """Run ``python -m pyquint ARGV``, echoing its merged stdout/stderr as it comes."""
    child = subprocess.Popen([sys.executable, "-m", "pyquint", *cli_argv], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             errors="replace", bufsize=1, env=os.environ.copy())
    try:
        assert child.stdout is not None
        for line in child.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
        status = child.wait()
        return 128 - status if status < 0 else status  # killed by signal N: the shell's 128 + N
    except BaseException:  # the macro (or a user) stopped us: stop the CLI too, never orphan it
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
        raise


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # ImageJ reads only stdout: merge stderr into it at the file-descriptor level too.
    sys.stdout.flush()
    os.dup2(1, 2)
    recorder = _Recorder(sys.stdout)
    sys.stdout = sys.stderr = recorder  # type: ignore[assignment]
    os.environ["PYQUINT_NO_PROGRESS"] = "1"
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    if len(argv) < 2:
        print("usage: python -m pyquint.macros.run_cli 'COMMAND WORDS' 'OPTIONS' [ARG ...]")
        print(f"{STATUS_PREFIX}2] Error: missing COMMAND and OPTIONS")
        return 2
    cli_argv = build_argv(argv[0], argv[1], argv[2:])
    print("pyquint " + " ".join(shlex.quote(a) for a in cli_argv), flush=True)
    try:
        status = _run_child(cli_argv)
    except OSError as exc:  # report anything to the macro, never hang
        print(f"Error: cannot start {sys.executable} -m pyquint: {exc}")
        status = 1
    sys.stdout.flush()
    summary = f"{STATUS_PREFIX}{status}]"
    if status != 0:
        lines = [ln.strip() for ln in "".join(recorder.text).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("Error")]
        summary += " " + (errors[-1] if errors else lines[-1] if lines else "failed")
    print(summary, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
