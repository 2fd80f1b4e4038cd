"""One JVM per process, started headless with ImageJ on its classpath.

Plain JPype is used (it never downloads anything, unlike scyjava's default ``fetch="always"``).
A JVM cannot be restarted or given a new classpath once running, so the first caller decides
which ImageJ this process uses; later calls reuse it. If some other library (scyjava,
pyimagej) already started a JVM, it is reused when ``ij.IJ`` can be loaded from it.

pyimagej is imported lazily, only by :func:`init_pyimagej` for a Fiji installation.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from ..errors import ImageJError
from .discovery import ImageJInstall, find_imagej, find_java, jvm_library
from .runner import CRASH_OPTIONS

__all__ = ["ij_class", "init_pyimagej", "jvm_install", "jvm_running", "start_jvm"]

_LOCK = threading.Lock()
_STARTED: dict[str, Any] = {}


def _jpype():
    try:
        import jpype
    except ImportError as exc:
        raise ImageJError(
            "the in-process ImageJ backend needs JPype: `pip install jpype1` "
            "(or `pip install pyquint[imagej]`)"
        ) from exc
    return jpype


def jvm_running() -> bool:
    """True when a JVM is running in this process (started by pyquint or anyone else)."""
    try:
        import jpype
    except ImportError:
        return False
    return bool(jpype.isJVMStarted())


def jvm_install() -> ImageJInstall | None:
    """The installation the running JVM was started with by pyquint (None otherwise)."""
    return _STARTED.get("install")


def start_jvm(
    imagej: ImageJInstall | str | os.PathLike | None = None,
    *,
    java: str | os.PathLike | None = None,
    options: tuple[str, ...] = (),
) -> ImageJInstall | None:
    """Start this process's JVM headless with ImageJ on the classpath (once).

    Parameters
    ----------
    imagej : ImageJInstall or path, optional
        Which ImageJ to load (default: :func:`find_imagej`). Ignored when the JVM is running.
    java : path, optional
        A ``java`` executable whose JVM library to load (default: :func:`find_java`).
    options : tuple of str
        Extra JVM options such as ``"-Xmx4g"``.

    Returns
    -------
    ImageJInstall or None
        The installation in use (None if another library started the JVM).
    """
    jpype = _jpype()
    with _LOCK:
        if jpype.isJVMStarted():
            _check_ij_loadable(jpype, _STARTED.get("install"))
            _STARTED["ready"] = True
            return _STARTED.get("install")
        install = imagej if isinstance(imagej, ImageJInstall) else find_imagej(imagej)
        java_exe = find_java(java, install)
        lib = jvm_library(java_exe)
        if lib is None:
            try:
                lib = jpype.getDefaultJVMPath()
            except Exception as exc:  # JVMNotFoundException and friends
                raise ImageJError(f"cannot find the JVM library of {java_exe}: {exc}") from exc
        args = ["-Djava.awt.headless=true", *CRASH_OPTIONS, *options]
        if install.root is not None:
            args.append(f"-Dplugins.dir={install.root / 'plugins'}")
        try:
            jpype.startJVM(str(lib), *args, classpath=install.classpath(), convertStrings=False)
        except OSError as exc:
            raise ImageJError(f"could not start Java ({lib}): {exc}") from exc
        _STARTED["install"] = install
        _release_creating_thread(jpype)
        _check_ij_loadable(jpype, install)
        _STARTED["ready"] = True
        return install


def _release_creating_thread(jpype) -> None:
    """Let the process exit even when the JVM was started off the main thread.

    The thread that calls ``startJVM`` becomes the JVM's non-daemon "main" thread. When it is
    a worker (a ``ThreadPoolExecutor`` thread in a batch) it ends without detaching, and at
    exit JPype's ``shutdownJVM`` -> ``DestroyJavaVM`` waits for it for ever. Detaching it
    right away fixes that: JPype re-attaches it on its next Java call, as a daemon thread,
    like every other Python thread that calls Java.
    """
    if threading.current_thread() is not threading.main_thread():
        try:
            jpype.java.lang.Thread.detach()
        except AttributeError:  # pragma: no cover - JPype before the Thread customizer
            jpype.detachThreadFromJVM()


def _check_ij_loadable(jpype, started: ImageJInstall | None = None) -> None:
    try:
        jpype.JClass("ij.IJ")
    except Exception as exc:
        if started is not None:  # we started this JVM: the jar itself is the problem
            raise ImageJError(
                f"{started.ij_jar}: Java started but cannot load ImageJ from this jar "
                f"({type(exc).__name__}); it is damaged or not ImageJ; check it with "
                f"unzip -t {started.ij_jar}"
            ) from exc
        raise ImageJError(
            "a JVM is already running in this process without ImageJ on its classpath; "
            "ImageJ must be chosen before the first JVM start (one JVM per process)"
        ) from exc


def ij_class(name: str):
    """A Java class from the running ImageJ JVM (starting it if needed), e.g. ``"ij.IJ"``."""
    jpype = _jpype()
    # not isJVMStarted(): it turns true while another thread is still inside startJVM, and a
    # class or array made then fails ("Java class required"); start_jvm waits for that start
    if not _STARTED.get("ready"):
        start_jvm()
    return jpype.JClass(name)


def init_pyimagej(fiji: ImageJInstall | str | os.PathLike | None = None, mode: str = "headless"):
    """An ImageJ2 gateway (pyimagej) for a local Fiji.app, started without network access.

    The JVM is started first with Fiji's jars (so pyimagej neither downloads Java nor resolves
    Maven endpoints), then ``imagej.init(fiji_dir, mode=mode)`` builds the gateway.
    Needs ``pip install pyimagej`` and a real Fiji.app (untested here: no Fiji on CI).
    """
    install = fiji if isinstance(fiji, ImageJInstall) else find_imagej(fiji)
    if install.root is None:
        raise ImageJError(
            f"pyimagej needs a Fiji.app folder, not a bare ij.jar ({install.ij_jar}); "
            "set PYQUINT_FIJI=/path/to/Fiji.app"
        )
    start_jvm(install)
    try:
        import imagej  # noqa: PLC0415 - lazy: importing it registers Maven endpoints
    except ImportError as exc:
        raise ImageJError("pyimagej is not installed: `pip install pyimagej`") from exc
    try:
        return imagej.init(str(install.root), mode=mode)
    except Exception as exc:
        raise ImageJError(f"pyimagej could not start Fiji at {install.root}: {exc}") from exc
