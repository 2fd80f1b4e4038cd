"""Find an ImageJ/Fiji installation, a Java runtime and Xvfb; report what is there.

Discovery order of :func:`find_imagej` (first match wins):

1. the explicit ``path`` argument (a ``Fiji.app`` folder or an ``ij*.jar`` file);
2. ``PYQUINT_FIJI``, then ``FIJI_HOME`` (a ``Fiji.app`` folder);
3. ``PYQUINT_IJ_JAR`` (an ``ij.jar``);
4. a ``Fiji.app`` in the usual places (``~/Fiji.app``, ``/opt/Fiji.app``, ``/Applications``, ...);
5. the system ``ij.jar`` (Debian/Ubuntu package ``libij-java``: ``/usr/share/java/ij.jar``).

An environment variable that is set but points at nothing usable is an error (not silently
skipped), so a typo never makes pyquint run a different ImageJ than the one asked for.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ImageJError

__all__ = [
    "INSTALL_HINT",
    "ImageJInstall",
    "find_imagej",
    "find_java",
    "find_xvfb",
    "jvm_library",
]

INSTALL_HINT = (
    "Install ImageJ and Java, e.g. on Debian/Ubuntu (as root): "
    "`apt-get install default-jre-headless libij-java xvfb xauth` (or `make install-imagej`); "
    "or download Fiji (https://fiji.sc) and set PYQUINT_FIJI=/path/to/Fiji.app; "
    "or point PYQUINT_IJ_JAR at an ij.jar."
)
JAVA_HINT = (
    "No Java runtime found: install one (Debian/Ubuntu: `apt-get install default-jre-headless`), "
    "or set JAVA_HOME / PYQUINT_JAVA to a Java installation."
)
XVFB_HINT = (
    "ImageJ macros that open or save images need a display: install Xvfb "
    "(Debian/Ubuntu: `apt-get install xvfb xauth`) or run where DISPLAY is set."
)

# Module-level so tests (and unusual systems) can change where pyquint looks.
SYSTEM_JARS: tuple[str, ...] = ("/usr/share/java/ij.jar", "/usr/share/imagej/ij.jar")
FIJI_LOCATIONS: tuple[str, ...] = (
    "~/Fiji.app", "~/fiji/Fiji.app", "~/Applications/Fiji.app", "/Applications/Fiji.app",
    "/opt/Fiji.app", "/opt/fiji/Fiji.app", "/usr/local/Fiji.app",
)
JAVA_CANDIDATES: tuple[str, ...] = ("java",)

_VERSION_RE = re.compile(rb"1\.[0-9]{2}[a-z][0-9]*")


@dataclass(frozen=True)
class ImageJInstall:
    """An ImageJ installation pyquint can use.

    Attributes
    ----------
    kind : {"fiji", "ij1"}
        ``"fiji"`` for a Fiji.app folder, ``"ij1"`` for a bare ``ij.jar``.
    ij_jar : Path
        The ImageJ 1.x jar (``Fiji.app/jars/ij-1.54f.jar`` or ``/usr/share/java/ij.jar``).
    root : Path or None
        The Fiji.app folder (None for a bare jar).
    source : str
        How it was found (``"argument"``, ``"PYQUINT_FIJI"``, ``"system"``, ...).
    """

    kind: str
    ij_jar: Path
    root: Path | None = None
    source: str = "argument"
    _version: list = field(default_factory=list, compare=False, repr=False)

    @property
    def version(self) -> str | None:
        """ImageJ 1.x version (e.g. ``"1.53t"``) read from the jar without starting Java."""
        if not self._version:
            self._version.append(_jar_version(self.ij_jar))
        return self._version[0]

    @property
    def luts_dir(self) -> Path | None:
        """The installation's own ``luts/`` folder (Fiji ships the Glasbey LUTs there)."""
        if self.root is not None and (self.root / "luts").is_dir():
            return self.root / "luts"
        return None

    @property
    def launcher(self) -> Path | None:
        """Fiji's launcher executable (for ``--headless --run`` of ``#@`` scripts), if any."""
        if self.root is None:
            return None
        names = {
            "Linux": ("fiji-linux-x64", "ImageJ-linux64", "fiji"),
            "Darwin": ("Contents/MacOS/fiji-macos", "Contents/MacOS/ImageJ-macosx", "fiji"),
            "Windows": ("fiji-windows-x64.exe", "ImageJ-win64.exe", "fiji.bat"),
        }.get(platform.system(), ("fiji", "ImageJ-linux64"))
        for name in names:
            if (self.root / name).is_file():
                return self.root / name
        return None

    def classpath(self) -> list[str]:
        """Jars for an in-process JVM: ij.jar alone, or all of Fiji's jars."""
        if self.root is None:
            return [str(self.ij_jar)]
        jars = sorted((self.root / "jars").glob("*.jar")) + sorted((self.root / "jars").glob("*/*.jar"))
        jars += sorted((self.root / "plugins").glob("*.jar"))
        # Platform-specific native-wrapper jars of other OSes are harmless but slow; keep all.
        return [str(j) for j in jars] or [str(self.ij_jar)]

    def bundled_java(self) -> Path | None:
        """The JRE bundled inside Fiji.app (``Fiji.app/java/<platform>/<jdk>/bin/java``)."""
        if self.root is None or not (self.root / "java").is_dir():
            return None
        exe = "java.exe" if os.name == "nt" else "java"
        for cand in sorted((self.root / "java").glob(f"**/bin/{exe}")):
            if cand.is_file():
                return cand
        return None


