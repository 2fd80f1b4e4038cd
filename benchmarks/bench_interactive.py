"""One iteration of the training loop on a 2000 × 2000 view (target: at most 5 s on 2 cores).

On a synthetic section (``pyquint.data.make_section``) with its sparse scribble labels split
in two halves (first iteration, then the labels a user adds):

- *session*: :class:`pyquint.interactive.InteractiveSession` (the notebook API). Step 1 computes
  the features once, trains and predicts; step 2 adds the other half of the labels, retrains
  and predicts from the cached features. **Step 2 is the iteration the target is about.**
- *fiji step*: ``python -m pyquint interactive step IMAGE LABELS`` as the ``fiji-train`` macro
  runs it, one process per iteration (Python start, imports, reading the image, fit with the
  features of the labelled rows, full prediction, writing model/preview files). Run twice;
  the second run is the steady state (numba's compiled code cached on disk).
- *imagej* (``--imagej``): the whole ``fiji-train`` macro in a real ImageJ under Xvfb (``-batch``
  through pyquint's runner, a fresh JVM each time, which a Fiji session already running does
  not pay): 20 rectangle ROIs painted, the step above, overlay, preview stack and montage.

Only the public API is used (``InteractiveSession``, ``PixelClassifier``,
``FlatForest.predict_proba``); both the forest and the features are whatever the installed
pyquint provides. Other work on a shared machine slows everything down: the 1-minute load
average is printed before and after.

Usage::

    OMP_WAIT_POLICY=passive python benchmarks/bench_interactive.py             # 2000², 100 trees
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


def _imagej_run(image: Path, section) -> float:
    import numpy as np

    from pyquint.imagej import run_macro
    from pyquint.macros import generate_macro

    rng = np.random.default_rng(1)
    lines = [f'open("{image}");']
    for k in range(20):
        cls = 1 + k % 2
        ys, xs = np.nonzero(section.truth == (0 if cls == 1 else 1))
        i = rng.integers(len(ys))
        lines += [f"makeRectangle({xs[i]}, {ys[i]}, 3, 3);", 'roiManager("add");',
                  'roiManager("select", roiManager("count") - 1);',
                  f'roiManager("rename", "{"background" if cls == 1 else "stain"}");']
    macro = generate_macro("fiji-train", "ij1", classes="background,stain", python=sys.executable)
    start = time.perf_counter()
    run_macro("\n".join(lines) + "\n" + macro, timeout=600)
    return round(time.perf_counter() - start, 3)


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
            report["fiji_step_s"] = times
            report["fiji_step2_parts_s"] = step["seconds"]
            if args.imagej:
                report["imagej_macro_s"] = _imagej_run(image, section)
    report["load_after"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
