"""Pixel classification benchmark: pyquint vs scikit-image + scikit-learn, in the same run.

Each configuration is an image type (``grey``, or ``rgb`` brightfield DAB: 3 × 49 = 147
pyquint channels) and a forest size, both trained by each side on the same labels of the same
section (``benchmarks/realistic.py``):

- ``realistic``: brush strokes painted as users paint them on a noisy section (imprecise at
  cell edges), trees grown to purity: about 18,000 nodes for 100 trees on 1536² grey, like the
  forests in users' ilastik projects;
- ``small``: a few thousand clean scribbles far from every edge: a handful of nodes per tree
  (what the early benchmarks used; it flatters any inference code).

Each side runs two phases, each in its own subprocess (so that peak RSS is its own):

- *features*: the whole image's features (pyquint: ilastik's 49-channel "select all" per
  channel, ``rounding="fast"``; peer: ``skimage.feature.multiscale_basic_features(
  channel_axis=-1)`` defaults), then the forest fit on the labelled pixels (forest only), then
  a retraining on 100,000 pixels with their true classes using each side's *default* trainer
  (``--retrain``; grey realistic only);
- *pipeline*: what a user runs: fit from image + labels (features included), then
  *Probabilities*: predict (features + forest) and write HDF5; *Simple Segmentation*: predict
  labels and write a PNG (pyquint stops each pixel's trees once its class is certain; the
  peer takes the argmax of ``predict_proba``). *End to end* = predict + export. Each
  prediction is timed as the best of two runs on both sides (a process's first run also pays
  for page faults and, for pyquint, loading compiled code for the full-size arrays).

Every row names the forest's node count. Timings are wall seconds per megapixel on all cores
(the peer's forest uses ``n_jobs=-1``); the load average (1 min) is sampled as each
subprocess starts and ends, and ``--busy N`` runs N CPU-bound processes throughout to show how
each side degrades on a shared machine.

Usage::

    OMP_WAIT_POLICY=passive python benchmarks/bench_pixel.py          # all four, 2048², slow
    python benchmarks/bench_pixel.py --size 1024 --image grey --model realistic
    python benchmarks/bench_pixel.py --busy 1                          # a shared machine
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
sys.path.insert(0, str(Path(__file__).resolve().parent))
#: Predictions are timed as the best of this many runs, on both sides.
RUNS = 2


from realistic import best_of  # noqa: E402  (benchmarks/ is on sys.path above)


def _data(size: int, seed: int, image_kind: str, model: str):
    from realistic import brush_labels, clean_labels, make_noisy_section

    image, truth = make_noisy_section(size, seed, rgb=image_kind == "rgb")
    labels = brush_labels(truth, seed) if model == "realistic" else clean_labels(truth, seed)
    return image, truth, labels


def _retrain_set(feats, truth, seed: int, n: int):
    """``n`` random pixels' feature vectors and true classes (1 background, 2 stain)."""
    import numpy as np

    pick = np.sort(np.random.default_rng(seed).choice(truth.size, min(n, truth.size), False))
    return feats.reshape(-1, feats.shape[-1])[pick], truth.ravel()[pick].astype(np.int64) + 1


