"""pyquint.features against independent references, real ilastik files and the exactness oracle."""

from __future__ import annotations

import importlib.util
import json
import math

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy import ndimage

from pyquint.errors import InputError
from pyquint.features import (
    DEFAULT_SCALES,
    FEATURE_IDS,
    FeatureSelection,
    compute_features,
    feature_halo,
    feature_names,
    full_kernel,
    half_kernel,
    kernel_radius,
)
from pyquint.features._kernels import correlate_axis
from pyquint.ilastik import selection_from_ilp
from pyquint.io import parse_axistags, read_image

ALL = FeatureSelection.all()


def _rng_image(shape, seed=0, scale=1.0, smooth=0.0):
    img = np.random.default_rng(seed).random(shape)
    if smooth:
        img = ndimage.gaussian_filter(img, smooth, mode="mirror")
        img = (img - img.min()) / (img.max() - img.min())
    return (img * scale).astype(np.float32)


def _channel(names, prefix):
    return [i for i, n in enumerate(names) if n.startswith(prefix)]


# ----------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("sigma", [0.3, 0.7, 0.5 * 1.0, 0.66 * 0.7])
def test_radius_one_kernels_are_exact(sigma):
    assert kernel_radius(sigma, 2.0) == 1
    np.testing.assert_array_equal(full_kernel(sigma, 1), np.float32([-0.5, 0, 0.5]))
    if sigma >= 0.5:  # order 2 is only used at σ' ≥ 0.7
        np.testing.assert_array_equal(full_kernel(sigma, 2), np.float32([1, -2, 1]))


@pytest.mark.parametrize("sigma", [0.3, 0.7, 1.0, math.sqrt(1.6**2 - 1), math.sqrt(3.5**2 - 1), 7.0, 9.95])
@pytest.mark.parametrize("window", [2.0, 3.5])
def test_kernel_moments(sigma, window):
    x = np.arange(-kernel_radius(sigma, window), kernel_radius(sigma, window) + 1, dtype=np.float64)
    k0, k1 = full_kernel(sigma, 0, window).astype(np.float64), full_kernel(sigma, 1, window).astype(np.float64)
    assert abs(k0.sum() - 1) < 1e-6
    np.testing.assert_allclose(k0, k0[::-1])
    assert abs((k1 * x).sum() - 1) < 1e-6 and k1[-1] > 0
    np.testing.assert_allclose(k1, -k1[::-1])
    k2 = full_kernel(sigma, 2, window).astype(np.float64)
    assert abs(k2.sum()) < 1e-6 and abs((k2 * x * x).sum() - 2) < 1e-5
    # shape: sampled Gaussian (derivative), independent float64 formula, same normalisation
    g = np.exp(-x * x / (2 * sigma * sigma))
    np.testing.assert_allclose(k0, g / g.sum(), rtol=1e-6, atol=1e-7)
    d1 = x * g
    np.testing.assert_allclose(k1, d1 / (d1 * x).sum(), rtol=1e-5, atol=1e-7)


def test_radii_match_ilastik():
    # spec §1: pre-smoothing radii 1/2/4/4/12/17/35, stage-2 radii 1/1/2/2/2/2/2
    from pyquint.features import filter_sigma, presmooth_sigma

    assert [kernel_radius(presmooth_sigma(s), 3.5) for s in DEFAULT_SCALES] == [1, 2, 4, 4, 12, 17, 35]
    assert [kernel_radius(filter_sigma(s), 2.0) for s in DEFAULT_SCALES] == [1, 1, 2, 2, 2, 2, 2]


def _scalar_pass(row, c, antisym, fma):
    """The §1b recipe for one output sample at a time (plain Python loops over float32 scalars)."""
    n, r = len(row), len(c) - 1
    f32 = np.float32
    out = np.empty(n, np.float32)
    for i in range(n):
        acc = f32(c[0]) * f32(row[i])
        for k in range(1, r + 1):
            lo, hi = abs(i - k), i + k
            if hi >= n:
                hi = 2 * (n - 1) - hi
            pair = f32(row[hi]) - f32(row[lo]) if antisym else f32(row[hi]) + f32(row[lo])
            if fma:
                acc = f32(float(pair) * float(c[k]) + float(acc))
            else:
                acc = f32(f32(pair * f32(c[k])) + acc)
        out[i] = acc
    return out


