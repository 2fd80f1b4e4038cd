"""Large-image benchmark: a synthetic section generated on disk, predicted tile by tile.

Steps, each in its own subprocess so that its peak RSS is its own (``os.wait4``):

1. ``train``: a 100-tree model on ilastik's 49-channel feature set per channel, trained on a
   2048² section of ``benchmarks/realistic.py``: ``--forest realistic`` (default: brush-stroke
   labels on a noisy section, ≈ 17,000 nodes, the forests users train) or ``small`` (clean
   scribbles, a few nodes per tree); ``--rgb`` for RGB brightfield sections (147 channels);
2. ``generate``: ``pyquint.tiles.make_test_image`` writes a ``--size`` uint8 section mosaic
   (default 30,000 × 30,000) tile by tile (TIFF, deflate by default) from 512² noisy sections
   of the same kind, under rotations and flips;
3. ``predict``: ``pyquint.tiles.predict_tiled``: features → Simple Segmentation (each pixel's
   trees stop once its class is certain), written in one pass as a streamed palette PNG
   *and* a tiled TIFF.

Reported: wall seconds, s/MP, the time projected to 30,000 × 30,000 (900 MP), peak RSS, the
time spent computing tiles (features and forest, summed over tiles; with fast features the two
run band by band, interleaved), the load average
(the machine may be shared: compare runs only at similar load), and the model's size.

Usage::

    OMP_WAIT_POLICY=passive python benchmarks/bench_large.py                 # 30k², long
    python benchmarks/bench_large.py --size 4096                             # quick run
    python benchmarks/bench_large.py --rgb                                   # RGB sections
    python benchmarks/bench_large.py --forest small --size 4096              # a tiny forest
    python benchmarks/bench_large.py --size 8192 --tile 1024 --workers 2 --json out.json
    python benchmarks/bench_large.py --model ../shared/reference/ilastik/pc.ilp --size 4096
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ.setdefault("PYQUINT_NO_PROGRESS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))


# --------------------------------------------------------------------------- subprocess steps
def _train(model: Path, trees: int, seed: int, forest: str, rgb: bool) -> dict:
    from realistic import brush_labels, clean_labels, make_noisy_section

    from pyquint.pixel import PixelClassifier

    image, truth = make_noisy_section(2048, seed, rgb=rgb)
    labels = brush_labels(truth, seed) if forest == "realistic" else clean_labels(truth, seed)
    clf = PixelClassifier(n_trees=trees, seed=seed, class_names=["Background", "Stain"],
                          class_colors=[(0, 0, 0), (255, 0, 0)])
    clf.fit(image, labels)
    clf.save(model)
    return {"n_trees": clf.forest_.n_trees, "n_nodes": clf.forest_.n_nodes}


def _generate(image: Path, size: tuple[int, int], seed: int, compression: str | None,
              rgb: bool) -> dict:
    from realistic import make_noisy_section

    from pyquint.tiles import make_test_image

    patterns = [make_noisy_section(512, seed * 1009 + k, rgb=rgb)[0] for k in range(8)]
    make_test_image(image, size, seed=seed, compression=compression, patterns=patterns)
    return {"bytes": image.stat().st_size}


def _predict(model: Path, image: Path, out: Path, tile: int, workers: int | None) -> dict:
    from pyquint.tiles import TilePredictor, predict_tiled

    if model.suffix.lower() == ".ilp":
        from pyquint.ilastik import ProjectPredictor

        clf = ProjectPredictor(model).fit().classifier_
    else:
        from pyquint.pixel import PixelClassifier

        clf = PixelClassifier.load(model)
    # time spent inside features and forest, summed over tiles (threads overlap)
    spent = {"tiles": 0.0}
    originals = {"tiles": TilePredictor.__call__}

    def timed(key):
        def wrapper(self, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return originals[key](self, *args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - t0
        return wrapper

    TilePredictor.__call__ = timed("tiles")
    palette = [[0, 0, 0]] + [list(c) for c in clf.class_colors_]
    import numpy as np

    table = np.zeros((256, 3), np.uint8)
    table[: len(palette)] = palette
    outputs = [("Simple Segmentation", out / "seg.png"), ("Simple Segmentation", out / "seg.tif")]
    predict_tiled(clf, image, outputs, tile=tile, n_workers=workers, palette=table,
                  show_progress=False)
    return {"tiles_s": spent["tiles"],
            "n_nodes": clf.forest_.n_nodes, "n_features": clf.forest_.n_features,
            "png_bytes": (out / "seg.png").stat().st_size, "tif_bytes": (out / "seg.tif").stat().st_size}


def _run_step(args: list[str]) -> dict:
    """Run ``this_script --step …`` in a child; return its JSON result, wall time, peak RSS."""
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE)
    # wait4 gives this child's own rusage (ru_maxrss in KiB on Linux)
    out = proc.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"step {args[:2]} failed with exit code {proc.returncode}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result.update(wall_s=wall, peak_rss_mb=usage.ru_maxrss / 1024, cpu_s=usage.ru_utime + usage.ru_stime,
                  load_before=load_before, load_after=os.getloadavg()[0])
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, nargs="+", default=[30000], help="rows [cols] (default 30000)")
    p.add_argument("--tile", type=int, default=2048, help="prediction tile edge (default 2048)")
    p.add_argument("--workers", type=int, default=None, help="tiles in parallel (default: pyquint.tiles.auto_workers)")
    p.add_argument("--trees", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--forest", choices=["realistic", "small"], default="realistic",
                   help="the forest to train (default realistic: ≈ 17,000 nodes)")
    p.add_argument("--rgb", action="store_true", help="RGB brightfield sections (147 channels)")
    p.add_argument("--model", type=Path, help="a saved pyquint model or an ilastik .ilp instead of training")
    p.add_argument("--image", type=Path, help="reuse this image instead of generating one")
    p.add_argument("--format", choices=["tif", "h5", "npy"], default="tif",
                   help="file type of the generated image (default tif, deflate)")
    p.add_argument("--workdir", type=Path, help="where to put image and outputs (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--step", help=argparse.SUPPRESS)
    p.add_argument("--params", help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.step:  # child process
        params = json.loads(a.params)
        fn = {"train": _train, "generate": _generate, "predict": _predict}[a.step]
        result = fn(**{k: (Path(v) if k in ("model", "image", "out") else v) for k, v in params.items()})
        print(json.dumps(result))
        return result

    rows, cols = (a.size * 2)[:2]
    mp = rows * cols / 1e6
    work = a.workdir or Path(tempfile.mkdtemp(prefix="pyquint-bench-large-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"size": [rows, cols], "megapixels": mp, "tile": a.tile, "workers": a.workers,
                    "forest": a.forest if a.model is None else str(a.model), "rgb": a.rgb,
                    "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    try:
        model = a.model
        if model is None:
            model = work / "model.h5"
            report["train"] = _run_step(["--step", "train", "--params", json.dumps(
                {"model": str(model), "trees": a.trees, "seed": a.seed, "forest": a.forest,
                 "rgb": a.rgb})])
        image = a.image
        if image is None:
            image = work / f"section.{a.format}"
            report["generate"] = _run_step(["--step", "generate", "--params", json.dumps(
                {"image": str(image), "size": [rows, cols], "seed": a.seed,
                 "compression": "zlib" if a.format == "tif" else None, "rgb": a.rgb})])
            g = report["generate"]
            print(f"generate {rows}×{cols}: {g['wall_s']:.1f} s, peak RSS {g['peak_rss_mb']:.0f} MB, "
                  f"{g['bytes'] / 1e6:.0f} MB on disk", flush=True)
        out = work / "out"
        out.mkdir(exist_ok=True)
        r = _run_step(["--step", "predict", "--params", json.dumps(
            {"model": str(model), "image": str(image), "out": str(out), "tile": a.tile,
             "workers": a.workers})])
        r["s_per_mp"] = r["wall_s"] / mp
        r["projected_30k_s"] = r["s_per_mp"] * 900
        report["predict"] = r
        kind = "RGB" if a.rgb else "grey"
        print(f"predict {kind} {rows}×{cols} ({mp:.1f} MP), tile {a.tile}, workers {a.workers or 'auto'}: "
              f"{r['wall_s']:.1f} s = {r['s_per_mp']:.3f} s/MP "
              f"(tiles: features + forest {r['tiles_s'] / mp:.3f} s/MP summed "
              f"over threads); projected 30k × 30k: {r['projected_30k_s'] / 60:.1f} min; "
              f"peak RSS {r['peak_rss_mb']:.0f} MB; CPU {r['cpu_s']:.0f} s; load average "
              f"{r['load_before']:.1f} → {r['load_after']:.1f} on {os.cpu_count()} cores; "
              f"{r['n_nodes']} forest nodes", flush=True)
    finally:
        if not a.keep and a.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if a.json:
        a.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
