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
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..batch import progress
from ..errors import InputError
from ..io import atomic_output
from .images import list_ilastik_files, read_ilastik_h5

__all__ = ["RunResult", "SteinbockClassifier", "probabilities_to_uint16", "run", "write_probabilities"]

logger = logging.getLogger("pyquint.steinbock")
_TILE = 512  # rows per tile: bounds memory to ~tile*width*features floats


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

    Attributes
    ----------
    selection : FeatureSelection
    forest : FlatForest
    class_names : list of str
    source : str
        ``"stored forest"`` or ``"retrained on N labelled pixels"``.
    """

    selection: object
    forest: object
    class_names: list[str]
    source: str
    rounding: str = "exact"

    @classmethod
    def from_project(
        cls,
        project_file: str | os.PathLike,
        *,
        retrain: bool = False,
        n_trees: int = 100,
        seed: int | None = 0,
        threads: int | None = None,
        rounding: str = "exact",
    ) -> SteinbockClassifier:
        """Use the project's stored forest, or train one on the labels of its crops.

        Raises
        ------
        InputError
            The project has neither a usable stored forest nor labels, labels lie outside
            their crops, or the crops cannot be found.
        """
        from ..features import FeatureSelection, compute_features
        from ..forest import DEFAULT_TRAINER, train_forest
        from ..ilastik.project import read_project

        project = read_project(project_file)
        if project.kind != "pixel":
            raise InputError(f"{project_file}: a {project.workflow} project, not Pixel Classification")
        names = list(project.label_names)
        selection = project.feature_selection()
        if project.has_forest and not retrain and selection is not None:
            forest = project.forest()
            return cls(selection, forest, names or [f"Label {i}" for i in forest.classes],
                       "stored forest", rounding)
        if not project.has_labels:
            raise InputError(
                f"{project_file}: the project has no labels: open it in ilastik, label nuclei, "
                "cytoplasm and background on the crops and save it (or write LabelSets), then run again"
            )
        if selection is None:
            selection = FeatureSelection.steinbock()
        xs, ys = [], []
        for image, axes, labels in project.training_data():
            feats = compute_features(image, selection, axes=axes, rounding=rounding, n_jobs=threads)
            mask = labels[..., 0] > 0
            xs.append(feats[mask])
            ys.append(labels[..., 0][mask].astype(np.int64))
        X, y = np.concatenate(xs), np.concatenate(ys)
        n_classes = max(len(names), int(y.max()))
        names = names + [f"Label {i}" for i in range(len(names) + 1, n_classes + 1)]
        forest = train_forest(X, y, n_trees=n_trees, seed=seed, n_jobs=threads,
                              backend=DEFAULT_TRAINER)
        return cls(selection, forest, names, f"retrained on {len(y)} labelled pixels", rounding)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def predict_proba(self, image_cyx: np.ndarray, *, threads: int | None = None) -> np.ndarray:
        """Class probabilities (Y, X, classes) float32 of a CYX Ilastik image, tile by tile."""
        from ..features import compute_features, feature_halo

        image = np.moveaxis(np.asarray(image_cyx, dtype=np.float32), 0, -1)
        height = image.shape[0]
        expected = self.selection.n_channels(image.shape[-1], 2)
        if expected != self.forest.n_features:
            raise InputError(
                f"the classifier needs {self.forest.n_features} features but this image's "
                f"{image.shape[-1]} channels give {expected}: the Ilastik images and the project's "
                "crops were prepared with different channels"
            )
        halo = feature_halo(self.selection)
        out = np.empty(image.shape[:2] + (self.n_classes,), dtype=np.float32)
        for y0 in range(0, height, _TILE):
            y1 = min(height, y0 + _TILE)
            lo, hi = max(0, y0 - halo), min(height, y1 + halo)
            feats = compute_features(image[lo:hi], self.selection, axes="yxc",
                                     rounding=self.rounding, n_jobs=threads)
            feats = feats[y0 - lo : y1 - lo]
            proba = self.forest.predict_proba(
                feats.reshape(-1, feats.shape[-1]), n_classes=self.n_classes, n_jobs=threads
            )
            out[y0:y1] = proba.reshape(y1 - y0, image.shape[1], self.n_classes)
        return out


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
    threads: int | None = None,
    overwrite: bool = False,
    retrain: bool = False,
    n_trees: int = 100,
    seed: int | None = 0,
    rounding: str = "exact",
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
    threads : int, optional
        Threads for features, training and prediction (steinbock's ``--threads``).
    overwrite : bool, default False
        Recompute existing outputs (default: skip them, so a stopped run resumes).
    retrain : bool, default False
        Train on the labels even when the project holds a stored forest.
    n_trees : int, default 100
        Trees of a retrained forest (ilastik's default).
    seed : int or None, default 0
        Seed of a retrained forest (the same seed gives the same probabilities).
    rounding : {"exact", "muladd", "fast"}, default "exact"
        Feature arithmetic (see :func:`pyquint.features.compute_features`).

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
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be at least 1, not {threads}")
    out_dir = Path(out_dir)
    outputs = [out_dir / f"{f.stem}.tiff" for f in img_files]
    seen: dict[Path, Path] = {}
    for f, out in zip(img_files, outputs):
        if out in seen:
            raise InputError(f"{f} and {seen[out]} would both be written to {out}")
        seen[out] = f
    result = RunResult()
    todo = [(f, o) for f, o in zip(img_files, outputs) if overwrite or not o.exists()]
    result.skipped = [o for f, o in zip(img_files, outputs) if not (overwrite or not o.exists())]
    if not todo:
        return result
    classifier = SteinbockClassifier.from_project(
        project_file, retrain=retrain, n_trees=n_trees, seed=seed, threads=threads, rounding=rounding
    )
    result.classifier_source = classifier.source
    result.class_names = classifier.class_names
    logger.info("%s: %s", project_file, classifier.source)
    out_dir.mkdir(parents=True, exist_ok=True)
    for img_file, out in progress(todo, "ilastik run", len(todo)):
        image = read_ilastik_h5(img_file, "img")
        try:
            proba = classifier.predict_proba(image, threads=threads)
        except InputError as exc:
            raise InputError(f"{img_file}: {exc}") from None
        write_probabilities(out, probabilities_to_uint16(proba))
        result.written.append(out)
        logger.info("%s", out)
    return result
