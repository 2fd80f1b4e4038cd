"""Real ImageJ/Fiji from Python: discovery, an in-process Java API backend, macro runs.

* :func:`find_imagej` / :func:`imagej_info`: which ImageJ, Java and Xvfb are there.
* :func:`apply_lut_imagej` / :func:`apply_lut_imagej_batch`: ImageJ's own ``LutLoader`` and
  PNG writer in this process's one JVM (headless, JPype).
* :func:`run_macro`: a macro in an ImageJ subprocess (``-batch`` under Xvfb), with a timeout,
  its output captured and ImageJ's error messages raised as :class:`~pyquint.errors.ImageJError`.
* :func:`init_pyimagej`: an ImageJ2 gateway for a local Fiji.app (pyimagej, imported lazily).

Nothing here imports Java or starts a JVM at import time.
"""

from __future__ import annotations

import os
import shutil
import sys

from ..errors import ImageJError
from .api import (
    apply_lut_imagej,
    apply_lut_imagej_batch,
    array_to_imageplus,
    imageplus_to_array,
    open_lut_imagej,
    read_image_imagej,
)
from .discovery import INSTALL_HINT, ImageJInstall, find_imagej, find_java, find_xvfb
from .jvm import init_pyimagej, jvm_running, start_jvm
from .params import bind_script_parameters, pack_args, parse_script_parameters
from .runner import MacroResult, default_home, macro_command, prepare_home, run_macro

__all__ = [
    "INSTALL_HINT",
    "ImageJInstall",
    "MacroResult",
    "apply_lut_imagej",
    "apply_lut_imagej_batch",
    "array_to_imageplus",
    "bind_script_parameters",
    "default_home",
    "find_imagej",
    "find_java",
    "find_xvfb",
    "imageplus_to_array",
    "imagej_info",
    "init_pyimagej",
    "jvm_running",
    "macro_command",
    "open_lut_imagej",
    "pack_args",
    "parse_script_parameters",
    "prepare_home",
    "read_image_imagej",
    "run_macro",
    "start_jvm",
]


def _module_version(name: str) -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def imagej_info(path: str | os.PathLike | None = None) -> dict:
    """What pyquint can use to drive ImageJ, without starting Java.

    Returns a dict with ``imagej`` (kind, jar, version, root, source, luts, launcher or an
    ``error``), ``java``, ``xvfb_run``, ``display``, the Python bridges (``jpype1``,
    ``scyjava``, ``pyimagej`` versions or None), ``macro_engine`` (what :func:`run_macro`
    would use), ``home`` (the ImageJ home for macro runs) and ``problems`` (what to install).
    """
    problems: list[str] = []
    info: dict = {}
    install = None
    try:
        install = find_imagej(path)
        info["imagej"] = {
            "kind": install.kind,
            "jar": str(install.ij_jar),
            "version": install.version,
            "root": str(install.root) if install.root else None,
            "source": install.source,
            "luts": str(install.luts_dir) if install.luts_dir else None,
            "launcher": str(install.launcher) if install.launcher else None,
        }
    except ImageJError as exc:
        info["imagej"] = {"error": str(exc)}
        problems.append(str(exc))
    try:
        info["java"] = str(find_java(None, install))
    except ImageJError as exc:
        info["java"] = None
        problems.append(str(exc))
    xvfb = find_xvfb()
    info["xvfb_run"] = str(xvfb) if xvfb else None
    info["display"] = os.environ.get("DISPLAY") or None
    if xvfb is None and not info["display"]:
        problems.append("no xvfb-run and no DISPLAY: macros that open images cannot run "
                        "(apt-get install xvfb xauth)")
    info["jpype1"] = _module_version("JPype1")
    info["scyjava"] = _module_version("scyjava")
    info["pyimagej"] = _module_version("pyimagej")
    if info["jpype1"] is None:
        problems.append("JPype is not installed (pip install jpype1): no in-process ImageJ, "
                        "and macro errors are only caught by the timeout")
    info["macro_engine"] = "worker" if info["jpype1"] else "java"
    info["home"] = str(install.root) if install is not None and install.root else str(default_home())
    info["python"] = sys.executable
    info["pyquint_cli"] = shutil.which("pyquint")
    info["problems"] = problems
    return info
