"""``steinbock classify ilastik run`` without an ilastik binary.

steinbock runs ``ilastik --headless`` on the project and every ``ilastik_img/*.h5/img`` and
gets ``ilastik_probabilities/{stem}.tiff``. pyquint predicts the same files itself: the
project's stored forest when it has one (ilastik trained and saved it), otherwise a pyquint
random forest trained on the project's labels (its crops), with the project's feature
selection or, when the project selects none (steinbock's template), every default feature
with σ ≥ 1 as steinbock's documentation recommends.

Output, as ilastik writes it for steinbock (spec §4): uint16, Y×X×classes in label order
(Nucleus, Cytoplasm, Background → R, G, B), value ``uint16(p * float32(65535))`` (truncated,
so 1.0 → 65535), one single-page interleaved (contiguous) TIFF per image, photometric RGB
when there are 3 classes and min-is-black otherwise, uncompressed, size = the Ilastik
image's (scale × original). Files are named ``{image stem}.tiff`` (what steinbock's
``-img`` rename intends; steinbock also mangles stems that contain ``-img``).

The feature arithmetic follows the project's ilastik version
(:func:`pyquint.ilastik.default_rounding`), as for every other ``.ilp`` entry point: a stored
forest was trained on that build's features. Threads: ``n_jobs``
(:func:`pyquint.parallel.resolve_n_jobs`); ``threads=`` is its deprecated name.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..features import DEFAULT_ROUNDING, FeatureSelection
from ..ilastik.classifier import STORED_FOREST, classifier_from_project, uses_stored_forest
from ..ilastik.project import read_project
from ..io import atomic_output
from ..parallel import resolve_n_jobs
from ..pixel import PixelClassifier
from ..pixel_batch import ExportSpec, predict_files
from .images import list_ilastik_files, read_ilastik_h5

__all__ = ["RunResult", "SteinbockClassifier", "probabilities_to_uint16", "run", "write_probabilities"]

logger = logging.getLogger("pyquint.steinbock")
_TILE = 512  # tile edge: bounds memory to ~(tile + 2 halo)² × features floats


def probabilities_to_uint16(proba: np.ndarray) -> np.ndarray:
    """ilastik's export of probabilities for steinbock: ``uint16(p * float32(65535))``."""
    scaled = np.asarray(proba, dtype=np.float32) * np.float32(65535)
    return np.clip(scaled, 0, 65535).astype(np.uint16)


def write_probabilities(path: str | os.PathLike, proba_u16: np.ndarray) -> Path:
    """Write a Y×X×C uint16 probability image like vigra's 2-D TIFF export (atomically)."""
    import tifffile

    data = np.ascontiguousarray(proba_u16)
    if data.ndim != 3 or data.dtype != np.uint16:
        raise InputError(f"{path}: probabilities must be uint16 (Y, X, C), not {data.dtype} {data.shape}")
    if data.shape[-1] == 1:
        data = data[..., 0]
    photometric = "rgb" if data.ndim == 3 and data.shape[-1] == 3 else "minisblack"
    with atomic_output(path) as tmp:
        tifffile.imwrite(
            tmp, data, photometric=photometric,
            planarconfig="contig" if data.ndim == 3 else None,
            metadata=None,  # no tifffile JSON description: a plain TIFF as vigra writes
        )
    return Path(path)


