"""Bad inputs and faults, as a hostile or unlucky user would try them: one table of cases.

Each case builds its own hostile files in a fresh folder, runs the real ``pyquint`` CLI and
asserts the exit status, the one-line ``Error:`` message (never a traceback), that no input
changed (sha256 before and after), and that no temporary or lock file is left. The memory
and decompression bombs run as subprocesses whose own peak RSS is read with ``wait4``; the
pathological models run as subprocesses under a timeout (a hang fails the exit-status check).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image

from . import helpers as H

SMALL_RSS_MB = 600  # a bomb must be refused long before it costs this much


@dataclass
class World:
    root: Path
    section: Path  # 96x96 uint8 grey
    labels: Path
    model: Path  # pixel model trained on uint8 sections (2 features, 3 trees)
    proba: Path  # its probabilities for section (h5)
    object_model: Path
    object_labels: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    from pyquint.data import write_sample_dataset

    root = tmp_path_factory.mktemp("world")
    write_sample_dataset(root / "sample", n_sections=1, shape=(96, 96))
    sec = root / "sample" / "sections" / "brain_s001.png"
    lab = root / "sample" / "labels" / "brain_s001.png"
    model = root / "model.h5"
    features = json.dumps({"matrix": [[1], [0], [1], [0], [0], [0]], "scales": [1.0]})
    r = H.run_inprocess(["pixel", "train", sec, "-l", lab, "--trees", "3", "--seed", "1",
                         "--features", features, "-o", model])
    assert r.code == 0, r.stderr
    r = H.run_inprocess(["pixel", "predict", model, sec, "-o", root / "proba"])
    assert r.code == 0, r.stderr
    proba = root / "proba" / "brain_s001_Probabilities.h5"
    obj_model = root / "objects.h5"
    obj_labels = root / "sample" / "object_labels" / "brain_s001.png"
    r = H.run_inprocess(["objects", "train", "--raw", sec, "--proba", proba, "--labels", obj_labels,
                         "--trees", "3", "--seed", "1", "--channel", "2", "--threshold", "0.5",
                         "--min-size", "3", "-m", obj_model])
    assert r.code == 0, r.stderr + r.stdout
    return World(root, sec, lab, model, proba, obj_model, obj_labels)


# --------------------------------------------------------------------------- the table
@dataclass
class Case:
    id: str
    build: Callable[[Path, World], list]  # -> CLI arguments; files go into the case folder
    code: int = 1
    message: str = ""  # regex searched in the last stderr line
    sub: bool = False  # run as a subprocess (bombs, pathological models)
    env: dict = field(default_factory=dict)
    after: Callable[[Path, World, H.Run], None] | None = None  # extra checks
    error_line: bool = True  # stderr ends in one 'Error:' line


def predict(d: Path, w: World, *inputs, model=None, extra=()) -> list:
    return ["pixel", "predict", model or w.model, *inputs, "-o", d / "out", *extra]


def _write(p: Path, data: bytes | str) -> Path:
    p.write_bytes(data) if isinstance(data, bytes) else p.write_text(data)
    return p


def _jpeg(d: Path) -> Path:
    p = d / "small.jpg"
    Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(p)
    return p


def _tiff(d: Path, shape=(64, 64), dtype=np.uint8) -> Path:
    p = d / "good.tif"
    tifffile.imwrite(p, np.arange(np.prod(shape)).reshape(shape).astype(dtype))
    return p


def _npy(d: Path, name: str, array) -> Path:
    p = d / name
    np.save(p, array, allow_pickle=True)
    return p


def _h5(d: Path, name: str, **datasets) -> Path:
    p = d / name
    with h5py.File(p, "w") as f:
        for k, v in datasets.items():
            f[k] = v
    return p


def _model(d: Path, w: World, edit, name="bad_model.h5") -> Path:
    return H.copy_model(w.model, d / name, edit)


def _object_model(d: Path, w: World, change) -> Path:
    return H.copy_model(w.object_model, d / "bad_objects.h5", H.edit_metadata(change))


def _meta_threshold(**changes):
    def change(meta):
        meta["threshold"] = {**(meta.get("threshold") or {}), **changes}
    return change


def _forest_arrays(w: World) -> tuple[int, int]:
    with h5py.File(w.model) as f:
        return int(f["forest"].attrs["n_features"]), int(f["forest/classes"].shape[0])


def _deep(d: Path, w: World, depth: int) -> Path:
    n_features, n_classes = _forest_arrays(w)
    arrays = H.deep_chain(depth, n_features, n_classes)
    return _model(d, w, lambda f: H.replace_arrays(f, arrays))


def _declared_value(d: Path, w: World) -> Path:
    """value declared (200000, 2000) with every other array consistent: 3.2 GB if trusted."""
    n, k = 200_000, 2000

    def edit(f):
        zeros = np.zeros(n, np.int32)
        H.replace_arrays(f, {"feature": zeros, "threshold": np.arange(n, dtype=float), "left": zeros - 1,
                             "right": zeros - 1, "roots": np.arange(n, dtype=np.int32),
                             "classes": np.arange(1, k + 1)},
                         declared={"value": ((n, k), "f8")})
    return _model(d, w, edit)


def _declared_nodes(d: Path, w: World) -> Path:
    """Every node array declared with 2e8 entries and nothing written (a 20 GB forest)."""
    n = 200_000_000

    def edit(f):
        H.replace_arrays(f, {}, declared={"feature": ((n,), "i4"), "threshold": ((n,), "f8"),
                                          "left": ((n,), "i4"), "right": ((n,), "i4"),
                                          "value": ((n, 2), "f8"), "roots": ((1,), "i4")})
    return _model(d, w, edit)


def _arrays_edit(**changes):
    def edit(f):
        g = f["forest"]
        arrays = {}
        for name, fn in changes.items():
            a = g[name][()]
            arrays[name] = fn(a)
        H.replace_arrays(f, arrays)
    return edit


def _section_copy(d: Path, w: World, name="brain_s002.png") -> Path:
    p = d / "in" / name
    p.parent.mkdir(exist_ok=True)
    shutil.copyfile(w.section, p)
    return p


def _ilp_like(d: Path, workflow: str | None) -> tuple[Path, Path]:
    ilp = d / "pixel_classifier.ilp"
    with h5py.File(ilp, "w") as f:
        f["data"] = np.arange(10)
        if workflow is not None:
            f["workflowName"] = workflow.encode()
            f["ilastikVersion"] = b"1.4.0"
    crops = d / "ilastik_crops"
    crops.mkdir()
    with h5py.File(crops / "a_x0_y0_w8_h8.h5", "w") as f:
        ds = f.create_dataset("crop", data=np.zeros((2, 8, 8), np.float32))
        ds.attrs["axistags"] = json.dumps({"axes": [{"key": k, "typeFlags": 2, "resolution": 0,
                                                     "description": ""} for k in "cyx"]})
    return ilp, crops


def _fix(d: Path, workflow: str | None) -> list:
    ilp, crops = _ilp_like(d, workflow)
    return ["steinbock", "fix", "--ilp", ilp, "--crop", crops, "--probabs", d / "probabs"]


def _prepare_with_truncated(d: Path) -> list:
    img = d / "img"
    img.mkdir()
    for name in ("a", "b", "c"):
        tifffile.imwrite(img / f"{name}.tiff", np.ones((2, 40, 40), np.float32))
    H.truncate(img / "b.tiff", img / "b.tiff.part", 0.5)
    os.replace(img / "b.tiff.part", img / "b.tiff")
    (d / "panel.csv").write_text("channel,name,keep,ilastik\nCh1,M1,1,1\nCh2,M2,1,2\n")
    return ["steinbock", "prepare", "--img", img, "--panel", d / "panel.csv", "-o",
            d / "pixel_classifier.ilp", "--imgout", d / "ilastik_img", "--cropout",
            d / "ilastik_crops", "--cropsize", "10", "--seed", "1"]


def _quint(d: Path, w: World, bad) -> list:
    """A QUINT run whose sections folder holds a good section and a bad one."""
    sections = d / "sections"
    sections.mkdir()
    shutil.copyfile(w.section, sections / "brain_s002.png")
    bad(sections / "brain_s003.png")
    return ["quint", "run", "--sections", sections, "--model", w.model, "-o", d / "out"]


def _no_outputs(*names):
    def check(d, w, r):
        for n in names:
            assert not (d / n).exists() or not any((d / n).iterdir()), f"{n} was written"
    return check


def _written(n: int):
    def check(d, w, r):
        out = d / "out"
        got = [p for p in out.iterdir() if not p.name.startswith(".")] if out.exists() else []
        assert len(got) == n, got
    return check


def _stale_temp(d: Path, w: World) -> list:
    out = d / "out"
    out.mkdir()
    dead = _dead_pid()
    (out / f".brain_s001_Probabilities.pq{dead}-abc123.tmp.h5").write_bytes(b"x" * 1000)
    return predict(d, w, w.section)


def _stale_temp_resume(d: Path, w: World) -> list:
    """Every output exists (the rerun writes nothing) and a killed run left a temp file."""
    first = H.run_inprocess(predict(d, w, w.section))
    assert first.code == 0, first.stderr
    (d / "out" / f".brain_s001_Probabilities.pq{_dead_pid()}-zz9.tmp.h5").write_bytes(b"x")
    return predict(d, w, w.section)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _live_temp_kept(d: Path, w: World) -> list:
    out = d / "out"
    out.mkdir()
    (out / f".brain_s001_Probabilities.pq{os.getpid()}-keep12.tmp.h5").write_bytes(b"x")
    return predict(d, w, w.section)


def _live_temp_check(d, w, r):
    left = H.leftovers(d)
    assert [Path(p).name for p in left] == [f".brain_s001_Probabilities.pq{os.getpid()}-keep12.tmp.h5"]
    Path(left[0]).unlink()


def _threshold_twice(d: Path, w: World) -> list:
    """Threshold into the probabilities' own folder, then rerun: the rerun resumes."""
    folder = d / "out"
    folder.mkdir()
    shutil.copyfile(w.proba, folder / w.proba.name)
    first = H.run_inprocess(["objects", "threshold", folder, "-o", folder, "--min-size", "3"])
    assert first.code == 0, first.stderr
    return ["objects", "threshold", folder, "-o", folder, "--min-size", "3"]


