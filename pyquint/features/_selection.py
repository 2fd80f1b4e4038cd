"""ilastik's feature selection: which (feature, scale) cells are computed, and their names."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ._kernels import kernel_radius

__all__ = [
    "DEFAULT_SCALES",
    "FEATURE_DISPLAY_NAMES",
    "FEATURE_IDS",
    "MINIMUM_SCALES",
    "FeatureSelection",
    "feature_halo",
    "feature_names",
    "parse_selection",
]

#: ilastik's feature ids in its default concatenation order (opFeatureSelection.py).
FEATURE_IDS: tuple[str, ...] = (
    "GaussianSmoothing",
    "LaplacianOfGaussian",
    "GaussianGradientMagnitude",
    "DifferenceOfGaussians",
    "StructureTensorEigenvalues",
    "HessianOfGaussianEigenvalues",
)
#: ilastik's default scale columns.
DEFAULT_SCALES: tuple[float, ...] = (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
#: Names used in ilastik's channel names (``ClassifierForests/feature_names`` of a project).
FEATURE_DISPLAY_NAMES: dict[str, str] = {
    "GaussianSmoothing": "Gaussian Smoothing",
    "LaplacianOfGaussian": "Laplacian of Gaussian",
    "GaussianGradientMagnitude": "Gaussian Gradient Magnitude",
    "DifferenceOfGaussians": "Difference of Gaussians",
    "StructureTensorEigenvalues": "Structure Tensor Eigenvalues",
    "HessianOfGaussianEigenvalues": "Hessian of Gaussian Eigenvalues",
}
#: The smallest σ ilastik lets you tick per feature (lazyflow filterOperators minimum_scale).
MINIMUM_SCALES: dict[str, float] = {
    "GaussianSmoothing": 0.3,
    "LaplacianOfGaussian": 0.7,
    "GaussianGradientMagnitude": 0.7,
    "DifferenceOfGaussians": 0.7,
    "StructureTensorEigenvalues": 0.7,
    "HessianOfGaussianEigenvalues": 0.7,
}
_EIGEN = ("StructureTensorEigenvalues", "HessianOfGaussianEigenvalues")
# ilastik's pre-smoothing window and stage-2 window (opPixelFeaturesPresmoothed.py).
PRESMOOTH_WINDOW = 3.5
FILTER_WINDOW = 2.0
#: Largest σ accepted: a 3 500-pixel halo already exceeds any section; beyond it σ² and the
#: window overflow (1e300 made math.ceil(inf) fail deep inside feature computation).
MAX_SCALE = 1000.0


def presmooth_sigma(sigma: float) -> float:
    """σ of stage 1: ``sqrt(σ² − 1)`` above 1, else σ itself (so σ ≤ 1 is smoothed twice)."""
    return math.sqrt(sigma * sigma - 1.0) if sigma > 1.0 else sigma


def filter_sigma(sigma: float) -> float:
    """σ' of stage 2: ``min(σ, 1)``."""
    return min(sigma, 1.0)


