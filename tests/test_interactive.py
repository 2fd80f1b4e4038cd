"""The train-and-preview loop without ImageJ: session cache, suggestions, run_step, its CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pyquint.interactive as interactive
from pyquint.data import make_section
from pyquint.errors import InputError
from pyquint.interactive import InteractiveSession, merge_labels, run_step, suggest_regions
from pyquint.pixel import PixelClassifier

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def section():
    return make_section(3)


def _stain_f1(segmentation: np.ndarray, truth: np.ndarray) -> float:
    pred, true = segmentation == 2, truth > 0
    return 2 * np.count_nonzero(pred & true) / (np.count_nonzero(pred) + np.count_nonzero(true))


def _split_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A first, poor scribble (a few pixels of each class) and the rest of the labels."""
    first = np.zeros_like(labels)
    for c in (1, 2):
        ys, xs = np.nonzero(labels == c)
        first[ys[:3], xs[:3]] = c
    return first, labels


def test_merge_labels():
    old = np.array([[1, 0, 2], [0, 0, 0]], np.uint8)
    new = np.array([[0, 2, 1], [0, 3, 0]], np.uint8)
    np.testing.assert_array_equal(merge_labels(old, new), [[1, 2, 1], [0, 3, 0]])
    np.testing.assert_array_equal(merge_labels(None, new), new)
    with pytest.raises(InputError, match="another image"):
        merge_labels(old, np.zeros((3, 3), np.uint8))
    with pytest.raises(InputError, match="0..255"):
        merge_labels(None, np.array([[300]]))


def test_suggest_regions_finds_the_uncertain_spots():
    unc = np.zeros((100, 120), np.float32)
    unc[10:20, 30:40] = 1.0  # best
    unc[60:70, 80:90] = 0.5
    unc[60:70, 5:15] = 0.25
    got = suggest_regions(unc, 5, size=10)
    assert [(s.x, s.y) for s in got] == [(30, 10), (80, 60), (5, 60)]  # nothing else is uncertain
    assert [s.uncertainty for s in got] == [1.0, 0.5, 0.25]
    # labelled pixels count as certain: a labelled spot is not suggested again
    labels = np.zeros(unc.shape, np.uint8)
    labels[10:20, 30:40] = 1
    assert [(s.x, s.y) for s in suggest_regions(unc, 1, size=10, labels=labels)] == [(80, 60)]
    # picks never overlap
    flat = np.ones((50, 50))
    boxes = suggest_regions(flat, 100, size=20)
    assert len(boxes) == 4
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a.x + a.width <= b.x or b.x + b.width <= a.x or a.y + a.height <= b.y or b.y + b.height <= a.y


