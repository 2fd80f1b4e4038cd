"""The Fiji training loop (``fiji-train``) driven headless in a real ImageJ under Xvfb.

The image is one of pyquint's synthetic sections; ROIs are drawn where its ground truth says
(as a user would), the macro paints them, runs pyquint, shows overlays and adds suggestions.
A second run with more ROIs must agree better with the ground truth.
"""

from __future__ import annotations

import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from pyquint.data import make_section, write_sample_dataset
from pyquint.imagej import run_macro
from pyquint.interactive_server import server_status, stop_server
from pyquint.macros import generate_macro
from pyquint.pixel import PixelClassifier


def _boxes(mask: np.ndarray, n: int, size: int, rng) -> list[tuple[int, int, int, int]]:
    inside = ndi.minimum_filter(mask.astype(np.uint8), size=size + 2) > 0
    ys, xs = np.nonzero(inside)
    pick = rng.choice(len(ys), n, replace=False)
    return [(int(xs[i]) - size // 2, int(ys[i]) - size // 2, size, size) for i in pick]


def _points(mask: np.ndarray, n: int, rng) -> list[tuple[int, int]]:
    ys, xs = np.nonzero(mask)
    pick = rng.choice(len(ys), n, replace=False)
    return [(int(xs[i]), int(ys[i])) for i in pick]


def _roi_macro(image: Path, rois: list) -> str:
    """Open the image and put named ROIs into the ROI Manager (what the user draws)."""
    lines = [f'open("{image}");']
    for name, geom in rois:
        if isinstance(geom[0], tuple):  # points
            xs = ", ".join(str(x) for x, _ in geom)
            ys = ", ".join(str(y) for _, y in geom)
            lines.append(f'makeSelection("point", newArray({xs}), newArray({ys}));')
        else:
            lines.append(f"makeRectangle({geom[0]}, {geom[1]}, {geom[2]}, {geom[3]});")
        lines += ['roiManager("add");', 'roiManager("select", roiManager("count") - 1);',
                  f'roiManager("rename", "{name}");']
    return "\n".join(lines) + "\n"


def _stain_f1(segmentation: np.ndarray, truth: np.ndarray) -> float:
    pred, true = segmentation == 2, truth > 0
    return 2 * np.count_nonzero(pred & true) / (np.count_nonzero(pred) + np.count_nonzero(true))


@pytest.fixture(autouse=True)
def _stop_servers(tmp_path):
    """The macro leaves a pyquint server running for each trained image: stop them."""
    yield
    for beat in tmp_path.rglob("server.json"):
        stop_server(beat.parent)


@pytest.fixture(scope="module")
def train_macro() -> str:
    return generate_macro("fiji-train", "ij1", classes="background,stain", python=sys.executable, suggestions=4)


def test_loop_in_imagej_improves_with_more_rois(require_imagej, tmp_path, train_macro):
    section = make_section(3)
    image = tmp_path / "brain_s001.png"
    Image.fromarray(section.image).save(image)
    rng = np.random.default_rng(0)
    slide = (section.image > 225) & (section.truth == 0)
    tissue = (section.image > 170) & (section.image < 215) & (section.truth == 0)
    # iteration 1: background on the bright slide only, a few points on cells
    first = [("background", box) for box in _boxes(slide, 1, 10, rng)]
    first.append(("stain", _points(ndi.binary_erosion(section.truth == 1), 6, rng)))
    result = run_macro(_roi_macro(image, first) + train_macro, timeout=300)
    work = tmp_path / "brain_s001_pyquint"
    assert "4 'label here next' suggestions added to the ROI Manager" in result.output
    assert "pyquint (server): iteration 1:" in result.output and "via its server" in result.output
    assert server_status(tmp_path / "brain_s001_pyquint") is not None  # kept for the next run
    for name in ("model.h5", "labels.png", "probability.png", "segmentation.png", "uncertainty.png",
                 "suggestions.csv", "overlay.png", "preview_montage.png"):
        assert (work / name).is_file(), name
    seg1 = np.asarray(Image.open(work / "segmentation.png"))
    labels1 = np.asarray(Image.open(work / "labels.png"))
    # ImageJ painted the ROIs: the rectangle as class 1, each point as one pixel of class 2
    x, y, w, h = first[0][1]
    assert np.all(labels1[y:y + h, x:x + w] == 1) and np.count_nonzero(labels1 == 1) == w * h
    assert np.count_nonzero(labels1 == 2) == 6
    # the overlay ImageJ flattened shows the suggestions as yellow boxes on the image
    overlay = np.asarray(Image.open(work / "overlay.png").convert("RGB"))
    assert overlay.shape[:2] == section.image.shape
    row = work.joinpath("suggestions.csv").read_text().splitlines()[1].split(",")
    sx, sy = int(row[1]), int(row[2])
    assert tuple(overlay[sy, sx + 5]) == (255, 255, 0)
    with zipfile.ZipFile(work / "rois.zip") as rois:  # the ROI Manager as ImageJ saved it
        names = sorted(n.removesuffix(".roi") for n in rois.namelist())
    assert names == sorted(["background", "stain"] + [f"label here next {k}" for k in range(1, 5)])
    with Image.open(work / "preview_montage.png") as montage:
        assert montage.width > 4 * section.image.shape[1]  # 4 panels side by side

    # iteration 2: the same ROI Manager content is gone (new process); only the new ROIs are
    # drawn, the saved labels keep the first ones
    second = [("background-tissue", box) for box in _boxes(tissue, 6, 8, rng)]
    second.append(("stain-streak", _points(section.truth == 2, 8, rng)))
    result = run_macro(_roi_macro(image, second) + train_macro, timeout=300)
    assert "pyquint (server): iteration 2:" in result.output  # the same server answered
    labels2 = np.asarray(Image.open(work / "labels.png"))
    assert np.all(labels2[labels1 > 0] == labels1[labels1 > 0])
    assert np.count_nonzero(labels2) == np.count_nonzero(labels1) + 6 * 64 + 8
    seg2 = np.asarray(Image.open(work / "segmentation.png"))
    f1, f2 = _stain_f1(seg1, section.truth), _stain_f1(seg2, section.truth)
    assert f2 > f1 + 0.2, (f1, f2)
    np.testing.assert_array_equal(seg2, PixelClassifier.load(work / "model.h5").predict(section.image))


def test_same_macro_batches_a_folder(require_imagej, tmp_path, train_macro):
    data = write_sample_dataset(tmp_path / "data", n_sections=2, seed=5)
    sections = data / "sections"
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    image = train_dir / "brain_s009.png"
    Image.fromarray(make_section(4).image).save(image)
    labels = make_section(4).labels
    rois = [("background", (int(x), int(y), 1, 1)) for y, x in zip(*np.nonzero(labels == 1))][:40]
    rois += [("stain", (int(x), int(y), 1, 1)) for y, x in zip(*np.nonzero(labels == 2))][:40]
    one_shot = generate_macro("fiji-train", "ij1", classes="background,stain", python=sys.executable,
                              suggestions=4, serverMinutes=0)
    result = run_macro(_roi_macro(image, rois) + one_shot, timeout=300)
    assert "as one process" in result.output and not (train_dir / "brain_s009_pyquint" / "server.json").exists()
    model = train_dir / "brain_s009_pyquint" / "model.h5"
    batch = generate_macro("fiji-train", "ij1", classes="background,stain", python=sys.executable,
                           batchDir=str(sections), model=str(model), outDir=str(tmp_path / "nutil"))
    result = run_macro(batch, timeout=300, aborted_ok=True)
    assert "Glasbey segmentations for Nutil" in result.output
    clf = PixelClassifier.load(model)
    for src in sorted(sections.glob("*.png")):
        with Image.open(tmp_path / "nutil" / "segmentations" / src.name) as im:
            assert im.mode == "P"
            np.testing.assert_array_equal(np.asarray(im), clf.predict(np.asarray(Image.open(src))))
    # no model: the macro stops with a message, at once
    missing = generate_macro("fiji-train", "ij1", python=sys.executable, batchDir=str(sections),
                             model=str(tmp_path / "none.h5"))
    with pytest.raises(Exception, match="train first"):
        run_macro(missing, timeout=60)


def test_fiji_flavour_runs_when_its_parameters_are_bound(require_imagej, tmp_path):
    # the #@ script (what Fiji's script editor runs): parameters bound by pyquint for plain ImageJ
    section = make_section(2)
    image = tmp_path / "brain_s002.png"
    Image.fromarray(section.image).save(image)
    rois = [("background", (2, 2, 12, 12)), ("cell", _points(section.truth == 1, 5, np.random.default_rng(1)))]
    script = generate_macro("fiji-train", "fiji")
    result = run_macro(_roi_macro(image, rois) + script, {"classes": "background,cell", "python": sys.executable,
                                                           "suggestions": 2, "trees": 10}, timeout=300)
    assert "2 'label here next' suggestions added" in result.output
    assert PixelClassifier.load(tmp_path / "brain_s002_pyquint" / "model.h5").class_names_ == ["background", "cell"]


def test_macro_times_out_on_a_silent_server_and_runs_pyquint_once(require_imagej, tmp_path):
    # a server.json with a fresh heartbeat whose process never answers: after `timeout` the
    # macro says so, stops that process and runs the one-shot step instead
    import json
    import subprocess
    import threading

    section = make_section(2)
    image = tmp_path / "brain_s005.png"
    Image.fromarray(section.image).save(image)
    work = tmp_path / "brain_s005_pyquint"
    work.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    (work / "server.json").write_text(json.dumps({"pid": sleeper.pid, "token": "fake", "protocol": 1}))
    done = threading.Event()

    def beat() -> None:
        while not done.wait(0.2):
            if (work / "server.json").exists():
                (work / "server.json").touch()

    threading.Thread(target=beat, daemon=True).start()
    try:
        rois = [("background", (2, 2, 12, 12)), ("cell", _points(section.truth == 1, 5, np.random.default_rng(1)))]
        macro = generate_macro("fiji-train", "ij1", classes="background,cell", python=sys.executable, trees=10,
                               timeout=1)
        result = run_macro(_roi_macro(image, rois) + macro, timeout=300)
        assert "the pyquint server did not answer within 1 s" in result.output
        assert "as one process" in result.output and (work / "model.h5").is_file()
        assert sleeper.wait(timeout=30) != 0  # the silent "server" was stopped
    finally:
        done.set()
        sleeper.kill()
        sleeper.wait()


def test_macro_runs_pyquint_once_when_no_server_starts_or_it_stops(require_imagej, tmp_path):
    import json
    import threading

    section = make_section(2)
    image = tmp_path / "brain_s006.png"
    Image.fromarray(section.image).save(image)
    rois = [("background", (2, 2, 12, 12)), ("cell", _points(section.truth == 1, 5, np.random.default_rng(1)))]
    # a "python" that cannot start the server (pyquint itself works)
    wrapper = tmp_path / "python-no-server"
    wrapper.write_text(f'#!/bin/sh\ncase "$*" in *"interactive serve"*) echo "[pyquint exit status 1] Error: no"; '
                       f'exit 1;; esac\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    macro = generate_macro("fiji-train", "ij1", classes="background,cell", python=str(wrapper), trees=10)
    result = run_macro(_roi_macro(image, rois) + macro, timeout=300)
    assert "pyquint: no server ([pyquint exit status 1] Error: no); running pyquint once instead" in result.output
    assert "as one process" in result.output and "iteration 1:" in result.output
    # a server whose heartbeat stops once the request is sent (it was killed): run once, too
    import subprocess

    work = tmp_path / "brain_s006_pyquint"
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, timeout=60).stdout)
    (work / "server.json").write_text(json.dumps({"pid": dead, "token": "gone", "protocol": 1}))

    def beat_until_asked() -> None:
        deadline = time.monotonic() + 120
        while not (work / "request.txt").exists() and time.monotonic() < deadline:
            (work / "server.json").touch()
            time.sleep(0.2)

    threading.Thread(target=beat_until_asked, daemon=True).start()
    macro = generate_macro("fiji-train", "ij1", classes="background,cell", python=sys.executable, trees=10)
    result = run_macro(_roi_macro(image, rois) + macro, timeout=300)
    assert "stopped before answering" in result.output and "iteration 2:" in result.output


def _as_fiji_runs_it(script: str, values: dict) -> str:
    """The macro text Fiji's IJ1 macro engine (imagej-legacy ``IJ1MacroEngine.eval``) hands to
    ImageJ 1.x: ``var`` declarations of the parameters and a call of
    ``initializeSciJavaParameters()`` before the script, that function (assigning the values)
    after it. Its first statement, ``call("...IJ1MacroEngine.saveInterpreter")``, is left out
    (no such class here) and the ``#@`` lines are blanked: ImageJ 1.53t stops at them."""
    from pyquint.imagej.params import ijm_string, parse_script_parameters

    params = [p for p in parse_script_parameters(script) if not p.output]
    lines = script.splitlines()
    for p in params:
        lines[p.line_no] = ""
    assign = []
    for p in params:
        value = values.get(p.name, p.attrs.get("value", ""))
        literal = str(value) if p.type in ("Integer", "Double") else ijm_string(str(value))
        assign.append(f"{p.name} = {literal};")
    prefix = "var " + "".join(f"{p.name}," for p in params) + "; initializeSciJavaParameters(); "
    suffix = "function initializeSciJavaParameters() {\n" + "\n".join(assign) + "\n}\n"
    return prefix + "\n".join(lines) + "\n" + suffix


def test_fiji_flavour_as_fijis_macro_engine_wraps_it(require_imagej, tmp_path):
    # the shipped #@ script, wrapped as Fiji runs it, in plain ImageJ 1.53t -batch; imagej.dir
    # set as Fiji's launcher sets it, so the script's Fiji check passes
    import contextlib
    import os
    import signal
    import subprocess

    from pyquint.imagej import find_imagej, find_java, find_xvfb

    xvfb = find_xvfb()
    if xvfb is None:
        pytest.skip("plain -batch runs need xvfb-run")
    install = find_imagej()
    section = make_section(2)
    image = tmp_path / "brain_s007.png"
    Image.fromarray(section.image).save(image)
    script = (Path(__file__).resolve().parents[1] / "imagej_macros" / "fiji" / "fiji_train.ijm").read_text()
    values = {"classes": "background,cell", "python": sys.executable, "trees": 10, "suggestions": 2}
    outputs = []
    for k, rois in enumerate(([("background", (2, 2, 12, 12)), ("cell", _points(section.truth == 1, 5, np.random.default_rng(1)))],
                              [("background", (20, 30, 6, 6))])):
        macro = tmp_path / f"fiji_{k}.ijm"
        # the prelude (the user's image and ROIs) goes after Fiji's prefix, on the same line
        wrapped = _as_fiji_runs_it(script, values)
        head, _, rest = wrapped.partition("initializeSciJavaParameters(); ")
        macro.write_text(head + "initializeSciJavaParameters(); " + _roi_macro(image, rois).replace("\n", " ") + rest)
        cmd = [str(xvfb), "-a", str(find_java(None, install)), f"-Dimagej.dir={tmp_path}", "-jar",
               str(install.ij_jar), "-batch", str(macro)]
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])),
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            pytest.fail(f"the wrapped Fiji script did not end: {out[-1000:]}")
        outputs.append(out)
    assert "this is the Fiji flavour" not in outputs[0]
    assert "2 'label here next' suggestions added" in outputs[0], outputs[0][-2000:]
    assert "pyquint (server): iteration 2:" in outputs[1], outputs[1][-2000:]
    assert PixelClassifier.load(tmp_path / "brain_s007_pyquint" / "model.h5").class_names_ == ["background", "cell"]