def _pyquint(phase: str, image, truth, labels, trees: int, seed: int, retrain: int, res: dict,
             tmp: str) -> None:
    import h5py  # noqa: F401  (import time is not export time, as for the peer)
    import numpy as np
    import PIL.Image  # noqa: F401

    from pyquint.export import export_array
    from pyquint.features import FeatureSelection, compute_features
    from pyquint.forest import train_forest
    from pyquint.pixel import PixelClassifier

    axes = "yx" if image.ndim == 2 else "yxc"
    mp = truth.size / 1e6
    sel = FeatureSelection.all()
    compute_features(image[:64, :64], sel, axes=axes, rounding="fast")  # load compiled code
    if phase == "features":
        t = time.perf_counter()
        feats = compute_features(image, sel, axes=axes, rounding="fast")
        res["features_s_per_mp"] = (time.perf_counter() - t) / mp
        res["n_features"] = feats.shape[-1]
        X, y = feats[labels > 0], labels[labels > 0].astype(np.int64)
        if retrain:
            Xr, yr = _retrain_set(feats, truth, seed, retrain)
        del feats
        backend = PixelClassifier().trainer
        train_forest(X[:200], y[:200], n_trees=2, seed=seed, backend=backend)  # load compiled code
        t = time.perf_counter()
        train_forest(X, y, n_trees=trees, seed=seed, backend=backend)
        res["fit_s"] = time.perf_counter() - t
        if retrain:
            # what a user gets: PixelClassifier's default trainer
            t = time.perf_counter()
            train_forest(Xr, yr, n_trees=trees, seed=seed, backend=backend)
            res["retrain_s"] = time.perf_counter() - t
            res["retrain_trainer"] = backend
            # the other trainer on the same 49-channel pixels, for the trainers' ratio
            other = "sklearn" if backend == "fast" else "fast"
            t = time.perf_counter()
            train_forest(Xr, yr, n_trees=trees, seed=seed, backend=other)
            res["retrain_other_s"] = time.perf_counter() - t
            res["retrain_other_trainer"] = other
        return
    clf = PixelClassifier(sel, n_trees=trees, seed=seed, rounding="fast")
    t = time.perf_counter()
    clf.fit(image, labels)
    res["fit_total_s"] = time.perf_counter() - t
    res["n_nodes"] = clf.forest_.n_nodes
    clf.predict_proba(image[:96, :96])  # load the compiled kernels (numba's on-disk cache)
    clf.predict(image[:96, :96])
    secs, proba = best_of(RUNS, lambda: clf.predict_proba(image))
    res["predict_s_per_mp"] = secs / mp
    t = time.perf_counter()
    export_array(os.path.join(tmp, "p.h5"), proba, "yxc")
    res["export_s_per_mp"] = (time.perf_counter() - t) / mp
    secs, seg = best_of(RUNS, lambda: clf.predict(image))
    res["segment_s_per_mp"] = secs / mp
    t = time.perf_counter()
    export_array(os.path.join(tmp, "s.png"), seg[..., np.newaxis], "yxc")
    res["segment_export_s_per_mp"] = (time.perf_counter() - t) / mp
    res["same_segmentation"] = bool(np.array_equal(seg, proba.argmax(-1) + 1))
    res["stain_f1"] = _f1(seg == 2, truth > 0)


def _peer(phase: str, image, truth, labels, trees: int, seed: int, retrain: int, res: dict,
          tmp: str) -> None:
    import h5py
    import numpy as np
    from PIL import Image
    from skimage.feature import multiscale_basic_features
    from sklearn.ensemble import RandomForestClassifier

    mp = truth.size / 1e6
    channel_axis = None if image.ndim == 2 else -1
    t = time.perf_counter()
    feats = multiscale_basic_features(image, channel_axis=channel_axis)
    features_s = time.perf_counter() - t
    X, y = feats[labels > 0], labels[labels > 0]
    rf = RandomForestClassifier(n_estimators=trees, n_jobs=-1, random_state=seed)
    t = time.perf_counter()
    rf.fit(X, y)
    fit_s = time.perf_counter() - t
    if phase == "features":
        res.update(features_s_per_mp=features_s / mp, n_features=feats.shape[-1], fit_s=fit_s)
        if retrain:
            Xr, yr = _retrain_set(feats, truth, seed, retrain)
            t = time.perf_counter()
            RandomForestClassifier(n_estimators=trees, n_jobs=-1, random_state=seed).fit(Xr, yr)
            res["retrain_s"] = time.perf_counter() - t
            res["retrain_trainer"] = "sklearn"
        return
    res["fit_total_s"] = features_s + fit_s
    res["n_nodes"] = int(sum(e.tree_.node_count for e in rf.estimators_))
    del feats

    def predict():
        f = multiscale_basic_features(image, channel_axis=channel_axis)
        return rf.predict_proba(f.reshape(-1, f.shape[-1])).reshape(truth.shape + (-1,))

    secs, proba = best_of(RUNS, predict)
    res["predict_s_per_mp"] = secs / mp
    t = time.perf_counter()
    with h5py.File(os.path.join(tmp, "p.h5"), "w") as h5:
        h5.create_dataset("exported_data", data=proba.astype(np.float32))
    res["export_s_per_mp"] = (time.perf_counter() - t) / mp
    # the peer's Simple Segmentation is the argmax of the same prediction
    t = time.perf_counter()
    seg = (proba.argmax(-1) + 1).astype(np.uint8)
    res["segment_s_per_mp"] = res["predict_s_per_mp"] + (time.perf_counter() - t) / mp
    t = time.perf_counter()
    Image.fromarray(seg).save(os.path.join(tmp, "s.png"))
    res["segment_export_s_per_mp"] = (time.perf_counter() - t) / mp
    res["stain_f1"] = _f1(seg == 2, truth > 0)


