"""QUINT end to end: section images -> Nutil-ready segmentations, legend, QC, report, provenance.

What a QUINT user does across ilastik, Fiji and a file browser, in one call::

    from pyquint.workflows.quint import run_quint
    from pyquint.workflows.config import load_config
    result = run_quint(load_config("quint.toml"))

Steps (each built on the public API of its module, not beside it):

1. list the sections and check their names against Nutil's and PyNutil's rules (every
   offending name is reported before any work starts);
2. optionally downscale (QUINT's resize factor 0.1-0.2);
3. pixel classification (:class:`pyquint.pixel.PixelClassifier` trained from label images, a
   saved model, or an ilastik project through :mod:`pyquint.ilastik`);
4. optionally object classification (:func:`pyquint.objects.threshold_objects` + an
   :class:`pyquint.objects.ObjectClassifier`) to drop artefacts such as edge streaks;
5. colour with a Glasbey or custom LUT (:mod:`pyquint.lut`, or a real ImageJ with
   ``engine="imagej"``) into palette (or RGB) PNGs that keep the ``_sXXX`` id;
6. count what Nutil and PyNutil will see in those PNGs, and write ``legend.png``,
   ``nutil_colours.csv``, ``qc_montage.png``, ``report.html``, ``summary.csv`` and
   ``provenance.json``.

Sections whose PNG already exists are not recomputed (resume) unless ``run.overwrite``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..batch import guard_outputs, progress
from ..errors import InputError
from ..export import export_array
from ..ilastik import ProjectPredictor, load_feature_selection, read_project
from ..imagej import apply_lut_imagej
from ..io import read_image, to_canonical, write_image
from ..lut import load_lut, write_lut, write_palette_png, write_rgb_png
from ..objects import ObjectClassifier, threshold_objects
from ..objects.classifier import ObjectLabelWarning, object_labels_from_image
from ..objects.export import write_table
from ..pixel import PixelClassifier, simple_segmentation
from . import qc
from .config import QuintConfig
from .pynutil_step import check_pynutil_inputs, region_counts
from .report import _write_csv, write_run_outputs
from .sections import (
    SEGMENTATION_DIR,
    check_section_names,
    list_sections,
    load_labels,
    load_section,
    match_by_name,
)

__all__ = ["QuintResult", "SectionResult", "list_sections", "plan", "run_quint"]

@dataclass
class SectionResult:
    """Per-section outcome (areas in segmentation pixels)."""

    name: str
    output: Path
    class_pixels: dict[int, int]
    objects: dict[int, int]
    nutil_objects: dict[int, int]
    nutil_pixels: dict[int, int]
    pynutil_objects: dict[int, int]
    pynutil_pixels: dict[int, int]
    f1: float | None = None
    resumed: bool = False
    index0_pixels: int = 0                 # pixels written as index 0 (classes not coloured)
    objects_found: int | None = None       # thresholded objects that passed the size filter
    objects_rejected: dict[str, int] = field(default_factory=dict)  # reason -> objects dropped


@dataclass
class QuintResult:
    """What :func:`run_quint` did."""

    output_folder: Path
    sections: list[SectionResult] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    regions: list[dict] | None = None      # PyNutil's per-region counts, when that step ran
    region_class: int | None = None        # the class PyNutil counted

    @property
    def mean_f1(self) -> float | None:
        values = [s.f1 for s in self.sections if s.f1 is not None]
        return float(np.mean(values)) if values else None


# --------------------------------------------------------------------------- pipeline
def plan(config: QuintConfig) -> list[tuple[Path, Path, str]]:
    """What a run would do: (section, output PNG, "compute" | "skip (exists)")."""
    config.validate()
    sections = list_sections(config)
    check_section_names(sections)
    out_dir = config.resolve(config.output.folder) / SEGMENTATION_DIR
    rows = []
    for s in sections:
        out = out_dir / (s.stem + ".png")
        status = "skip (exists)" if out.exists() and not config.run.overwrite else "compute"
        rows.append((s, out, status))
    return rows


def _pixel_model(config: QuintConfig, sections: list[Path], out_dir: Path):
    """Train or load the pixel classifier; returns (predictor, class_names, model_path)."""
    p = config.pixel
    if p.model:
        clf = PixelClassifier.load(config.resolve(p.model))
        return clf, list(clf.class_names_), config.resolve(p.model)
    if p.ilp:
        predictor = ProjectPredictor(read_project(config.resolve(p.ilp)), retrain=p.retrain,
                                     n_trees=p.trees, seed=p.seed).fit()
        clf = predictor.classifier_
        return clf, list(clf.class_names_), config.resolve(p.ilp)
    matched = match_by_name(sections, config.resolve(p.labels), "pixel.labels")
    images, labels = [], []
    for section, label_path in progress(matched.items(), "loading training images", len(matched)):
        image = load_section(section, config)
        images.append(image)
        labels.append(load_labels(label_path, image.shape[:2], config))
    named = p.features.strip().lower() in ("all", "steinbock") or p.features.lstrip().startswith("{")
    selection = load_feature_selection(p.features if named else config.resolve(p.features),
                                       option="pixel.features")
    clf = PixelClassifier(features=selection, n_trees=p.trees, seed=p.seed, class_names=p.class_names)
    clf.fit(images, labels)  # records the images' value range for warnings on unlike input
    model_path = out_dir / "pixel_model.h5"
    clf.save(model_path, overwrite=True)  # the run's own model, retrained by every run
    return clf, list(clf.class_names_), model_path


def _object_model(config: QuintConfig, sections: list[Path], pixel_clf, out_dir: Path):
    """Train or load the object classifier (or None when the step is off)."""
    o = config.objects
    if not o.enabled:
        return None, None
    if o.model:
        return ObjectClassifier.load(config.resolve(o.model)), config.resolve(o.model)
    if not o.labels:
        return None, None  # threshold + size filter only
    matched = match_by_name(sections, config.resolve(o.labels), "objects.labels")
    raws, objects, labels = [], [], []
    for section, label_path in progress(matched.items(), "object training", len(matched)):
        image = load_section(section, config)
        proba = pixel_clf.predict_proba(image)
        raws.append(image)
        objects.append(_threshold(proba, o))
        labels.append(_object_labels(objects[-1], load_labels(label_path, image.shape[:2], config), label_path))
    clf = ObjectClassifier(n_trees=o.trees, seed=o.seed)
    clf.fit(raws, objects, labels)
    path = out_dir / "object_model.h5"
    clf.save(path, overwrite=True)
    return clf, path


def _object_labels(objects: np.ndarray, label_image: np.ndarray, source: Path) -> dict[int, int]:
    """Object id -> class from painted object labels; an object holding strokes of two classes
    takes the majority class, with a warning that names the file, the object and its position."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ObjectLabelWarning)
        try:
            mapping = object_labels_from_image(objects, label_image)
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None
    for w in caught:
        warnings.warn(f"{source}: {w.message}", w.category, stacklevel=2)
    return mapping


