"""steinbock compatibility: ``classify ilastik prepare``, ``fix`` and ``run`` without ilastik.

Files are steinbock 0.16.5's (``../shared/specs/steinbock.md``): ``ilastik_img/*.h5`` and
``ilastik_crops/*.h5`` byte for byte, the Pixel Classification project steinbock writes,
and ``ilastik_probabilities/*.tiff`` as ilastik exports them for steinbock.
"""

from .fix import FixResult, fix
from .images import (
    AGGREGATIONS,
    create_ilastik_crop,
    create_ilastik_image,
    list_ilastik_files,
    list_image_files,
    read_ilastik_h5,
    read_steinbock_image,
    resize_like_steinbock,
    write_ilastik_h5,
)
from .panel import Panel, channel_groups, read_panel
from .prepare import PrepareResult, crop_file_name, ilastik_image_name, prepare, prepare_image
from .project import create_project, write_labels
from .run import RunResult, SteinbockClassifier, run

__all__ = [
    "AGGREGATIONS",
    "Panel",
    "PrepareResult",
    "channel_groups",
    "create_ilastik_crop",
    "create_ilastik_image",
    "create_project",
    "crop_file_name",
    "ilastik_image_name",
    "list_ilastik_files",
    "list_image_files",
    "prepare",
    "prepare_image",
    "read_ilastik_h5",
    "read_panel",
    "read_steinbock_image",
    "resize_like_steinbock",
    "write_ilastik_h5",
    "write_labels",
    "fix",
    "FixResult",
    "run",
    "RunResult",
    "SteinbockClassifier",
]