@dataclass
class SteinbockClassifier:
    """The features and forest that :func:`run` applies (build it with :meth:`from_project`).

    A thin steinbock-facing view of a :class:`pyquint.pixel.PixelClassifier` (``classifier``),
    which does the tiling, features and forest.

    Attributes
    ----------
    selection : FeatureSelection
    forest : FlatForest
    class_names : list of str
    source : str
        ``"stored forest"`` or ``"retrained on N labelled pixels"``.
    rounding : str
        Feature arithmetic (:meth:`from_project`: the project's ilastik version's).
    classifier : PixelClassifier
        Built from the fields above when not given.
    """

    selection: object
    forest: object
    class_names: list[str]
    source: str
    rounding: str = DEFAULT_ROUNDING
    classifier: PixelClassifier | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.classifier is None:
            per_channel = self.selection.n_channels(1, 2)  # type: ignore[attr-defined]
            self.classifier = PixelClassifier.from_forest(
                self.forest, features=self.selection, ndim=2,  # type: ignore[arg-type]
                n_input_channels=max(1, self.forest.n_features // per_channel),  # type: ignore[attr-defined]
                class_names=self.class_names, rounding=self.rounding)

    @classmethod
    def from_project(
        cls,
        project_file: str | os.PathLike,
        *,
        retrain: bool = False,
        n_trees: int = 100,
        seed: int | None = 0,
        n_jobs: int | None = None,
        rounding: str | None = None,
        threads: int | None = None,
    ) -> SteinbockClassifier:
        """Use the project's stored forest, or train one on the labels of its crops
        (:func:`pyquint.ilastik.classifier_from_project`; every default feature with σ ≥ 1
        when the project selects none, as steinbock's documentation recommends).

        ``rounding`` defaults to the project's ilastik version's
        (:func:`pyquint.ilastik.default_rounding`); ``n_jobs`` threads (``threads``: its
        deprecated name).

        Raises
        ------
        InputError
            The project has neither a usable stored forest nor labels, labels lie outside
            their crops, or the crops cannot be found.
        """
        if threads is not None:
            n_jobs = resolve_n_jobs(n_jobs, alias=threads, alias_name="threads")
        project = read_project(project_file)
        if project.kind != "pixel":
            raise InputError(f"{project_file}: a {project.workflow} project, not Pixel Classification")
        if not uses_stored_forest(project, retrain) and not project.has_labels:
            raise InputError(
                f"{project_file}: the project has no labels: open it in ilastik, label nuclei, "
                "cytoplasm and background on the crops and save it (or write LabelSets), then run again"
            )
        clf = classifier_from_project(
            project, retrain=retrain, default_selection=FeatureSelection.steinbock(),
            rounding=rounding, n_trees=n_trees, seed=seed, n_jobs=n_jobs)
        if clf.training_info_.get("source") == STORED_FOREST:
            source = "stored forest"
        else:
            source = f"retrained on {clf.training_info_['n_samples']} labelled pixels"
        return cls(clf.selection_, clf.forest_, list(clf.class_names_), source, clf.rounding, clf)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def predict_proba(self, image_cyx: np.ndarray, *, n_jobs: int | None = None,
                      threads: int | None = None) -> np.ndarray:
        """Class probabilities (Y, X, classes) float32 of a CYX Ilastik image, tile by tile
        (``n_jobs`` threads; ``threads``: its deprecated name)."""
        if threads is not None:
            n_jobs = resolve_n_jobs(n_jobs, alias=threads, alias_name="threads")
        image = np.moveaxis(np.asarray(image_cyx, dtype=np.float32), 0, -1)
        return self.predict_sources(image, ["Probabilities"], n_jobs=n_jobs)["Probabilities"]

    def predict_sources(self, image: np.ndarray, sources: Sequence[str], *,
                        n_jobs: int | None = None, threads: int | None = None
                        ) -> dict[str, np.ndarray]:
        """Export sources of a YXC image (what :func:`pyquint.pixel_batch.predict_files`
        asks of a classifier), after checking its channels against the project's crops."""
        if threads is not None:
            n_jobs = resolve_n_jobs(n_jobs, alias=threads, alias_name="threads")
        expected = self.selection.n_channels(image.shape[-1], 2)  # type: ignore[attr-defined]
        if expected != self.forest.n_features:  # type: ignore[attr-defined]
            raise InputError(
                f"the classifier needs {self.forest.n_features} features but this image's "  # type: ignore[attr-defined]
                f"{image.shape[-1]} channels give {expected}: the Ilastik images and the project's "
                "crops were prepared with different channels"
            )
        clf = copy.copy(self.classifier)  # per-call threads and rounding, shared forest
        clf.n_jobs = n_jobs if n_jobs is not None else clf.n_jobs
        clf.rounding = self.rounding
        if sources == ["Probabilities"]:
            return {"Probabilities": clf.predict_proba(image, tile_size=_TILE)}
        return clf.predict_sources(image, sources)


@dataclass
class RunResult:
    """What :func:`run` wrote (``skipped``: existing outputs kept, resume)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    classifier_source: str = ""
    class_names: list[str] = field(default_factory=list)


def run(
    project_file: str | os.PathLike = "pixel_classifier.ilp",
    img_dir: str | os.PathLike = "ilastik_img",
    out_dir: str | os.PathLike = "ilastik_probabilities",
    *,
    n_jobs: int | None = None,
    overwrite: bool = False,
    retrain: bool = False,
    n_trees: int = 100,
    seed: int | None = 0,
    rounding: str | None = None,
    threads: int | None = None,
) -> RunResult:
    """Pixel classification of every Ilastik image into steinbock's probability TIFFs.

    Parameters
    ----------
    project_file : path-like, default "pixel_classifier.ilp"
        A Pixel Classification project with labels on its crops (or a stored forest).
    img_dir : path-like, default "ilastik_img"
        steinbock Ilastik images (``*.h5`` with ``/img``), listed recursively and sorted.
    out_dir : path-like, default "ilastik_probabilities"
        Output folder (created); one ``{stem}.tiff`` per image.
    n_jobs : int, optional
        Threads for features, training and prediction (steinbock's ``--threads``; None or
        0: every core, :func:`pyquint.parallel.resolve_n_jobs`).
    overwrite : bool, default False
        Recompute existing outputs (default: skip them, so a stopped run resumes).
    retrain : bool, default False
        Train on the labels even when the project holds a stored forest.
    n_trees : int, default 100
        Trees of a retrained forest (ilastik's default).
    seed : int or None, default 0
        Seed of a retrained forest (the same seed gives the same probabilities).
    rounding : {"exact", "muladd", "fast", "vigra"}, optional
        Feature arithmetic (see :func:`pyquint.features.compute_features`); default the
        project's ilastik version's (:func:`pyquint.ilastik.default_rounding`), as for
        ``pyquint ilastik predict``.
    threads : int, optional
        Deprecated name of ``n_jobs`` (a :class:`DeprecationWarning`).

    Returns
    -------
    RunResult

    Raises
    ------
    InputError
        No images, a project without labels or forest, output name collisions, images whose
        channels do not fit the project's crops.
    """
    img_files = list_ilastik_files(img_dir)
    if not img_files:
        raise InputError(f"{img_dir}: no Ilastik images (*.h5); run `pyquint steinbock prepare` first")
    if threads is not None:
        n_jobs = resolve_n_jobs(n_jobs, alias=threads, alias_name="threads")
    result = RunResult()

    def classifier() -> SteinbockClassifier:  # built only when some output is to be computed
        built = SteinbockClassifier.from_project(
            project_file, retrain=retrain, n_trees=n_trees, seed=seed, n_jobs=n_jobs,
            rounding=rounding)
        result.classifier_source, result.class_names = built.source, built.class_names
        logger.info("%s: %s", project_file, built.source)
        return built

    spec = ExportSpec(sources=("Probabilities",), format="tiff",
                      filename_format="{dataset_dir}/{nickname}", output_dir=out_dir,
                      overwrite=overwrite)
    done = predict_files(classifier, img_files, spec, read=_read_yxc, write=_write_uint16,
                         desc="ilastik run", lock_idle=False)
    result.written, result.skipped = done.written, done.skipped
    for out in done.written:
        logger.info("%s", out)
    return result


def _read_yxc(path: Path) -> tuple[np.ndarray, str]:
    """An Ilastik image (``/img``, CYX) as float32 YXC."""
    return np.moveaxis(np.asarray(read_ilastik_h5(path, "img"), dtype=np.float32), 0, -1), "yxc"


def _write_uint16(raw: Path, source: str, proba: np.ndarray, axes: str, original_axes: str,
                  out: Path) -> Path:
    return write_probabilities(out, probabilities_to_uint16(proba))