@dataclass(frozen=True, eq=False)
class FeatureSelection:
    """Which ilastik pixel features to compute: a (feature × scale) boolean matrix.

    Parameters
    ----------
    matrix : array-like of bool, shape (len(feature_ids), len(scales))
        ``matrix[i, j]`` selects feature ``feature_ids[i]`` at ``scales[j]``.
    scales : tuple of float
        The nominal σ of each column (ilastik's defaults or custom ones).
    feature_ids : tuple of str
        Row order, as saved in the project (``FeatureSelections/FeatureIds``); it is also the
        channel concatenation order.
    compute_in_2d : tuple of bool or None
        ilastik's ``ComputeIn2d`` per column; None means "2-D if the image has one z slice,
        else 3-D". Ignored for 2-D images.

    Examples
    --------
    >>> sel = FeatureSelection.all()
    >>> sel.n_channels(1, 2)
    49
    """

    matrix: np.ndarray
    scales: tuple[float, ...] = DEFAULT_SCALES
    feature_ids: tuple[str, ...] = FEATURE_IDS
    compute_in_2d: tuple[bool, ...] | None = None

    def __post_init__(self) -> None:
        ids = tuple(str(f.decode() if isinstance(f, bytes) else f) for f in self.feature_ids)
        unknown = [f for f in ids if f not in FEATURE_IDS]
        if unknown:
            raise InputError(
                f"unknown feature id(s) {unknown}; known ids are {', '.join(FEATURE_IDS)}"
            )
        if len(set(ids)) != len(ids):
            raise InputError(f"feature ids must be distinct, got {list(ids)}")
        try:
            scales = tuple(float(s) for s in np.atleast_1d(np.asarray(self.scales)))
        except (TypeError, ValueError) as exc:
            raise InputError(f"scales must be numbers, got {self.scales!r}") from exc
        if not scales:
            raise InputError("a feature selection needs at least one scale")
        for s in scales:
            if not (math.isfinite(s) and 0 < s <= MAX_SCALE):
                raise InputError(f"scale {s} is not a positive finite σ of at most {MAX_SCALE:g}")
        matrix = np.asarray(self.matrix)
        if matrix.shape != (len(ids), len(scales)):
            raise InputError(
                f"selection matrix has shape {matrix.shape}, expected {(len(ids), len(scales))} "
                f"(one row per feature id, one column per scale)"
            )
        if matrix.dtype != np.bool_:
            if not np.isin(matrix, (0, 1)).all():
                raise InputError("selection matrix must hold booleans (or 0/1)")
            matrix = matrix.astype(bool)
        matrix = matrix.copy()
        matrix.setflags(write=False)
        if not matrix.any():
            raise InputError("empty feature selection: select at least one (feature, scale)")
        for i, j in zip(*np.nonzero(matrix)):
            if scales[j] < MINIMUM_SCALES[ids[i]] - 1e-9:
                raise InputError(
                    f"{FEATURE_DISPLAY_NAMES[ids[i]]} needs σ ≥ {MINIMUM_SCALES[ids[i]]} "
                    f"(ilastik's minimum), but σ={scales[j]} is selected"
                )
        c2d = self.compute_in_2d
        if c2d is not None:
            c2d = tuple(bool(v) for v in np.atleast_1d(np.asarray(c2d)))
            if len(c2d) == 0:
                c2d = None
            elif len(c2d) != len(scales):
                raise InputError(
                    f"compute_in_2d has {len(c2d)} values but there are {len(scales)} scales"
                )
        object.__setattr__(self, "feature_ids", ids)
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "compute_in_2d", c2d)

    # ----------------------------------------------------------------- presets
    @classmethod
    def all(cls, scales: Sequence[float] = DEFAULT_SCALES) -> FeatureSelection:
        """ilastik's "select all": every cell allowed by the minimum scales (49 ch. for 2-D grey)."""
        scales = tuple(float(s) for s in scales)
        matrix = np.array(
            [[s >= MINIMUM_SCALES[f] - 1e-9 for s in scales] for f in FEATURE_IDS], dtype=bool
        )
        return cls(matrix, scales)

    @classmethod
    def steinbock(cls) -> FeatureSelection:
        """steinbock's recommendation: every feature at every default σ ≥ 1 (40 ch. for grey)."""
        matrix = np.array([[s >= 1.0 for s in DEFAULT_SCALES] for _ in FEATURE_IDS], dtype=bool)
        return cls(matrix, DEFAULT_SCALES)

    @classmethod
    def from_ilp(cls, group: Any) -> FeatureSelection:
        """Deprecated: use :func:`pyquint.ilastik.selection_from_ilp` (the ``.ilp`` layout is
        read in ``pyquint.ilastik`` only)."""
        warnings.warn("FeatureSelection.from_ilp is deprecated; use pyquint.ilastik.selection_from_ilp",
                      DeprecationWarning, stacklevel=2)
        # deprecated shim, the one upward import the layering test allows (tests/test_layering.py)
        from ..ilastik._selection import selection_from_ilp

        return selection_from_ilp(group)

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``from_dict`` inverts it)."""
        return {
            "feature_ids": list(self.feature_ids),
            "scales": list(self.scales),
            "matrix": self.matrix.tolist(),
            "compute_in_2d": None if self.compute_in_2d is None else list(self.compute_in_2d),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSelection:
        """Inverse of :meth:`to_dict`; missing ``feature_ids``/``scales`` take ilastik's defaults."""
        if not isinstance(data, Mapping):
            raise InputError(f"a feature selection must be a JSON object, not {type(data).__name__}")
        if "matrix" not in data:
            raise InputError("feature selection has no 'matrix'")
        extra = set(data) - {"feature_ids", "scales", "matrix", "compute_in_2d"}
        if extra:
            raise InputError(f"unknown key(s) in feature selection: {sorted(extra)}")
        try:
            matrix = np.asarray(data["matrix"])
        except ValueError as exc:
            raise InputError("feature selection 'matrix' is not a rectangular table") from exc
        if matrix.dtype == object or matrix.ndim != 2:
            raise InputError("feature selection 'matrix' must be a 2-D table of booleans")
        return cls(
            matrix,
            tuple(data.get("scales", DEFAULT_SCALES)),
            tuple(data.get("feature_ids", FEATURE_IDS)),
            data.get("compute_in_2d"),
        )

    # ----------------------------------------------------------------- queries
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FeatureSelection):
            return NotImplemented
        return (
            self.feature_ids == other.feature_ids
            and self.scales == other.scales
            and self.compute_in_2d == other.compute_in_2d
            and np.array_equal(self.matrix, other.matrix)
        )

    def __hash__(self) -> int:
        return hash((self.feature_ids, self.scales, self.compute_in_2d, self.matrix.tobytes()))

    def in_2d(self, n_spatial: int, z_size: int = 1) -> tuple[bool, ...]:
        """Per scale column: computed slice by slice in 2-D? (ilastik's ComputeIn2d rule)."""
        if n_spatial == 2:
            return (True,) * len(self.scales)
        if self.compute_in_2d is None:
            return (z_size == 1,) * len(self.scales)
        return self.compute_in_2d

    def blocks(self, n_spatial: int = 2, z_size: int = 1) -> list[tuple[str, int, int]]:
        """``(feature_id, scale column, channels per input channel)`` in output order."""
        in2d = self.in_2d(n_spatial, z_size)
        out = []
        for i, fid in enumerate(self.feature_ids):
            for j in range(len(self.scales)):
                if self.matrix[i, j]:
                    n = (2 if in2d[j] or n_spatial == 2 else 3) if fid in _EIGEN else 1
                    out.append((fid, j, n))
        return out

    def n_channels(self, n_input_channels: int = 1, ndim: int = 2) -> int:
        """Number of output channels for ``n_input_channels`` and ``ndim`` spatial dims."""
        return n_input_channels * sum(n for _, _, n in self.blocks(ndim, 1 if ndim == 2 else 2))