def test_session_caches_features_and_matches_pixel_classifier(section, monkeypatch):
    calls = []
    real = interactive.compute_features
    monkeypatch.setattr(interactive, "compute_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    first, rest = _split_labels(section.labels)
    session = InteractiveSession(section.image, class_names=["Background", "Stain"], n_trees=20, seed=3)
    p1 = session.step(first)
    p2 = session.step(rest)
    assert len(calls) == 1  # the second step retrained and predicted from the cache
    assert "features" in p1.seconds and "features" not in p2.seconds
    # the same forest as PixelClassifier.fit on the same labels: same probabilities
    clf = session.classifier()
    np.testing.assert_array_equal(clf.predict_proba(section.image), p2.probability)
    assert clf.trainer == "fast" and clf.class_names_ == ["Background", "Stain"]
    # more labels, better agreement with the generator's ground truth
    assert _stain_f1(p2.segmentation, section.truth) > _stain_f1(p1.segmentation, section.truth) + 0.1
    with pytest.raises(InputError, match="two classes"):
        InteractiveSession(section.image).step(np.where(section.labels == 1, 1, 0))


def test_session_classifier_is_the_fitted_classifier(section):
    # classifier() wraps the session's own forest: it must be what PixelClassifier.fit trains
    session = InteractiveSession(section.image, class_names=["Background", "Stain"], n_trees=8, seed=5)
    session.step(section.labels)
    got = session.classifier()
    want = PixelClassifier(n_trees=8, seed=5, class_names=["Background", "Stain"], trainer="fast").fit(
        section.image, section.labels)
    for name in ("feature", "threshold", "left", "right", "value", "roots", "classes"):
        np.testing.assert_array_equal(getattr(got.forest_, name), getattr(want.forest_, name), err_msg=name)
    assert got.metadata() == want.metadata()


def test_run_step_accumulates_and_saves_a_loadable_model(section, tmp_path):
    image = tmp_path / "brain_s004.png"
    Image.fromarray(section.image).save(image)
    first, rest = _split_labels(section.labels)
    Image.fromarray(first).save(tmp_path / "l1.png")
    only_new = np.where(first > 0, 0, rest).astype(np.uint8)
    Image.fromarray(only_new).save(tmp_path / "l2.png")
    r1 = run_step(image, tmp_path / "l1.png", class_names=["Background", "Stain"], n_trees=20, n_suggestions=3)
    seg1 = np.asarray(Image.open(r1.files["segmentation"]))
    r2 = run_step(image, tmp_path / "l2.png", class_names=["Background", "Stain"], n_trees=20, n_suggestions=3)
    assert r2.iteration == 2 and r2.work_dir == tmp_path / "brain_s004_pyquint"
    saved = np.asarray(Image.open(r2.files["labels"]))
    np.testing.assert_array_equal(saved, merge_labels(first, only_new))  # the two iterations' labels
    clf = PixelClassifier.load(r2.files["model"])
    with Image.open(r2.files["segmentation"]) as im:
        assert im.mode == "P" and tuple(im.getpalette()[3:9]) == (0, 0, 255, 255, 0, 0)  # Glasbey 1, 2
        seg2 = np.asarray(im)
    np.testing.assert_array_equal(seg2, clf.predict(section.image))
    proba = clf.predict_proba(section.image)[..., 1]
    np.testing.assert_array_equal(np.asarray(Image.open(r2.files["probability"])),
                                  np.rint(proba.astype(np.float64) * 255).astype(np.uint8))
    rows = r2.files["suggestions"].read_text().splitlines()
    assert rows[0] == "name,x,y,width,height,uncertainty" and rows[1].startswith("label here next 1,")
    assert len(rows) == 4
    assert _stain_f1(seg2, section.truth) > _stain_f1(seg1, section.truth) + 0.1
    step = json.loads(r2.files["step"].read_text())
    assert step["iteration"] == 2 and step["shown_class"] == "Stain" and step["trainer"] == "fast"


def test_run_step_bad_input(section, tmp_path):
    image = tmp_path / "a.png"
    Image.fromarray(section.image).save(image)
    with pytest.raises(InputError, match="no such image"):
        run_step(tmp_path / "missing.png", tmp_path / "l.png")
    with pytest.raises(InputError, match="no labels"):
        run_step(image)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(InputError, match="shape"):
        run_step(image, tmp_path / "small.png")
    Image.fromarray(section.labels).save(tmp_path / "l.png")
    with pytest.raises(InputError, match="no class named"):
        run_step(image, tmp_path / "l.png", class_names=["a", "b"], show_class="c", n_trees=5)


def test_cli_step_as_a_subprocess(section, tmp_path):
    Image.fromarray(section.image).save(tmp_path / "b_s001.png")
    Image.fromarray(section.labels).save(tmp_path / "l.png")
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYQUINT_NO_PROGRESS="1")
    cmd = [sys.executable, "-m", "pyquint", "interactive", "step", str(tmp_path / "b_s001.png"), str(tmp_path / "l.png"),
           "--class-names", "Background,Stain", "--trees", "10", "--suggestions", "2", "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["iteration"] == 1 and len(report["suggestions"]) == 2
    assert Path(report["files"]["model"]).is_file()
    bad = subprocess.run(cmd[:5] + [str(tmp_path / "nope.png")], capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 1 and "no such image" in bad.stderr and "Traceback" not in bad.stderr