def _precheck_object_labels(config: QuintConfig, sections: list[Path]) -> None:
    """What can be checked of the object labels before the pixel work: every file matches a
    section and has its size, holds integers, and uses only classes 1 (keep) and 2 (artefact)."""
    o = config.objects
    if not (o.enabled and o.labels and not o.model):
        return
    if o.keep_class not in (1, 2):
        raise InputError(f"objects.keep_class {o.keep_class}: the object classes are 1 (keep) and 2 (artefact)")
    matched = match_by_name(sections, config.resolve(o.labels), "objects.labels")
    labelled = 0
    for section, label_path in matched.items():
        labels = load_labels(label_path, _shape_of(section, config), config)
        if labels.dtype.kind not in "iub":
            raise InputError(f"{label_path}: object labels must be integers, not {labels.dtype}")
        top = int(labels.max()) if labels.size else 0
        if top > 2:
            raise InputError(f"{label_path}: object label {top}; use 1 = keep (cell), 2 = artefact, 0 = unlabelled")
        labelled += int(np.count_nonzero(labels))
    if not labelled:
        raise InputError(f"objects.labels: no labelled pixels in {config.resolve(o.labels)}")


def _shape_of(section: Path, config: QuintConfig) -> tuple[int, int]:
    data, axes = read_image(section, axes=config.input.axes)
    h, w = to_canonical(data, axes)[0].shape[:2]
    if config.input.resize is not None and config.input.resize != 1:
        return max(1, round(h * config.input.resize)), max(1, round(w * config.input.resize))
    return h, w


def _threshold(proba: np.ndarray, o, *, size_filter: bool = True) -> np.ndarray:
    if o.channel > proba.shape[-1]:
        raise InputError(f"objects.channel {o.channel} is larger than the number of classes {proba.shape[-1]}")
    sizes = dict(min_size=o.min_size, max_size=o.max_size) if size_filter else dict(min_size=0, max_size=2**62)
    return threshold_objects(proba, channel=o.channel - 1, threshold=o.threshold,
                             sigma=(o.sigma, o.sigma), **sizes)


@dataclass
class _Segmented:
    segmentation: np.ndarray               # final classes 1..N (uint8)
    proba: np.ndarray                      # pixel probabilities (y, x, N)
    kept: np.ndarray | None = None         # labels of the kept objects (4-connected, 1..k)
    objects: np.ndarray | None = None      # all thresholded objects
    object_features: dict | None = None
    object_classes: np.ndarray | None = None
    object_proba: np.ndarray | None = None
    rejected: dict[str, int] = field(default_factory=dict)


