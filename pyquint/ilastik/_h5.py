"""Opening ilastik's HDF5 files (projects, exports) for reading."""

from __future__ import annotations

import os

__all__ = ["open_readonly"]


def open_readonly(path: str | os.PathLike):
    """Open an HDF5 file read-only without taking HDF5's file lock, so that a project that
    ilastik holds open (and locks) can still be read."""
    import h5py

    try:
        return h5py.File(path, "r", locking=False)
    except TypeError:  # h5py < 3.5 has no locking argument
        return h5py.File(path, "r")