def _f1(pred, truth) -> float:
    tp = float((pred & truth).sum())
    return 2 * tp / max(1.0, float(pred.sum() + truth.sum()))


def _worker(side: str, phase: str, size: int, trees: int, seed: int, retrain: int,
            image_kind: str, model: str) -> dict:
    """One side, one phase, in a fresh process (so that its peak RSS is its own)."""
    image, truth, labels = _data(size, seed, image_kind, model)
    res: dict = {"n_labelled": int((labels > 0).sum()), f"load_{phase}": [os.getloadavg()[0]]}
    with tempfile.TemporaryDirectory() as tmp:
        (_pyquint if side == "pyquint" else _peer)(phase, image, truth, labels, trees, seed,
                                                   retrain, res, tmp)
    if phase == "pipeline":
        for kind in ("", "segment_"):
            s = res[f"{kind or 'predict_'}s_per_mp"] + res[f"{kind or ''}export_s_per_mp"]
            res[f"{kind}end_to_end_s_per_mp"] = s
            res[f"{kind}end_to_end_mp_per_s"] = 1.0 / s
    res[f"load_{phase}"].append(os.getloadavg()[0])
    res[f"peak_rss_{phase}_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return res


def _busy() -> None:  # pragma: no cover - a CPU-bound neighbour
    while True:
        pass


def _run_config(args, image_kind: str, model: str, retrain: int) -> dict:
    results: dict[str, dict] = {"pyquint": {}, "peer": {}}
    for side in ("pyquint", "peer"):
        for phase in ("features", "pipeline"):
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", side, "--phase", phase, "--size",
                 str(args.size), "--trees", str(args.trees), "--seed", str(args.seed),
                 "--retrain", str(retrain), "--image", image_kind, "--model", model],
                capture_output=True, text=True, env={**os.environ, "PYQUINT_NO_PROGRESS": "1"},
            )
            if proc.returncode != 0:
                sys.exit(f"{side} {phase} failed:\n{proc.stderr}")
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            results[side].update({k: v for k, v in out.items() if k not in results[side]})
    return results


_ROWS = [("features (channels)", "n_features", "{:.0f}"),
         ("forest nodes", "n_nodes", "{:.0f}"),
         ("features s/MP", "features_s_per_mp", "{:.3f}"),
         ("fit s (forest only)", "fit_s", "{:.2f}"),
         ("fit s (with features)", "fit_total_s", "{:.2f}"),
         ("predict s/MP", "predict_s_per_mp", "{:.3f}"),
         ("export H5 s/MP", "export_s_per_mp", "{:.3f}"),
         ("end to end s/MP", "end_to_end_s_per_mp", "{:.3f}"),
         ("segment s/MP", "segment_s_per_mp", "{:.3f}"),
         ("export PNG s/MP", "segment_export_s_per_mp", "{:.3f}"),
         ("seg. end to end s/MP", "segment_end_to_end_s_per_mp", "{:.3f}"),
         ("peak RSS MB, features", "peak_rss_features_mb", "{:.0f}"),
         ("peak RSS MB, fit+pred", "peak_rss_pipeline_mb", "{:.0f}"),
         ("stain F1 vs truth", "stain_f1", "{:.3f}")]