def _segment(image: np.ndarray, pixel_clf, object_clf, config: QuintConfig) -> _Segmented:
    """Pixel classification, then (optionally) the object step that drops artefacts."""
    from scipy import ndimage as ndi

    proba = pixel_clf.predict_proba(image)
    segmentation = simple_segmentation(proba)
    o = config.objects
    if not o.enabled:
        return _Segmented(segmentation, proba)
    objects = _threshold(proba, o)
    result = _Segmented(segmentation, proba, objects=objects)
    unfiltered = int(_threshold(proba, o, size_filter=False).max())
    result.rejected[f"size filter ({o.min_size}..{o.max_size} px)"] = unfiltered - int(objects.max())
    if object_clf is not None and objects.max() > 0:
        result.object_features = object_clf.compute_features(image, objects)
        result.object_proba = object_clf.predict_proba_features(result.object_features)
        result.object_classes = 1 + np.argmax(result.object_proba, axis=1)
        keep_ids = np.flatnonzero(result.object_classes == o.keep_class) + 1
        kept = np.isin(objects, keep_ids)
        for k, name in enumerate(object_clf.class_names, start=1):
            if k != o.keep_class:
                result.rejected[f"classified '{name}'"] = int(np.count_nonzero(result.object_classes == k))
    else:
        kept = objects > 0
    # Stain that is not a kept object becomes the first class (background); kept objects
    # are the thresholded class, so one colour in the PNG is one object kind for Nutil.
    segmentation = segmentation.copy()
    segmentation[(segmentation == o.channel) & ~kept] = 1
    segmentation[kept] = o.channel
    result.segmentation = segmentation
    result.kept, _ = ndi.label(kept, structure=ndi.generate_binary_structure(2, 1))
    return result


def _write_extras(section: Path, seg: _Segmented, object_clf, config: QuintConfig, out_dir: Path) -> None:
    """Optional per-section outputs: ilastik-layout probabilities and the object table."""
    if config.output.probabilities:
        export_array(out_dir / "probabilities" / f"{section.stem}_Probabilities.h5", seg.proba, "yxc",
                     drange=(0.0, 1.0))
    if config.output.object_tables and seg.object_features is not None:
        write_table(out_dir / "objects" / f"{section.stem}_table.csv", seg.object_features,
                    list(object_clf.class_names), seg.object_classes, seg.object_proba)


def _coloured_indices(segmentation: np.ndarray, classes: list[int] | None) -> np.ndarray:
    if classes is None:
        return segmentation
    return np.where(np.isin(segmentation, classes), segmentation, 0).astype(np.uint8)


def _write_png(indices: np.ndarray, lut, out: Path, config: QuintConfig, lut_file: Path | None) -> None:
    if config.run.engine == "imagej":
        if config.lut.rgb:
            raise InputError("run.engine = 'imagej' writes palette PNGs as ImageJ does; set lut.rgb = false")
        apply_lut_imagej(indices, lut_file, out)
    elif config.lut.rgb:
        write_rgb_png(out, indices, lut)
    else:
        write_palette_png(out, indices, lut)


