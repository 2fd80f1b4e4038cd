"""``steinbock classify ilastik prepare`` re-implemented: Ilastik images, crops and project."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..batch import progress
from ..errors import InputError
from ..naming import check_distinct_outputs
from .images import (
    create_ilastik_crop,
    create_ilastik_image,
    get_aggregation,
    list_image_files,
    read_ilastik_h5,
    read_steinbock_image,
    steinbock_image_shape,
    write_ilastik_h5,
)
from .panel import Panel, channel_groups, read_panel
from .project import create_project, relative_path

__all__ = ["PrepareResult", "crop_file_name", "ilastik_image_name", "prepare", "prepare_image"]

logger = logging.getLogger("pyquint.steinbock")


@dataclass
class PrepareResult:
    """What :func:`prepare` wrote.

    Attributes
    ----------
    image_files : list of Path
        ``ilastik_img/*.h5``, in input order.
    crop_files : list of Path
        ``ilastik_crops/*.h5``, one per image large enough, in the project's lane order.
    crop_positions : dict
        Crop file -> (x, y) of its top-left corner in scaled pixels.
    project_file : Path
    skipped_crops : list of str
        Images too small for the crop size (no crop, no random draw), with the reason.
    reused_images : list of Path
        Existing Ilastik images kept as they were (resume without ``overwrite``).
    """

    image_files: list[Path] = field(default_factory=list)
    crop_files: list[Path] = field(default_factory=list)
    crop_positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    project_file: Path | None = None
    skipped_crops: list[str] = field(default_factory=list)
    reused_images: list[Path] = field(default_factory=list)


def ilastik_image_name(img_file: str | os.PathLike) -> str:
    """steinbock's Ilastik image name: the suffix replaced by ``.h5``, a ``.ome.`` infix removed."""
    name = Path(img_file).name
    match = re.fullmatch(r"(.+)\.ome\.([^.]+)", name, flags=re.IGNORECASE)
    if match:
        name = f"{match.group(1)}.{match.group(2)}"
    return Path(name).with_suffix(".h5").name


def crop_file_name(image_stem: str, x: int, y: int, crop_size: int) -> str:
    """``{stem}_x{x}_y{y}_w{cs}_h{cs}.h5`` (coordinates in scaled pixels)."""
    return f"{image_stem}_x{x}_y{y}_w{crop_size}_h{crop_size}.h5"


def prepare_image(
    img_file: str | os.PathLike,
    out_file: str | os.PathLike,
    groups: np.ndarray | None = None,
    aggr: str | Callable[..., np.ndarray] = "mean",
    *,
    mean: bool = True,
    mean_factor: float = 100.0,
    scale: int = 2,
) -> Path:
    """Read one steinbock image, build its Ilastik image and write it (``/img``, float32 CYX)."""
    img = read_steinbock_image(img_file)
    ilastik_img = create_ilastik_image(
        img, groups, aggr, mean=mean, mean_factor=mean_factor, scale=scale, source=img_file
    )
    return write_ilastik_h5(out_file, ilastik_img, "img")


def _check_channels(img_files: list[Path], panel: Panel | None, groups: np.ndarray | None) -> None:
    """Refuse a panel that does not match the images (steinbock logs and skips the image)."""
    if panel is None:
        return
    mismatched = []
    for f in img_files:
        n_channels = steinbock_image_shape(f)[0]
        if n_channels != len(panel):
            mismatched.append(f"{f.name} has {n_channels}")
    if not mismatched:
        return
    message = (
        f"{panel.path}: the panel has {len(panel)} kept channels (keep=1) but "
        + ", ".join(mismatched[:5])
        + (f" and {len(mismatched) - 5} more" if len(mismatched) > 5 else "")
        + "; each kept panel row must match one image channel, in order"
    )
    if groups is not None:
        raise InputError(message)
    logger.warning("%s (the panel has no 'ilastik' groups, so all channels are used)", message)


def prepare(
    img_dir: str | os.PathLike = "img",
    panel: str | os.PathLike | Panel | None = "panel.csv",
    project_file: str | os.PathLike = "pixel_classifier.ilp",
    *,
    aggr: str | Callable[..., np.ndarray] = "mean",
    mean: bool = True,
    mean_factor: float = 100.0,
    scale: int = 2,
    crop_size: int = 512,
    img_out: str | os.PathLike = "ilastik_img",
    crop_out: str | os.PathLike = "ilastik_crops",
    seed: int | None = None,
    overwrite: bool = False,
    dataset_id: str | None = None,
) -> PrepareResult:
    """Prepare Ilastik images, one random crop per image and the project, as steinbock does.

    Parameters
    ----------
    img_dir : path-like, default "img"
        steinbock images (``*.tiff``, CYX), listed recursively and sorted.
    panel : path-like, Panel or None, default "panel.csv"
        steinbock panel. Its ``ilastik`` column groups channels (sorted numeric order);
        without usable groups every channel is kept. None: no panel.
    project_file : path-like, default "pixel_classifier.ilp"
    aggr : str or callable, default "mean"
        Aggregation of the channels of a group (``--aggr``).
    mean : bool, default True
        Prepend the mean of the aggregated channels times ``mean_factor``.
    mean_factor : float, default 100.0
    scale : int, default 2
        Bilinear upscale factor (OpenCV, as steinbock); ``<= 1``: no resizing.
    crop_size : int, default 512
        Side of the square crop in scaled pixels.
    img_out, crop_out : path-like
        Output folders (``ilastik_img``, ``ilastik_crops``); ``crop_out`` must be inside the
        project file's folder (lanes are relative paths).
    seed : int, optional
        Seed of ``numpy.random.default_rng`` shared by all crops (reproducible crops).
    overwrite : bool, default False
        Rewrite existing Ilastik images, crops and the project. Without it, existing
        images and crops are reused (resume) and an existing project is an error (it may
        hold your labels).
    dataset_id : str, optional
        Lanes' shared ``datasetId`` (default: a new uuid1, as steinbock).

    Returns
    -------
    PrepareResult

    Raises
    ------
    InputError
        Missing inputs, a panel/channel mismatch (with ``ilastik`` groups), an unknown
        ``aggr``, crops outside the project folder, an existing project without
        ``overwrite``. Nothing is written in these cases.
    """
    img_files = list_image_files(img_dir)
    if not img_files:
        raise InputError(f"{img_dir}: no *.tiff images in this folder")
    if panel is not None and not isinstance(panel, Panel):
        panel = read_panel(panel)
    groups = channel_groups(panel) if panel is not None else None
    get_aggregation(aggr)
    if int(scale) != scale:
        raise InputError(f"--scale must be an integer, not {scale}")
    if crop_size < 1:
        raise InputError(f"--cropsize must be a positive number of pixels, not {crop_size}")
    project_file = Path(project_file)
    if project_file.suffix.lower() != ".ilp":
        raise InputError(f"{project_file}: the project file must end in .ilp")
    if project_file.exists() and not overwrite:
        raise InputError(
            f"{project_file}: project exists (it may hold your labels); use --overwrite to replace it"
        )
    relative_path(Path(crop_out) / "x.h5", project_file)  # fail before writing anything
    for f in img_files:  # the whole batch is checked (readable, complete) before any write
        steinbock_image_shape(f)
    _check_channels(img_files, panel, groups)
    img_out, crop_out = Path(img_out), Path(crop_out)
    out_files = [img_out / ilastik_image_name(f) for f in img_files]
    check_distinct_outputs(img_files, out_files)

    result = PrepareResult()
    img_out.mkdir(parents=True, exist_ok=True)
    for f, out in progress(list(zip(img_files, out_files)), "ilastik images", len(img_files)):
        if out.exists() and not overwrite:
            result.reused_images.append(out)
        else:
            prepare_image(f, out, groups, aggr, mean=mean, mean_factor=mean_factor, scale=int(scale))
        result.image_files.append(out)
        logger.info("%s", out)

    crop_out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shapes = []
    for out in progress(result.image_files, "ilastik crops"):
        # crops are cut from the float32 image re-read from disk, as steinbock does
        ilastik_img = read_ilastik_h5(out, "img")
        drawn = create_ilastik_crop(ilastik_img, crop_size, rng)
        if drawn is None:
            reason = (
                f"{out}: image {ilastik_img.shape[2]}x{ilastik_img.shape[1]} (scaled) is too small "
                f"for crop size {crop_size}; no crop made for it"
            )
            logger.warning("%s", reason)
            result.skipped_crops.append(reason)
            continue
        x, y, crop = drawn
        crop_file = crop_out / crop_file_name(out.stem, x, y, crop_size)
        if overwrite or not crop_file.exists():
            write_ilastik_h5(crop_file, crop, "crop")
        result.crop_files.append(crop_file)
        result.crop_positions[crop_file] = (x, y)
        shapes.append(crop.shape)
        logger.info("%s", crop_file)
    result.project_file = create_project(
        project_file, result.crop_files, crop_shapes=shapes, dataset_id=dataset_id
    )
    logger.info("%s", project_file)
    return result