def _threshold_resumed(d, w, r):
    assert "thresholded 0 file(s), skipped 1 existing" in r.stdout, r.stdout


def _warns(pattern: str):
    def check(d, w, r):
        assert re.search(pattern, r.stderr), r.stderr
    return check


def _uint16(d: Path, w: World) -> list:
    p = d / "deep16.tif"
    tifffile.imwrite(p, (np.asarray(Image.open(w.section), np.uint16) * 200))
    return predict(d, w, p)


def _float(d: Path, w: World) -> list:
    p = d / "float.npy"
    np.save(p, np.asarray(Image.open(w.section), np.float32) / 255.0)
    return predict(d, w, p)


def _full_disk(d: Path, w: World) -> list:
    return predict(d, w, w.section)


def _file_as_folder(d: Path, w: World) -> list:
    (d / "notafolder").write_text("x")
    return ["pixel", "predict", w.model, w.section, "-o", d / "notafolder" / "out"]


CASES: list[Case] = [
    # ---- images: bombs and declared sizes (subprocess, peak memory measured)
    Case("png-ihdr-100000^2", lambda d, w: predict(d, w, H.png_bomb(d / "bomb.png")),
         message=r"bomb\.png: declares a 100000×100000×1 uint8 image.*large predict", sub=True),
    Case("png-ihdr-rgb-bomb", lambda d, w: predict(d, w, H.png_bomb(d / "rgb.png", 80_000, 80_000, 2)),
         message=r"rgb\.png: declares .*GiB", sub=True),
    Case("jpeg-sof-65000^2", lambda d, w: predict(d, w, H.jpeg_bomb(d / "bomb.jpg", _jpeg(d))),
         message=r"bomb\.jpg: declares a 65000×65000", sub=True),
    Case("npy-header-100000^2-f8", lambda d, w: predict(d, w, H.npy_bomb(d / "bomb.npy")),
         message=r"bomb\.npy: header declares shape \(100000, 100000\).*truncated", sub=True),
    Case("npy-budget", lambda d, w: predict(d, w, _npy(d, "big.npy", np.zeros((300, 300)))),
         message=r"big\.npy: declares a 300×300 float64 image.*PYQUINT_MEMORY_LIMIT",
         env={"PYQUINT_MEMORY_LIMIT": "100K"}),
    Case("h5-40000^2-no-chunks", lambda d, w: predict(d, w, H.h5_unwritten(d / "empty.h5")),
         message=r"empty\.h5/raw: declares shape \(40000, 40000\) but holds no pixel data", sub=True),
    Case("h5-40000^2-contiguous-unwritten",
         lambda d, w: predict(d, w, H.h5_unwritten(d / "cont.h5", chunks=False)),
         message=r"cont\.h5/raw: declares shape .* no pixel data", sub=True),
    Case("h5-budget", lambda d, w: predict(d, w, H.h5_unwritten(d / "huge.h5", (200_000, 200_000))),
         message=r"huge\.h5/raw: declares a 200000×200000 float32 image.*large predict", sub=True),
    Case("tiff-header-60000^2", lambda d, w: predict(d, w, H.tiff_bomb(d / "bomb.tif")),
         message=r"bomb\.tif: (truncated TIFF|declares a 60000×60000)", sub=True),
    Case("tiff-header-budget", lambda d, w: predict(d, w, H.tiff_bomb(d / "bomb.tif")),
         message=r"bomb\.tif: declares a 60000×60000 uint8 image", env={"PYQUINT_MEMORY_LIMIT": "1G"}),
    Case("bomb-in-batch-goes-on",
         lambda d, w: predict(d, w, _section_copy(d, w), H.png_bomb(d / "in" / "bomb.png")),
         message=r"bomb\.png: declares", after=_written(1)),
    # ---- images: corrupt, truncated, wrong type
    Case("png-truncated", lambda d, w: predict(d, w, H.truncate(w.section, d / "cut.png"))
         , message=r"cut\.png: not a readable image"),
    Case("png-empty-file", lambda d, w: predict(d, w, _write(d / "empty.png", b"")),
         message=r"empty\.png: not a readable image"),
    Case("png-garbage", lambda d, w: predict(d, w, _write(d / "g.png", os.urandom(300))),
         message=r"g\.png: not a readable image"),
    Case("jpeg-truncated", lambda d, w: predict(d, w, H.truncate(_jpeg(d), d / "cut.jpg", 0.3)),
         message=r"cut\.jpg: not a readable image"),
    Case("tiff-truncated", lambda d, w: predict(d, w, H.truncate(_tiff(d, (200, 200)), d / "cut.tif", 0.5)),
         message=r"cut\.tif: (truncated TIFF|not a readable TIFF)"),
    Case("tiff-garbage", lambda d, w: predict(d, w, _write(d / "g.tif", b"II*\x00" + os.urandom(100))),
         message=r"g\.tif: not a readable TIFF"),
    Case("npy-pickled-objects", lambda d, w: predict(d, w, _npy(d, "obj.npy", np.array([{"a": 1}], dtype=object))),
         message=r"obj\.npy: holds Python objects"),
    Case("npy-bad-magic", lambda d, w: predict(d, w, _write(d / "x.npy", b"not numpy at all")),
         message=r"x\.npy: not a readable \.npy file"),
    Case("npy-complex", lambda d, w: predict(d, w, _npy(d, "c.npy", np.zeros((20, 20), np.complex64))),
         message=r"c\.npy: unsupported pixel type complex64"),
    Case("h5-two-datasets", lambda d, w: predict(d, w, _h5(d, "two.h5", a=np.zeros((20, 20)), b=np.zeros((20, 20)))),
         message=r"two\.h5: holds 2 datasets"),
    Case("h5-not-hdf5", lambda d, w: predict(d, w, _write(d / "t.h5", "hello")),
         message=r"t\.h5: not a readable HDF5 file"),
    Case("h5-truncated", lambda d, w: predict(d, w, H.truncate(_h5(d, "full.h5", raw=np.ones((64, 64))), d / "cut.h5", 0.5)),
         message=r"cut\.h5: not a readable HDF5 file"),
    Case("unsupported-suffix", lambda d, w: predict(d, w, _write(d / "x.xyz", "1")),
         message=r"x\.xyz: unsupported file type"),
    Case("missing-input", lambda d, w: predict(d, w, d / "nothing.png"),
         message=r"nothing\.png: no such file or folder"),
    Case("empty-folder", lambda d, w: predict(d, w, (d / "e").mkdir() or d / "e"),
         message=r"e: no files with suffix"),
    Case("rgb-into-grey-model", lambda d, w: predict(d, w, _npy(d, "rgb.npy", np.zeros((40, 40, 3), np.uint8))),
         message=r"rgb\.npy.*channel"),
    # ---- input unlike the training data: a warning with numbers, still exit 0
    Case("uint16-into-uint8-model", _uint16, code=0, error_line=False,
         after=_warns(r"warning: .*deep16\.tif: its pixels are uint16 but the model was trained on uint8;"
                      r" its values span \d+\.\.\d+ but the training images spanned \d+\.\.\d+")),
    Case("float-into-uint8-model", _float, code=0, error_line=False,
         after=_warns(r"warning: .*float\.npy: its pixels are float32 .*values span [\d.]+\.\.[\d.]+ but")),
    # ---- outputs: refusals, faults, leftovers
    Case("output-would-overwrite-input",
         lambda d, w: ["pixel", "predict", w.model, _section_copy(d, w), "-o", d / "in",
                       "--output-format", "png", "--export-source", "Simple Segmentation",
                       "--output-filename-format", "{dataset_dir}/{nickname}.png"],
         message=r"would overwrite an input"),
    Case("output-under-a-file", _file_as_folder, message=r"notafolder.*(not a folder|exists)"),
    Case("disk-full-on-rename", _full_disk, message=r"the disk is full; free some space"),
    Case("output-permission-denied", _full_disk, message=r"permission denied; choose a folder you may write to"),
    Case("output-read-only-file-system", _full_disk, message=r"the file system is read-only"),
    Case("stale-temp-of-dead-run-removed", _stale_temp, code=0, error_line=False, after=_written(1)),
    Case("stale-temp-removed-when-all-outputs-exist", _stale_temp_resume, code=0, error_line=False,
         after=_written(1)),
    Case("temp-of-live-run-kept", _live_temp_kept, code=0, error_line=False, after=_live_temp_check),
    Case("folder-locked-by-another-run", lambda d, w: predict(d, w, w.section),
         message=r"another pyquint run \(PID \d+\) is writing into this folder"),
    # ---- models: pathological (subprocess under a timeout) and corrupt
    Case("model-tree-depth-1e6", lambda d, w: predict(d, w, w.section, model=_deep(d, w, 1_000_000)),
         message=r"bad_model\.h5: invalid forest: a tree is deeper than 4096 levels", sub=True),
    Case("model-tree-depth-5000", lambda d, w: predict(d, w, w.section, model=_deep(d, w, 5000)),
         message=r"deeper than 4096 levels"),
    Case("model-value-declared-200000x2000", lambda d, w: predict(d, w, w.section, model=_declared_value(d, w)),
         message=r"'forest/value' declares 3200000000 bytes but stores only", sub=True),
    Case("model-2e8-nodes-declared", lambda d, w: predict(d, w, w.section, model=_declared_nodes(d, w)),
         message=r"bad_model\.h5: .*(declares \d+ bytes but stores only|GiB of memory)", sub=True),
    Case("model-value-shape-mismatch",
         lambda d, w: predict(d, w, w.section, model=_model(d, w, lambda f: H.replace_arrays(
             f, {}, declared={"value": ((5, 2), "f8")}))),
         message=r"'forest/value' is declared \(5, 2\), but the file's \d+ nodes and 2 classes need"),
    Case("model-not-hdf5", lambda d, w: predict(d, w, w.section, model=_write(d / "m.h5", "x")),
         message=r"m\.h5: not a pyquint model"),
    Case("model-pickle", lambda d, w: predict(d, w, w.section, model=_write(
        d / "m.pkl.h5", b"\x80\x04\x95cos\nsystem\n")), message=r"not a pyquint model"),
    Case("model-truncated", lambda d, w: predict(d, w, w.section, model=H.truncate(w.model, d / "cut.h5", 0.6)),
         message=r"cut\.h5: (not a pyquint model|corrupt or truncated)"),
    Case("model-foreign-hdf5", lambda d, w: predict(d, w, w.section, model=_h5(d, "foreign.h5", x=np.ones(3))),
         message=r"foreign\.h5: not a pyquint model file \(format attribute None"),
    Case("model-newer-version", lambda d, w: predict(d, w, w.section, model=_model(
        d, w, lambda f: f.attrs.__setitem__("format_version", 99))), message=r"version 99 .*upgrade pyquint"),
    Case("model-wrong-kind", lambda d, w: predict(d, w, w.section, model=w.object_model),
         message=r"this is a object model, not a pixel model"),
    Case("model-metadata-not-json", lambda d, w: predict(d, w, w.section, model=_model(
        d, w, lambda f: f.attrs.__setitem__("metadata", "{oops"))), message=r"metadata is not valid JSON"),
    Case("model-soft-link", lambda d, w: predict(d, w, w.section, model=_model(
        d, w, lambda f: (f.move("forest/roots", "roots_elsewhere"),
                         f["forest"].__setitem__("roots", h5py.SoftLink("/roots_elsewhere"))))),
         message=r"'forest/roots' is a link to elsewhere"),
    Case("model-cycle", lambda d, w: predict(d, w, w.section, model=_model(
        d, w, _arrays_edit(left=lambda a: np.where(np.arange(a.size) == np.flatnonzero(a >= 0)[-1], 0, a)))),
         message=r"invalid forest: the node arrays do not form disjoint trees"),
    Case("model-nan-threshold", lambda d, w: predict(d, w, w.section, model=_model(
        d, w, _arrays_edit(threshold=lambda a: np.full_like(a, np.nan)))), message=r"threshold is not finite"),
    Case("model-feature-out-of-range", lambda d, w: predict(d, w, w.section, model=_model(
        d, w, _arrays_edit(feature=lambda a: np.where(a >= 0, 10**6, a)))), message=r"tests a feature outside"),
    Case("model-negative-leaf", lambda d, w: predict(d, w, w.section, model=_model(
        d, w, _arrays_edit(value=lambda a: -np.abs(a) - 1))), message=r"negative or non-finite"),
    Case("model-root-out-of-range", lambda d, w: predict(d, w, w.section, model=_model(
        d, w, _arrays_edit(roots=lambda a: a + 10**7))), message=r"root index is out of range"),
    Case("model-metadata-n-classes-1e9", lambda d, w: predict(d, w, w.section, model=_model(
        d, w, H.edit_metadata(lambda m: m.__setitem__("n_classes", 10**9)))),
         message=r"metadata 'n_classes' must be an integer in 1\.\.65536, not 1000000000"),
    Case("model-metadata-colour-300", lambda d, w: predict(d, w, w.section, model=_model(
        d, w, H.edit_metadata(lambda m: m.__setitem__("class_colors", [[300, 0, 0], [0, 0, 0]])))),
         message=r"'class_colors' must be \[r, g, b\] triples of 0\.\.255"),
    Case("model-metadata-scale-1e300", lambda d, w: predict(d, w, w.section, model=_model(
        d, w, H.edit_metadata(lambda m: m["features"].__setitem__("scales", [1e300])))),
         message=r"metadata 'features': scale 1e\+300 is not a positive finite σ of at most 1000"),
    Case("model-metadata-scale-negative", lambda d, w: predict(d, w, w.section, model=_model(
        d, w, H.edit_metadata(lambda m: m["features"].__setitem__("scales", [-1.0])))),
         message=r"scale -1\.0 is not a positive finite σ"),
    Case("model-metadata-rounding", lambda d, w: predict(d, w, w.section, model=_model(
        d, w, H.edit_metadata(lambda m: m.__setitem__("rounding", "__import__('os')")))),
         message=r"'rounding' must be fast, exact or muladd"),
    Case("model-metadata-channels-wrong-type", lambda d, w: predict(d, w, w.section, model=_model(
        d, w, H.edit_metadata(lambda m: m.__setitem__("n_input_channels", "1")))),
         message=r"'n_input_channels' must be an integer"),
    # ---- object models and thresholds
    Case("object-threshold-wrong-type", lambda d, w: ["objects", "predict", "--raw", w.section, "--proba", w.proba,
                                                      "-m", _object_model(d, w, _meta_threshold(threshold="high")),
                                                      "-o", d / "out"],
         message=r"threshold setting 'threshold' must be float, not 'high'"),
    Case("object-threshold-sigma-1e300", lambda d, w: ["objects", "predict", "--raw", w.section, "--proba", w.proba,
                                                       "-m", _object_model(d, w, _meta_threshold(sigma=1e300)),
                                                       "-o", d / "out"],
         message=r"sigma 1e\+300: values must lie in 0\.\.1000"),
    Case("object-threshold-unknown-method", lambda d, w: ["objects", "predict", "--raw", w.section, "--proba",
                                                          w.proba, "-m",
                                                          _object_model(d, w, _meta_threshold(method="magic")),
                                                          "-o", d / "out"],
         message=r"threshold method 'magic'"),
    Case("object-threshold-settings-not-object", lambda d, w: ["objects", "predict", "--raw", w.section, "--proba",
                                                               w.proba, "-m", _object_model(
                                                                   d, w, lambda m: m.__setitem__("threshold", [1, 2])),
                                                               "-o", d / "out"],
         message=r"threshold settings must be a JSON object"),
    Case("objects-threshold-sigma-1e300-cli", lambda d, w: ["objects", "threshold", w.proba, "-o", d / "out",
                                                            "--sigma", "1e300"],
         message=r"sigma .*1e\+300.*must lie in 0\.\.1000"),
    Case("objects-threshold-out-of-range", lambda d, w: ["objects", "threshold", w.proba, "-o", d / "out",
                                                         "--threshold", "2"],
         message=r"threshold setting 'threshold' = 2\.0 must lie in \[0, 1\]"),
    Case("objects-threshold-resumes-in-proba-folder", _threshold_twice, code=0, error_line=False,
         after=_threshold_resumed),
    # ---- large predict (tile by tile) refuses what it cannot read whole
    Case("large-truncated-tiff", lambda d, w: ["large", "predict", w.model,
                                               H.truncate(_tiff(d, (300, 300)), d / "cut.tif", 0.5),
                                               "-o", d / "out"],
         message=r"cut\.tif: truncated TIFF \(its pixel data ends at byte \d+ but the file has \d+ bytes\)"),
    Case("large-h5-unwritten", lambda d, w: ["large", "predict", w.model, H.h5_unwritten(d / "e.h5"),
                                             "-o", d / "out"],
         message=r"e\.h5/raw: declares shape \(40000, 40000\) but holds no pixel data", sub=True),
    Case("large-png-bomb", lambda d, w: ["large", "predict", w.model, H.png_bomb(d / "bomb.png"),
                                         "-o", d / "out"],
         message=r"bomb\.png: declares a 100000×100000×1 uint8 image", sub=True),
    # ---- in-place edits: steinbock fix proves what it edits
    Case("fix-foreign-hdf5", lambda d, w: _fix(d, None), message=r"not an ilastik project \(no 'workflowName'\)"),
    Case("fix-object-project", lambda d, w: _fix(d, "Object Classification (from pixel classification)"),
         message=r"an ilastik 'Object Classification .*' project, not Pixel Classification"),
    Case("fix-text-file", lambda d, w: (_ilp_like(d, None), (d / "pixel_classifier.ilp").write_text("x"),
                                        _fix_args(d))[-1], message=r"not an ilastik project \(not an HDF5 file\)"),
    Case("fix-newer-ilastik", lambda d, w: _fix(d, "Pixel Classification") and _set_version(d, "9.0"),
         message=r"ilastik version '9\.0' is not supported"),
    # ---- whole-batch validation before work
    Case("prepare-truncated-tiff-writes-nothing", lambda d, w: _prepare_with_truncated(d),
         message=r"b\.tiff: truncated TIFF", after=_no_outputs("ilastik_img", "ilastik_crops")),
    Case("quint-run-bomb-among-sections", lambda d, w: _quint(d, w, lambda p: H.png_bomb(p)),
         message=r"brain_s003\.png: declares a 100000×100000", after=_no_outputs("out")),
    Case("quint-run-truncated-section", lambda d, w: _quint(d, w, lambda p: H.truncate(w.section, p)),
         message=r"brain_s003\.png: not a readable image", after=_no_outputs("out")),
    # ---- usage and switches
    Case("unknown-option", lambda d, w: ["pixel", "predict", "--no-such-option"], code=2,
         message=r"No such option"),
    Case("memory-limit-unreadable", lambda d, w: predict(d, w, w.section), env={"PYQUINT_MEMORY_LIMIT": "lots"},
         message=r"PYQUINT_MEMORY_LIMIT='lots': use bytes or e\.g\. 512M"),
]