def feature_names(selection: FeatureSelection, n_input_channels: int = 1, ndim: int = 2) -> list[str]:
    """Channel names exactly as ilastik stores them (``ClassifierForests/feature_names``).

    ``"{Feature Name} (σ={scale})"``, plus ``" in 2D"`` when computed in 2-D and ``" [k]"``
    when the (feature, scale) block has more than one channel (input channels × eigenvalues).
    For 3-D (``ndim=3``) with ``compute_in_2d=None`` the features are 3-D.
    """
    if ndim not in (2, 3):
        raise InputError(f"ndim must be 2 or 3 spatial dimensions, not {ndim}")
    if n_input_channels < 1:
        raise InputError(f"n_input_channels must be ≥ 1, not {n_input_channels}")
    in2d = selection.in_2d(ndim, 1 if ndim == 2 else 2)
    names = []
    for fid, j, n in selection.blocks(ndim, 1 if ndim == 2 else 2):
        base = f"{FEATURE_DISPLAY_NAMES[fid]} (σ={selection.scales[j]})"
        if in2d[j]:
            base += " in 2D"
        total = n * n_input_channels
        names.extend([base] if total == 1 else [f"{base} [{k}]" for k in range(total)])
    return names


def feature_halo(selection: FeatureSelection) -> int:
    """Pixels of context a tile needs on each side to reproduce whole-image features.

    Pre-smoothing radius ``ceil(3.5·max σ_pre)`` plus the largest stage-2 reach (the structure
    tensor chains two kernels: gradient at σ'/2, then smoothing at σ').
    """
    used = [j for j in range(len(selection.scales)) if selection.matrix[:, j].any()]
    pre = max(math.ceil(PRESMOOTH_WINDOW * presmooth_sigma(selection.scales[j])) for j in used)
    stage2 = 0
    for fid, j, _ in selection.blocks():
        sp = filter_sigma(selection.scales[j])
        r = kernel_radius(sp, FILTER_WINDOW)
        if fid == "StructureTensorEigenvalues":
            r += kernel_radius(0.5 * sp, FILTER_WINDOW)
        stage2 = max(stage2, r)
    return pre + stage2


def parse_selection(spec: str | Mapping[str, Any] | FeatureSelection, *, option: str = "features",
                    read_project: Callable[[Path], FeatureSelection] | None = None) -> FeatureSelection:
    """A feature selection from how users write one (command line, configuration files).

    Parameters
    ----------
    spec : str, dict or FeatureSelection
        ``"all"`` (ilastik's select-all), ``"steinbock"`` (σ ≥ 1), a JSON object (text or
        dict, as :meth:`FeatureSelection.to_dict`), a ``.json`` file, or an ilastik ``.ilp``
        project (with ``read_project``); names are case-insensitive.
    option : str
        What ``spec`` was given as (``"--selection"``, ``"pixel.features"``), for messages.
    read_project : callable, optional
        Reads the selection of a ``.ilp`` file; :func:`pyquint.ilastik.load_feature_selection`
        passes its reader (the project layout is ilastik's business, not this layer's).

    Raises
    ------
    InputError
        One line naming ``option``, the value and the forms accepted.
    """
    if isinstance(spec, FeatureSelection):
        return spec
    if isinstance(spec, Mapping):
        return FeatureSelection.from_dict(spec)
    text = str(spec).strip()
    if text.lower() in ("all", "steinbock"):
        return FeatureSelection.all() if text.lower() == "all" else FeatureSelection.steinbock()
    if text.startswith("{"):
        try:
            return FeatureSelection.from_dict(json.loads(text))
        except ValueError as exc:
            raise InputError(f"{option}: invalid JSON ({exc})") from None
    path = Path(text)
    if not path.is_file():
        raise InputError(f"{option} {text!r}: use 'all', 'steinbock', a JSON object, a .json file"
                         + (" or an .ilp project" if read_project is not None else ""))
    if path.suffix.lower() == ".ilp":
        if read_project is None:
            raise InputError(f"{option} {text!r}: an .ilp project is read with "
                             "pyquint.ilastik.load_feature_selection")
        return read_project(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable JSON feature selection ({exc})") from None
    try:
        return FeatureSelection.from_dict(data)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