@pytest.mark.parametrize("rounding", ["exact", "muladd"])
@pytest.mark.parametrize("sigma,order,window", [(2.0, 0, 3.5), (1.0, 1, 2.0), (1.0, 2, 2.0), (0.7, 0, 3.5)])
def test_vectorised_pass_equals_scalar_recipe(rounding, sigma, order, window):
    img = _rng_image((3, 23), seed=5, scale=255.0)
    c = half_kernel(sigma, order, window)
    got = correlate_axis(img, c, order == 1, 1, rounding)
    for row in range(3):
        want = _scalar_pass(img[row], c, order == 1, rounding == "exact")
        np.testing.assert_array_equal(got[row], want)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_compiled_pass_equals_numpy_pass(monkeypatch, axis):
    import pyquint.features._kernels as K

    vol = _rng_image((9, 11, 13), seed=6, scale=255.0)
    for sigma, order, window in [(2.5, 0, 3.5), (1.0, 1, 2.0), (1.0, 2, 2.0)]:
        c = half_kernel(sigma, order, window)
        for rounding in ("exact", "muladd"):
            monkeypatch.setattr(K, "USE_NUMBA", True)
            a = correlate_axis(vol, c, order == 1, axis, rounding)
            monkeypatch.setattr(K, "USE_NUMBA", False)
            b = correlate_axis(vol, c, order == 1, axis, rounding)
            np.testing.assert_array_equal(a, b)


def test_mirror_border_does_not_repeat_edge():
    x = np.float32([[5, 1, 0, 0, 7]])
    c = np.float32([1, 2])  # k = [2, 1, 2] as a correlation
    got = correlate_axis(x, c, False, 1, "exact")
    # x[-1] = x[1], x[5] = x[3]
    np.testing.assert_array_equal(got[0], [5 + 2 * (1 + 1), 1 + 2 * 5, 0 + 2 * 1, 0 + 2 * 7, 7 + 2 * 0])


# ----------------------------------------------------------------------------- analytic cases
def test_constant_image():
    img = np.full((48, 50), 100, np.uint8)
    f = compute_features(img, ALL, axes="yx")
    names = feature_names(ALL)
    gs = _channel(names, "Gaussian Smoothing")
    np.testing.assert_allclose(f[..., gs], 100, rtol=2e-6)
    rest = [i for i in range(len(names)) if i not in gs]
    assert np.abs(f[..., rest]).max() < 1e-3  # float32 rounding of a 100-valued image only


def test_ramp_gradient_magnitude_and_structure_tensor():
    yy, xx = np.mgrid[0:100, 0:110].astype(np.float64)
    img = (3.0 * xx + 2.0 * yy + 10.0).astype(np.float32)
    f = compute_features(img, ALL, axes="yx")
    names = feature_names(ALL)
    inner = (slice(40, 60), slice(40, 70))  # farther than any kernel reaches from the border
    for s in DEFAULT_SCALES[1:]:
        ggm = f[inner + (names.index(f"Gaussian Gradient Magnitude (σ={s}) in 2D"),)]
        np.testing.assert_allclose(ggm, math.sqrt(13.0), rtol=1e-4)
        log = f[inner + (names.index(f"Laplacian of Gaussian (σ={s}) in 2D"),)]
        assert np.abs(log).max() < 2e-3
        ste0 = f[inner + (names.index(f"Structure Tensor Eigenvalues (σ={s}) in 2D [0]"),)]
        ste1 = f[inner + (names.index(f"Structure Tensor Eigenvalues (σ={s}) in 2D [1]"),)]
        np.testing.assert_allclose(ste0, 13.0, rtol=1e-4)  # |∇I|² along the gradient
        assert np.abs(ste1).max() < 1e-3


