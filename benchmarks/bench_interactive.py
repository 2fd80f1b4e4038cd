"""One iteration of the training loop on a 2000 × 2000 view (target: at most 5 s on 2 cores).

On a synthetic section (``pyquint.data.make_section``) with its sparse scribble labels split
in two halves (first iteration, then the labels a user adds):

- *session*: :class:`pyquint.interactive.InteractiveSession` (the notebook API). Step 1 computes
  the features once, trains and predicts; step 2 adds the other half of the labels, retrains
  and predicts from the cached features.
- *one-shot step*: ``python -m pyquint interactive step IMAGE LABELS``, one process per
  iteration (Python start, imports, reading the image, features, fit, prediction, writing the
  model and preview files): what the macro runs with ``serverMinutes=0`` or when no server
  answers. Run twice; the second run is the steady state (numba's compiled code cached on disk).
- *server*: ``pyquint interactive serve --detach`` (time until its heartbeat), then the
  request/answer files of the macro from Python (:func:`pyquint.interactive_server.request_step`):
  request 1 waits for the server's warm-up (features, compiled code), request 2 is the
  iteration a user repeats. **Server request 2 plus the macro's ImageJ part is the iteration the
  target is about.**
- *imagej* (``--imagej``): the whole ``fiji-train`` macro in a real ImageJ 1.53t under Xvfb:
  (a) *a running ImageJ*: ``java -jar ij.jar -macro driver.ijm`` (GUI mode under Xvfb, so the
  ROI Manager is a window shared by macro runs, as in a user's Fiji): the driver opens the
  image, adds ROIs, runs the training macro (``runMacro``; iteration 1 starts the server), adds
  ROIs (after a 3 s pause, not counted: the user looking and drawing) and runs it again:
  iteration 2 is what a user of an already running Fiji waits for, until ``runMacro`` returns
  with the windows shown; (b) *fresh JVM*: the macro once more through pyquint's
  runner (a Python worker that starts a JVM and runs ImageJ like ``-batch``), the server warm,
  JVM start included; (c) the same with ``serverMinutes=0`` (one-shot). The macro prints its
  own parts (ROIs → labels, pyquint, overlays and preview; not the display after it).

Only the public API is used. Other work on a shared machine slows everything down: the
1-minute load average is printed before and after.

Usage::

    OMP_WAIT_POLICY=passive python benchmarks/bench_interactive.py --imagej     # 2000², 100 trees
    python benchmarks/bench_interactive.py --size 512 --trees 30               # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

ROOT = Path(__file__).resolve().parents[1]


def _halves(labels):
    import numpy as np

    first = labels.copy()
    ys, _ = np.nonzero(labels)
    cut = np.median(ys) if ys.size else 0
    rows = np.arange(labels.shape[0])[:, None]
    first[(rows > cut) & (labels > 0)] = 0  # the labels of the upper half of the view
    return first, labels


def _roi_lines(section, n: int, seed: int) -> list[str]:
    """Macro lines adding ``n`` 3 × 3 rectangle ROIs, alternately background and stain."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lines = []
    for k in range(n):
        cls = 1 + k % 2
        ys, xs = np.nonzero(section.truth == (0 if cls == 1 else 1))
        i = rng.integers(len(ys))
        lines += [f"makeRectangle({xs[i]}, {ys[i]}, 3, 3);", 'roiManager("add");',
                  'roiManager("select", roiManager("count") - 1);',
                  f'roiManager("rename", "{"background" if cls == 1 else "stain"}");']
    return lines


def _macro_parts(output: str) -> list[str]:
    return [line.split("pyquint: ", 1)[1] for line in output.splitlines() if "pyquint: iteration " in line]