def run_quint(config: QuintConfig, *, truth: str | os.PathLike | None = None, truth_value: int = 1,
              evaluate_class: int | None = None) -> QuintResult:
    """Run the QUINT segmentation pipeline described by ``config``.

    Parameters
    ----------
    config : QuintConfig
        The pipeline configuration (see :mod:`pyquint.workflows.config`).
    truth : path, optional
        Folder of ground-truth images (same names as the sections) to report the pixel F1 of
        ``evaluate_class`` against ``truth == truth_value`` (used by the demo).
    truth_value, evaluate_class : int
        Ground-truth value and output class compared by the F1 (default: the object step's
        class, else the last class).

    Returns
    -------
    QuintResult
    """
    sections, out_dir, outputs = _plan_run(config)
    pixel_clf, class_names, pixel_model_path = _pixel_model(config, sections, out_dir)
    n_classes = len(class_names)
    object_clf, object_model_path = _object_model(config, sections, pixel_clf, out_dir)

    lut = load_lut(config.lut.name, fiji_dir=config.lut.fiji)
    if config.lut.set:
        lut = lut.with_colors(config.lut.set)
    lut_file = out_dir / "pyquint.lut"
    write_lut(lut, lut_file)
    coloured = config.lut.classes or list(range(1, n_classes + 1))
    evaluate_class = evaluate_class or (config.objects.channel if config.objects.enabled else n_classes)
    truth_dir = Path(truth) if truth is not None else None

    def process(section: Path) -> SectionResult:
        out = outputs[section]
        image = load_section(section, config)
        resumed = out.exists() and not config.run.overwrite
        found, rejected = None, {}
        if resumed:
            indices = read_image(out)[0][..., 0]
            own = {c: _count_objects(indices == c) for c in coloured}
            classes_seen = indices  # only the coloured classes are known from the PNG
        else:
            seg = _segment(image, pixel_clf, object_clf, config)
            _write_extras(section, seg, object_clf, config, out_dir)
            indices = _coloured_indices(seg.segmentation, config.lut.classes)
            _write_png(indices, lut, out, config, lut_file)
            own = {c: (int(seg.kept.max()) if seg.kept is not None and c == config.objects.channel
                       else _count_objects(indices == c)) for c in coloured}
            classes_seen = seg.segmentation
            if seg.objects is not None:
                found, rejected = int(seg.objects.max()), seg.rejected
        rgb = qc.read_png_rgb(out)
        write_image(out_dir / "overlays" / out.name, qc.overlay(image, rgb, indices > 0), "yxc")
        pixels = {c: int(np.count_nonzero(classes_seen == c)) for c in range(1, n_classes + 1)
                  if not resumed or c in coloured}
        nutil, pynutil = {}, {}
        for c in coloured:
            colour = tuple(int(v) for v in lut.table[c])
            nutil[c] = qc.count_colour_objects(rgb, colour, tolerance=2, nutil_edges=True)
            pynutil[c] = qc.count_colour_objects(rgb, colour)
        f1 = None
        if truth_dir is not None:
            t = load_labels(truth_dir / section.name, indices.shape, config)
            f1 = qc.pixel_f1(indices == evaluate_class, t == truth_value)
        return SectionResult(section.stem, out, pixels, own,
                             {c: v.objects for c, v in nutil.items()}, {c: v.pixels for c, v in nutil.items()},
                             {c: v.objects for c, v in pynutil.items()}, {c: v.pixels for c, v in pynutil.items()},
                             f1, resumed, int(np.count_nonzero(indices == 0)), found, rejected)

    result = QuintResult(out_dir)
    with ThreadPoolExecutor(max_workers=config.run.workers) as pool:
        result.sections = list(progress(pool.map(process, sections), "segmenting sections", len(sections)))

    if config.pynutil.alignment:
        _pynutil_counts(result, config, lut, coloured)

    write_run_outputs(result, config, sections, class_names, coloured, lut, n_classes,
                      [p for p in (pixel_model_path, object_model_path) if p is not None],
                      truth_dir=truth_dir, truth_value=truth_value, evaluate_class=evaluate_class)
    return result


def _plan_run(config: QuintConfig) -> tuple[list[Path], Path, dict[Path, Path]]:
    """Everything checked before the long pixel work: the sections, where their Nutil PNGs
    go (never among the inputs), equal channel counts, the object labels and the PyNutil
    inputs. Returns the sections, the output folder (created) and each section's PNG."""
    config.validate()
    sections = list_sections(config)
    check_section_names(sections)
    out_dir = config.resolve(config.output.folder)
    seg_dir = out_dir / SEGMENTATION_DIR
    section_dirs = {s.parent.resolve() for s in sections}
    if out_dir.resolve() in section_dirs or seg_dir.resolve() in section_dirs:
        raise InputError(f"output.folder {out_dir}: outputs would be written among the input sections; "
                         "choose another folder")
    outputs = {s: seg_dir / (s.stem + ".png") for s in sections}
    guard_outputs(sections, list(outputs.values()))
    out_dir.mkdir(parents=True, exist_ok=True)
    # channel counts must agree (sizes may differ)
    channel_counts = {}
    for s in sections:
        data, axes = read_image(s, axes=config.input.axes)
        channel_counts[s.name] = to_canonical(data, axes)[0].shape[-1]
    if len(set(channel_counts.values())) > 1:
        raise InputError(f"sections have different channel counts: {channel_counts}")
    _precheck_object_labels(config, sections)
    check_pynutil_inputs(config.pynutil, config.resolve)
    return sections, out_dir, outputs


def _pynutil_counts(result: QuintResult, config: QuintConfig, lut, coloured: list[int]) -> None:
    """PyNutil's per-region counts of the object colour, into ``pynutil/region_counts.csv``."""
    cls = config.objects.channel if config.objects.enabled and config.objects.channel in coloured else coloured[-1]
    r, g, b = (int(v) for v in lut.table[cls])
    rows = region_counts(result.output_folder / SEGMENTATION_DIR, config.pynutil, config.resolve, (b, g, r))
    result.regions = rows
    result.region_class = cls
    result.files["region_counts"] = _write_csv(result.output_folder / "pynutil" / "region_counts.csv", rows)


def _count_objects(mask: np.ndarray) -> int:
    from scipy import ndimage as ndi

    return int(ndi.label(mask, structure=ndi.generate_binary_structure(2, 1))[1])
