"""``steinbock classify ilastik fix`` re-implemented, safely.

Semantics are steinbock 0.16.5's (spec §3): legacy crops become steinbock crops (float32
CYX ``/crop``), every lane points to its crop relative to the project, label blocks follow
the crops' transposition, ``Input Data/local_data`` is cleared and the export settings are
rewritten for uint16 ``yxc`` TIFFs. Differences, all on purpose:

* Shapes come from the crops themselves whether or not they were rewritten, so ``fix``
  succeeds on steinbock-native crops (steinbock raises ``KeyError: '<crop stem>'``,
  issues #283/#249). A project that needs nothing is left untouched.
* Backups (``<ilp>.bak``, ``<crop dir>.bak/``) are made only when something will change,
  after every check passed. A failed fix changes nothing: new crops and the patched
  project are written to temporary files first and swapped in at the end.
* Each crop's own ``axistags`` give its axis order (steinbock reuses the first crop's).
* A lane whose crop is missing, a crop folder outside the project's folder and similar
  problems are clear :class:`~pyquint.errors.InputError` messages.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import InputError
from ..io import temp_prefix
from .images import DISPLAY_MODE, H5_LIBVER, list_ilastik_files, to_float32, write_ilastik_h5
from .project import relative_path, require_pixel_project, write_prediction_export, write_raw_data

__all__ = ["FixResult", "fix", "fix_crop_array"]

logger = logging.getLogger("pyquint.steinbock")


@dataclass
class FixResult:
    """What :func:`fix` changed (``changed`` False: nothing was written, no backups)."""

    changed: bool = False
    fixed_crops: list[Path] = field(default_factory=list)
    native_crops: list[Path] = field(default_factory=list)
    fixed_lanes: list[str] = field(default_factory=list)
    fixed_label_blocks: list[str] = field(default_factory=list)
    local_data_cleared: bool = False
    export_rewritten: bool = False
    transpose: tuple[int, ...] | None = None
    backups: list[Path] = field(default_factory=list)


def _text(value) -> str:
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _crop_transpose(shape: tuple[int, ...], axes: Sequence[str], source: object) -> tuple[int, ...]:
    """steinbock's transposition of a legacy crop to c, y, x, (other axes)."""
    axes = [a.lower() for a in axes]
    if len(axes) != len(shape):
        raise InputError(
            f"{source}: axis order {''.join(axes)!r} does not fit the crop's {len(shape)}-D shape "
            f"{tuple(shape)}; give --axisorder"
        )
    if len(set(axes)) != len(axes) or not {"c", "y", "x"} <= set(axes):
        raise InputError(f"{source}: axis order {''.join(axes)!r} needs distinct axes including c, y, x")
    c = axes.index("c")
    n_channels = int(np.prod(shape)) // (shape[axes.index("x")] * shape[axes.index("y")])
    if shape[c] != n_channels:
        # steinbock: the channels may sit on another non-spatial axis of the right size
        c = next((i for i, a in enumerate(axes) if shape[i] == n_channels and a not in "xy"), None)
        if c is None:
            raise InputError(f"{source}: cannot find the channel axis of shape {tuple(shape)}")
    order = list(axes)
    order.insert(0, order.pop(c))
    order.insert(1, order.pop(order.index("y")))
    order.insert(2, order.pop(order.index("x")))
    return tuple(axes.index(a) for a in order)


def _to_3d(data: np.ndarray, transpose: tuple[int, ...], source: object) -> np.ndarray:
    data = np.transpose(data, transpose)
    if int(np.prod(data.shape[3:], dtype=np.int64)) != 1:
        raise InputError(f"{source}: shape {data.shape} has non-singleton axes beyond c, y, x")
    return data.reshape(data.shape[:3])


def fix_crop_array(data: np.ndarray, axes: str | Sequence[str]) -> np.ndarray:
    """A legacy crop with axes ``axes`` as a steinbock crop: float32 CYX."""
    transpose = _crop_transpose(data.shape, list(axes), "crop")
    return to_float32(_to_3d(np.asarray(data), transpose, "crop"))


def _crop_dataset_name(f, path: Path) -> str:
    import h5py

    if "crop" in f:
        return "crop"
    if path.stem in f:
        return path.stem
    if len(f) == 1:
        return next(iter(f))
    names = [k for k in f if isinstance(f[k], h5py.Dataset)]
    raise InputError(f"{path}: no 'crop' or {path.stem!r} dataset among {', '.join(names) or 'none'}")


