"""Configuration of the QUINT pipeline: a TOML file and/or equivalent CLI flags.

Example ``quint.toml`` (every key is optional except ``input.sections`` and a training source)::

    [input]
    sections = "sections/"        # a folder or a glob such as "sections/*_s*.png"
    resize = 0.2                  # downscale factor (QUINT suggests 0.1-0.2); omit for none
    axes = "yxc"                  # override the axes of the section files
    pixel_size = 1.0              # µm per pixel of the files (report areas in mm²); optional

    [pixel]
    labels = "labels/"            # training label images (0 unlabelled, 1..N), matched by name
    # ilp = "project.ilp"         # ...or an ilastik project (its stored forest, or --retrain)
    # model = "model.h5"          # ...or a saved pyquint pixel model
    features = "all"              # "all", "steinbock" or a JSON selection file
    trees = 100
    seed = 0
    class_names = ["Background", "Stain"]

    [objects]                     # optional: ilastik's Object Classification step
    enabled = true
    channel = 2                   # class whose probability is thresholded (1-based, as label values)
    threshold = 0.5
    min_size = 10
    max_size = 1000000
    labels = "object_labels/"     # 1 = keep ("label"), 2 = drop ("artefact"); or model = "objects.h5"

    [lut]
    name = "glasbey"              # "glasbey", "glasbey on dark", "glasbey inverted" or a .lut path
    set = { 2 = [255, 0, 0] }     # per-class colour overrides
    classes = [2]                 # classes to colour; all others become index 0
    rgb = false                   # 24-bit RGB PNGs instead of palette PNGs

    [output]
    folder = "quint_output"
    probabilities = false         # also write {name}_Probabilities.h5
    object_tables = true          # write {name}_table.csv when the object step runs

    [run]
    engine = "python"             # or "imagej" (LUT step through a real ImageJ)
    workers = 1
    overwrite = false

    [pynutil]                     # optional: per-region counts with PyNutil (pip install 'pyquint[pynutil]')
    alignment = "registration.json"   # QuickNII/VisuAlign JSON of these sections
    atlas = "allen_mouse_25um"        # a BrainGlobe atlas, or:
    # atlas_volume = "annotation.nrrd"  and  atlas_labels = "labels.csv" (idx, name, r, g, b)

Unknown sections or keys are errors that name them (a typo must not be silently ignored).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = [
    "InputConfig",
    "LutConfig",
    "ObjectsConfig",
    "OutputConfig",
    "PixelConfig",
    "PynutilConfig",
    "QuintConfig",
    "RunConfig",
    "load_config",
]


@dataclass
class InputConfig:
    sections: str = ""
    resize: float | None = None
    axes: str | None = None
    pixel_size: float | None = None  # µm per pixel of the section files (before resize)


@dataclass
class PixelConfig:
    labels: str | None = None
    ilp: str | None = None
    model: str | None = None
    retrain: bool = False
    features: str = "all"
    trees: int = 100
    seed: int = 0
    class_names: list[str] | None = None


@dataclass
class ObjectsConfig:
    enabled: bool = False
    channel: int = 2
    threshold: float = 0.5
    sigma: float = 1.0
    min_size: int = 10
    max_size: int = 1_000_000
    labels: str | None = None
    model: str | None = None
    trees: int = 100
    seed: int = 0
    keep_class: int = 1


@dataclass
class LutConfig:
    name: str = "glasbey"
    set: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    classes: list[int] | None = None
    rgb: bool = False
    fiji: str | None = None


@dataclass
class OutputConfig:
    folder: str = "quint_output"
    probabilities: bool = False
    object_tables: bool = True


@dataclass
class RunConfig:
    engine: str = "python"
    workers: int = 1
    overwrite: bool = False


@dataclass
class PynutilConfig:
    alignment: str | None = None     # QuickNII/VisuAlign registration JSON: turns the step on
    atlas: str | None = None         # a BrainGlobe atlas name, e.g. "allen_mouse_25um"
    atlas_volume: str | None = None  # ...or a custom annotation volume (.nrrd or .npy)
    atlas_labels: str | None = None  # ...with its labels CSV (idx, name, r, g, b)
    object_cutoff: int = 0           # PyNutil's smallest object, in pixels


@dataclass
class QuintConfig:
    """Everything one QUINT run needs; build it with :func:`load_config` or directly."""

    input: InputConfig = field(default_factory=InputConfig)
    pixel: PixelConfig = field(default_factory=PixelConfig)
    objects: ObjectsConfig = field(default_factory=ObjectsConfig)
    lut: LutConfig = field(default_factory=LutConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    run: RunConfig = field(default_factory=RunConfig)
    pynutil: PynutilConfig = field(default_factory=PynutilConfig)
    base_dir: Path = field(default_factory=Path.cwd)

    def resolve(self, path: str | None) -> Path | None:
        """A path from the configuration, relative to the configuration file's folder."""
        if path is None:
            return None
        p = Path(os.path.expanduser(path))
        return p if p.is_absolute() else self.base_dir / p

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["base_dir"] = str(self.base_dir)
        out["lut"]["set"] = {str(k): list(v) for k, v in self.lut.set.items()}
        return out

    def validate(self) -> QuintConfig:
        """Check values and combinations; raise :class:`InputError` naming the bad key."""
        if not self.input.sections:
            raise InputError("input.sections is required (a folder or a glob of section images)")
        if self.input.resize is not None and not (0 < self.input.resize <= 1):
            raise InputError(f"input.resize must be in (0, 1], got {self.input.resize}")
        if self.input.pixel_size is not None and not self.input.pixel_size > 0:
            raise InputError(f"input.pixel_size must be a positive number of µm, got {self.input.pixel_size}")
        sources = [k for k in ("labels", "ilp", "model") if getattr(self.pixel, k)]
        if len(sources) != 1:
            raise InputError(
                "give exactly one training source: pixel.labels (label images), pixel.ilp "
                f"(an ilastik project) or pixel.model (a pyquint model); got {sources or 'none'}"
            )
        if self.pixel.trees < 1:
            raise InputError("pixel.trees must be at least 1")
        o = self.objects
        if o.enabled:
            if not 0 <= o.threshold <= 1:
                raise InputError(f"objects.threshold must be in [0, 1], got {o.threshold}")
            if o.min_size > o.max_size:
                raise InputError(f"objects.min_size ({o.min_size}) is larger than objects.max_size ({o.max_size})")
            if o.channel < 1:
                raise InputError("objects.channel is a class number (1-based)")
        for k, rgb in self.lut.set.items():
            if not 0 <= int(k) <= 255 or len(rgb) != 3 or any(not 0 <= int(v) <= 255 for v in rgb):
                raise InputError(f"lut.set: {k} = {rgb} is not 'index = [r, g, b]' with values 0..255")
        if self.run.engine not in ("python", "imagej"):
            raise InputError(f"run.engine must be 'python' or 'imagej', not {self.run.engine!r}")
        if self.run.workers < 1:
            raise InputError("run.workers must be at least 1")
        return self


