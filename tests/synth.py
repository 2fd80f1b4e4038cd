"""Small inputs the tests build themselves (no third-party files): an IMC set for steinbock
commands and a legacy (pre-``fix``) steinbock training set."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import tifffile

from pyquint.io import axistags_json

#: panel.csv of :func:`write_imc_inputs`: ilastik groups 2, 1, 2, (dropped), none, 2.
PANEL_CSV = (
    "channel,name,keep,ilastik,deepcell,cellpose\n"
    "Ch1,Marker1,1,2,,\nCh2,Marker2,1,1,1,\nCh3,Marker3,1,2,2,\n"
    "ChX,Dropped,0,1,,\nCh4,Marker4,1,,,\nCh5,Marker5,1,2,,\n"
)


def write_imc_inputs(folder: Path, shape: tuple[int, int] = (100, 120), seed: int = 0) -> Path:
    """``folder/img/synth_{a,b,c}.tiff`` (5 × Y × X float32, ImageJ hyperstacks) + ``panel.csv``."""
    folder = Path(folder)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    for stem in ("synth_a", "synth_b", "synth_c"):
        img = rng.gamma(2.0, 4.0, (5, *shape)).astype(np.float32)
        for _ in range(12):  # a few bright cells per channel
            cy, cx, c = rng.integers(5, shape[0] - 5), rng.integers(5, shape[1] - 5), rng.integers(0, 5)
            img[c][(yy - cy) ** 2 + (xx - cx) ** 2 <= 9] += 40.0
        tifffile.imwrite(folder / "img" / f"{stem}.tiff", img[np.newaxis, np.newaxis, ..., np.newaxis],
                         imagej=True)
    (folder / "panel.csv").write_text(PANEL_CSV)
    return folder


def make_legacy_case(folder: Path) -> None:
    """Turn a freshly prepared steinbock folder into a legacy training set, in place.

    As older steinbock/ilastik set-ups left them: crops stored ``yxc`` uint16 in a dataset named
    after the file, lanes pointing to a foreign absolute folder with ``yxc`` shape and axistags,
    one ``yxc`` label block (values 1..3) per lane, and a stray dataset in ``local_data``.
    """
    folder = Path(folder)
    tags = axistags_json("yxc")
    crops = sorted((folder / "ilastik_crops").glob("*.h5"))
    for path in crops:
        with h5py.File(path, "r") as f:
            crop = f["crop"][()]
        yxc = np.clip(np.round(np.moveaxis(crop, 0, -1)), 0, 65535).astype(np.uint16)
        with h5py.File(path, "w") as f:
            f.create_dataset(path.stem, data=yxc).attrs["axistags"] = tags
    with h5py.File(folder / "pixel_classifier.ilp", "a") as f:
        for lane in sorted(f["Input Data/infos"]):
            raw = f["Input Data/infos"][lane]["Raw Data"]
            stem = raw["nickname"][()].decode()
            for key, text in (("filePath", f"/legacy/project/crops/{stem}.h5/{stem}"), ("axistags", tags)):
                del raw[key]
                raw.create_dataset(key, data=text.encode("ascii"))
            del raw["shape"]
            raw.create_dataset("shape", data=np.array([50, 50, 3], np.int64))
        sets = f["PixelClassification"].create_group("LabelSets")
        for i in range(len(crops)):
            block = np.zeros((10, 20, 1), np.uint8)
            block[:, :5], block[:, 5:12], block[:, 12:] = 1, 2, 3
            ds = sets.create_group(f"labels{i:03d}").create_dataset("block0000", data=block)
            ds.attrs["blockSlice"] = b"[5:15,7:27,0:1]"
        f["Input Data/local_data"].create_dataset("junk", data=np.arange(3))
