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


def write_vigra_forest(project: Path, forest, n_forests: int = 4) -> None:
    """Store ``forest`` (a pyquint FlatForest) in ``project`` as ilastik stores vigra forests.

    Follows the layout :mod:`pyquint.ilastik.vigra_forest` documents: ``ForestNNNN/Tree_N``
    with ``topology`` (header = features, classes; split ``[0, addr, child0, child1, column]``,
    leaf ``[0x40000000, addr]``) and ``parameters`` (split: ``[weight, threshold]``, leaf:
    ``[weight, distribution...]``), ``_ext_param`` with the column/class counts and labels.
    pyquint's "x <= t goes left" is written as vigra's "x < t'" with t' the next double above t.
    """
    n_classes = forest.value.shape[1]
    roots = list(np.asarray(forest.roots))
    with h5py.File(project, "a") as f:
        pc = f.require_group("PixelClassification")
        if "ClassifierForests" in pc:
            del pc["ClassifierForests"]
        group = pc.create_group("ClassifierForests")
        group.create_dataset("known_labels", data=np.asarray(forest.classes, np.uint32))
        per = int(np.ceil(len(roots) / n_forests))
        for k in range(n_forests):
            chunk = roots[k * per : (k + 1) * per]
            if not chunk:
                break
            g = group.create_group(f"Forest{k:04d}")
            ext = g.create_group("_ext_param")
            ext.create_dataset("column_count_", data=np.array([forest.n_features], np.int32))
            ext.create_dataset("class_count_", data=np.array([n_classes], np.int32))
            ext.create_dataset("labels", data=np.asarray(forest.classes, np.uint32))
            for t, root in enumerate(chunk):
                topology, parameters = _encode_tree(forest, int(root), n_classes)
                tg = g.create_group(f"Tree_{t}")
                tg.create_dataset("topology", data=topology)
                tg.create_dataset("parameters", data=parameters)


def _encode_tree(forest, root: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    le = getattr(forest, "split_rule", "le") == "le"
    topo: list[int] = [int(forest.n_features), n_classes]
    params: list[float] = []
    offset_of: dict[int, int] = {}
    order: list[int] = []
    stack = [root]
    while stack:  # lay out nodes depth first, recording each node's offset
        node = stack.pop()
        offset_of[node] = len(topo)
        order.append(node)
        if forest.left[node] < 0:
            topo.extend([LEAF, 0])
        else:
            topo.extend([0, 0, 0, 0, 0])
            stack.extend((int(forest.right[node]), int(forest.left[node])))
    for node in order:
        off = offset_of[node]
        topo[off + 1] = len(params)
        if forest.left[node] < 0:
            params.extend([1.0, *np.asarray(forest.value[node], np.float64).tolist()])
        else:
            t = float(forest.threshold[node])
            params.extend([1.0, float(np.nextafter(t, np.inf)) if le else t])
            topo[off + 2] = offset_of[int(forest.left[node])]
            topo[off + 3] = offset_of[int(forest.right[node])]
            topo[off + 4] = int(forest.feature[node])
    return np.asarray(topo, np.int32), np.asarray(params, np.float64)


LEAF = 0x40000000


def write_forested_ilp(path: Path, image: np.ndarray, labels: np.ndarray, selection, seed: int = 0,
                       n_trees: int = 100, **kwargs) -> Path:
    """A Pixel Classification project with ``image`` inside, its labels and a stored forest
    trained by pyquint on them (written in vigra's layout by :func:`write_vigra_forest`)."""
    from pyquint.ilastik import write_project
    from pyquint.pixel import PixelClassifier

    write_project(path, [image], [labels], selection, **kwargs)
    clf = PixelClassifier(features=selection, n_trees=n_trees, seed=seed)
    clf.fit([image], [labels])
    write_vigra_forest(path, clf.forest_)
    return path


def steinbock_project_without_crops(folder: Path) -> Path:
    """``pixel_classifier.ilp`` as ``steinbock prepare`` makes it (pyquint's byte-compatible
    implementation on :func:`write_imc_inputs` data), alone in ``folder``: its crops are missing."""
    import shutil

    from pyquint.steinbock import prepare

    work = Path(folder) / "work"
    write_imc_inputs(work)
    prepare(work / "img", work / "panel.csv", work / "pixel_classifier.ilp", crop_size=50, seed=123,
            img_out=work / "ilastik_img", crop_out=work / "ilastik_crops")
    target = Path(folder) / "sb" / "pixel_classifier.ilp"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(work / "pixel_classifier.ilp", target)
    shutil.rmtree(work)
    return target
