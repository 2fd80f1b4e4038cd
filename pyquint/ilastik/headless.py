"""ilastik-style headless batch prediction from a project, without ilastik.

``predict_project(project, images, ...)`` does what
``run_ilastik.sh --headless --project=P.ilp --export_source=… IMAGES…`` does: compute the
project's features for each image, evaluate the project's stored forest exactly (or a forest
retrained from the project's labels), and write ilastik's export files
(``{dataset_dir}/{nickname}_{result_type}.{ext}``, dataset ``exported_data`` with ``axistags``
and ``drange``, ilastik's dtypes). Several export sources can come from one feature
computation. The project is only ever opened read-only (``--readonly`` is implied).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..frames import frames, predict_sources_by_frame
from ..io import read_image, stored_axes, to_canonical
from ..pixel_batch import ExportSpec, predict_files
from ..zarrio import is_zarr_path, read_zarr
from .classifier import STORED_FOREST, as_project, classifier_from_project, default_rounding
from .project import IlastikProject

__all__ = ["ProjectPredictor", "default_rounding", "predict_project", "project_export_spec",
           "read_input"]


@dataclass(eq=False)
class ProjectPredictor:
    """Predict with an ilastik project: its feature selection and its stored forest (or a
    forest retrained from its labels).

    Parameters
    ----------
    project : IlastikProject or path
    retrain, selection, rounding, n_trees, seed, n_jobs, search_dirs
        How to build the classifier: see
        :func:`pyquint.ilastik.classifier.classifier_from_project` (the stored vigra forest
        unless ``retrain`` or the project has none; features from the project unless
        ``selection``; rounding by default from the ilastik version; ``"vigra"`` fits the stored
        forests of ilastik 1.2 projects best, docs/ilastik.md).

    Attributes
    ----------
    project_ : IlastikProject
    classifier_ : pyquint.pixel.PixelClassifier
        Holds the forest, the selection and the class names/colours.
    retrained_ : bool
    rounding_ : str
    """

    project: Any
    _: KW_ONLY
    retrain: bool = False
    selection: Any = None
    rounding: str | None = None
    n_trees: int = 100
    seed: int | None = None
    n_jobs: int | None = None
    search_dirs: Sequence[str | os.PathLike] = ()

    def fit(self) -> ProjectPredictor:
        """Load the stored forest, or retrain from the project's labels
        (:func:`pyquint.ilastik.classifier.classifier_from_project`)."""
        project = as_project(self.project)
        self.classifier_ = classifier_from_project(
            project, retrain=self.retrain, selection=self.selection, rounding=self.rounding,
            n_trees=self.n_trees, seed=self.seed, n_jobs=self.n_jobs, search_dirs=self.search_dirs)
        self.project_ = project
        self.retrained_ = self.classifier_.training_info_.get("source") != STORED_FOREST
        self.rounding_ = self.classifier_.rounding
        self.selection_ = self.classifier_.selection_
        return self

    def _check(self) -> None:
        if not hasattr(self, "classifier_"):
            raise InputError("this ProjectPredictor is not fitted yet; call fit()")

    def predict_proba(self, image: np.ndarray, axes: str | None = None) -> np.ndarray:
        """Probabilities (float32, canonical axes with ``t`` first if any, + N classes)."""
        return self._by_frame(image, axes, "predict_proba")

    def predict(self, image: np.ndarray, axes: str | None = None) -> np.ndarray:
        """Simple Segmentation: uint8, 1..N, canonical spatial axes (``t`` first if any)."""
        return self._by_frame(image, axes, "predict")

    def _by_frame(self, image: np.ndarray, axes: str | None, method: str) -> np.ndarray:
        self._check()
        canon, canon_axes = _canonical(image, axes)
        parts, _ = frames(canon, canon_axes)
        out = [getattr(self.classifier_, method)(p) for p in parts]
        return np.stack(out) if "t" in canon_axes else out[0]

    def compute(
        self, image: np.ndarray, axes: str | None, sources: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """The requested export sources of one image, each canonical with channels last.

        Features are computed once for all sources ("Features" keeps the full feature stack;
        otherwise prediction runs in memory-bounded tiles), frame by frame for time series.
        """
        self._check()
        canon, canon_axes = _canonical(image, axes)
        return predict_sources_by_frame(self.classifier_, canon, canon_axes, sources)


def _canonical(image: np.ndarray, axes: str | None) -> tuple[np.ndarray, str]:
    image = np.asarray(image)
    if axes is None:
        axes = {2: "yx", 3: "yxc", 4: "zyxc"}.get(image.ndim)
        if axes is None:
            raise InputError(f"cannot guess the axes of a {image.ndim}-D image; pass axes")
    return to_canonical(image, axes)


# ---------------------------------------------------------------------- batch
def read_input(path: Any, input_axes: str | None, project: IlastikProject,
               scale_level: int = 0) -> tuple[np.ndarray, str]:
    """Read an image to predict, with its axes: ``input_axes`` if given, else the file's own,
    else the axes of the project's first lane when they fit (ilastik's stored axistags), else
    guessed from the number of dimensions. ``scale_level`` picks an OME-Zarr resolution."""
    if is_zarr_path(path):
        return read_zarr(path, input_axes, scale_level)
    if scale_level:
        raise InputError(f"{path}: --scale-level applies to OME-Zarr inputs only")
    data, axes = read_image(path, input_axes)
    if input_axes is None and stored_axes(path) is None:
        lane_axes = next((lane.axes for lane in project.lanes if lane.axes), None)
        if lane_axes is not None and len(lane_axes) == data.ndim:
            axes = lane_axes
    return data, axes


def project_export_spec(
    project: IlastikProject,
    sources: str | Sequence[str] = ("Probabilities",),
    *,
    overwrite: bool = False,
    **given: Any,
) -> ExportSpec:
    """The export settings of a headless run: ``given`` flags (``output_format``,
    ``output_filename_format``, ``output_internal_path``, ``export_dtype``,
    ``pipeline_result_drange``, ``export_drange``, ``output_axis_order``; None or "" = unset),
    else the project's ``Prediction Export`` group, else ilastik's defaults (HDF5 —
    compressed HDF5 for projects of 1.4.1 and later —, ``exported_data``).
    """
    unknown = set(given) - set(_FLAGS)
    if unknown:
        raise TypeError(f"unknown export setting(s): {sorted(unknown)}")
    stored = project.export_settings
    fmt = stored.get("OutputFormat")
    if not fmt:  # ilastik's default became compressed HDF5 in 1.4.1
        fmt = "compressed hdf5" if project.version_tuple >= (1, 4, 1, 0, 0) else "hdf5"
    ranges = [stored.get(k) for k in ("InputMin", "InputMax", "ExportMin", "ExportMax")]
    has_ranges = all(isinstance(v, (int, float)) for v in ranges)
    if given.get("pipeline_result_drange") is not None or given.get("export_drange") is not None:
        has_ranges = False  # a range given replaces the stored pair, never half of it
    settings = {
        "output_format": fmt,
        "output_filename_format": stored.get("OutputFilenameFormat") or None,
        "output_internal_path": stored.get("OutputInternalPath") or "exported_data",
        "export_dtype": stored.get("ExportDtype") or None,
        "pipeline_result_drange": tuple(ranges[:2]) if has_ranges else None,
        "export_drange": tuple(ranges[2:]) if has_ranges else None,
        "output_axis_order": stored.get("OutputAxisOrder") or None,
    }
    settings.update({k: v for k, v in given.items() if v not in (None, "")})
    return ExportSpec(
        sources=(sources,) if isinstance(sources, str) else tuple(sources),
        overwrite=overwrite, **{field: settings[flag] for flag, field in _FLAGS.items()})


# ilastik's export flags → ExportSpec fields
_FLAGS = {
    "output_format": "format", "output_filename_format": "filename_format",
    "output_internal_path": "internal_path", "export_dtype": "export_dtype",
    "pipeline_result_drange": "pipeline_drange", "export_drange": "export_drange",
    "output_axis_order": "axis_order",
}


def predict_project(
    project: Any,
    images: Sequence[str | os.PathLike],
    *,
    export_source: str | Sequence[str] = ("Probabilities",),
    output_format: str | None = None,
    output_filename_format: str | None = None,
    output_internal_path: str | None = None,
    export_dtype: str | None = None,
    pipeline_result_drange: Any = None,
    export_drange: Any = None,
    input_axes: str | None = None,
    output_axis_order: str | None = None,
    retrain: bool = False,
    overwrite: bool = False,
    rounding: str | None = None,
    seed: int | None = None,
    n_jobs: int | None = None,
    predictor: ProjectPredictor | None = None,
    scale_level: int = 0,
) -> list[Path]:
    """Headless batch prediction with an ilastik project, writing ilastik's export files.

    Parameters mirror ``run_ilastik.sh --headless`` flags. Unset export settings take the
    values stored in the project (``Prediction Export``: format, file name pattern, dataset,
    dtype, ranges, axis order), then ilastik's defaults (HDF5 — compressed HDF5 for projects
    of 1.4.1 and later —, ``{dataset_dir}/{nickname}_{result_type}``, ``exported_data``).

    Parameters
    ----------
    project : IlastikProject or path
    images : sequence of paths
        Images (or folders of images) to predict; ``file.h5/inner`` for HDF5 datasets,
        ``image.zarr`` for OME-Zarr / zarr stores.
    export_source : str or sequence of str
        ``Probabilities`` (default), ``Simple Segmentation``, ``Uncertainty``, ``Features``,
        ``Labels`` (case-insensitive); several give several files from one computation.
    output_format : str, optional
        ``hdf5``, ``compressed hdf5``, ``png``, ``tiff``, ``npy``, ``ome-zarr``.
    output_filename_format : str, optional
        With ``{dataset_dir}``, ``{nickname}``, ``{result_type}`` (and ``{roi}``,
        ``{x_start}``...) placeholders; relative results are resolved against the current
        directory, as ilastik does.
    output_internal_path, export_dtype, pipeline_result_drange, export_drange
        As ilastik's flags; dranges as ``"(0.0,1.0)"`` strings or pairs (both or neither).
    input_axes, output_axis_order : str, optional
        Override the images' axes / the exported axis order (default: the input's original
        order with ``c`` appended).
    retrain, rounding, seed, n_jobs
        See :class:`ProjectPredictor`.
    overwrite : bool
        Existing outputs are skipped (resume) unless True. Inputs are never overwritten.
    predictor : ProjectPredictor, optional
        A fitted predictor to reuse (then ``project`` may be None).
    scale_level : int
        Resolution level of OME-Zarr inputs (0 = full resolution).

    Returns
    -------
    list of Path
        The files written (skipped ones excluded).
    """
    if predictor is not None:
        predictor._check()
        project = predictor.project_
    else:
        project = as_project(project)
    spec = project_export_spec(
        project, export_source, overwrite=overwrite, output_format=output_format,
        output_filename_format=output_filename_format, output_internal_path=output_internal_path,
        export_dtype=export_dtype, pipeline_result_drange=pipeline_result_drange,
        export_drange=export_drange, output_axis_order=output_axis_order)

    def classifier() -> Any:  # fitted only when some output is to be computed
        fitted = predictor or ProjectPredictor(project, retrain=retrain, rounding=rounding,
                                               seed=seed, n_jobs=n_jobs).fit()
        return fitted.classifier_

    result = predict_files(classifier, [os.fspath(p) for p in images], spec,
                           read=lambda path: read_input(path, input_axes, project, scale_level),
                           desc="ilastik predict")
    return result.written