def test_parabola_laplacian_is_one():
    yy, xx = np.mgrid[0:90, 0:100].astype(np.float64)
    img = ((xx - 50) ** 2 / 2).astype(np.float32)
    f = compute_features(img, ALL, axes="yx")
    names = feature_names(ALL)
    inner = (slice(40, 50), slice(40, 60))
    for s in DEFAULT_SCALES[1:]:
        log = f[inner + (names.index(f"Laplacian of Gaussian (σ={s}) in 2D"),)]
        np.testing.assert_allclose(log, 1.0, atol=2e-3)
        h0 = f[inner + (names.index(f"Hessian of Gaussian Eigenvalues (σ={s}) in 2D [0]"),)]
        h1 = f[inner + (names.index(f"Hessian of Gaussian Eigenvalues (σ={s}) in 2D [1]"),)]
        np.testing.assert_allclose(h0, 1.0, atol=2e-3)
        assert np.abs(h1).max() < 2e-3


def _best_single_sigma(feature, img, candidates):
    errs = [np.abs(ndimage.gaussian_filter(img.astype(np.float64), s, mode="mirror", truncate=6)
                   - feature)[10:-10, 10:-10].max() for s in candidates]
    return candidates[int(np.argmin(errs))], min(errs)


@pytest.mark.parametrize("sigma,effective", [(0.7, 0.7 * math.sqrt(2)), (1.0, math.sqrt(2)), (3.5, 3.5)])
def test_smoothing_equals_a_single_gaussian(sigma, effective):
    img = _rng_image((64, 64), seed=2, scale=100.0, smooth=1.0)
    sel = FeatureSelection(np.array([[s == sigma for s in DEFAULT_SCALES]] + [[False] * 7] * 5), DEFAULT_SCALES)
    gs = compute_features(img, sel, axes="yx")[..., 0]
    candidates = np.round(np.arange(0.5, 4.5, 0.01), 2)
    best, err = _best_single_sigma(gs, img, list(candidates))
    # σ ≤ 1 is smoothed twice (σ·√2); σ > 1 totals σ. Truncated small kernels cost a few %.
    assert abs(best - effective) <= 0.04 * effective, (best, effective)
    assert err < 0.05 * img.max()


def test_eigenvalues_descending_and_structure_tensor_nonnegative():
    img = _rng_image((70, 66), seed=3, scale=255.0, smooth=1.5)
    f = compute_features(img, ALL, axes="yx")
    names = feature_names(ALL)
    for fam in ("Structure Tensor Eigenvalues", "Hessian of Gaussian Eigenvalues"):
        for s in DEFAULT_SCALES[1:]:
            a = f[..., names.index(f"{fam} (σ={s}) in 2D [0]")]
            b = f[..., names.index(f"{fam} (σ={s}) in 2D [1]")]
            assert (a >= b).all()
            if fam.startswith("Structure"):
                assert b.min() >= -1e-6 * a.max()


# ----------------------------------------------------------------------------- float64 reference
def _ref_kernel(sigma, order, window):
    """Independent float64 kernels from the spec's definitions (no float32 rounding)."""
    r = int(math.floor(window * sigma + 0.5))
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-x * x / (2 * sigma * sigma))
    if order == 0:
        return g / g.sum()
    if order == 1:
        k = x * g
        return k / (k * x).sum()
    k = (x * x / sigma**2 - 1) * g
    k -= k.mean()
    return 2 * k / (k * x * x).sum()


def _ref_sep(img, kx, ky):
    out = ndimage.correlate1d(img, kx, axis=1, mode="mirror")
    return ndimage.correlate1d(out, ky, axis=0, mode="mirror")