def _print_config(args, image_kind: str, model: str, results: dict) -> None:
    a, b = results["pyquint"], results["peer"]
    print(f"\n== {image_kind}, {model} forest: {args.size}×{args.size} px, {a['n_labelled']} "
          f"labelled px, {args.trees} trees, pyquint {a['n_nodes']} nodes / peer {b['n_nodes']} "
          f"nodes, {os.cpu_count()} cores, busy neighbours: {args.busy}")
    print(f"{'':24}{'pyquint':>12}{'skimage+sklearn':>17}{'ratio peer/pyquint':>20}")
    rows = list(_ROWS)
    if "retrain_s" in a:
        rows.append((f"retrain s {args.retrain / 1000:g}k (default)", "retrain_s", "{:.2f}"))
    for label, key, fmt in rows:
        ratio = b[key] / a[key] if a[key] else float("nan")
        print(f"{label:24}{fmt.format(a[key]):>12}{fmt.format(b[key]):>17}{ratio:>20.2f}")
    for label, key in (("end to end MP/s", "end_to_end_mp_per_s"),
                       ("seg. end to end MP/s", "segment_end_to_end_mp_per_s")):
        print(f"{label:24}{a[key]:>12.2f}{b[key]:>17.2f}{a[key] / b[key]:>20.2f}  (pyquint/peer)")
    loads = {f"{side} {k[5:]}": v for side, r in results.items() for k, v in r.items()
             if k.startswith("load_")}
    print("load average (1 min) at start/end:",
          "; ".join(f"{k} {v[0]:.2f}/{v[1]:.2f}" for k, v in loads.items()))
    if "retrain_trainer" in a:
        print(f"retraining trainers: pyquint {a['retrain_trainer']}, peer {b['retrain_trainer']}; "
              f"pyquint's {a['retrain_other_trainer']} trainer on the same {a['n_features']}-channel "
              f"pixels: {a['retrain_other_s']:.2f} s")
    print(f"pyquint's segmentation equals argmax of its probabilities: {a['same_segmentation']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="image edge in pixels (default 2048)")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image", choices=["grey", "rgb", "both"], default="both")
    parser.add_argument("--model", choices=["realistic", "small", "both"], default="both")
    parser.add_argument("--retrain", type=int, default=100_000,
                        help="pixels for the retraining measurement (grey realistic; 0: skip)")
    parser.add_argument("--busy", type=int, default=0,
                        help="CPU-bound processes to run alongside (a shared machine)")
    parser.add_argument("--json", type=Path, help="also write all results here")
    parser.add_argument("--worker", choices=["pyquint", "peer"], help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=["features", "pipeline"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.phase, args.size, args.trees, args.seed,
                                 args.retrain, args.image, args.model)))
        return
    images = ["grey", "rgb"] if args.image == "both" else [args.image]
    models = ["realistic", "small"] if args.model == "both" else [args.model]
    neighbours = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(args.busy)]
    for p in neighbours:
        p.start()
    summary, everything = [], {}
    try:
        for image_kind in images:
            for model in models:
                retrain = args.retrain if (image_kind, model) == ("grey", "realistic") else 0
                results = _run_config(args, image_kind, model, retrain)
                everything[f"{image_kind}/{model}"] = results
                _print_config(args, image_kind, model, results)
                a, b = results["pyquint"], results["peer"]
                summary.append((image_kind, model, a["n_nodes"], b["n_nodes"],
                                a["end_to_end_mp_per_s"] / b["end_to_end_mp_per_s"],
                                a["segment_end_to_end_mp_per_s"] / b["segment_end_to_end_mp_per_s"]))
    finally:
        for p in neighbours:
            p.terminate()
    print(f"\nratio to the peer (MP/s, end to end, same run; {os.cpu_count()} cores, "
          f"{args.busy} busy neighbours, load {os.getloadavg()[0]:.2f} at the end):")
    print(f"{'image':6}{'forest':11}{'nodes pyquint/peer':>20}{'Probabilities':>15}"
          f"{'Simple Segm.':>14}")
    for image_kind, model, na, nb, r1, r2 in summary:
        print(f"{image_kind:6}{model:11}{f'{na}/{nb}':>20}{r1:>14.2f}×{r2:>13.2f}×")
    if args.json:
        args.json.write_text(json.dumps(everything, indent=2))


if __name__ == "__main__":
    main()
