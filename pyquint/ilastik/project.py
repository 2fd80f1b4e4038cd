"""Read ilastik projects (``.ilp``) without ilastik and without ever modifying them.

The file is opened read-only (``h5py.File(path, "r", locking=False)``), so it works on read-only files and
while ilastik has the project open. Everything small is read at once into
:class:`IlastikProject`; raw data and forests are read on demand.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..features import FeatureSelection
from ..io import guess_axes, parse_axistags, read_image, split_h5_path, to_canonical
from ._h5 import open_readonly
from ._labels import LabelBlock, block_axes, canonical_axes, convert_block, parse_block_slice
from ._version import check_version, workflow_kind
from .vigra_forest import read_project_forest

__all__ = ["IlastikProject", "Lane", "open_readonly", "read_project"]

_ROLE_RAW = "Raw Data"


def _text(value: Any) -> str:
    """Decode an ilastik string scalar (bytes, numpy bytes or str)."""
    if isinstance(value, np.ndarray):
        value = value[()] if value.ndim == 0 else value.tolist()
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _scalar(value: Any) -> Any:
    """Plain Python value of a small dataset (strings decoded, length-1 arrays unpacked)."""
    if isinstance(value, (bytes, np.bytes_)):
        return _text(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            items = [_text(v) for v in value.ravel()]
            return items[0] if value.ndim == 0 or value.size == 1 and value.ndim == 1 else items
        if value.ndim == 0 or value.size == 1:
            return value.reshape(-1)[0].item()
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_group(group: Any) -> dict[str, Any]:
    """The datasets of one group (not recursive) as plain values."""
    import h5py

    out: dict[str, Any] = {}
    for key, obj in group.items():
        if isinstance(obj, h5py.Dataset) and obj.size < 10_000:
            out[key] = _scalar(obj[()])
    return out


@dataclass(frozen=True)
class Lane:
    """One dataset of one lane in ``Input Data`` (normally the ``Raw Data`` role).

    ``file_path`` is the path as stored; ``path`` is where pyquint looks for it (relative
    paths resolved against the project's folder; ``file.h5/inner`` kept as one string).
    For data stored inside the project ``internal_path`` is its dataset in the project.
    """

    index: int
    role: str
    nickname: str
    file_path: str
    location: str
    axes: str | None
    shape: tuple[int, ...] | None
    allow_labels: bool
    internal_path: str | None
    path: str | None
    exists: bool

    @property
    def is_internal(self) -> bool:
        return self.internal_path is not None

    @property
    def canonical_axes(self) -> str:
        return canonical_axes(self.axes or "yxc", self.shape)


@dataclass
class IlastikProject:
    """What an ilastik project holds; build it with :func:`read_project`.

    Attributes
    ----------
    path : Path
    version : str
        ``ilastikVersion`` as saved, e.g. ``"1.4.0b11"``; ``version_tuple`` is sortable.
    workflow : str
        ``workflowName`` as saved; ``kind`` is ``"pixel"`` or ``"object"``.
    label_names : list of str
    label_colors, pmap_colors : ndarray (N, 3) int
    label_blocks : list of LabelBlock
        Every stored block, in canonical axes, ordered by lane then block name.
    feature_ids, scales, selection_matrix, compute_in_2d
        The saved ``FeatureSelections`` (``selection_matrix`` is None when the group is empty
        or nothing is selected; ``compute_in_2d`` is None before ilastik 1.3.2).
    lanes : list of Lane
        The ``Raw Data`` of every lane; ``roles`` holds every other non-empty role.
    export_settings : dict
        ``Prediction Export`` values (``OutputFormat``, ``OutputFilenameFormat``, ...).
    threshold_settings : dict
        ``ThresholdTwoLevels`` values of Object Classification projects (else empty).
    forest_info : dict
        Summary of ``ClassifierForests`` (empty when the project holds no trained forest).
    """

    path: Path
    version: str
    version_tuple: tuple[int, ...]
    workflow: str
    kind: str
    label_names: list[str] = field(default_factory=list)
    label_colors: np.ndarray | None = None
    pmap_colors: np.ndarray | None = None
    label_blocks: list[LabelBlock] = field(default_factory=list)
    feature_ids: list[str] | None = None
    scales: tuple[float, ...] | None = None
    selection_matrix: np.ndarray | None = None
    compute_in_2d: tuple[bool, ...] | None = None
    lanes: list[Lane] = field(default_factory=list)
    roles: dict[str, list[Lane]] = field(default_factory=dict)
    export_settings: dict[str, Any] = field(default_factory=dict)
    threshold_settings: dict[str, Any] = field(default_factory=dict)
    forest_info: dict[str, Any] = field(default_factory=dict)
    time: str | None = None

    # ------------------------------------------------------------------ labels
    @property
    def n_classes(self) -> int:
        """Number of classes: label names, or the largest label value if names are missing."""
        top = max((int(b.data.max()) for b in self.label_blocks if b.data.size), default=0)
        return max(len(self.label_names), top)

    @property
    def has_labels(self) -> bool:
        return any(b.data.any() for b in self.label_blocks)

    def label_counts(self) -> np.ndarray:
        """Labelled pixels per class (index 0 = class 1) over all lanes."""
        n = self.n_classes
        total = np.zeros(n, dtype=np.int64)
        for block in self.label_blocks:
            total += block.counts(n)
        return total

    def label_image(self, lane: int, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """The dense uint8 label image of ``lane`` in canonical axes (``c`` = 1).

        ``shape`` defaults to the lane's canonical shape; a block outside it is an error.
        """
        info = self.lanes[lane] if lane < len(self.lanes) else None
        blocks = [b for b in self.label_blocks if b.lane == lane]
        if shape is None:
            shape = self.lane_shape(lane)
        if shape is None:
            if not blocks:
                raise InputError(f"{self.path}: lane {lane} has no labels and no known shape")
            shape = tuple(max(b.stop[i] for b in blocks) for i in range(len(blocks[0].axes)))
        shape = tuple(shape[:-1]) + (1,)
        out = np.zeros(shape, dtype=np.uint8)
        for b in blocks:
            if len(b.stop) != len(shape) or any(s > n for s, n in zip(b.stop, shape)):
                where = info.nickname if info else f"lane {lane}"
                raise InputError(
                    f"{self.path}: label block {b.name} of {where} spans {list(zip(b.start, b.stop))} "
                    f"({b.axes}), outside the image of shape {shape}"
                )
            region = out[b.slices]
            np.copyto(region, b.data, where=b.data > 0)
        return out

    def frame_label_counts(self, lane: int) -> dict[int, list[int]]:
        """Labelled pixels per class (index 0 = class 1) of each time point of ``lane`` that
        holds labels; a lane without a time axis is frame 0."""
        n = self.n_classes
        out: dict[int, np.ndarray] = {}
        for b in self.label_blocks:
            if b.lane != lane:
                continue
            if "t" not in b.axes:
                out[0] = out.get(0, np.zeros(n, np.int64)) + b.counts(n)
                continue
            ti = b.axes.index("t")
            for k, t in enumerate(range(b.start[ti], b.stop[ti])):
                frame = np.take(b.data, k, axis=ti)
                counts = np.bincount(frame.ravel(), minlength=n + 1)[1 : n + 1]
                out[t] = out.get(t, np.zeros(n, np.int64)) + counts
        return {t: c.tolist() for t, c in sorted(out.items()) if c.any()}

    def lane_shape(self, lane: int) -> tuple[int, ...] | None:
        """The lane's image shape in canonical axes, if recorded in the project."""
        info = self.lanes[lane] if lane < len(self.lanes) else None
        if info is None or info.shape is None or info.axes is None or len(info.shape) != len(info.axes):
            return None
        sizes = dict(zip(info.axes, info.shape))
        return tuple(sizes.get(a, 1) for a in info.canonical_axes)

    def check_labels_inside(self) -> None:
        """Raise :class:`InputError` if any label block lies outside its lane's image."""
        for lane in sorted({b.lane for b in self.label_blocks}):
            if self.lane_shape(lane) is not None:
                self.label_image(lane)

    # ------------------------------------------------------------------ features
    def feature_selection(self):
        """The saved feature selection as a :class:`pyquint.features.FeatureSelection`
        (None when the project selects no features)."""
        if self.selection_matrix is None or not self.selection_matrix.any():
            return None

        try:
            return FeatureSelection(
                matrix=self.selection_matrix,
                scales=tuple(self.scales),
                feature_ids=tuple(self.feature_ids),
                compute_in_2d=self.compute_in_2d,
            )
        except InputError as exc:
            raise InputError(f"{self.path}: unusable feature selection ({exc})") from None

    # ------------------------------------------------------------------ forests
    @property
    def has_forest(self) -> bool:
        return bool(self.forest_info.get("n_forests"))

    def forest(self):
        """Decode the stored vigra forests into one :class:`pyquint.forest.FlatForest`."""
        return read_project_forest(self)

    # ------------------------------------------------------------------ data
    @property
    def missing_files(self) -> list[str]:
        """Stored paths of lane files that cannot be found (one per missing file)."""
        return [
            lane.file_path
            for lanes in self.roles.values()
            for lane in lanes
            if not lane.exists
        ]

    def read_lane(
        self, lane: int, search_dirs: tuple[str | os.PathLike, ...] = ()
    ) -> tuple[np.ndarray, str]:
        """Read a lane's raw image (original axes) from the project or the file system.

        A missing file is also looked up by name in ``search_dirs`` (moved data).
        """

        info = self.lanes[lane]
        if info.internal_path is not None:
            try:
                with open_readonly(self.path) as f:
                    ds = f[info.internal_path]
                    data = ds[()]
                    tags = ds.attrs.get("axistags")
            except (OSError, KeyError) as exc:
                raise InputError(
                    f"{self.path}: cannot read the project-internal data of lane {lane} "
                    f"({info.internal_path}): {exc}"
                ) from None
            axes = info.axes or (parse_axistags(tags) if tags is not None else None)
            if axes is None or len(axes) != data.ndim:
                axes = guess_axes(data.shape)
            return np.asarray(data), axes
        path = info.path
        if not info.exists:
            path = self._search(info, search_dirs)
        axes = info.axes
        data, read_axes = read_image(path)
        if axes is not None and len(axes) == data.ndim:
            return data, axes
        return data, read_axes

    def _search(self, info: Lane, search_dirs: tuple[str | os.PathLike, ...]) -> str:
        file, inner = split_h5_path(info.file_path)
        for folder in search_dirs:
            candidate = Path(folder) / file.name
            if candidate.exists():
                return str(candidate) + (f"/{inner}" if inner else "")
        raise InputError(
            f"{self.path}: the image of lane {info.index} ({info.nickname}) is missing: "
            f"{info.file_path}" + (f" (also looked in {', '.join(map(str, search_dirs))})" if search_dirs else "")
            + "; missing files: " + ", ".join(self.missing_files)
        )

    def training_data(
        self, search_dirs: tuple[str | os.PathLike, ...] = ()
    ) -> list[tuple[np.ndarray, str, np.ndarray]]:
        """``(image, axes, labels)`` of every lane that has labels, images in canonical axes."""
        if not self.has_labels:
            raise InputError(f"{self.path}: the project has no labels to train from")
        out = []
        for lane in sorted({b.lane for b in self.label_blocks if b.data.any()}):
            if lane >= len(self.lanes):
                raise InputError(f"{self.path}: labels for lane {lane}, but the project has no such lane")
            data, axes = self.read_lane(lane, search_dirs)
            image, canon = to_canonical(data, axes)
            # blocks outside the image actually read (moved/replaced data) are an error here
            out.append((image, canon, self.label_image(lane, image.shape)))
        return out


# ---------------------------------------------------------------------- reading
def read_project(path: str | os.PathLike) -> IlastikProject:
    """Read an ilastik project (read-only).

    Parameters
    ----------
    path : str or path-like
        The ``.ilp`` file.

    Returns
    -------
    IlastikProject

    Raises
    ------
    InputError
        Not an HDF5 file, truncated, not an ilastik project, a version outside 1.0–1.5, an
        unknown workflow, or unreadable labels/feature settings.
    """

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such project file")
    try:
        f = open_readonly(path)
    except OSError as exc:
        raise InputError(
            f"{path}: not a readable HDF5 file, so not an ilastik project (truncated or "
            f"corrupt?): {exc}"
        ) from None
    try:
        with f:
            return _read(f, path)
    except InputError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: damaged ilastik project ({type(exc).__name__}: {exc})") from None


def _read(f: Any, path: Path) -> IlastikProject:
    if "ilastikVersion" not in f:
        raise InputError(f"{path}: not an ilastik project (no 'ilastikVersion' dataset)")
    version = _text(f["ilastikVersion"][()])
    version_tuple = check_version(version, path)
    if "workflowName" not in f:
        raise InputError(f"{path}: not an ilastik project (no 'workflowName' dataset)")
    workflow = _text(f["workflowName"][()])
    kind = workflow_kind(workflow, path)
    project = IlastikProject(
        path=path, version=version, version_tuple=version_tuple, workflow=workflow, kind=kind,
        time=_text(f["time"][()]) if "time" in f else None,
    )
    _read_inputs(f, project)
    _read_features(f, project)
    pc = f.get("PixelClassification")
    if pc is not None:
        _read_pixel_classification(pc, project)
    if "Prediction Export" in f:
        project.export_settings = _read_group(f["Prediction Export"])
        project.export_settings.pop("StorageVersion", None)
    if "ThresholdTwoLevels" in f:
        settings = _read_group(f["ThresholdTwoLevels"])
        if "SmootherSigma" in f["ThresholdTwoLevels"]:
            settings["SmootherSigma"] = _read_group(f["ThresholdTwoLevels/SmootherSigma"])
        settings.pop("StorageVersion", None)
        project.threshold_settings = settings
    return project


def _read_inputs(f: Any, project: IlastikProject) -> None:
    infos = f.get("Input Data/infos")
    if infos is None:
        return
    for lane_name in sorted(infos):
        if not lane_name.startswith("lane"):
            continue
        index = int(lane_name[4:])
        for role, group in infos[lane_name].items():
            if not len(group) or "filePath" not in group:
                continue
            lane = _read_lane(f, group, index, role, project.path)
            project.roles.setdefault(role, []).append(lane)
            if role == _ROLE_RAW:
                project.lanes.append(lane)
    project.lanes.sort(key=lambda lane: lane.index)
    if [lane.index for lane in project.lanes] != list(range(len(project.lanes))):
        raise InputError(f"{project.path}: lanes are not numbered 0..n-1 in 'Input Data/infos'")


def _read_lane(f: Any, group: Any, index: int, role: str, project_path: Path) -> Lane:
    values = _read_group(group)
    file_path = str(values.get("filePath", ""))
    location = str(values.get("location", ""))
    klass = str(values.get("__class__", ""))
    internal = location == "ProjectInternal" or klass == "ProjectInternalDatasetInfo"
    axes = parse_axistags(values["axistags"]) if "axistags" in values else None
    if axes is None and "axisorder" in values:  # ilastik 1.0-1.1 kept a plain order string
        axes = str(values["axisorder"]).lower() or None
    shape = values.get("shape")
    shape = tuple(int(s) for s in np.atleast_1d(shape)) if shape is not None else None
    internal_path = None
    resolved: str | None = None
    if internal:
        internal_path = str(values.get("inner_path") or file_path)
        dataset_id = str(values.get("datasetId", ""))
        if internal_path not in f and dataset_id and f"Input Data/local_data/{dataset_id}" in f:
            # before 1.3 filePath kept the original file; the copy is named by datasetId
            internal_path = f"Input Data/local_data/{dataset_id}"
        exists = internal_path in f
        if exists and shape is None:
            shape = tuple(f[internal_path].shape)
    else:
        file, inner = split_h5_path(file_path)
        if not file.is_absolute():
            file = project_path.parent / file
        resolved = str(file) + (f"/{inner}" if inner else "")
        if any(ch in str(file) for ch in "*?["):
            exists = bool(glob.glob(str(file)))
        else:
            exists = file.is_file()
        if shape is None and exists and inner:  # ilastik 1.2 stored no shape: read the header
            shape = _h5_shape(file, inner)
    return Lane(
        index=index,
        role=role,
        nickname=str(values.get("nickname", "")) or Path(file_path).stem,
        file_path=file_path,
        location=location or ("ProjectInternal" if internal else "FileSystem"),
        axes=axes,
        shape=shape,
        allow_labels=bool(values.get("allowLabels", True)),
        internal_path=internal_path,
        path=resolved,
        exists=exists,
    )


def _h5_shape(file: Path, inner: str) -> tuple[int, ...] | None:
    """The shape of an HDF5 dataset of a lane (None when it cannot be read)."""
    try:
        with open_readonly(file) as h:
            ds = h.get(inner)
            return tuple(int(n) for n in ds.shape) if ds is not None and hasattr(ds, "shape") else None
    except OSError:
        return None


def _read_features(f: Any, project: IlastikProject) -> None:
    fs = f.get("FeatureSelections")
    if fs is None or "SelectionMatrix" not in fs:
        return  # e.g. steinbock's template: an empty group, features chosen later
    matrix = np.asarray(fs["SelectionMatrix"][()], dtype=bool)
    ids = [_text(v) for v in np.atleast_1d(fs["FeatureIds"][()])] if "FeatureIds" in fs else None
    scales = tuple(float(s) for s in np.atleast_1d(fs["Scales"][()])) if "Scales" in fs else None
    if ids is None or scales is None or matrix.shape != (len(ids), len(scales)):
        raise InputError(
            f"{project.path}: FeatureSelections is inconsistent: SelectionMatrix {matrix.shape} "
            f"for {None if ids is None else len(ids)} features x "
            f"{None if scales is None else len(scales)} scales"
        )
    project.feature_ids, project.scales = ids, scales
    project.selection_matrix = matrix if matrix.any() else None
    if "ComputeIn2d" in fs:
        c2d = np.atleast_1d(fs["ComputeIn2d"][()]).astype(bool)
        # An empty array means "decide from the data" (all True when z = 1).
        project.compute_in_2d = tuple(bool(v) for v in c2d) if c2d.size == len(scales) else None


def _read_pixel_classification(pc: Any, project: IlastikProject) -> None:
    if "LabelNames" in pc:
        project.label_names = [_text(v) for v in np.atleast_1d(pc["LabelNames"][()])]
    for key, attr in (("LabelColors", "label_colors"), ("PmapColors", "pmap_colors")):
        if key in pc:
            colors = np.asarray(pc[key][()], dtype=np.int64).reshape(-1, 3) if pc[key].size else None
            setattr(project, attr, colors)
    if "LabelSets" in pc:
        _read_label_sets(pc["LabelSets"], project)
    if "ClassifierForests" in pc:
        project.forest_info = _forest_info(pc["ClassifierForests"])


def _read_label_sets(label_sets: Any, project: IlastikProject) -> None:
    for set_name in sorted(label_sets):
        if not set_name.startswith("labels"):
            continue
        lane = int(set_name[6:])
        info = project.lanes[lane] if lane < len(project.lanes) else None
        lane_axes = info.axes if info else None
        target = info.canonical_axes if info else None
        for name in sorted(label_sets[set_name]):
            ds = label_sets[set_name][name]
            source = f"{project.path}:/PixelClassification/LabelSets/{set_name}/{name}"
            if "blockSlice" not in ds.attrs:
                raise InputError(f"{source}: label block without a blockSlice attribute")
            slice_text = _text(ds.attrs["blockSlice"])
            tags = ds.attrs.get("axistags")
            tags = _text(tags) if tags is not None else None
            data = np.asarray(ds[()])
            axes = block_axes(data.ndim, tags, project.version_tuple, lane_axes, target, source,
                              fits=_fits(info, slice_text))
            if target is None:
                target = canonical_axes(axes, data.shape)
            block = convert_block(lane, name, data, slice_text, tags, axes, target, source)
            project.label_blocks.append(block)


def _fits(info: Lane | None, slice_text: str):
    """``axes → bool``: does a block with ``blockSlice`` ``slice_text`` lie inside the lane's
    image read in ``axes``? (None when the lane's shape is unknown.)"""
    if info is None or info.shape is None or info.axes is None or len(info.shape) != len(info.axes):
        return None
    sizes = dict(zip(info.axes, info.shape))
    try:
        ranges = parse_block_slice(slice_text, "")
    except InputError:
        return None
    return lambda axes: all(stop <= sizes.get(a, 1) for a, (_, stop) in zip(axes, ranges))


def _forest_info(group: Any) -> dict[str, Any]:
    names = sorted(k for k in group if k.startswith("Forest"))
    info: dict[str, Any] = {"n_forests": len(names), "forests": names}
    if not names:
        return {}
    info["tree_counts"] = [len([t for t in group[n] if t.startswith("Tree_")]) for n in names]
    info["n_trees"] = sum(info["tree_counts"])
    first = group[names[0]]
    if "_ext_param/column_count_" in first:
        info["n_features"] = int(np.atleast_1d(first["_ext_param/column_count_"][()])[0])
    if "known_labels" in group:
        info["known_labels"] = [int(v) for v in np.atleast_1d(group["known_labels"][()])]
    if "feature_names" in group:
        info["feature_names"] = [_text(v) for v in np.atleast_1d(group["feature_names"][()])]
    if "pickled_type" in group:
        info["type"] = _text(group["pickled_type"][()]).split("\n")[1:2]
    return info