def _ref_features(img):
    """The two-stage recipe of spec §1 in float64 with scipy, channel order of ilastik."""
    img = img.astype(np.float64)
    per = {fid: [] for fid in FEATURE_IDS}
    for s in DEFAULT_SCALES:
        sp = s if s <= 1 else 1.0
        spre = math.sqrt(s * s - 1) if s > 1 else s
        k = _ref_kernel(spre, 0, 3.5)
        p = _ref_sep(img, k, k)
        g0, g1, g2 = (_ref_kernel(sp, o, 2.0) for o in (0, 1, 2))
        gs = _ref_sep(p, g0, g0)
        per["GaussianSmoothing"].append([gs])
        if s < 0.7:
            continue
        xx, yy, xy = _ref_sep(p, g2, g0), _ref_sep(p, g0, g2), _ref_sep(p, g1, g1)
        gx, gy = _ref_sep(p, g1, g0), _ref_sep(p, g0, g1)
        per["LaplacianOfGaussian"].append([xx + yy])
        per["GaussianGradientMagnitude"].append([np.hypot(gx, gy)])
        d0 = _ref_kernel(0.66 * sp, 0, 2.0)
        per["DifferenceOfGaussians"].append([gs - _ref_sep(p, d0, d0)])
        h0, h1 = _ref_kernel(0.5 * sp, 0, 2.0), _ref_kernel(0.5 * sp, 1, 2.0)
        tx, ty = _ref_sep(p, h1, h0), _ref_sep(p, h0, h1)
        tensor = [_ref_sep(a, g0, g0) for a in (tx * tx, ty * ty, tx * ty)]
        for a, b, c in (tensor, (xx, yy, xy)):
            ev = np.linalg.eigvalsh(np.stack([np.stack([a, c], -1), np.stack([c, b], -1)], -2))
            per["StructureTensorEigenvalues" if c is tensor[2] else "HessianOfGaussianEigenvalues"].append(
                [ev[..., 1], ev[..., 0]])
    return np.stack([ch for fid in FEATURE_IDS for block in per[fid] for ch in block], -1)


@pytest.mark.parametrize("rounding", ["exact", "fast"])
def test_agrees_with_independent_float64_reference(rounding):
    img = _rng_image((60, 72), seed=4, scale=255.0, smooth=0.8)
    got = compute_features(img, ALL, axes="yx", rounding=rounding)
    want = _ref_features(img)
    assert got.shape == want.shape == (60, 72, 49)
    err = np.abs(got - want) / np.maximum(1.0, np.abs(want))
    worst = int(err.reshape(-1, 49).max(0).argmax())
    assert err.max() < 1e-4, (feature_names(ALL)[worst], float(err.max()))


# ----------------------------------------------------------------------------- fast vs exact
def test_fast_within_1e5_of_exact_for_every_channel():
    img = _rng_image((80, 90), seed=6)  # values of order 1
    names = feature_names(ALL)
    exact = compute_features(img, ALL, axes="yx", rounding="exact")
    fast = compute_features(img, ALL, axes="yx", rounding="fast")
    err = (np.abs(fast - exact) / np.maximum(1.0, np.abs(exact))).reshape(-1, 49).max(0)
    bad = {names[i]: float(err[i]) for i in np.nonzero(err > 1e-5)[0]}
    assert not bad, bad
    # 8-bit range: the difference is a few float32 ulps of the pre-smoothed image
    img8 = np.round(img * 255).astype(np.uint8)
    e8 = compute_features(img8, ALL, axes="yx", rounding="exact")
    f8 = compute_features(img8, ALL, axes="yx", rounding="fast")
    assert (np.abs(f8 - e8) <= 1e-5 * np.maximum(1.0, np.abs(e8)) + 1e-6 * 255).all()


def test_muladd_differs_from_exact_only_in_last_bits():
    img = _rng_image((50, 50), seed=7, scale=255.0)
    a = compute_features(img, ALL, axes="yx", rounding="exact")
    b = compute_features(img, ALL, axes="yx", rounding="muladd")
    assert not np.array_equal(a, b)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-3)


# ----------------------------------------------------------------------------- names, selection
def test_pc_ilp_feature_names_reproduced(pc_ilp):
    with h5py.File(pc_ilp, "r") as f:
        fs = f["FeatureSelections"]
        sel = FeatureSelection(
            matrix=fs["SelectionMatrix"][()], scales=tuple(fs["Scales"][()]),
            feature_ids=tuple(v.decode() for v in fs["FeatureIds"][()]),
            compute_in_2d=tuple(fs["ComputeIn2d"][()]),
        )
        stored = [n.decode() for n in f["PixelClassification/ClassifierForests/feature_names"][()]]
        assert selection_from_ilp(fs) == sel
    assert feature_names(sel, 1, 2) == stored
    assert len(stored) == 49 and sel == ALL.__class__(ALL.matrix, ALL.scales, compute_in_2d=(True,) * 7)
    assert np.array_equal(sel.matrix, ALL.matrix)