@dataclass
class _CropPlan:
    path: Path
    dataset: str
    shape: tuple[int, ...]  # CYX after the fix
    transpose: tuple[int, ...] | None  # None: steinbock-native, left as it is


def _plan_crops(crop_files: list[Path], axis_order: str | None) -> list[_CropPlan]:
    import h5py

    plans = []
    for path in crop_files:
        try:
            with h5py.File(path, "r") as f:
                name = _crop_dataset_name(f, path)
                ds = f[name]
                if not isinstance(ds, h5py.Dataset):
                    raise InputError(f"{path}/{name}: is a group, not a dataset")
                if bool(ds.attrs.get("steinbock", False)):
                    if ds.ndim != 3:
                        raise InputError(f"{path}: steinbock crop with shape {ds.shape}, not CYX")
                    plans.append(_CropPlan(path, name, tuple(ds.shape), None))
                    continue
                if axis_order is not None:
                    axes = list(axis_order)
                elif "axistags" in ds.attrs:
                    try:
                        axes = [a["key"] for a in json.loads(_text(ds.attrs["axistags"]))["axes"]]
                    except (ValueError, KeyError, TypeError) as exc:
                        raise InputError(f"{path}: unreadable axistags ({exc}); give --axisorder") from exc
                else:
                    raise InputError(f"{path}: no axistags attribute; give the axis order with --axisorder")
                transpose = _crop_transpose(ds.shape, axes, path)
                shape = tuple(ds.shape[i] for i in transpose)
                if int(np.prod(shape[3:], dtype=np.int64)) != 1:
                    raise InputError(f"{path}: shape {ds.shape} has non-singleton axes beyond c, y, x")
                plans.append(_CropPlan(path, name, shape[:3], transpose))
        except InputError:
            raise
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"{path}: not a readable HDF5 crop ({exc})") from exc
    return plans


def _hdf5_file_of(file_path: str) -> PurePosixPath | None:
    """The ``*.h5`` component of a lane's ``filePath`` (``dir/x.h5/inner`` -> ``dir/x.h5``)."""
    path = PurePosixPath(file_path.replace("\\", "/"))
    for candidate in (path, *path.parents):
        if candidate.suffix.lower() == ".h5":
            return candidate
    return None


def _lane_is_right(raw, target: dict) -> bool:
    def get(key):
        return raw[key][()] if key in raw else None

    try:
        tags = [a["key"] for a in json.loads(_text(get("axistags")))["axes"]]
    except (ValueError, KeyError, TypeError):
        tags = None
    return (
        _text(get("__class__")) == "RelativeFilesystemDatasetInfo"
        and get("allowLabels") is not None and bool(get("allowLabels"))
        and tags == ["c", "y", "x"]
        and _text(get("display_mode")) == DISPLAY_MODE
        and _text(get("filePath")) == target["file_path"]
        and _text(get("location")) == "FileSystem"
        and _text(get("nickname")) == target["nickname"]
        and get("normalizeDisplay") is not None and not bool(get("normalizeDisplay"))
        and get("shape") is not None
        and tuple(np.asarray(get("shape")).ravel().tolist()) == tuple(target["shape"])
    )


def _export_is_right(group, probab_rel: str) -> bool:
    def value(key):
        return group[key][()] if key in group else None

    def number(key):
        v = value(key)
        return None if v is None else np.asarray(v).ravel().tolist()

    return (
        number("ExportMin") == [0]
        and number("ExportMax") == [65535]
        and _text(value("ExportDtype")) == "uint16"
        and _text(value("OutputAxisOrder")) == "yxc"
        and _text(value("OutputFormat")) == "tiff"
        and _text(value("OutputFilenameFormat")) == f"{probab_rel}/{{nickname}}.tiff"
        and _text(value("OutputInternalPath")) == "exported_data"
    )