def _jar_version(jar: Path) -> str | None:
    try:
        with zipfile.ZipFile(jar) as z:
            found = _VERSION_RE.findall(z.read("ij/ImageJ.class"))
    except (OSError, KeyError, zipfile.BadZipFile):
        return None
    return found[0].decode() if found else None


def _is_ij_jar(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            z.getinfo("ij/ImageJ.class")
        return True
    except (OSError, KeyError, zipfile.BadZipFile):
        return False


def _fiji_jar(root: Path) -> Path | None:
    jars = sorted((root / "jars").glob("ij-*.jar")) + sorted((root / "jars").glob("ij.jar"))
    return jars[-1] if jars else None


def _from_path(path: Path, source: str) -> ImageJInstall:
    path = path.expanduser()
    if path.is_dir():
        jar = _fiji_jar(path)
        if jar is None:
            raise ImageJError(
                f"{path} (from {source}) is not a Fiji.app folder: no jars/ij-*.jar inside. "
                + INSTALL_HINT
            )
        return ImageJInstall("fiji", jar.resolve(), path.resolve(), source)
    if path.is_file():
        if not _is_ij_jar(path):
            raise ImageJError(f"{path} (from {source}) is not an ImageJ jar (no ij/ImageJ.class)")
        return ImageJInstall("ij1", path.resolve(), None, source)
    raise ImageJError(f"{path} (from {source}) does not exist. " + INSTALL_HINT)


def find_imagej(path: str | os.PathLike | None = None) -> ImageJInstall:
    """Find an ImageJ installation (see the module docstring for the order).

    Parameters
    ----------
    path : str or path-like, optional
        A ``Fiji.app`` folder or an ``ij.jar``; when given, nothing else is searched.

    Returns
    -------
    ImageJInstall

    Raises
    ------
    ImageJError
        When nothing usable is found; the message says what to install.
    """
    if path is not None and os.fspath(path) != "":
        return _from_path(Path(path), "argument")
    for var in ("PYQUINT_FIJI", "FIJI_HOME"):
        value = os.environ.get(var)
        if value:
            return _from_path(Path(value), var)
    value = os.environ.get("PYQUINT_IJ_JAR")
    if value:
        return _from_path(Path(value), "PYQUINT_IJ_JAR")
    for loc in FIJI_LOCATIONS:
        root = Path(loc).expanduser()
        if root.is_dir() and _fiji_jar(root) is not None:
            return _from_path(root, "Fiji.app at " + loc)
    for loc in SYSTEM_JARS:
        if Path(loc).is_file() and _is_ij_jar(Path(loc)):
            return ImageJInstall("ij1", Path(loc).resolve(), None, "system")
    raise ImageJError("No ImageJ installation found. " + INSTALL_HINT)


def find_java(java: str | os.PathLike | None = None, imagej: ImageJInstall | None = None) -> Path:
    """The ``java`` executable to run ImageJ with.

    Order: ``java`` argument, ``PYQUINT_JAVA``, ``JAVA_HOME/bin/java``, the JRE bundled in
    Fiji.app, ``java`` on ``PATH``. Raises :class:`ImageJError` saying what to install.
    """
    exe = "java.exe" if os.name == "nt" else "java"
    if java is not None:
        p = Path(java)
        if p.is_file():
            return p
        raise ImageJError(f"{java}: no such Java executable. " + JAVA_HINT)
    if os.environ.get("PYQUINT_JAVA"):
        p = Path(os.environ["PYQUINT_JAVA"])
        if p.is_file():
            return p
        raise ImageJError(f"PYQUINT_JAVA={p} does not exist. " + JAVA_HINT)
    if os.environ.get("JAVA_HOME"):
        p = Path(os.environ["JAVA_HOME"]) / "bin" / exe
        if p.is_file():
            return p
    if imagej is not None and imagej.bundled_java() is not None:
        return imagej.bundled_java()  # type: ignore[return-value]
    for name in JAVA_CANDIDATES:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise ImageJError(JAVA_HINT)


def jvm_library(java: Path) -> Path | None:
    """The JVM shared library (``libjvm.so``/``.dylib``/``jvm.dll``) belonging to ``java``."""
    home = Path(os.path.realpath(java)).parent.parent
    for rel in ("lib/server/libjvm.so", "lib/server/libjvm.dylib", "bin/server/jvm.dll",
                "jre/lib/amd64/server/libjvm.so", "lib/libjvm.dylib"):
        if (home / rel).is_file():
            return home / rel
    return None


def find_xvfb() -> Path | None:
    """``xvfb-run`` on PATH, or None."""
    found = shutil.which("xvfb-run")
    return Path(found) if found else None
