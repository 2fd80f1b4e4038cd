"""Pixel classification benchmark: pyquint vs scikit-image + scikit-learn.

On one synthetic section (``pyquint.data.make_section``, default 2048 × 2048, sparse scribble
labels) each side runs in its own subprocess and reports:

- features  s/MP: the whole image's features (pyquint: ilastik's 49-channel "select all",
  ``rounding="fast"``; peer: ``skimage.feature.multiscale_basic_features`` defaults);
- fit s: training the 100-tree forest on the labelled pixels' feature vectors
  (pyquint's fit() total, features of the labelled region included, is shown too);
- predict s/MP: a full prediction of the image, features included (pyquint works in tiles);
- peak RSS: the subprocess's maximum resident memory over all of the above.

Usage::

    OMP_WAIT_POLICY=passive python benchmarks/bench_pixel.py            # 2048², slow
    python benchmarks/bench_pixel.py --size 512                          # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "passive")


def _section(size: int, seed: int):
    import numpy as np

    try:
        from pyquint.data import make_section
    except ImportError:  # pragma: no cover - pyquint.data absent: a simple synthetic image
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[:size, :size]
        image = rng.normal(190, 10, (size, size))
        cells = np.zeros((size, size), bool)
        for cy, cx in rng.integers(0, size, (size * size // 4000, 2)):
            cells |= (yy - cy) ** 2 + (xx - cx) ** 2 < 25
        image[cells] -= 100
        labels = np.zeros((size, size), np.uint8)
        pick = rng.choice(size * size, 4000, replace=False)
        labels.flat[pick] = np.where(cells.flat[pick], 2, 1)
        return np.clip(image, 0, 255).astype(np.uint8), labels
    s = make_section(seed, shape=(size, size))
    return s.image, s.labels


def _worker(side: str, size: int, trees: int, seed: int) -> dict:
    import numpy as np

    image, labels = _section(size, seed)
    mp = image.size / 1e6
    res: dict = {"side": side, "n_labelled": int((labels > 0).sum())}
    if side == "pyquint":
        import sklearn.ensemble  # noqa: F401  (import time is not training time)

        from pyquint.features import FeatureSelection, compute_features
        from pyquint.forest import train_forest
        from pyquint.pixel import PixelClassifier

        sel = FeatureSelection.all()
        compute_features(image[:64, :64], sel, axes="yx", rounding="fast")  # warm-up
        t = time.perf_counter()
        feats = compute_features(image, sel, axes="yx", rounding="fast")
        res["features_s_per_mp"] = (time.perf_counter() - t) / mp
        res["n_features"] = feats.shape[-1]
        X, y = feats[labels > 0], labels[labels > 0].astype(np.int64)
        del feats
        t = time.perf_counter()
        forest = train_forest(X, y, n_trees=trees, seed=seed)
        res["fit_s"] = time.perf_counter() - t
        forest.predict_proba(X[:10])  # compile / load the numba kernel outside the timing
        clf = PixelClassifier(sel, n_trees=trees, seed=seed, rounding="fast")
        t = time.perf_counter()
        clf.fit(image, labels)
        res["fit_total_s"] = time.perf_counter() - t
        t = time.perf_counter()
        proba = clf.predict_proba(image)
        res["predict_s_per_mp"] = (time.perf_counter() - t) / mp
    else:
        from skimage.feature import multiscale_basic_features
        from sklearn.ensemble import RandomForestClassifier

        t = time.perf_counter()
        feats = multiscale_basic_features(image)
        res["features_s_per_mp"] = (time.perf_counter() - t) / mp
        res["n_features"] = feats.shape[-1]
        X, y = feats[labels > 0], labels[labels > 0]
        del feats
        rf = RandomForestClassifier(n_estimators=trees, n_jobs=-1, random_state=seed)
        t = time.perf_counter()
        rf.fit(X, y)
        res["fit_s"] = time.perf_counter() - t
        res["fit_total_s"] = res["fit_s"]
        t = time.perf_counter()
        f = multiscale_basic_features(image)
        proba = rf.predict_proba(f.reshape(-1, f.shape[-1])).reshape(image.shape + (-1,))
        res["predict_s_per_mp"] = (time.perf_counter() - t) / mp
    res["stain_fraction"] = float((proba.argmax(-1) == 1).mean())
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="image edge in pixels (default 2048)")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=["pyquint", "peer"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.size, args.trees, args.seed)))
        return
    results = {}
    for side in ("pyquint", "peer"):
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", side, "--size", str(args.size),
             "--trees", str(args.trees), "--seed", str(args.seed)],
            capture_output=True, text=True, env={**os.environ, "PYQUINT_NO_PROGRESS": "1"},
        )
        if proc.returncode != 0:
            sys.exit(f"{side} failed:\n{proc.stderr}")
        results[side] = json.loads(proc.stdout.strip().splitlines()[-1])
    a, b = results["pyquint"], results["peer"]
    print(f"pixel classification, {args.size}×{args.size} px, {a['n_labelled']} labelled px, "
          f"{args.trees} trees, {os.cpu_count()} cores")
    print(f"{'':22}{'pyquint':>12}{'skimage+sklearn':>17}{'ratio peer/pyquint':>20}")
    rows = [("features (channels)", "n_features", "{:.0f}"),
            ("features s/MP", "features_s_per_mp", "{:.3f}"),
            ("fit s (forest)", "fit_s", "{:.2f}"),
            ("fit s (total)", "fit_total_s", "{:.2f}"),
            ("predict s/MP", "predict_s_per_mp", "{:.3f}"),
            ("peak RSS MB", "peak_rss_mb", "{:.0f}")]
    for label, key, fmt in rows:
        ratio = b[key] / a[key] if a[key] else float("nan")
        print(f"{label:22}{fmt.format(a[key]):>12}{fmt.format(b[key]):>17}{ratio:>20.2f}")
    print(f"stain fraction predicted: pyquint {a['stain_fraction']:.3f}, peer {b['stain_fraction']:.3f}")


if __name__ == "__main__":
    main()