def _patch_project(f, plans_by_stem: dict, crop_rel: dict, probab_rel: str,
                   transpose: tuple[int, ...] | None, result: FixResult, write: bool) -> None:
    """Check (``write`` False) or apply (True) the project changes; fills ``result``."""
    import h5py

    infos = f.get("Input Data/infos")
    for lane_name in sorted(infos) if infos is not None else []:
        raw = infos[lane_name].get("Raw Data")
        if raw is None:
            continue
        where = f"{f.filename}: Input Data/infos/{lane_name}"
        if "filePath" not in raw:
            raise InputError(f"{where}: lane without a filePath")
        file_path = _text(raw["filePath"][()])
        h5_file = _hdf5_file_of(file_path)
        if h5_file is None:
            raise InputError(f"{where}: filePath {file_path!r} does not name an .h5 crop")
        plan = plans_by_stem.get(h5_file.stem)
        if plan is None:
            raise InputError(
                f"{where}: its crop {h5_file.name!r} (filePath {file_path!r}) is not in the crop "
                "folder; pass the folder holding the project's crops with --crop"
            )
        target = {"file_path": f"{crop_rel[plan.path]}/crop", "nickname": h5_file.stem, "shape": plan.shape}
        if not _lane_is_right(raw, target):
            result.fixed_lanes.append(lane_name)
            if write:
                write_raw_data(raw, dataset_id=None, file_path=target["file_path"],
                               nickname=target["nickname"], shape=target["shape"])
    local = f.get("Input Data/local_data")
    if local is not None and len(local):
        result.local_data_cleared = True
        if write:
            for key in list(local):
                del local[key]
    label_sets = f.get("PixelClassification/LabelSets")
    for set_name in sorted(label_sets) if label_sets is not None else []:
        group = label_sets[set_name]
        for block_name in sorted(group):
            block = group[block_name]
            if not isinstance(block, h5py.Dataset):
                continue
            where = f"{f.filename}: PixelClassification/LabelSets/{set_name}/{block_name}"
            axes = transpose if transpose is not None else tuple(range(block.ndim))
            if len(axes) != block.ndim or block.ndim < 3:
                raise InputError(f"{where}: {block.ndim}-D label block does not fit the crops' axes")
            if axes[:3] == (0, 1, 2) and block.ndim == 3:
                continue
            result.fixed_label_blocks.append(f"{set_name}/{block_name}")
            if not write:
                continue
            data = _to_3d(block[()], axes, where)
            raw_slice = block.attrs.get("blockSlice")
            if raw_slice is None:
                raise InputError(f"{where}: label block without a blockSlice attribute")
            text = _text(raw_slice)
            parts = text.strip()[1:-1].split(",")
            if len(parts) != block.ndim:
                raise InputError(f"{where}: blockSlice {text!r} does not match the block's shape")
            new_slice = "[" + ",".join(parts[i] for i in axes[:3]) + "]"
            del group[block_name]
            ds = group.create_dataset(block_name, data=data)
            # steinbock keeps bytes as ASCII, and (h5py 3 returning str) writes str as UTF-8
            ds.attrs["blockSlice"] = new_slice.encode("ascii") if isinstance(raw_slice, bytes) else new_slice
    export = f.get("Prediction Export")
    anything = bool(result.fixed_crops or result.fixed_lanes or result.local_data_cleared
                    or result.fixed_label_blocks)
    if export is None or anything or not _export_is_right(export, probab_rel):
        result.export_rewritten = True
        if write:
            if export is None:
                export = f.create_group("Prediction Export")
            write_prediction_export(export, probab_rel, fixed=True)


