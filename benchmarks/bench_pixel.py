"""Pixel classification benchmark: pyquint vs scikit-image + scikit-learn.

On one synthetic section (``pyquint.data.make_section``, default 2048 × 2048, sparse scribble
labels) each side runs two phases, each in its own subprocess:

- *features*: the whole image's features (pyquint: ilastik's 49-channel "select all",
  ``rounding="fast"``; peer: ``skimage.feature.multiscale_basic_features`` defaults, 24
  channels), then training the 100-tree forest on the labelled pixels' vectors (fit s, forest
  only; the peer's forest uses ``n_jobs=-1``), then a retraining on 100,000 pixels drawn at
  random with the section's true classes (``--retrain``, 0 to skip; ``--backend fast`` times
  pyquint's compiled trainer there instead of scikit-learn);
- *pipeline*: what a user runs: fit from image + labels (features included; pyquint computes
  them only for rows with labels), then a full prediction of the image (predict s/MP,
  features included; pyquint feeds feature bands to the forest while they are in cache),
  then the export of the probabilities to HDF5 (pyquint: ``pyquint.export.export_array``;
  peer: the same array written with h5py, uncompressed). *End to end* = predict + export.

Peak RSS is each subprocess's maximum resident memory; the load average (1 min) is sampled
when each subprocess starts and ends, since other work on the machine skews timings.

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


def _retrain_set(feats, size: int, seed: int, n: int):
    """``n`` random pixels' feature vectors and true classes (1 + make_section's truth)."""
    import numpy as np

    from pyquint.data import make_section

    truth = make_section(seed, shape=(size, size)).truth.ravel()
    pick = np.sort(np.random.default_rng(seed).choice(truth.size, min(n, truth.size), False))
    return feats.reshape(-1, feats.shape[-1])[pick], truth[pick].astype(np.int64) + 1


def _export_peer(path, proba) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("exported_data", data=proba)


def _worker(side: str, phase: str, size: int, trees: int, seed: int, retrain: int,
            backend: str = "sklearn") -> dict:
    """One side, one phase, in a fresh process (so that its peak RSS is its own)."""
    import tempfile

    import numpy as np

    image, labels = _section(size, seed)
    mp = image.size / 1e6
    res: dict = {"n_labelled": int((labels > 0).sum()), f"load_{phase}": [os.getloadavg()[0]]}
    tmp = tempfile.TemporaryDirectory()
    if side == "pyquint":
        import sklearn.ensemble  # noqa: F401  (import time is not training time)

        from pyquint.features import FeatureSelection, compute_features
        from pyquint.forest import train_forest
        from pyquint.pixel import PixelClassifier

        sel = FeatureSelection.all()
        compute_features(image[:64, :64], sel, axes="yx", rounding="fast")  # warm-up
        if phase == "features":
            t = time.perf_counter()
            feats = compute_features(image, sel, axes="yx", rounding="fast")
            res["features_s_per_mp"] = (time.perf_counter() - t) / mp
            res["n_features"] = feats.shape[-1]
            X, y = feats[labels > 0], labels[labels > 0].astype(np.int64)
            if retrain:
                Xr, yr = _retrain_set(feats, size, seed, retrain)
            del feats
            t = time.perf_counter()
            train_forest(X, y, n_trees=trees, seed=seed)
            res["fit_s"] = time.perf_counter() - t
            if retrain:
                # load the compiled trainer (numba's on-disk cache) outside the timing
                train_forest(Xr[:200], yr[:200], n_trees=2, seed=seed, backend=backend)
                t = time.perf_counter()
                train_forest(Xr, yr, n_trees=trees, seed=seed, backend=backend)
                res["retrain_s"] = time.perf_counter() - t
        else:
            clf = PixelClassifier(sel, n_trees=trees, seed=seed, rounding="fast")
            t = time.perf_counter()
            clf.fit(image, labels)
            res["fit_total_s"] = time.perf_counter() - t
            # load the compiled kernels (numba's on-disk cache) once, as any long-running use would
            clf.predict_proba(image[:96, :96])
            t = time.perf_counter()
            proba = clf.predict_proba(image)
            res["predict_s_per_mp"] = (time.perf_counter() - t) / mp
            from pyquint.export import export_array

            t = time.perf_counter()
            export_array(os.path.join(tmp.name, "p.h5"), proba, "yxc")
            res["export_s_per_mp"] = (time.perf_counter() - t) / mp
            res["stain_fraction"] = float((proba.argmax(-1) == 1).mean())
    else:
        from skimage.feature import multiscale_basic_features
        from sklearn.ensemble import RandomForestClassifier

        t = time.perf_counter()
        feats = multiscale_basic_features(image)
        res["features_s_per_mp"] = (time.perf_counter() - t) / mp
        res["n_features"] = feats.shape[-1]
        X, y = feats[labels > 0], labels[labels > 0]
        rf = RandomForestClassifier(n_estimators=trees, n_jobs=-1, random_state=seed)
        t = time.perf_counter()
        rf.fit(X, y)
        res["fit_s"] = time.perf_counter() - t
        if phase == "features" and retrain:
            Xr, yr = _retrain_set(feats, size, seed, retrain)
            t = time.perf_counter()
            RandomForestClassifier(n_estimators=trees, n_jobs=-1, random_state=seed).fit(Xr, yr)
            res["retrain_s"] = time.perf_counter() - t
        if phase == "pipeline":  # features for training, fit, then predict from scratch
            res["fit_total_s"] = res["features_s_per_mp"] * mp + res["fit_s"]
            del feats
            t = time.perf_counter()
            f = multiscale_basic_features(image)
            proba = rf.predict_proba(f.reshape(-1, f.shape[-1])).reshape(image.shape + (-1,))
            res["predict_s_per_mp"] = (time.perf_counter() - t) / mp
            t = time.perf_counter()
            _export_peer(os.path.join(tmp.name, "p.h5"), proba.astype(np.float32))
            res["export_s_per_mp"] = (time.perf_counter() - t) / mp
            res["stain_fraction"] = float((proba.argmax(-1) == 1).mean())
    if phase == "pipeline":
        res["end_to_end_s_per_mp"] = res["predict_s_per_mp"] + res["export_s_per_mp"]
        res["end_to_end_mp_per_s"] = 1.0 / res["end_to_end_s_per_mp"]
    tmp.cleanup()
    res[f"load_{phase}"].append(os.getloadavg()[0])
    res[f"peak_rss_{phase}_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="image edge in pixels (default 2048)")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain", type=int, default=100_000,
                        help="pixels for the retraining measurement (0: skip)")
    parser.add_argument("--backend", choices=["sklearn", "fast"], default="sklearn",
                        help="pyquint's train_forest backend for the retraining (default sklearn)")
    parser.add_argument("--worker", choices=["pyquint", "peer"], help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=["features", "pipeline"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.phase, args.size, args.trees, args.seed,
                                 args.retrain, args.backend)))
        return
    results: dict[str, dict] = {"pyquint": {}, "peer": {}}
    for side in ("pyquint", "peer"):
        for phase in ("features", "pipeline"):
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", side, "--phase", phase, "--size",
                 str(args.size), "--trees", str(args.trees), "--seed", str(args.seed),
                 "--retrain", str(args.retrain), "--backend", args.backend],
                capture_output=True, text=True, env={**os.environ, "PYQUINT_NO_PROGRESS": "1"},
            )
            if proc.returncode != 0:
                sys.exit(f"{side} {phase} failed:\n{proc.stderr}")
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            results[side].update({k: v for k, v in out.items() if k not in results[side]})
    a, b = results["pyquint"], results["peer"]
    print(f"pixel classification, {args.size}×{args.size} px, {a['n_labelled']} labelled px, "
          f"{args.trees} trees, {os.cpu_count()} cores")
    print(f"{'':22}{'pyquint':>12}{'skimage+sklearn':>17}{'ratio peer/pyquint':>20}")
    rows = [("features (channels)", "n_features", "{:.0f}"),
            ("features s/MP", "features_s_per_mp", "{:.3f}"),
            ("fit s (forest only)", "fit_s", "{:.2f}"),
            ("fit s (with features)", "fit_total_s", "{:.2f}"),
            ("predict s/MP", "predict_s_per_mp", "{:.3f}"),
            ("export s/MP", "export_s_per_mp", "{:.3f}"),
            ("end to end s/MP", "end_to_end_s_per_mp", "{:.3f}"),
            ("peak RSS MB, features", "peak_rss_features_mb", "{:.0f}"),
            ("peak RSS MB, fit+pred", "peak_rss_pipeline_mb", "{:.0f}")]
    if args.retrain:
        rows.append((f"retrain s {args.retrain / 1000:g}k {args.backend}", "retrain_s", "{:.2f}"))
    for label, key, fmt in rows:
        ratio = b[key] / a[key] if a[key] else float("nan")
        print(f"{label:22}{fmt.format(a[key]):>12}{fmt.format(b[key]):>17}{ratio:>20.2f}")
    label = "end to end MP/s"
    ea, eb = a["end_to_end_mp_per_s"], b["end_to_end_mp_per_s"]
    print(f"{label:22}{ea:>12.2f}{eb:>17.2f}{ea / eb:>20.2f}  (pyquint/peer)")
    loads = {f"{side} {k[5:]}": v for side, r in results.items() for k, v in r.items()
             if k.startswith("load_")}
    print("load average (1 min) at start/end:",
          "; ".join(f"{k} {v[0]:.2f}/{v[1]:.2f}" for k, v in loads.items()))
    print(f"stain fraction predicted: pyquint {a['stain_fraction']:.3f}, peer {b['stain_fraction']:.3f}")


if __name__ == "__main__":
    main()
