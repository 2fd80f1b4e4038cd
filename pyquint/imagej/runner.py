"""Run ImageJ macros (.ijm) in a subprocess: always a timeout, output captured, errors raised.

Engines:

``"worker"`` (default with plain ij.jar)
    ``xvfb-run -a python -m pyquint.imagej._worker ... macro.ijm`` -- ImageJ 1.x in a JVM
    started by JPype under Xvfb, run like ``-batch``; a watchdog reports ImageJ's dialogs
    (macro errors, unknown commands) as :class:`ImageJError` with ImageJ's message, at once.
``"java"``
    ``xvfb-run -a java -Dplugins.dir=<home> -jar ij.jar -batch macro.ijm "arg"`` -- the plain
    command line (what users type); a macro error there is a modal dialog, so only the timeout
    ends it.
``"fiji"``
    ``<Fiji launcher> --headless --run macro.ijm 'key="value",...'`` for Fiji-flavour scripts
    (``#@`` parameters); needs a Fiji.app (not available where pyquint is tested).

Whatever happens, the process group is killed when ``timeout`` seconds have passed.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImageJError, InputError
from ..io import atomic_output
from ..lut import GLASBEY_VARIANTS, glasbey_lut
from .discovery import (
    XVFB_HINT,
    ImageJInstall,
    find_imagej,
    find_java,
    find_xvfb,
    jvm_library,
)
from .params import bind_script_parameters, fiji_args, has_script_parameters, pack_args

__all__ = ["MacroResult", "default_home", "macro_command", "prepare_home", "run_macro"]

_XVFB_SCREEN = "-screen 0 1280x1024x24"


@dataclass
class MacroResult:
    """What a macro run produced.

    Attributes
    ----------
    output : str
        Everything the macro printed (``print``/``IJ.log`` go to stdout in batch mode).
    stderr : str
        Java's and the launcher's error stream.
    value : str or None
        The macro's return value (``IJ.runMacroFile``), worker engine only.
    seconds : float
        Wall time of the whole subprocess.
    command : list of str
        The command that was run.
    """

    output: str
    stderr: str
    value: str | None
    seconds: float
    command: list[str]

    @property
    def log(self) -> str:
        """Alias of :attr:`output` (ImageJ's Log window in a GUI session)."""
        return self.output


# --------------------------------------------------------------------------- ImageJ home
def default_home() -> Path:
    """``$PYQUINT_IMAGEJ_HOME``, else ``$XDG_CACHE_HOME/pyquint/imagej-home`` (~/.cache)."""
    if os.environ.get("PYQUINT_IMAGEJ_HOME"):
        return Path(os.environ["PYQUINT_IMAGEJ_HOME"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "pyquint" / "imagej-home"


def _write_if_changed(path: Path, data: bytes) -> None:
    if path.is_file() and path.read_bytes() == data:
        return
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def prepare_home(
    home: str | os.PathLike | None = None,
    *,
    luts: Mapping[str, object] | None = None,
    fiji_luts: str | os.PathLike | None = None,
    glasbey: bool = True,
) -> Path:
    """Create an ImageJ home for macro runs with plain ij.jar: ``<home>/plugins/`` + ``<home>/luts/``.

    ImageJ 1.53t only treats ``-Dplugins.dir=<home>`` as its home when ``<home>/plugins``
    exists; ``run("Glasbey")`` then finds ``<home>/luts/glasbey.lut``.

    Parameters
    ----------
    home : path, optional
        Default :func:`default_home`.
    luts : mapping, optional
        Extra LUTs by file stem: a LUT file path, a ``pyquint.lut.Lut`` or a (256, 3) table
        (written as raw 768-byte files, ImageJ's own LUT format).
    fiji_luts : path, optional
        A folder of ``*.lut`` files (e.g. ``Fiji.app/luts``) copied over pyquint's own.
    glasbey : bool
        Write pyquint's generated Glasbey LUTs (needs :mod:`pyquint.lut`).
    """
    home = Path(home) if home is not None else default_home()
    (home / "plugins").mkdir(parents=True, exist_ok=True)
    lut_dir = home / "luts"
    lut_dir.mkdir(parents=True, exist_ok=True)
    tables: dict[str, object] = {}
    if glasbey:
        for variant in GLASBEY_VARIANTS:
            tables[variant] = glasbey_lut(variant)
    tables.update(luts or {})
    for name, lut in tables.items():
        if isinstance(lut, (str, os.PathLike)):
            src = Path(lut)
            if not src.is_file():
                raise InputError(f"{src}: no such LUT file")
            _write_if_changed(lut_dir / f"{name}.lut", src.read_bytes())
            continue
        table = np.asarray(getattr(lut, "table", lut), dtype=np.uint8)
        if table.shape != (256, 3):
            raise InputError(f"LUT {name!r}: a table must have shape (256, 3), not {table.shape}")
        _write_if_changed(lut_dir / f"{name}.lut", np.ascontiguousarray(table.T).tobytes())
    if fiji_luts is not None:
        src_dir = Path(fiji_luts)
        if not src_dir.is_dir():
            raise InputError(f"{src_dir}: no such folder of LUT files")
        for src in sorted(src_dir.glob("*.lut")):
            _write_if_changed(lut_dir / src.name, src.read_bytes())
    return home


# --------------------------------------------------------------------------- commands
def _macro_file(macro: str | os.PathLike, stack: contextlib.ExitStack) -> tuple[Path, str]:
    """(file, text) for a macro given as a path or as macro text."""
    if isinstance(macro, os.PathLike) or (
        isinstance(macro, str) and "\n" not in macro and macro.strip().endswith((".ijm", ".txt"))
    ):
        path = Path(macro)
        if not path.is_file():
            raise InputError(f"{path}: no such macro file")
        return path.resolve(), path.read_text(encoding="utf-8", errors="replace")
    tmpdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyquint-macro-")))
    path = tmpdir / "macro.ijm"
    path.write_text(macro, encoding="utf-8")
    return path, macro


def _choose_engine(engine: str, install: ImageJInstall, fiji_script: bool) -> str:
    if engine not in ("auto", "worker", "java", "fiji"):
        raise InputError(f"unknown engine {engine!r}; use auto, worker, java or fiji")
    if engine != "auto":
        return engine
    if fiji_script and install.launcher is not None:
        return "fiji"
    try:
        import jpype  # noqa: F401
    except ImportError:
        return "java"
    return "worker"


def _xvfb_prefix(xvfb: bool | str) -> list[str]:
    if xvfb == "auto":
        if find_xvfb() is not None:
            return [str(find_xvfb()), "-a", "-s", _XVFB_SCREEN]
        if os.environ.get("DISPLAY"):
            return []
        raise ImageJError(XVFB_HINT)
    if xvfb:
        if find_xvfb() is None:
            raise ImageJError(XVFB_HINT)
        return [str(find_xvfb()), "-a", "-s", _XVFB_SCREEN]
    return []


def macro_command(
    macro_file: str | os.PathLike,
    arg: str = "",
    *,
    imagej: ImageJInstall | str | os.PathLike | None = None,
    home: str | os.PathLike | None = None,
    java: str | os.PathLike | None = None,
    memory: str | None = None,
    xvfb: bool | str = "auto",
) -> list[str]:
    """The plain shell command that runs a macro in ImageJ 1.x ``-batch`` mode::

        xvfb-run -a java -Dplugins.dir=<home> -jar ij.jar -batch macro.ijm "arg"
    """
    install = imagej if isinstance(imagej, ImageJInstall) else find_imagej(imagej)
    home = Path(home) if home is not None else (install.root or prepare_home())
    cmd = [str(find_java(java, install)), f"-Dplugins.dir={home}", *CRASH_OPTIONS]
    if memory:
        cmd.append(f"-Xmx{memory}")
    cmd += ["-jar", str(install.ij_jar), "-batch", str(macro_file)]
    if arg:
        cmd.append(arg)
    return _xvfb_prefix(xvfb) + cmd


def run_macro(
    macro: str | os.PathLike,
    args: str | Sequence[object] | Mapping[str, object] | None = None,
    *,
    timeout: float = 600.0,
    imagej: ImageJInstall | str | os.PathLike | None = None,
    home: str | os.PathLike | None = None,
    java: str | os.PathLike | None = None,
    memory: str | None = None,
    engine: str = "auto",
    xvfb: bool | str = "auto",
    aborted_ok: bool = False,
) -> MacroResult:
    """Run an ImageJ macro in a subprocess and return what it printed.

    Parameters
    ----------
    macro : path or str
        A macro file (``.ijm``/``.txt``) or the macro's text. Fiji-flavour scripts (``#@``
        parameters) run on plain ImageJ too: their parameters are bound from ``args``
        (a mapping) by :func:`~pyquint.imagej.params.bind_script_parameters`.
    args : str, sequence or mapping, optional
        ``getArgument()`` of the macro: a string as is, a sequence joined with ``|``, a
        mapping as ``key=value|...`` (pyquint's generated macros accept both forms).
    timeout : float
        Seconds before the whole process group (Xvfb, Java) is killed; then ImageJError.
    imagej : ImageJInstall or path, optional
        Which ImageJ (default :func:`~pyquint.imagej.find_imagej`).
    home : path, optional
        ImageJ home (``plugins/`` + ``luts/``): default Fiji.app itself, else
        :func:`prepare_home` (pyquint's Glasbey LUTs in a cache folder).
    java : path, optional
        The ``java`` executable (default :func:`~pyquint.imagej.find_java`).
    memory : str, optional
        Java heap limit, e.g. ``"4g"``.
    engine : {"auto", "worker", "java", "fiji"}
        See the module docstring.
    xvfb : {"auto", True, False}
        Wrap in ``xvfb-run -a``; "auto" does so when available, else needs ``DISPLAY``.
    aborted_ok : bool
        Treat a macro that stopped via ``exit`` as success (default: an error carrying the
        message it printed).

    Raises
    ------
    ImageJError
        ImageJ missing, the macro failed (ImageJ's message included), or the timeout passed.
    """
    if timeout <= 0:
        raise InputError(f"timeout must be positive, not {timeout}")
    install = imagej if isinstance(imagej, ImageJInstall) else find_imagej(imagej)
    with contextlib.ExitStack() as stack:
        macro_path, text = _macro_file(macro, stack)
        fiji_script = has_script_parameters(text)
        engine = _choose_engine(engine, install, fiji_script)
        if engine == "fiji":
            if install.launcher is None:
                raise ImageJError(f"engine 'fiji' needs a Fiji.app with its launcher, not {install.ij_jar}")
            params = args if isinstance(args, Mapping) else {}
            cmd = [str(install.launcher), "--headless", "--run", str(macro_path), fiji_args(params)]
            return _run(cmd, timeout, None, stack)
        arg = "" if fiji_script and isinstance(args, Mapping) else pack_args(args)
        if fiji_script:
            bound = bind_script_parameters(text, args if isinstance(args, Mapping) else {})
            tmpdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyquint-macro-")))
            macro_path = tmpdir / "macro.ijm"
            macro_path.write_text(bound, encoding="utf-8")
        if home is None:
            home = install.root if install.root is not None else prepare_home()
        if engine == "java":
            cmd = macro_command(macro_path, arg, imagej=install, home=home, java=java,
                                memory=memory, xvfb=xvfb)
            return _run(cmd, timeout, None, stack)
        java_exe = find_java(java, install)
        lib = jvm_library(java_exe)
        if lib is None:
            raise ImageJError(f"cannot find the JVM library belonging to {java_exe}")
        result_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyquint-ij-")))
        result_file = result_dir / "result.json"
        cmd = _xvfb_prefix(xvfb) + [
            # Run as a script, not -m: importing the pyquint package would only cost time.
            sys.executable, str(Path(__file__).with_name("_worker.py")), "--jvm", str(lib),
            "--home", str(home), "--result", str(result_file),
        ]
        # ImageJ 1.x loads plugin jars from plugins.dir itself: ij.jar alone is the classpath.
        cmd.append(f"--classpath={install.ij_jar}")
        cmd += [f"--option={o}" for o in CRASH_OPTIONS]
        if memory:
            cmd.append(f"--option=-Xmx{memory}")
        if arg:
            cmd.append(f"--arg={arg}")
        cmd.append(str(macro_path))
        return _run(cmd, timeout, result_file, stack, aborted_ok=aborted_ok)


#: A crashing JVM writes its report into the temp folder, never into the user's folder.
CRASH_LOG = os.path.join(tempfile.gettempdir(), "pyquint-hs_err_pid%p.log")
CRASH_OPTIONS = (f"-XX:ErrorFile={CRASH_LOG}", "-XX:-CreateCoredumpOnCrash")


def _crash_message(cmd: list[str], returncode: int, text: str) -> str | None:
    """One line for a JVM that died (a signal, or HotSpot's fatal-error report), else None."""
    if not (returncode < 0 or returncode in (134, 137, 139)
            or "A fatal error has been detected by the Java Runtime" in text):
        return None
    jar = next((a.split("=", 1)[1] for a in cmd if a.startswith("--classpath=")), None)
    if jar is None and "-jar" in cmd:
        jar = cmd[cmd.index("-jar") + 1]
    java = cmd[cmd.index("--jvm") + 1] if "--jvm" in cmd[:-1] else None
    if java is None:
        java = next((a for a in cmd if os.path.basename(a) in ("java", "java.exe")), "java")
    return (f"ImageJ's Java process crashed (exit status {returncode}) running {jar} with {java}; "
            f"check the jar (unzip -t {jar}) and Java (java -version); crash report: "
            f"{CRASH_LOG.replace('%p', '*')}")


def _no_result_message(cmd: list[str], returncode: int, text: str) -> str:
    """One line for a worker that ended before reporting: the Java/Python error that ended it."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    causes = [ln for ln in lines if re.search(r"(Error|Exception)\b.*:\s*\S", ln)
              and "JVMNotRunning" not in ln and not ln.startswith(("File ", "Exception in thread"))]
    cause = (causes[-1] if causes else lines[-1] if lines else "no output")[:300]
    jar = next((a.split("=", 1)[1] for a in cmd if a.startswith("--classpath=")), "ij.jar")
    return (f"ImageJ ended without a result (exit status {returncode}): {cause}; check the jar "
            f"(unzip -t {jar}) and Java (java -version)")


def _tail(text: str, n: int = 2000) -> str:
    text = text.strip()
    return text if len(text) <= n else "..." + text[-n:]


def _run(
    cmd: list[str],
    timeout: float,
    result_file: Path | None,
    stack: contextlib.ExitStack,
    *,
    aborted_ok: bool = False,
) -> MacroResult:
    import json

    env = dict(os.environ)
    env.setdefault("PYQUINT_NO_PROGRESS", "1")
    # Safety net: if this Python process dies, coreutils' timeout still kills the orphaned
    # process group (a hung ImageJ would otherwise wait on its dialog forever).
    if shutil.which("timeout"):
        cmd = ["timeout", "-s", "KILL", str(int(math.ceil(timeout)) + 10), *cmd]
    start = time.monotonic()
    for attempt in range(2):
        try:
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env, text=True, errors="replace",
            )
        except OSError as exc:
            raise ImageJError(f"cannot run {cmd[0]}: {exc}") from exc
        try:
            out, err = proc.communicate(timeout=max(0.1, timeout - (time.monotonic() - start)))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            raise ImageJError(
                f"ImageJ did not finish within {timeout:g} s and was killed (a dialog waiting for "
                f"input, or too little time). Output so far:\n{_tail(out + err)}"
            ) from None
        finally:
            if proc.poll() is None:
                _kill_group(proc)
        # xvfb-run -a can lose a race for a display number with a parallel run: retry once.
        if attempt == 0 and proc.returncode != 0 and "Xvfb failed to start" in err:
            continue
        break
    seconds = time.monotonic() - start
    crash = _crash_message(cmd, proc.returncode, out + err)
    if crash and (result_file is None or not result_file.is_file()):
        raise ImageJError(crash)
    result = MacroResult(out, err, None, seconds, cmd)
    if result_file is None:
        if proc.returncode != 0 or "HeadlessException" in out + err:
            raise ImageJError(f"ImageJ failed (exit status {proc.returncode}):\n{_tail(out + err)}")
        return result
    if not result_file.is_file():
        raise ImageJError(_no_result_message(cmd, proc.returncode, out + err))
    status = json.loads(result_file.read_text(encoding="utf-8"))
    result.value = status.get("value")
    kind = status["status"]
    if kind == "ok" or (kind == "aborted" and aborted_ok):
        return result
    if kind == "aborted":
        lines = [ln for ln in out.splitlines() if ln.strip()]
        message = lines[-1] if lines else "(no message)"
        raise ImageJError(f"ImageJ macro stopped: {message}\nOutput:\n{_tail(out)}")
    text = status.get("text", "").strip()
    title = status.get("title", "")
    raise ImageJError(f"ImageJ error ({title}): {text}" + (f"\nOutput:\n{_tail(out)}" if out.strip() else ""))


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