def _fix_args(d: Path) -> list:
    return ["steinbock", "fix", "--ilp", d / "pixel_classifier.ilp", "--crop", d / "ilastik_crops",
            "--probabs", d / "probabs"]


def _set_version(d: Path, version: str) -> list:
    with h5py.File(d / "pixel_classifier.ilp", "a") as f:
        del f["ilastikVersion"]
        f["ilastikVersion"] = version.encode()
    return _fix_args(d)


def test_at_least_sixty_cases_all_documented():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)
    doc = (H.ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    missing = [c.id for c in CASES if f"`{c.id}`" not in doc]
    assert not missing, f"cases missing from docs/reliability.md: {missing}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, world: World, tmp_path: Path, monkeypatch) -> None:
    args = case.build(tmp_path, world)
    before = H.hashes(tmp_path, skip=tmp_path / "out")
    world_before = H.hashes(world.root)
    holder = None
    if case.id == "folder-locked-by-another-run":
        holder = _hold_lock(tmp_path / "out")
    fault = {"disk-full-on-rename": errno.ENOSPC, "output-permission-denied": errno.EACCES,
             "output-read-only-file-system": errno.EROFS}.get(case.id)
    if fault is not None:  # the OS refuses the final rename of the output
        real = os.replace

        def refuse(src, dst, *a, **k):
            if ".tmp" in str(src):
                raise OSError(fault, os.strerror(fault), str(dst))
            return real(src, dst, *a, **k)
        monkeypatch.setattr(os, "replace", refuse)
    try:
        if case.sub:
            r = H.run_subprocess(args, env=case.env, timeout=60)
        else:
            r = H.run_inprocess(args, env=case.env)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
            (tmp_path / "out" / ".pyquint.lock").unlink(missing_ok=True)
    text = r.stdout + r.stderr
    assert r.exception is None, f"uncaught {r.exception!r}"
    assert "Traceback" not in text, text
    assert r.code == case.code, f"exit {r.code}:\n{text}"
    if case.error_line:
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert lines, "no message"
        error_lines = [ln for ln in lines if ln.startswith("Error:")]
        assert len(error_lines) == 1, lines
        assert re.search(case.message, lines[-1]) or any(re.search(case.message, ln) for ln in lines), lines
    if case.sub:
        assert r.max_rss_mb is not None and r.max_rss_mb < SMALL_RSS_MB, f"peak RSS {r.max_rss_mb:.0f} MB"
    if case.after is not None:
        case.after(tmp_path, world, r)
    assert H.hashes(tmp_path, skip=tmp_path / "out") == before, "an input changed"
    assert H.hashes(world.root) == world_before, "a shared input changed"
    assert H.leftovers(tmp_path) == [], "temporary files left behind"


def _hold_lock(folder: Path) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    code = ("import fcntl, os, sys, time\n"
            f"fd = os.open({str(folder / '.pyquint.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode())\n"
            "print('ready', flush=True); time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


# --------------------------------------------------------------------------- beyond the table
def _batch(tmp_path: Path, world: World, n: int, size: int = 384) -> Path:
    inputs = tmp_path / "in"
    inputs.mkdir()
    section = np.asarray(Image.open(world.section))
    big = np.tile(section, (size // section.shape[0] + 1, size // section.shape[1] + 1))[:size, :size]
    for i in range(n):
        Image.fromarray(big).save(inputs / f"s{i:03d}.png")
    return inputs


@pytest.mark.parametrize("sig, code, ignored", [(signal.SIGINT, 130, True), (signal.SIGTERM, 143, False)],
                         ids=["ctrl-c-while-sigint-ignored-by-shell", "sigterm"])
def test_interrupt_stops_batch_at_once(sig, code, ignored, world: World, tmp_path: Path) -> None:
    """Ctrl-C (even when the shell started pyquint with SIGINT ignored) and SIGTERM stop a
    batch at once: exit 130/143, what was finished is said, no partial file is left, and the
    rerun resumes."""
    inputs = _batch(tmp_path, world, 40)
    before = H.hashes(inputs)
    out = tmp_path / "out"
    args = ["pixel", "predict", world.model, inputs, "-o", out]
    proc = H.start(args, ignore_sigint=ignored)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.exists() and any(
            p.suffix == ".h5" and not p.name.startswith(".") for p in out.iterdir())):
        time.sleep(0.02)
    proc.send_signal(sig)
    r = H.finish(proc, timeout=60)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.code == code, r.stderr
    assert re.search(r"Error: interrupted by .*pixel predict: \d+ of 40 image\(s\) finished", r.stderr), r.stderr
    done = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert 1 <= len(done) < 40
    assert H.leftovers(tmp_path) == []
    assert H.hashes(inputs) == before
    # every output left is complete: it opens and has the image's shape
    for p in done:
        with h5py.File(p) as f:
            assert f["exported_data"].shape[:2] == (384, 384)


def test_debug_shows_the_traceback(world: World, tmp_path: Path) -> None:
    """The same failure is one line by default and a traceback with --debug / PYQUINT_DEBUG."""
    (tmp_path / "notafolder").write_text("x")
    args = ["pixel", "predict", world.model, world.section, "-o", tmp_path / "notafolder" / "out"]
    plain = H.run_subprocess(args)
    assert plain.code == 1 and "Traceback" not in plain.stderr
    assert len(plain.stderr.strip().splitlines()) == 1, plain.stderr
    for extra_args, env in ((["--debug"], {}), ([], {"PYQUINT_DEBUG": "1"})):
        r = H.run_subprocess(extra_args + args, env=env)
        assert r.code == 1 and "Traceback" in r.stderr, r.stderr


def test_old_model_without_recorded_range_still_loads(world: World, tmp_path: Path) -> None:
    """Backward compatibility: a model written before value ranges were recorded loads and
    predicts; only the pixel-type comparison applies."""
    old = H.copy_model(world.model, tmp_path / "old.h5",
                       H.edit_metadata(lambda m: m["training"].pop("value_range")))
    r = H.run_inprocess(["pixel", "predict", old, world.section, "-o", tmp_path / "out"])
    assert r.code == 0, r.stderr
    assert "warning" not in r.stderr


def test_dead_jvm_is_one_line_and_leaves_no_crash_dump(tmp_path: Path) -> None:
    """A damaged ij.jar (the entries exist, their bytes are garbage) kills the worker JVM: one
    line naming the jar and Java, and HotSpot's report goes to the temp folder, not the cwd."""
    import shutil as _shutil
    import zipfile

    pytest.importorskip("jpype")
    if _shutil.which("java") is None:
        pytest.skip("no java on PATH: the JVM-crash case needs one")
    jar = tmp_path / "ij.jar"
    with zipfile.ZipFile(jar, "w") as z:
        z.writestr("ij/ImageJ.class", b"garbage" * 10)
        z.writestr("ij/IJ.class", b"garbage" * 10)
    macro = tmp_path / "m.ijm"
    macro.write_text('print("hi");\n')
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    before = H.hashes(tmp_path, skip=tmp)
    proc = H.start(["imagej", "run-macro", macro, "--engine", "worker", "--timeout", "60"],
                   env={"PYQUINT_IJ_JAR": str(jar), "TMPDIR": str(tmp)}, cwd=work)
    r = H.finish(proc, timeout=120)
    assert r.code == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    # the JVM either crashes (HotSpot's fatal error) or throws ClassFormatError: one line each
    crashed = re.search(r"Error: ImageJ's Java process crashed .* running .*ij\.jar with .*; check the "
                        r"jar \(unzip -t .*\) and Java \(java -version\)", lines[0])
    threw = re.search(r"Error: ImageJ (ended without a result \(exit status 1\)|error \(java\.lang\."
                      r"ClassFormatError\)): .*ClassFormatError: Incompatible magic value", lines[0])
    assert crashed or threw, lines[0]
    assert not list(work.iterdir()) and not list(tmp_path.glob("hs_err_pid*"))
    if crashed:
        assert list(tmp.glob("pyquint-hs_err_pid*.log")), "the crash report went elsewhere"
    assert H.hashes(tmp_path, skip=tmp) == before


def test_depth_limit_is_exact_and_deep_legal_trees_still_predict() -> None:
    """The vectorised depth check: a chain of exactly MAX_DEPTH splits loads and predicts
    (every row walks to the bottom leaf), one more split is refused."""
    from pyquint.errors import ModelFileError
    from pyquint.forest import FlatForest
    from pyquint.forest._flat import MAX_DEPTH

    arrays = H.deep_chain(MAX_DEPTH, 1, 2)
    arrays["value"][-1] = [0.0, 1.0]  # only the bottom leaf says class 2
    forest = FlatForest(**arrays, classes=np.array([1, 2]), n_features=1)
    proba = forest.predict_proba(np.zeros((3, 1), np.float32), n_classes=2)
    np.testing.assert_array_equal(proba, [[0, 1]] * 3)
    too_deep = H.deep_chain(MAX_DEPTH + 1, 1, 2)
    with pytest.raises(ModelFileError, match=f"deeper than {MAX_DEPTH} levels"):
        FlatForest(**too_deep, classes=np.array([1, 2]), n_features=1)