def test_presets_and_channel_counts():
    assert ALL.n_channels(1, 2) == 49
    assert ALL.n_channels(1, 3) == 61  # eigenvalue features have 3 channels in 3-D
    assert ALL.n_channels(3, 2) == 147
    st = FeatureSelection.steinbock()
    assert st.n_channels(1, 2) == 40
    assert all(st.scales[j] >= 1 for _, j, _ in st.blocks())
    assert st.matrix[:, [s >= 1 for s in st.scales]].all()


def test_selection_round_trip_json():
    sel = FeatureSelection(np.eye(6, 3, dtype=bool) | np.eye(6, 3, -3, dtype=bool), (0.7, 1.5, 4.0),
                           compute_in_2d=(True, False, True))
    back = FeatureSelection.from_dict(json.loads(json.dumps(sel.to_dict())))
    assert back == sel and hash(back) == hash(sel)
    assert feature_names(back, 2, 3) == feature_names(sel, 2, 3)
    # a custom row order changes the concatenation order
    perm = FeatureSelection(ALL.matrix[::-1], ALL.scales, FEATURE_IDS[::-1])
    assert feature_names(perm)[0].startswith("Hessian of Gaussian Eigenvalues (σ=0.7)")


@pytest.mark.parametrize("kwargs,match", [
    ({"matrix": np.ones((6, 6), bool)}, "shape"),
    ({"matrix": np.ones((1, 7), bool), "feature_ids": ("Gabor",)}, "unknown feature id"),
    ({"matrix": np.ones((6, 2), bool), "scales": (1.0, -2.0)}, "positive"),
    ({"matrix": np.ones((6, 2), bool), "scales": (1.0, 0.0)}, "positive"),
    ({"matrix": np.zeros((6, 7), bool)}, "empty"),
    ({"matrix": np.ones((6, 7), bool)}, "needs σ ≥ 0.7"),
    ({"matrix": np.full((6, 7), 2)}, "booleans"),
    ({"matrix": ALL.matrix, "compute_in_2d": (True, False)}, "compute_in_2d"),
])
def test_bad_selection(kwargs, match):
    with pytest.raises(InputError, match=match):
        FeatureSelection(**kwargs)


def test_bad_selection_dict():
    with pytest.raises(InputError, match="matrix"):
        FeatureSelection.from_dict({"scales": [1.0]})
    with pytest.raises(InputError, match="unknown key"):
        FeatureSelection.from_dict({"matrix": [[True]], "feature_ids": ["GaussianSmoothing"], "scales": [1],
                                    "sigma": 3})
    with pytest.raises(InputError, match="JSON object"):
        FeatureSelection.from_dict([1, 2])


# ----------------------------------------------------------------------------- bad images
def test_too_small_names_the_scale():
    with pytest.raises(InputError, match=r"σ=10\.0"):
        compute_features(np.zeros((30, 80), np.uint8), ALL, axes="yx")
    ok = FeatureSelection(ALL.matrix[:, :5], ALL.scales[:5])  # σ ≤ 3.5 needs 14 px
    assert compute_features(np.zeros((14, 14), np.uint8), ok, axes="yx").shape == (14, 14, ok.n_channels())
    with pytest.raises(InputError, match=r"σ=3\.5"):
        compute_features(np.zeros((13, 40), np.uint8), ok, axes="yx")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels(bad):
    img = np.zeros((40, 40), np.float32)
    img[3, 4] = bad
    with pytest.raises(InputError, match="NaN or infinite"):
        compute_features(img, FeatureSelection.steinbock(), axes="yx")


@pytest.mark.parametrize("dtype", [np.complex64, object, "U3"])
def test_unsupported_dtype(dtype):
    with pytest.raises(InputError, match="unsupported pixel type"):
        compute_features(np.zeros((40, 40), dtype=dtype), ALL, axes="yx")


def test_bad_arguments():
    img = np.zeros((40, 40), np.uint8)
    with pytest.raises(InputError, match="rounding"):
        compute_features(img, ALL, axes="yx", rounding="approx")
    with pytest.raises(InputError, match="axes"):
        compute_features(img, ALL, axes="yxc")
    with pytest.raises(InputError, match="FeatureSelection"):
        compute_features(img, {"matrix": 1}, axes="yx")