def _gui_iterations(image: Path, section, train: Path) -> dict:
    """Two runs of the training macro in one ImageJ started with ``-macro`` (not batch mode: the
    ROI Manager is its window, shared by the runs as in a user's Fiji). The driver writes the
    times to a file; then the ImageJ process group is killed (a GUI ImageJ does not quit by itself)."""
    import signal

    from pyquint.imagej import find_imagej, find_java, find_xvfb

    done = image.parent / "gui_times.txt"
    driver = image.parent / "driver.ijm"
    driver.write_text("\n".join([
        f'open("{image}");', *_roi_lines(section, 20, 1),
        "t0 = getTime();", f'runMacro("{train}", "");', "t1 = getTime();",
        "wait(3000);",  # the user looks and draws; ImageJ finishes showing the windows
        *_roi_lines(section, 10, 2),
        "t2 = getTime();", f'runMacro("{train}", "");', "t3 = getTime();",
        f'File.saveString("" + (t1 - t0) + " " + (t3 - t2) + "\\n" + getInfo("log"), "{done}.part");',
        f'File.rename("{done}.part", "{done}");']) + "\n")
    install = find_imagej()
    cmd = [str(find_xvfb()), "-a", str(find_java(None, install)), "-jar", str(install.ij_jar), "-macro", str(driver)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    start = time.perf_counter()
    try:
        while not done.exists() and proc.poll() is None and time.perf_counter() - start < 600:
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if not done.exists():
        raise RuntimeError("the ImageJ GUI run did not finish")
    first, *log = done.read_text().splitlines()
    return {"imagej_running_iterations_ms": [round(float(t)) for t in first.split()],
            "imagej_running_macro_parts": _macro_parts("\n".join(log))}


def _imagej_runs(image: Path, section, trees: int) -> dict:
    from pyquint.imagej import run_macro
    from pyquint.interactive_server import stop_server
    from pyquint.macros import generate_macro

    out: dict = {}
    train = image.parent / "train.ijm"
    train.write_text(generate_macro("fiji-train", "ij1", classes="background,stain", python=sys.executable,
                                    trees=trees))
    # (a) two iterations in one ImageJ that keeps running (GUI mode under Xvfb, ROI Manager window)
    out |= _gui_iterations(image, section, train)
    # (b) a fresh JVM, the server warm; (c) a fresh JVM, one process (no server)
    for key, minutes in (("imagej_fresh_jvm", 10), ("imagej_fresh_jvm_one_shot", 0)):
        macro = generate_macro("fiji-train", "ij1", classes="background,stain", python=sys.executable,
                               trees=trees, serverMinutes=minutes)
        start = time.perf_counter()
        result = run_macro("\n".join([f'open("{image}");', *_roi_lines(section, 4, 3)]) + "\n" + macro,
                           timeout=600)
        out[f"{key}_s"] = round(time.perf_counter() - start, 3)
        out[f"{key}_macro_parts"] = _macro_parts(result.output)
    stop_server(image.parent / f"{image.stem}_pyquint")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-cli", action="store_true", help="only the in-process session")
    parser.add_argument("--imagej", action="store_true", help="also time the whole macro in ImageJ")
    args = parser.parse_args()

    import numpy as np
    from PIL import Image

    from pyquint.data import make_section
    from pyquint.interactive import InteractiveSession

    report: dict = {"size": args.size, "trees": args.trees, "cores": len(os.sched_getaffinity(0)),
                    "load_before": os.getloadavg()[0]}
    section = make_section(args.seed, (args.size, args.size))
    first, labels = _halves(section.labels)
    report["labelled_pixels"] = {"step1": int(np.count_nonzero(first)), "step2": int(np.count_nonzero(labels))}

    session = InteractiveSession(section.image, class_names=["Background", "Stain"], n_trees=args.trees,
                                 seed=0, trainer="fast")
    t0 = time.perf_counter()
    session.step(first)
    t1 = time.perf_counter()
    preview = session.step(labels)
    t2 = time.perf_counter()
    report["session_step1_s"] = round(t1 - t0, 3)
    report["session_step2_s"] = round(t2 - t1, 3)
    report["session_step2_parts_s"] = {k: round(v, 3) for k, v in preview.seconds.items()}
    report["feature_cache_MB"] = round(session.feature_cache.nbytes / 2**20, 1)

    if not args.skip_cli:
        from pyquint.interactive_server import request_step, start_server, stop_server

        with tempfile.TemporaryDirectory(prefix="pyquint-bench-") as tmp:
            image = Path(tmp) / "view.png"
            Image.fromarray(section.image).save(image)
            Image.fromarray(first).save(Path(tmp) / "l1.png")
            Image.fromarray(labels).save(Path(tmp) / "l2.png")
            env = dict(os.environ, PYTHONPATH=str(ROOT), PYQUINT_NO_PROGRESS="1")
            times = []
            for lab in ("l1.png", "l2.png"):
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "pyquint", "interactive", "step", str(image),
                                str(Path(tmp) / lab), "--trees", str(args.trees), "--json"],
                               check=True, capture_output=True, env=env, timeout=600)
                times.append(round(time.perf_counter() - start, 3))
            step = json.loads((Path(tmp) / "view_pyquint" / "step.json").read_text())
            report["one_shot_step_s"] = times
            report["one_shot_step2_parts_s"] = step["seconds"]

            served = Path(tmp) / "served"
            served.mkdir()
            (served / "view.png").write_bytes(image.read_bytes())
            start = time.perf_counter()
            start_server(served / "view.png")
            report["server_start_s"] = round(time.perf_counter() - start, 3)
            times, parts = [], []
            for lab in ("l1.png", "l2.png", "l2.png"):
                start = time.perf_counter()
                answer = request_step(served / "view.png", Path(tmp) / lab, timeout=600, trees=args.trees)
                times.append(round(time.perf_counter() - start, 3))
                parts.append(json.loads(answer["seconds"]))
            stop_server(served / "view_pyquint")
            report["server_request_s"] = times
            report["server_request_parts_s"] = parts
            if args.imagej:
                report |= _imagej_runs(image, section, args.trees)
    report["load_after"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
