"""The Ilastik Pixel Classification project that ``steinbock classify ilastik prepare`` writes.

steinbock copies a project file saved by ilastik 1.3.3post3 and appends one lane per crop.
pyquint writes the same groups, datasets, dtypes and attributes with its own code
(``../shared/reference/steinbock/template_ilp_listing.txt``), with two differences:

* ``PixelClassification/ClassifierFactory`` is not written. In the template it is a Python
  pickle of ilastik's ``ParallelVigraRfLazyflowClassifierFactory(100 trees, 8 forests)``;
  pyquint writes no pickles, and ilastik uses its own default random-forest factory
  (100 trees) when the dataset is absent, whereas a non-pickle description would make
  ilastik warn about an "unsupported classifier-factory storage format".
* ``time`` holds the creation time (same ``ctime`` format) instead of the template's
  ``Tue Apr  6 18:57:26 2021``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..ilastik._version import PIXEL_WORKFLOWS, check_version
from ..io import atomic_output
from .images import AXISTAGS_CYX, DISPLAY_MODE, H5_LIBVER

__all__ = [
    "ILASTIK_VERSION",
    "LABEL_COLORS",
    "LABEL_NAMES",
    "PMAP_COLORS",
    "create_project",
    "write_labels",
    "relative_path",
    "write_raw_data",
    "write_prediction_export",
]

ILASTIK_VERSION = "1.3.3post3"
LABEL_NAMES = ("Nucleus", "Cytoplasm", "Background")
LABEL_COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))
# (sic) steinbock's template has 225, not 255, for the cytoplasm prediction colour
PMAP_COLORS = ((255, 0, 0), (0, 225, 0), (0, 0, 255))
PROBABILITIES_DIR = "ilastik_probabilities"


def relative_path(path: str | os.PathLike, project_file: str | os.PathLike) -> str:
    """``path`` relative to the project file's folder, with ``/`` separators.

    Raises
    ------
    InputError
        ``path`` is not inside the project's folder (ilastik lanes store relative paths;
        steinbock fails with a raw ValueError here).
    """
    base = Path(os.path.abspath(Path(project_file).parent))
    target = Path(os.path.abspath(path))
    try:
        return target.relative_to(base).as_posix()
    except ValueError:
        raise InputError(
            f"{path} is not inside the project's folder {base}: ilastik projects made by steinbock "
            "refer to their crops by relative paths; put the crop folder beside the project file"
        ) from None


def _replace(group, key: str, data, *, ascii_text: bool = True):
    """Create ``group[key]`` (replacing it); text as vlen ASCII (bytes) or vlen UTF-8 (str)."""
    if key in group:
        del group[key]
    if isinstance(data, str):
        data = data.encode("ascii") if ascii_text else data
    return group.create_dataset(key, data=data)


def write_raw_data(
    raw_data,
    *,
    dataset_id: str | None,
    file_path: str,
    nickname: str,
    shape: Sequence[int],
) -> None:
    """Write the ``Raw Data`` datasets of one lane as steinbock does (h5py group).

    ``dataset_id`` None keeps the existing ``datasetId`` (``fix``).
    """
    _replace(raw_data, "__class__", "RelativeFilesystemDatasetInfo")
    _replace(raw_data, "allowLabels", np.bool_(True))
    _replace(raw_data, "axistags", AXISTAGS_CYX)
    if dataset_id is not None:
        _replace(raw_data, "datasetId", dataset_id)
    _replace(raw_data, "display_mode", DISPLAY_MODE)
    _replace(raw_data, "filePath", file_path)
    _replace(raw_data, "location", "FileSystem")
    _replace(raw_data, "nickname", nickname)
    _replace(raw_data, "normalizeDisplay", np.bool_(False))
    _replace(raw_data, "shape", np.asarray(shape, dtype=np.int64))


def write_prediction_export(group, probab_dir: str, *, fixed: bool = False) -> None:
    """Write the ``Prediction Export`` settings: uint16 ``yxc`` TIFFs in ``probab_dir``.

    ``fixed`` writes what steinbock's ``fix`` writes (ExportMin/Max as shape-(1,) uint16);
    otherwise the template's scalars (ExportMin float32 0, ExportMax uint16 65535, and
    InputMin/Max float32 0/1).
    """
    if fixed:
        _replace(group, "ExportMin", np.array([0], dtype=np.uint16))
        _replace(group, "ExportMax", np.array([65535], dtype=np.uint16))
    else:
        _replace(group, "ExportMin", np.float32(0.0))
        _replace(group, "ExportMax", np.uint16(65535))
        _replace(group, "InputMin", np.float32(0.0))
        _replace(group, "InputMax", np.float32(1.0))
    _replace(group, "ExportDtype", "uint16", ascii_text=False)
    _replace(group, "OutputAxisOrder", "yxc")
    _replace(group, "OutputFormat", "tiff")
    _replace(group, "OutputFilenameFormat", f"{probab_dir}/{{nickname}}.tiff")
    _replace(group, "OutputInternalPath", "exported_data")
    _replace(group, "StorageVersion", "0.1", ascii_text=False)


def create_project(
    project_file: str | os.PathLike,
    crop_files: Sequence[str | os.PathLike],
    *,
    crop_shapes: Sequence[Sequence[int]] | None = None,
    dataset_id: str | None = None,
) -> Path:
    """Write steinbock's Pixel Classification project with one lane per crop.

    Parameters
    ----------
    project_file : str or path-like
        The ``.ilp`` to write (atomically).
    crop_files : sequence of path-like
        Crop files (``ilastik_crops/*.h5`` with ``/crop``), in lane order; they must lie
        inside the project file's folder.
    crop_shapes : sequence of (C, Y, X), optional
        Their shapes; read from the files when omitted.
    dataset_id : str, optional
        The ``datasetId`` shared by all lanes (steinbock: one ``uuid1`` per project).

    Returns
    -------
    Path
        ``project_file``.
    """
    import h5py

    project_file = Path(project_file)
    rel_paths = [relative_path(p, project_file) for p in crop_files]
    if crop_shapes is None:
        crop_shapes = []
        for p in crop_files:
            try:
                with h5py.File(p, "r") as f:
                    crop_shapes.append(f["crop"].shape)
            except (OSError, KeyError) as exc:
                raise InputError(f"{p}: not a steinbock crop file ({exc})") from exc
    if dataset_id is None:
        dataset_id = str(uuid.uuid1())
    with atomic_output(project_file) as tmp, h5py.File(tmp, "w", libver=H5_LIBVER) as f:
        f.create_group("FeatureSelections")  # empty: features are chosen in ilastik (or by run)
        inp = f.create_group("Input Data")
        inp.create_dataset("Role Names", data=np.array([b"Raw Data", b"Prediction Mask"], dtype="S15"))
        _replace(inp, "StorageVersion", "0.2", ascii_text=False)
        infos = inp.create_group("infos")
        inp.create_group("local_data")
        for i, (rel, shape) in enumerate(zip(rel_paths, crop_shapes)):
            lane = infos.create_group(f"lane{i:04d}")
            lane.create_group("Prediction Mask")
            write_raw_data(
                lane.create_group("Raw Data"),
                dataset_id=dataset_id,
                file_path=f"{rel}/crop",
                nickname=Path(rel).stem,
                shape=shape,
            )
        pc = f.create_group("PixelClassification")
        for key, value in (
            ("LabelColors", np.array(LABEL_COLORS, dtype=np.int64)),
            ("LabelNames", np.array([n.encode("ascii") for n in LABEL_NAMES], dtype="S17")),
            ("PmapColors", np.array(PMAP_COLORS, dtype=np.int64)),
        ):
            pc.create_dataset(key, data=value).attrs["isEmpty"] = np.bool_(False)
        _replace(pc, "StorageVersion", "0.1", ascii_text=False)
        write_prediction_export(f.create_group("Prediction Export"), PROBABILITIES_DIR)
        f.create_dataset("currentApplet", data=np.int64(1))
        _replace(f, "ilastikVersion", ILASTIK_VERSION)
        _replace(f, "time", time.ctime())
        _replace(f, "workflowName", "Pixel Classification")
    return project_file


def _as_text(value) -> str:
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def require_pixel_project(project_file: str | os.PathLike) -> None:
    """Prove that ``project_file`` is an ilastik Pixel Classification project before anything
    is planned or written (any other HDF5 file is refused, never patched)."""
    import h5py

    project_file = Path(project_file)

    try:
        if not h5py.is_hdf5(project_file):
            raise InputError(f"{project_file}: not an ilastik project (not an HDF5 file); nothing "
                             "was changed")
        with h5py.File(project_file, "r", locking=False) as f:
            name = _as_text(f["workflowName"][()]) if isinstance(f.get("workflowName"), h5py.Dataset) else None
            version = _as_text(f["ilastikVersion"][()]) if isinstance(f.get("ilastikVersion"), h5py.Dataset) else None
    except InputError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise InputError(f"{project_file}: not a readable ilastik project ({exc})") from exc
    if name is None:
        raise InputError(f"{project_file}: not an ilastik project (no 'workflowName'); nothing "
                         "was changed")
    if name not in PIXEL_WORKFLOWS:
        raise InputError(f"{project_file}: an ilastik {name!r} project, not Pixel Classification; "
                         "steinbock fix only patches pixel classifiers, nothing was changed")
    if version is not None:
        check_version(version, project_file)


def write_labels(project_file: str | os.PathLike, labels: Sequence[np.ndarray | None]) -> Path:
    """Store label images for the lanes of a steinbock project (replacing its LabelSets).

    Labels are written as ilastik 1.3.3 stores them for CYX lanes: one uint8 block per lane
    of shape ``(1, h, w)`` cropped to the labelled pixels, ``blockSlice`` ``[0:1,y0:y1,x0:x1]``.
    Useful to train ``run`` from existing masks instead of painting in ilastik.

    Parameters
    ----------
    project_file : path-like
        The ``.ilp`` (rewritten atomically; the original is replaced only on success).
    labels : sequence of (Y, X) integer arrays or None
        One per lane, in lane order: 0 unlabelled, 1..N = label N (1 Nucleus, 2 Cytoplasm,
        3 Background in steinbock's template); None for a lane without labels.
    """
    import shutil

    import h5py

    project_file = Path(project_file)
    require_pixel_project(project_file)
    with h5py.File(project_file, "r") as f:
        infos = f.get("Input Data/infos")
        lanes = sorted(infos) if infos is not None else []
        shapes = [tuple(f[f"Input Data/infos/{lane}/Raw Data/shape"][()]) for lane in lanes]
    if len(labels) != len(lanes):
        raise InputError(f"{project_file}: {len(lanes)} lanes but {len(labels)} label images")
    with atomic_output(project_file) as tmp:
        shutil.copyfile(project_file, tmp)
        with h5py.File(tmp, "a", libver=H5_LIBVER) as f:
            pc = f.require_group("PixelClassification")
            if "LabelSets" in pc:
                del pc["LabelSets"]
            sets = pc.create_group("LabelSets")
            for i, (lab, shape) in enumerate(zip(labels, shapes)):
                group = sets.create_group(f"labels{i:03d}")
                if lab is None:
                    continue
                lab = np.asarray(lab)
                if lab.shape != tuple(shape[1:]) or lab.dtype.kind not in "uib":
                    raise InputError(
                        f"labels[{i}]: need integer labels of shape {tuple(shape[1:])}, "
                        f"not {lab.dtype} {lab.shape}"
                    )
                if lab.size and (lab.min() < 0 or lab.max() > 255):
                    raise InputError(f"labels[{i}]: label values must be 0..255")
                ys, xs = np.nonzero(lab)
                if not ys.size:
                    continue
                y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
                block = lab[y0:y1, x0:x1].astype(np.uint8)[np.newaxis]
                ds = group.create_dataset("block0000", data=block)
                ds.attrs["blockSlice"] = f"[0:1,{y0}:{y1},{x0}:{x1}]".encode("ascii")
    return project_file