def fix(
    project_file: str | os.PathLike = "pixel_classifier.ilp",
    crop_dir: str | os.PathLike = "ilastik_crops",
    probab_dir: str | os.PathLike = "ilastik_probabilities",
    *,
    backup: bool = True,
    axis_order: str | None = None,
) -> FixResult:
    """Fix existing Ilastik training data for steinbock (``steinbock classify ilastik fix``).

    Parameters
    ----------
    project_file : path-like, default "pixel_classifier.ilp"
    crop_dir : path-like, default "ilastik_crops"
        The project's crops (``*.h5``, recursive); must be inside the project's folder.
    probab_dir : path-like, default "ilastik_probabilities"
        Where exports go (written into the project's export settings, relative).
    backup : bool, default True
        Copy ``<ilp>.bak`` and ``<crop_dir>.bak/`` first (only when something changes).
    axis_order : str, optional
        Axis order of all legacy crops (e.g. ``"zyxc"``); default: each crop's axistags.

    Returns
    -------
    FixResult

    Raises
    ------
    InputError
        Missing files, backups that already exist, crops with unknown axes, inconsistent
        axis orders, a lane whose crop is missing, folders outside the project's folder.
        Nothing is changed when an error is raised.
    """
    import h5py

    project_file = Path(project_file)
    crop_dir = Path(crop_dir)
    if not project_file.is_file():
        raise InputError(f"{project_file}: project file does not exist")
    if not crop_dir.is_dir():
        raise InputError(f"{crop_dir}: crop folder does not exist")
    require_pixel_project(project_file)
    if axis_order is not None:
        axis_order = axis_order.strip().lower()
    probab_rel = relative_path(probab_dir, project_file)
    crop_files = list_ilastik_files(crop_dir)
    plans = _plan_crops(crop_files, axis_order)
    plans_by_stem: dict[str, _CropPlan] = {}
    for plan in plans:
        if plan.path.stem in plans_by_stem:
            raise InputError(f"two crops named {plan.path.stem!r}: {plans_by_stem[plan.path.stem].path}, {plan.path}")
        plans_by_stem[plan.path.stem] = plan
    crop_rel = {plan.path: relative_path(plan.path, project_file) for plan in plans}
    transposes = {plan.transpose for plan in plans if plan.transpose is not None}
    if len(transposes) > 1:
        raise InputError(f"{crop_dir}: inconsistent axis orders across crops ({sorted(transposes)})")
    result = FixResult(transpose=next(iter(transposes), None))
    result.fixed_crops = [p.path for p in plans if p.transpose is not None]
    result.native_crops = [p.path for p in plans if p.transpose is None]
    try:
        with h5py.File(project_file, "r") as f:
            _patch_project(f, plans_by_stem, crop_rel, probab_rel, result.transpose, result, write=False)
    except InputError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{project_file}: not a readable ilastik project ({exc})") from exc
    result.changed = bool(result.fixed_crops or result.fixed_lanes or result.local_data_cleared
                          or result.fixed_label_blocks or result.export_rewritten)
    if not result.changed:
        logger.info("%s: nothing to fix", project_file)
        return result
    ilp_backup = project_file.with_name(project_file.name + ".bak")
    crop_backup = crop_dir.with_name(crop_dir.name + ".bak")
    if backup:
        for existing in (ilp_backup, crop_backup):
            if existing.exists():
                raise InputError(f"{existing}: backup exists; remove it or use --no-backup")
    _apply(project_file, plans, plans_by_stem, crop_rel, probab_rel, result,
           (ilp_backup, crop_backup, crop_files) if backup else None)
    return result


def _apply(project_file: Path, plans, plans_by_stem, crop_rel, probab_rel, result: FixResult,
           backup: tuple[Path, Path, list[Path]] | None) -> None:
    import h5py

    temps: list[Path] = []

    def temp_beside(path: Path, suffix: str) -> Path:
        fd, name = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=suffix, dir=path.parent)
        os.close(fd)
        temps.append(Path(name))
        return Path(name)

    swaps: list[tuple[Path, Path]] = []
    try:
        for plan in plans:
            if plan.transpose is None:
                continue
            with h5py.File(plan.path, "r") as f:
                data = f[plan.dataset][()]
            tmp = temp_beside(plan.path, ".tmp.h5")
            write_ilastik_h5(tmp, to_float32(_to_3d(data, plan.transpose, plan.path)), "crop")
            swaps.append((tmp, plan.path))
        tmp_ilp = temp_beside(project_file, ".tmp.ilp")
        shutil.copyfile(project_file, tmp_ilp)
        check = FixResult(transpose=result.transpose, fixed_crops=result.fixed_crops)
        with h5py.File(tmp_ilp, "a", libver=H5_LIBVER) as f:
            _patch_project(f, plans_by_stem, crop_rel, probab_rel, result.transpose, check, write=True)
        swaps.append((tmp_ilp, project_file))
        if backup is not None:
            ilp_backup, crop_backup, crop_files = backup
            tmp_bak = temp_beside(project_file, ".tmp.bak")
            shutil.copyfile(project_file, tmp_bak)
            tmp_dir = Path(tempfile.mkdtemp(prefix=temp_prefix(crop_backup.name), suffix=".tmp",
                                            dir=crop_backup.parent))
            temps.append(tmp_dir)
            for crop in crop_files:  # flat, by name, as steinbock does
                shutil.copyfile(crop, tmp_dir / crop.name)
            os.replace(tmp_bak, ilp_backup)
            os.replace(tmp_dir, crop_backup)
            result.backups = [ilp_backup, crop_backup]
    except BaseException:
        for tmp in temps:
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
        raise
    for tmp, target in swaps:
        os.replace(tmp, target)
        logger.info("%s", target)
    logger.warning(
        "When exporting from ilastik's graphical interface, enable renormalizing [min, max] "
        "from [0.0, 1.0] to [0, 65535] in the export settings"
    )
