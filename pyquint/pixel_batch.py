"""Pixel classification over files: training from image files, batch prediction.

:func:`predict_files` is the one batch loop of pixel prediction; ``pyquint pixel predict``,
the ilastik headless mode (:func:`pyquint.ilastik.predict_project`), ``pyquint steinbock
run`` (:func:`pyquint.steinbock.run`) and ``pyquint large predict`` all call it. What is
written and how is an :class:`ExportSpec` (ilastik's export settings as one value); how an
input is read, predicted or written can be replaced per caller (steinbock's uint16 TIFFs,
the tile-streaming path), the batch rules stay:

- an output never replaces an input and two outputs never collide (checked before any work);
- outputs that exist are skipped unless ``overwrite``, so an interrupted batch resumes;
- outputs are written atomically, in folders locked for this run;
- outputs of an earlier run found in an input folder are not inputs of this one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .batch import collect_inputs, guard_outputs, lock_outputs, progress, same_file, unlike_training
from .errors import InputError, PyquintError
from .export import (
    EXPORT_FORMATS,
    EXPORT_SOURCES,
    export_filename,
    normalize_format,
    normalize_source,
    output_axes_for,
    write_export,
)
from .frames import predict_sources_by_frame
from .io import read_image, to_canonical
from .naming import check_distinct_outputs, pair_by_name

__all__ = ["BatchResult", "ExportSpec", "label_names", "pair_training_folders", "plan_outputs",
           "predict_files", "read_training_image", "train_files"]

_ROI_FIELDS = re.compile(r"\{(roi|[tzyxc]_(start|stop))\}")
_SECTION = re.compile(r"^(.*?)([_-]s\d+)$", re.IGNORECASE)
_LABEL_WORDS = ("labels", "label", "Labels", "Label")

#: ``read(path) -> (data, axes)``: one input image and its stored axes.
Reader = Callable[[Path], "tuple[np.ndarray, str]"]
#: ``write(input, source, data, axes, original_axes, output) -> Path``: one result file.
Writer = Callable[[Path, str, np.ndarray, str, str, Path], Path]
#: ``work(input, {key: output}) -> [written paths]``: a whole item (e.g. tile streaming).
Work = Callable[[Path, "dict[Any, Path]"], "list[Path]"]


@dataclass(frozen=True)
class ExportSpec:
    """What a prediction batch writes: ilastik's export settings as one validated value.

    Parameters
    ----------
    sources : sequence of str
        Export sources (case-insensitive, duplicates dropped; default Probabilities).
    format : str
        ``hdf5``, ``compressed hdf5``, ``png``, ``tif``/``tiff``, ``npy``, ``ome-zarr``.
    filename_format : str, optional
        Output name pattern (:func:`pyquint.export.export_filename`), default
        ``{dataset_dir}/{nickname}_{result_type}``.
    output_dir : path, optional
        Replaces the input's folder in ``{dataset_dir}``.
    internal_path : str
        HDF5 dataset name.
    axis_order : str, optional
        Axis order of the outputs (default: the input's own with ``c`` appended).
    export_dtype, pipeline_drange, export_drange : optional
        ilastik's conversion (:func:`pyquint.export.convert_for_export`).
    overwrite : bool
        Recompute outputs that exist (default: skip them).
    """

    sources: tuple[str, ...] = ("Probabilities",)
    format: str = "hdf5"
    filename_format: str | None = None
    output_dir: str | os.PathLike | None = None
    internal_path: str = "exported_data"
    axis_order: str | None = None
    export_dtype: Any = None
    pipeline_drange: Any = None
    export_drange: Any = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        names = [self.sources] if isinstance(self.sources, str) else list(self.sources)
        sources = tuple(dict.fromkeys(normalize_source(s) for s in names)) or ("Probabilities",)
        object.__setattr__(self, "sources", sources)
        object.__setattr__(self, "format", normalize_format(self.format))
        if self.axis_order:
            object.__setattr__(self, "axis_order", self.axis_order.lower())
        object.__setattr__(self, "filename_format", self.filename_format or None)

    @property
    def needs_shape(self) -> bool:
        """Whether output names depend on the data's shape (``{roi}``, ``{x_stop}``, ...)."""
        return bool(self.filename_format and _ROI_FIELDS.search(self.filename_format))

    def output_paths(self, raw_path: str | os.PathLike,
                     shapes: dict[str, tuple[Sequence[int], str]] | None = None) -> dict[str, Path]:
        """Output file of each source for the input ``raw_path``; ``shapes`` gives each
        source's exported ``(shape, axes)`` when :attr:`needs_shape`."""
        out = {}
        for s in self.sources:
            shape, axes = shapes[s] if shapes is not None else (None, None)
            out[s] = export_filename(raw_path, s, self.format, self.filename_format, shape=shape,
                                     axes=axes, dataset_dir=self.output_dir)
        return out

    def write(self, raw_path: Path, source: str, data: np.ndarray, axes: str,
              original_axes: str, out: Path) -> Path:
        """Export one result as ilastik does (:func:`pyquint.export.write_export`)."""
        return write_export(raw_path, source, data, axes, original_axes, fmt=self.format,
                            internal_path=self.internal_path, output_axes=self.axis_order,
                            export_dtype=self.export_dtype, pipeline_drange=self.pipeline_drange,
                            export_drange=self.export_drange, path=out)


@dataclass
class BatchResult:
    """What :func:`predict_files` did: files written, existing outputs skipped, inputs failed
    (one message each, naming the input)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _built(classifier: Any) -> Any:
    """The classifier itself, or what a builder (a callable without ``predict_sources``) makes."""
    if callable(classifier) and not hasattr(classifier, "predict_sources"):
        return classifier()
    return classifier


def _default_reader(axes: str | None) -> Reader:
    return lambda path: read_image(path, axes)


def _source_shapes(classifier: Any, data: np.ndarray, in_axes: str, spec: ExportSpec
                   ) -> dict[str, tuple[list[int], str]]:
    """Each source's exported (shape, axes), from the input's shape and the classifier."""
    canon, canon_axes = to_canonical(data, in_axes)
    target = spec.axis_order or output_axes_for(in_axes)
    channels = {"Probabilities": classifier.n_classes_, "Features": len(classifier.feature_names_)}
    shapes = {}
    for s in spec.sources:
        sizes = dict(zip(canon_axes, canon.shape))
        sizes["c"] = channels.get(s, 1)
        shapes[s] = ([sizes.get(a, 1) for a in target], target)
    return shapes


def plan_outputs(
    inputs: Iterable[str | os.PathLike],
    spec: ExportSpec,
    *,
    classifier: Any = None,
    read: Reader | None = None,
    exclude: Sequence[str | os.PathLike] = (),
    outputs: Callable[[Path], dict[Any, Path]] | None = None,
) -> dict[Path, dict[Any, Path]]:
    """Every input image (files and folders expanded) with the output file of each source.

    Files found in a folder that are outputs of this spec for another input (or of another
    source or format, from an earlier run) are left out; inputs named explicitly never are.
    For shape-dependent name patterns each image is read (``read``) and ``classifier`` gives
    the channel counts. ``outputs(path) -> {key: file}`` replaces the spec's names (keys
    other than sources, e.g. one file per time point and format).

    Raises
    ------
    InputError
        No inputs left, or an input that cannot be read for its shape.
    """
    given = [Path(p) for p in inputs]
    paths = [p for p in collect_inputs(given) if not any(same_file(p, x) for x in exclude)]
    read = read or _default_reader(None)
    plan: dict[Path, dict[Any, Path]] = {}
    for p in paths:
        if outputs is not None:
            plan[p] = outputs(p)
        elif spec.needs_shape:
            data, in_axes = read(p)
            plan[p] = spec.output_paths(p, _source_shapes(classifier, data, in_axes, spec))
        else:
            plan[p] = spec.output_paths(p)
    made_by = {o.resolve(): p.resolve() for p, outs in plan.items() for o in outs.values()}
    if not spec.needs_shape:
        # earlier runs may have exported other sources or formats into an input folder
        for p in plan:
            for other_source in EXPORT_SOURCES:
                for other_fmt in EXPORT_FORMATS:
                    try:
                        o = export_filename(p, other_source, other_fmt, spec.filename_format,
                                            dataset_dir=spec.output_dir)
                    except InputError:  # e.g. {slice_index}, which only sequence formats fill
                        continue
                    made_by.setdefault(o.resolve(), p.resolve())
    plan = {p: outs for p, outs in plan.items()
            if made_by.get(p.resolve(), p.resolve()) == p.resolve() or p in given}
    if not plan:
        raise InputError("no input images left (the inputs are all outputs of this command)")
    # one input may write several sources to one file; two inputs may not share one
    pairs = [(p, o) for p, outs in plan.items() for o in outs.values()]
    check_distinct_outputs([p for p, _ in pairs], [o for _, o in pairs])
    return plan


def predict_files(
    classifier: Any,
    inputs: Iterable[str | os.PathLike],
    spec: ExportSpec,
    *,
    axes: str | None = None,
    read: Reader | None = None,
    write: Writer | None = None,
    work: Work | None = None,
    outputs: Callable[[Path], dict[Any, Path]] | None = None,
    exclude: Sequence[str | os.PathLike] = (),
    keep_going: bool = False,
    warn: Callable[[str], None] | None = None,
    desc: str = "pixel predict",
    lock_idle: bool = True,
) -> BatchResult:
    """Predict every input image and write its export files.

    Parameters
    ----------
    classifier : PixelClassifier, or a callable returning one
        Anything with ``predict_sources(image, sources)``; a callable is called only when
        some output has to be computed (a resumed batch never loads or trains a model).
    inputs : sequence of paths
        Image files or folders (``file.h5/inner`` for HDF5 datasets).
    spec : ExportSpec
        What to write, where and how; ``spec.overwrite`` recomputes existing outputs.
    axes : str, optional
        Axes of the inputs when the files do not say (with the default reader).
    read : callable, optional
        ``read(path) -> (data, axes)``; default :func:`pyquint.io.read_image`.
    write : callable, optional
        ``write(input, source, data, axes, original_axes, output) -> Path``; default
        :meth:`ExportSpec.write` (ilastik's export).
    work : callable, optional
        ``work(input, {key: output}) -> [paths]`` (the outputs still to be made) replaces read → predict → write for one
        input (the tile-streaming path reads and writes window by window).
    outputs : callable, optional
        ``outputs(path) -> {key: file}``: other output names (see :func:`plan_outputs`);
        needs ``work``, which receives the keys and files still to be made.
    exclude : sequence of paths
        Files never taken as inputs (e.g. the model file in an input folder).
    keep_going : bool
        Report a failing input in :attr:`BatchResult.failed` and go on (default: raise).
    warn : callable, optional
        Receives a warning when an input's pixels differ from the model's training images.
    desc : str
        Progress bar label.
    lock_idle : bool
        Lock the output folders (and remove what killed runs left there) even when every
        output exists; False leaves a finished batch's folders untouched.

    Returns
    -------
    BatchResult

    Raises
    ------
    InputError
        Bad inputs or outputs (before any work), or the first failing input unless
        ``keep_going``.
    """
    read = read or _default_reader(axes)
    write = write or spec.write
    if spec.needs_shape:
        classifier = _built(classifier)  # the names need the classifier's channel counts
    if outputs is not None and work is None:
        raise InputError("predict_files: custom output names need a work function")
    plan = plan_outputs(inputs, spec, classifier=classifier, read=read, exclude=exclude,
                        outputs=outputs)
    all_outputs = [o for outs in plan.values() for o in outs.values()]
    guard_outputs(list(plan), all_outputs)
    todo = {p: {s: o for s, o in outs.items() if spec.overwrite or not o.exists()}
            for p, outs in plan.items()}
    todo = {p: outs for p, outs in todo.items() if outs}
    pending = {o for outs in todo.values() for o in outs.values()}
    result = BatchResult(skipped=[o for o in all_outputs if o not in pending])
    if todo:
        classifier = _built(classifier)  # before any folder is made: a bad model leaves none
    if todo or lock_idle:
        lock_outputs(all_outputs)
    for path, outs in progress(list(todo.items()), desc, total=len(todo)):
        try:
            if work is not None:
                result.written.extend(work(path, outs))
                continue
            data, in_axes = read(path)
            canon, canon_axes = to_canonical(data, in_axes)
            if warn is not None:
                unlike = unlike_training(canon, getattr(classifier, "training_info_", {}), path)
                if unlike:
                    warn(unlike)
            # time series: each frame on its own, as ilastik does
            results = predict_sources_by_frame(classifier, canon, canon_axes, list(outs))
            for source, out in outs.items():
                result.written.append(write(path, source, results[source], canon_axes, in_axes, out))
        except PyquintError as exc:
            message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            if not keep_going:
                raise InputError(message) from None
            result.failed.append(message)
    return result


# --------------------------------------------------------------------------- training
def read_training_image(path: str | os.PathLike, axes: str | None = None) -> np.ndarray:
    """An image file as a canonical ``yxc``/``zyxc`` array (time series are refused)."""
    data, ax = read_image(path, axes)
    canon, _ = to_canonical(data, ax)
    if canon.ndim not in (3, 4):
        raise InputError(f"{path}: time series are not supported for pixel classification "
                         f"(axes {ax!r}); export single time points")
    return canon


def label_names(image: str | os.PathLike) -> list[str]:
    """The names a training image's label image may have, most wanted first: its own stem
    (in another folder), ``{stem}_labels`` / ``-labels`` / ``_label`` ..., and for Nutil's
    section names ``brain_labels_s001`` for ``brain_s001`` (the ``_sXXX`` id stays last)."""
    stem = Path(image).stem
    names = [stem] + [f"{stem}{sep}{w}" for w in _LABEL_WORDS for sep in ("_", "-")]
    m = _SECTION.match(stem)
    if m:
        names += [f"{m.group(1)}_{w}{m.group(2)}" for w in _LABEL_WORDS]
    return names


def pair_training_folders(images_dir: str | os.PathLike, labels_dir: str | os.PathLike
                          ) -> tuple[list[Path], list[Path]]:
    """Training images and their label images, matched by name (:func:`label_names`).

    The two folders may be one: then images without a label image are not training images,
    and label images are never images of their own.

    Raises
    ------
    InputError
        An image without a label image (separate folders), or no pair at all.
    """
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    images = collect_inputs([images_dir])
    found = pair_by_name(images, collect_inputs([labels_dir]), names=label_names,
                         duplicates="first", what="label")
    one_folder = same_file(images_dir, labels_dir)
    if not one_folder:
        for img, lab in zip(images, found):
            if lab is None:
                raise InputError(f"{img}: no label image for it in {labels_dir} (looked for "
                                 f"{', '.join(label_names(img)[:3])}, ...)")
    label_files = {lab.resolve() for lab in found if lab is not None}
    pairs = [(img, lab) for img, lab in zip(images, found)
             if lab is not None and img.resolve() not in label_files]
    if not pairs:
        raise InputError(f"no image in {images_dir} has a label image in {labels_dir}")
    return [i for i, _ in pairs], [lab for _, lab in pairs]


def train_files(
    classifier: Any,
    images: Sequence[str | os.PathLike],
    labels: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    axes: str | None = None,
    overwrite: bool = False,
) -> Any:
    """Train ``classifier`` on image files and their label images, and save it to ``output``.

    Parameters
    ----------
    classifier : PixelClassifier
        Unfitted (its parameters say how to train).
    images, labels : sequences of paths
        One label image (one channel, 0 = unlabelled, 1..N) per image, same size, same order.
    output : path
        Model file to write (atomically); refused when it exists unless ``overwrite``, and
        when it is one of the inputs.
    axes : str, optional
        Axes of the images when the files do not say.

    Returns
    -------
    PixelClassifier
        ``classifier``, fitted.
    """
    if len(images) != len(labels):
        raise InputError(f"{len(images)} image(s) but {len(labels)} label image(s); give one "
                         f"label image per image, in the same order")
    output = Path(output)
    if output.exists() and not overwrite:
        raise InputError(f"{output} exists; use --overwrite to replace it")
    guard_outputs(list(images) + list(labels), [output])
    imgs, labs = [], []
    for img_path, lab_path in progress(list(zip(images, labels)), "reading"):
        imgs.append(read_training_image(img_path, axes))
        lab = read_training_image(lab_path)
        if lab.shape[-1] != 1:
            raise InputError(f"{lab_path}: a label image needs one channel, not {lab.shape[-1]}")
        if lab.shape[:-1] != imgs[-1].shape[:-1]:
            raise InputError(f"{lab_path}: label image of shape {lab.shape[:-1]} does not match "
                             f"its image {img_path} of shape {imgs[-1].shape[:-1]}")
        labs.append(lab)
    classifier.fit(imgs, labs)  # records the images' value range for warnings on unlike input
    classifier.save(output, overwrite=overwrite)
    return classifier