def test_integer_dtypes_are_cast_not_normalised():
    img = _rng_image((40, 42), seed=8, scale=200).round()
    sel = FeatureSelection.steinbock()
    want = compute_features(img, sel, axes="yx")
    for dtype in (np.uint8, np.uint16, np.int32, np.float64):
        np.testing.assert_array_equal(compute_features(img.astype(dtype), sel, axes="yx"), want)


# ----------------------------------------------------------------------------- layouts
def test_multichannel_layout_and_names():
    rgb = np.stack([_rng_image((40, 44), seed=s, scale=255) for s in (10, 11, 12)], -1)
    sel = FeatureSelection(ALL.matrix[:, :4], ALL.scales[:4])  # σ ≤ 1.6
    f = compute_features(rgb, sel, axes="yxc")
    single = [compute_features(rgb[..., c], sel, axes="yx") for c in range(3)]
    names = feature_names(sel, 3, 2)
    assert f.shape[-1] == len(names) == 3 * sel.n_channels(1, 2)
    # FeatureIds → scales → input channels → eigenvalue index
    pos = 0
    for fid, j, n in sel.blocks():
        for c in range(3):
            start = sum(m for _, jj, m in sel.blocks()[: sel.blocks().index((fid, j, n))])
            np.testing.assert_array_equal(f[..., pos:pos + n], single[c][..., start:start + n])
            pos += n
    assert names[:3] == [f"Gaussian Smoothing (σ=0.3) in 2D [{k}]" for k in range(3)]
    ste = [n for n in names if n.startswith("Structure Tensor Eigenvalues (σ=0.7)")]
    assert ste == [f"Structure Tensor Eigenvalues (σ=0.7) in 2D [{k}]" for k in range(6)]
    # channel-first input is reordered to ilastik's yxc
    np.testing.assert_array_equal(compute_features(np.moveaxis(rgb, -1, 0), sel, axes="cyx"), f)


def test_3d_shapes_names_and_slicewise_2d():
    vol = np.stack([_rng_image((30, 32), seed=20 + z, scale=255, smooth=1.0) for z in range(8)])
    sel3 = FeatureSelection(ALL.matrix[:, :3], ALL.scales[:3])  # σ ≤ 1 needs z ≥ 5
    f3 = compute_features(vol, sel3, axes="zyx")
    names3 = feature_names(sel3, 1, 3)
    assert f3.shape == (8, 30, 32, len(names3)) and len(names3) == sel3.n_channels(1, 3) == 3 + 3 * 2 + 2 * 2 * 3
    assert "Hessian of Gaussian Eigenvalues (σ=1.0) [2]" in names3 and not any("in 2D" in n for n in names3)
    # ComputeIn2d: slice by slice, 2 eigenvalues, names say "in 2D"
    sel2 = FeatureSelection(sel3.matrix, sel3.scales, compute_in_2d=(True,) * 3)
    f2 = compute_features(vol[..., None], sel2, axes="zyxc")
    assert f2.shape[-1] == len(feature_names(sel2, 1, 3)) == sel3.n_channels(1, 2)
    assert all(n.endswith("in 2D") or "in 2D [" in n for n in feature_names(sel2, 1, 3))
    for z in (0, 5):
        np.testing.assert_array_equal(f2[z], compute_features(vol[z], sel2, axes="yx"))
    # the fast path in 3-D (OpenCV for y/x, scipy for z) stays within 1e-5 for unit-range data
    fast = compute_features(vol / 255, sel3, axes="zyx", rounding="fast")
    exact = compute_features(vol / 255, sel3, axes="zyx", rounding="exact")
    assert (np.abs(fast - exact) <= 1e-5 * np.maximum(1, np.abs(exact))).all()
    # eigenvalues descending in every triple
    for fam in ("Structure Tensor", "Hessian"):
        idx = [i for i, n in enumerate(names3) if n.startswith(fam) and "σ=1.0" in n]
        assert len(idx) == 3 and (np.diff(f3[..., idx], axis=-1) <= 0).all()


