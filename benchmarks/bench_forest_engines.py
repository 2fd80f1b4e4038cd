"""Forest inference engines on one realistic forest: pyquint vs scikit-learn vs Treelite.

One scikit-learn ``RandomForestClassifier(100)`` grown to purity on the brush-stroke labels
of a noisy section (``benchmarks/realistic.py``; ≈ 18,000 nodes) is evaluated on the same
49-channel pyquint features of that section by:

- ``pyquint``: :meth:`pyquint.forest.FlatForest.predict_proba` (and ``predict``, which stops
  each pixel's trees once its class is certain);
- ``sklearn``: ``RandomForestClassifier.predict_proba``;
- ``treelite-gtil``: Treelite's reference interpreter (``treelite.gtil.predict``);
- ``tl2cgen``: the same model compiled to C by TL2cgen and built with gcc (``-O3``), the
  way Treelite deploys forests (skipped when ``tl2cgen`` or a C compiler is missing).

Every engine runs on one thread; the table gives CPU seconds per megapixel (``time.process_time``,
best of ``--repeat``), the visited splits per pixel, and whether the probabilities equal
scikit-learn's exactly. ``pip install treelite tl2cgen`` to include the last two.

Usage::

    python benchmarks/bench_forest_engines.py               # 1536², about two minutes
    python benchmarks/bench_forest_engines.py --size 768    # quick
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    import numpy as np
    from realistic import best_of, brush_labels, make_noisy_section
    from sklearn.ensemble import RandomForestClassifier

    from pyquint.features import FeatureSelection, compute_features
    from pyquint.forest import FlatForest

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=1536)
    p.add_argument("--rows", type=int, default=256, help="image rows evaluated (default 256)")
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    image, truth = make_noisy_section(a.size, 0)
    labels = brush_labels(truth, 0)
    feats = compute_features(image, FeatureSelection.all(), axes="yx", rounding="fast")
    rf = RandomForestClassifier(n_estimators=100, max_features=7, random_state=0, n_jobs=-1)
    rf.fit(feats[labels > 0], labels[labels > 0])
    X = np.ascontiguousarray(feats[: a.rows]).reshape(-1, feats.shape[-1])
    mp = X.shape[0] / 1e6
    rf.n_jobs = 1
    ff = FlatForest.from_sklearn(rf)
    want = rf.predict_proba(X).astype(np.float32)
    splits = np.mean([e.decision_path(X).sum(axis=1).mean() - 1 for e in rf.estimators_]) * 100
    print(f"forest: {ff.n_trees} trees, {ff.n_nodes} nodes; {X.shape[0]} pixels × {X.shape[1]} "
          f"features; {splits:.0f} visited splits per pixel; one thread each; "
          f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    ff.predict_proba(X[:64], n_jobs=1)
    ff.predict(X[:64], n_jobs=1)
    rows = []
    t, got = best_of(a.repeat, lambda: ff.predict_proba(X, n_jobs=1), time.process_time)
    rows.append(("pyquint predict_proba", t, np.array_equal(got, want)))
    t, got = best_of(a.repeat, lambda: ff.predict(X, n_jobs=1), time.process_time)
    rows.append(("pyquint predict (early stop)", t, np.array_equal(got, want.argmax(1) + 1)))
    t, got = best_of(a.repeat, lambda: rf.predict_proba(X), time.process_time)
    rows.append(("sklearn predict_proba", t, True))
    try:
        import treelite

        model = treelite.sklearn.import_model(rf)
        t, got = best_of(1, lambda: treelite.gtil.predict(model, X, nthread=1), time.process_time)
        got = np.asarray(got).reshape(X.shape[0], -1).astype(np.float32)
        rows.append(("treelite gtil", t, np.array_equal(got, want)))
        try:
            import tl2cgen

            with tempfile.TemporaryDirectory() as tmp:
                lib = Path(tmp) / "forest.so"
                t0 = time.perf_counter()
                tl2cgen.export_lib(model, toolchain="gcc", libpath=str(lib),
                                   params={"parallel_comp": 8}, nthread=os.cpu_count())
                build_s = time.perf_counter() - t0
                predictor = tl2cgen.Predictor(str(lib), nthread=1)
                dmat = tl2cgen.DMatrix(X)
                t, got = best_of(a.repeat, lambda: predictor.predict(dmat), time.process_time)
                got = np.asarray(got).reshape(X.shape[0], -1).astype(np.float32)
                rows.append((f"tl2cgen compiled (build {build_s:.0f} s)", t,
                             np.array_equal(got, want)))
        except Exception as exc:  # noqa: BLE001 - report and go on: an optional engine
            print(f"tl2cgen skipped: {exc}")
    except ImportError:
        print("treelite not installed: pip install treelite tl2cgen")
    print(f"{'engine':40}{'CPU-s/MP':>10}{'cycles/split*':>15}  same as sklearn")
    for name, secs, same in rows:
        per_split = secs / mp * 2600 / splits  # µs per pixel × 2.6 GHz (the TSC clock)
        print(f"{name:40}{secs / mp:>10.3f}{per_split:>15.1f}  {same}")
    print("* CPU-s per visited split at the TSC clock; early stopping visits fewer splits")


if __name__ == "__main__":
    main()