_SECTIONS = {
    "input": InputConfig,
    "pixel": PixelConfig,
    "objects": ObjectsConfig,
    "lut": LutConfig,
    "output": OutputConfig,
    "run": RunConfig,
    "pynutil": PynutilConfig,
}


def _build(section: str, cls: type, values: Any) -> Any:
    if not isinstance(values, dict):
        raise InputError(f"[{section}] must be a table of keys")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InputError(
            f"unknown key(s) in [{section}]: {', '.join(unknown)} (known: {', '.join(sorted(names))})"
        )
    values = dict(values)
    if section == "lut" and "set" in values:
        try:
            values["set"] = {int(k): tuple(int(c) for c in v) for k, v in values["set"].items()}
        except (TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"lut.set must map class numbers to [r, g, b], got {values['set']!r}") from exc
    return cls(**values)


def config_from_dict(data: dict[str, Any], base_dir: Path | None = None) -> QuintConfig:
    """Build a :class:`QuintConfig` from nested dicts (TOML tables), rejecting unknown keys."""
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise InputError(
            f"unknown section(s) in the configuration: {', '.join(unknown)} "
            f"(known: {', '.join(_SECTIONS)})"
        )
    parts = {name: _build(name, cls, data.get(name, {})) for name, cls in _SECTIONS.items()}
    return QuintConfig(**parts, base_dir=base_dir or Path.cwd())


def load_config(path: str | os.PathLike) -> QuintConfig:
    """Read a QUINT pipeline configuration from a TOML file (paths relative to its folder)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such configuration file")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from exc
    return config_from_dict(data, base_dir=path.resolve().parent)