def test_3d_of_a_z_constant_volume_matches_2d():
    plane = _rng_image((30, 34), seed=30, scale=10, smooth=1.5)
    vol = np.repeat(plane[None], 9, axis=0)
    sel = FeatureSelection(ALL.matrix[:, 1:3], ALL.scales[1:3])  # σ 0.7 and 1.0
    f3 = compute_features(vol, sel, axes="zyx")[4]
    f2 = compute_features(plane, sel, axes="yx")
    n3, n2 = feature_names(sel, 1, 3), feature_names(sel, 1, 2)
    for fam in ("Gaussian Smoothing", "Laplacian of Gaussian", "Gaussian Gradient Magnitude",
                "Difference of Gaussians"):
        for s in sel.scales:
            np.testing.assert_allclose(f3[..., n3.index(f"{fam} (σ={s})")],
                                       f2[..., n2.index(f"{fam} (σ={s}) in 2D")], rtol=1e-5, atol=1e-5)
    # Hessian of a z-constant volume: the 2-D eigenvalues plus a 0, sorted descending
    for s in sel.scales:
        h2 = f2[..., [n2.index(f"Hessian of Gaussian Eigenvalues (σ={s}) in 2D [{k}]") for k in (0, 1)]]
        h3 = f3[..., [n3.index(f"Hessian of Gaussian Eigenvalues (σ={s}) [{k}]") for k in (0, 1, 2)]]
        want = np.sort(np.concatenate([h2, np.zeros_like(h2[..., :1])], -1), -1)[..., ::-1]
        np.testing.assert_allclose(h3, want, atol=1e-4)


def test_eig3_against_numpy():
    from pyquint.features._compute import _eig3

    rng = np.random.default_rng(0)
    m = rng.normal(size=(500, 3, 3))
    m = m + np.swapaxes(m, 1, 2)
    m[:5] = np.diag([2.0, 2.0, -1.0])  # repeated eigenvalues
    comps = [m[:, 0, 0], m[:, 1, 1], m[:, 2, 2], m[:, 0, 1], m[:, 0, 2], m[:, 1, 2]]
    got = np.stack(_eig3(*[c.astype(np.float32) for c in comps]), -1)
    want = np.linalg.eigvalsh(m.astype(np.float32).astype(np.float64))[:, ::-1]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_time_axis_is_processed_per_frame():
    movie = np.stack([_rng_image((30, 30), seed=40 + t, scale=255) for t in range(2)])
    sel = FeatureSelection.steinbock()
    sel = FeatureSelection(sel.matrix[:, :4], sel.scales[:4])
    f = compute_features(movie, sel, axes="tyx")
    assert f.shape == (2, 30, 30, sel.n_channels())
    np.testing.assert_array_equal(f[1], compute_features(movie[1], sel, axes="yx"))


def test_halo_makes_tiles_identical_to_the_whole_image():
    img = _rng_image((150, 160), seed=9, scale=255)
    halo = feature_halo(ALL)
    assert halo == 35 + 3  # ceil(3.5·sqrt(99)) + structure tensor (1 + 2)
    whole = compute_features(img, ALL, axes="yx")
    y0, y1, x0, x1 = 60, 90, 70, 95
    tile = compute_features(img[y0 - halo:y1 + halo, x0 - halo:x1 + halo], ALL, axes="yx")
    np.testing.assert_array_equal(tile[halo:-halo, halo:-halo], whole[y0:y1, x0:x1])


