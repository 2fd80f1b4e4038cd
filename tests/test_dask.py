"""Prediction on Dask (pyquint.distributed): map_overlap with the feature halo == whole image."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from pyquint.data import make_section  # noqa: E402
from pyquint.distributed import chunk_spans, predict_dask  # noqa: E402
from pyquint.errors import InputError  # noqa: E402
from pyquint.features import compute_features  # noqa: E402
from pyquint.pixel import PixelClassifier  # noqa: E402
from pyquint.tiles import TilePredictor, open_lazy, predict_tiled  # noqa: E402

SHAPE = (120, 176)


@pytest.fixture(scope="module")
def section():
    return make_section(11, SHAPE)


@pytest.fixture(scope="module")
def clf(section):
    return PixelClassifier(n_trees=10, seed=1, rounding="exact").fit(section.image, section.labels)


@pytest.fixture(scope="module")
def whole(clf, section):
    """Whole-image features and probabilities, no tiling, no Dask."""
    feats = compute_features(section.image[..., None], clf._selection(), rounding="exact")
    proba = clf.forest_.predict_proba(feats.reshape(-1, feats.shape[-1]), n_classes=clf.n_classes_)
    return feats, proba.reshape(SHAPE + (-1,))


@pytest.fixture(scope="module")
def cluster():
    # In-process workers are what is reliable on a 2-core CI machine; the graph is still
    # serialised and scheduled by a real distributed scheduler across two workers.
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as lc, Client(lc) as client:
        yield client


def test_chunk_spans():
    assert chunk_spans(100, 30, 38) == (38, 62)  # enlarged to the depth; small tail merged
    assert chunk_spans(100, 50, 38) == (50, 50)
    assert chunk_spans(100, 40, 10) == (40, 40, 20)
    assert chunk_spans(100, 45, 38) == (45, 55)
    assert chunk_spans(20, 64, 38) == (20,)
    assert sum(chunk_spans(12345, 1000, 38)) == 12345
    with pytest.raises(InputError):
        chunk_spans(100, 0, 5)


@pytest.mark.parametrize("chunks", [60, (40, 88), 16])  # divides / does not / < halo (38)
def test_dask_threads_equal_whole_image(section, clf, whole, chunks):
    feats, proba = whole
    got = predict_dask(clf, section.image, chunks=chunks)
    assert got.dtype == np.float32 and got.shape == proba.shape
    np.testing.assert_array_equal(got, proba)
    seg = predict_dask(clf, section.image, chunks=chunks, source="Simple Segmentation",
                       scheduler="sync")
    assert seg.shape == SHAPE and seg.dtype == np.uint8
    np.testing.assert_array_equal(seg, np.argmax(proba, -1) + 1)
    if chunks == 60:
        np.testing.assert_array_equal(predict_dask(clf, section.image, chunks=chunks,
                                                   source="Features"), feats)
        unc = predict_dask(clf, section.image, chunks=chunks, source="Uncertainty")
        top = np.sort(proba, -1)
        np.testing.assert_allclose(unc, 1 - (top[..., -1] - top[..., -2]), atol=1e-7)


def test_dask_lazy_graph_and_file_input(tmp_path, section, clf, whole):
    _, proba = whole
    lazy = predict_dask(clf, section.image, chunks=50, compute=False)
    assert lazy.chunks[:2] == (chunk_spans(SHAPE[0], 50, 38), chunk_spans(SHAPE[1], 50, 38))
    assert lazy.shape == proba.shape and lazy.dtype == np.float32
    with h5py.File(tmp_path / "img.h5", "w") as f:
        f.create_dataset("raw", data=section.image, chunks=(32, 32))
    got = predict_dask(clf, f"{tmp_path / 'img.h5'}/raw", chunks=64)
    np.testing.assert_array_equal(got, proba)


def test_dask_local_cluster_equals_local(section, clf, whole, cluster):
    _, proba = whole
    local = predict_dask(clf, section.image, chunks=(50, 70))
    remote = predict_dask(clf, section.image, chunks=(50, 70), scheduler=cluster)
    np.testing.assert_array_equal(remote, local)
    np.testing.assert_array_equal(remote, proba)
    # both workers took part
    assert len(cluster.scheduler_info()["workers"]) == 2


def test_tiled_with_distributed_executor(tmp_path, section, clf, whole, cluster):
    _, proba = whole
    np.save(tmp_path / "img.npy", section.image)
    out = {"Probabilities": tmp_path / "p.h5"}
    predict_tiled(clf, tmp_path / "img.npy", out, tile=64, executor=cluster.get_executor())
    with h5py.File(out["Probabilities"], "r") as f:
        np.testing.assert_array_equal(f["exported_data"][()], proba)


def test_tile_task_pickles_without_files(tmp_path, section, clf):
    """What travels to a worker: the in-memory model and a path, never pixels or handles."""
    np.save(tmp_path / "img.npy", section.image)
    reader = open_lazy(tmp_path / "img.npy")
    reader.read(0, 10, 0, 10)  # opens the memory map
    predictor = TilePredictor(clf, ["Probabilities"])
    blob = pickle.dumps((predictor, reader))
    assert len(blob) < 200_000
    p2, r2 = pickle.loads(blob)
    np.testing.assert_array_equal(r2.read(5, 50, 7, 90), section.image[5:50, 7:90, None])
    np.testing.assert_array_equal(p2.forest.threshold, clf.forest_.threshold)


def test_dask_bad_inputs(section, clf):
    with pytest.raises(InputError, match="export source"):
        predict_dask(clf, section.image, source="Labels")
    with pytest.raises(InputError, match="scheduler"):
        predict_dask(clf, section.image, scheduler="nonsense")
    with pytest.raises(InputError, match="channel"):
        predict_dask(clf, np.stack([section.image] * 3, -1))
    with pytest.raises(InputError, match="halo"):
        predict_dask(clf, section.image, halo=-1)
    with pytest.raises(InputError, match="chunk"):
        predict_dask(clf, section.image, chunks=0)
    with pytest.raises(InputError, match="yx or yxc"):
        predict_dask(clf, np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(InputError, match="not trained"):
        predict_dask(PixelClassifier(), section.image)


@pytest.mark.slow
def test_dask_process_cluster_equals_local(section, clf, whole):
    """Worker processes: the classifier is pickled to them (in-memory object, no model file)."""
    from distributed import Client, LocalCluster

    _, proba = whole
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as lc, Client(lc) as client:
        got = predict_dask(clf, section.image, chunks=(60, 88), scheduler=client)
    np.testing.assert_array_equal(got, proba)


def test_unreachable_scheduler_is_a_clear_error(section, clf):
    from pyquint.distributed import get_client
    from pyquint.errors import PyquintError

    with pytest.raises(PyquintError, match="cannot connect to the Dask scheduler"):
        get_client("tcp://127.0.0.1:9", timeout=1)


def test_cli_predict_on_tcp_scheduler(tmp_path, section, clf, whole):
    from click.testing import CliRunner
    from distributed import LocalCluster
    from PIL import Image

    from pyquint.cli import main

    _, proba = whole
    model = tmp_path / "model.h5"
    clf.save(model)
    np.save(tmp_path / "sec.npy", section.image)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
                      dashboard_address=":0") as lc:
        assert lc.scheduler_address.startswith("tcp://")
        result = CliRunner().invoke(main, [
            "large", "predict", str(model), str(tmp_path / "sec.npy"), "-o", str(tmp_path / "out"),
            "--tile", "64", "--scheduler", lc.scheduler_address, "--workers", "3"])
    assert result.exit_code == 0, result.output
    seg = np.asarray(Image.open(tmp_path / "out" / "sec_Simple Segmentation.png"))
    np.testing.assert_array_equal(seg, np.argmax(proba, -1) + 1)