# ----------------------------------------------------------------------------- exactness oracle
def _load_oracle(shared_dir):
    spec = importlib.util.spec_from_file_location("ilp_roots", shared_dir / "tools" / "ilp_roots.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_exactness_oracle_pc_ilp(shared_dir, pc_ilp, cells_png, tmp_path):
    oracle = _load_oracle(shared_dir)
    img, axes = read_image(cells_png)
    assert axes == "yxc" and img.shape == (1024, 1344, 1)
    with h5py.File(pc_ilp, "r") as f:
        sel = selection_from_ilp(f["FeatureSelections"])
    rates = {}
    for rounding in ("exact", "muladd"):
        feats = compute_features(img, sel, axes=axes, rounding=rounding)
        out = tmp_path / f"{rounding}_Features.h5"
        with h5py.File(out, "w") as f:
            f["exported_data"] = feats
        with h5py.File(out, "r") as f:
            rate, per = oracle.match_rate(str(pc_ilp), f["exported_data"][()], "yxc")
        families: dict[str, list[int]] = {}
        for name, hits in per.items():
            fam = families.setdefault(name.split(" (")[0], [0, 0])
            fam[0] += sum(hits)
            fam[1] += len(hits)
        print(f"{rounding}: {rate * 100:.0f}/100 roots;",
              "; ".join(f"{k} {a}/{b}" for k, (a, b) in families.items()))
        rates[rounding] = rate
    assert rates["exact"] >= 0.95
    # the oracle discriminates: the same recipe without FMA loses Laplacian/Hessian roots
    assert rates["muladd"] < rates["exact"]


# ----------------------------------------------------------------------------- CLI
def test_cli_compute_resume_and_names(tmp_path):
    from pyquint.cli import main

    img = np.round(_rng_image((40, 46), seed=50, scale=255)).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "sec_s001.png")
    sel = FeatureSelection(ALL.matrix[:, :4], ALL.scales[:4])
    (tmp_path / "sel.json").write_text(json.dumps(sel.to_dict()))
    runner = CliRunner()
    args = ["features", "compute", str(tmp_path / "sec_s001.png"), "-o", str(tmp_path / "out"),
            "--selection", str(tmp_path / "sel.json")]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    out = tmp_path / "out" / "sec_s001_Features.h5"
    with h5py.File(out, "r") as f:
        ds = f["exported_data"]
        assert parse_axistags(ds.attrs["axistags"]) == "yxc"
        np.testing.assert_array_equal(ds[()], compute_features(img, sel, axes="yx"))
        assert [str(n) for n in ds.attrs["feature_names"]] == feature_names(sel)
    mtime = out.stat().st_mtime_ns
    res = runner.invoke(main, args)
    assert res.exit_code == 0 and "1 skipped" in res.output and out.stat().st_mtime_ns == mtime
    res = runner.invoke(main, args + ["--overwrite", "--rounding", "fast"])
    assert res.exit_code == 0 and "1 written" in res.output
    res = runner.invoke(main, ["features", "names", "-s", "steinbock", "-c", "2"])
    assert res.exit_code == 0
    assert [line.split("\t")[1] for line in res.output.splitlines()] == feature_names(
        FeatureSelection.steinbock(), 2, 2)
    res = runner.invoke(main, ["features", "selection", str(tmp_path / "st.json"), "-s", "steinbock"])
    assert res.exit_code == 0
    assert FeatureSelection.from_dict(json.loads((tmp_path / "st.json").read_text())) == FeatureSelection.steinbock()


def test_cli_bad_inputs(tmp_path):
    from pyquint.cli import main

    runner = CliRunner()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "tiny.png")
    res = runner.invoke(main, ["features", "compute", str(tmp_path / "tiny.png"), "-o", str(tmp_path / "o")])
    assert res.exit_code != 0 and "too small for σ=10.0" in res.output
    (tmp_path / "bad.json").write_text('{"matrix": [[true]], "feature_ids": ["Sobel"], "scales": [1]}')
    res = runner.invoke(main, ["features", "compute", str(tmp_path / "tiny.png"), "-o", str(tmp_path / "o"),
                               "-s", str(tmp_path / "bad.json")])
    assert res.exit_code != 0 and "unknown feature id" in res.output
    res = runner.invoke(main, ["features", "compute", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o")])
    assert res.exit_code != 0 and "no such file" in res.output
    res = runner.invoke(main, ["features", "compute", str(tmp_path / "tiny.png"), "-o", str(tmp_path),
                               "-s", "nonsense"])
    assert res.exit_code != 0 and "--selection" in res.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_compute_features_accepts_a_2d_grey_array():
    img = np.random.default_rng(3).integers(0, 255, (45, 50)).astype(np.uint8)
    grey = compute_features(img)  # no axes: a 2-D array is a grey yx image
    assert grey.shape == (45, 50, 49)
    assert np.array_equal(grey, compute_features(img[..., np.newaxis], axes="yxc"))
