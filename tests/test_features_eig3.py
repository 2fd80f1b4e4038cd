"""fastfilters' float32 3×3 eigenvalue solver (pyquint.features._eig3) and the 3-D features using it."""

from __future__ import annotations

import numpy as np
import pytest

from pyquint.features import FeatureSelection, compute_features, feature_names
from pyquint.features._eig3 import eig3_fastfilters


def _solve(m: np.ndarray) -> np.ndarray:
    """Eigenvalues (descending, last axis) of float32 matrices ``m`` (..., 3, 3) by the solver,
    fed in fastfilters' argument order (zz, yz, xz, yy, xy, xx) with index 0 = x."""
    m = m.astype(np.float32)
    args = [m[..., 2, 2], m[..., 1, 2], m[..., 0, 2], m[..., 1, 1], m[..., 0, 1], m[..., 0, 0]]
    return np.stack(eig3_fastfilters(*args), -1).astype(np.float64)


def _reference(m: np.ndarray) -> np.ndarray:
    """numpy's LAPACK solver in float64 on the same float32 entries, descending."""
    return np.linalg.eigvalsh(m.astype(np.float32).astype(np.float64))[..., ::-1]


def _scale(m: np.ndarray) -> np.ndarray:
    s = np.abs(m).reshape(m.shape[:-2] + (9,)).max(-1, keepdims=True)
    return np.where(s > 0, s, 1.0)


def _random_symmetric(rng: np.random.Generator, n: int) -> np.ndarray:
    g = rng.normal(size=(n, 3, 3))
    return g + np.swapaxes(g, 1, 2)


@pytest.mark.parametrize("magnitude", [1e-20, 1.0, 1e20])
def test_random_matrices_match_lapack(magnitude):
    # float32 closed form: ~1e-6 of the largest entry typically; the overflow guard
    # (division by the largest entry) keeps tiny and huge matrices as accurate
    m = _random_symmetric(np.random.default_rng(1), 20003) * magnitude  # 20003: a scalar tail
    got, want = _solve(m), _reference(m)
    assert np.isfinite(got).all()
    assert (np.abs(got - want) <= 3e-4 * _scale(m)).all()
    assert np.median(np.abs(got - want) / _scale(m)) < 1e-6
    assert (np.diff(got, axis=-1) <= 0).all()  # largest, middle, smallest


@pytest.mark.parametrize("eigenvalues", [(2.0, 2.0, -1.0), (3.0, -1.0, -1.0), (0.0, 0.0, 5.0),
                                         (1.0, 1.0, 1.0), (1.0, 1.0 + 1e-4, 2.0)])
def test_repeated_eigenvalues(eigenvalues):
    rng = np.random.default_rng(2)
    q = np.linalg.qr(rng.normal(size=(2000, 3, 3)))[0]
    d = np.zeros((2000, 3, 3))
    d[:, [0, 1, 2], [0, 1, 2]] = eigenvalues
    for m in (q @ d @ np.swapaxes(q, 1, 2), d):  # rotated and diagonal
        got = _solve(m)
        # near-coincident eigenvalues cost float32 accuracy: √-q loses half the digits
        np.testing.assert_allclose(got, _reference(m), atol=2e-3 * np.abs(eigenvalues).max())
        assert (np.diff(got, axis=-1) <= 0).all()


def test_zero_and_diagonal_matrices():
    assert (_solve(np.zeros((11, 3, 3))) == 0).all()  # zero matrix: no 0/0, exactly 0
    rng = np.random.default_rng(3)
    diag = rng.normal(size=(1000, 3))
    m = np.zeros((1000, 3, 3))
    m[:, [0, 1, 2], [0, 1, 2]] = diag
    want = np.sort(diag.astype(np.float32), -1)[:, ::-1]
    err = np.abs(_solve(m) - want) / _scale(m)
    assert err.max() < 2e-3 and np.quantile(err, 0.99) < 1e-5  # worst: nearly equal entries


def test_vector_loop_and_scalar_tail_agree():
    # 8 voxels per AVX step; the last size % 8 go through fastfilters' scalar C loop
    # (double literals, libm): same values to float32 rounding
    m = np.repeat(_random_symmetric(np.random.default_rng(4), 1), 13, axis=0)
    got = _solve(m)
    s = _scale(m[:1]).item()
    assert len(np.unique(got[:8], axis=0)) == 1 and len(np.unique(got[8:], axis=0)) == 1
    np.testing.assert_allclose(got[8:], got[:5], atol=1e-5 * s)
    np.testing.assert_allclose(got, _reference(m), atol=1e-5 * s)


def test_atan2_zero_quirk_of_fastfilters():
    # For diag(1, 0, -1), -b/2 is exactly 0 and the AVX loop's polynomial atan2(y > 0, 0) gives
    # 0 instead of π/2: ilastik's features carry the eigenvalues of angle 0, μ·(2, -1, -1) with
    # μ = √(-a/3) = 1/√3 (checked against the compiled C of linalg_avx2.c). The scalar tail
    # (libm's atan2) gets the true (1, 0, -1).
    for m in (np.diag([1.0, 0.0, -1.0]), np.diag([-1.0, 0.0, 1.0]), 3.0 * np.diag([0.0, 1.0, -1.0])):
        scale = np.abs(m).max()
        vector = _solve(np.repeat(m[None], 8, axis=0))
        np.testing.assert_allclose(vector, np.broadcast_to(scale * np.array([2.0, -1.0, -1.0]) / np.sqrt(3.0),
                                                           (8, 3)), rtol=1e-6)
        np.testing.assert_allclose(_solve(m[None])[0], scale * np.array([1.0, 0.0, -1.0]), atol=1e-6 * scale)


def test_shapes_and_argument_checks():
    a = np.ones((2, 3, 4), np.float32)
    out = eig3_fastfilters(a, 0 * a, 0 * a, a, 0 * a, a)
    assert [o.shape for o in out] == [(2, 3, 4)] * 3 and all(o.dtype == np.float32 for o in out)
    np.testing.assert_allclose(np.stack(out), 1.0, rtol=1e-6)  # identity: 1, 1, 1
    with pytest.raises(ValueError, match="one shape"):
        eig3_fastfilters(a, a, a, a, a, a[0])


def _one_feature(*rows: int) -> FeatureSelection:
    """Features ``rows`` (ilastik's order: GS, LoG, GGM, DoG, ST, HoG) at σ = 1.0 only."""
    m = np.zeros((6, 7), dtype=bool)
    m[list(rows), 2] = True
    return FeatureSelection(m, (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0))


def _grid(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.meshgrid(*(np.arange(n, dtype=np.float64) - n // 2,) * 3, indexing="ij")  # z, y, x


@pytest.mark.parametrize("rounding", ["exact", "muladd", "fast"])
def test_3d_hessian_eigenvalues_of_a_quadratic(rounding):
    # f = ½·pᵀAp has the constant Hessian A (kernels: sum 1, x² ↦ 2); away from the mirror
    # borders compute_features' 3-D Hessian eigenvalues are A's (float64 LAPACK)
    a = np.array([[0.8, 0.3, -0.2], [0.3, -0.5, 0.1], [-0.2, 0.1, 0.4]])  # x, y, z
    z, y, x = _grid(24)
    p = np.stack([x, y, z], -1)
    vol = 0.5 * np.einsum("...i,ij,...j->...", p, a, p) + 50.0
    sel = _one_feature(5)
    names = feature_names(sel, 1, 3)
    assert names == [f"Hessian of Gaussian Eigenvalues (σ=1.0) [{k}]" for k in range(3)]
    f = compute_features(vol, sel, axes="zyx", rounding=rounding)
    inner = f[9:15, 9:15, 9:15].reshape(-1, 3)
    want = np.linalg.eigvalsh(a)[::-1]
    np.testing.assert_allclose(inner, np.broadcast_to(want, inner.shape), atol=2e-3)
    # trace = Laplacian of Gaussian at the same σ, the same filters summed
    sel_l = _one_feature(1, 5)
    fl = compute_features(vol, sel_l, axes="zyx", rounding=rounding)
    np.testing.assert_allclose(fl[..., 1:].sum(-1), fl[..., 0], atol=2e-3 * np.abs(fl[..., 0]).max())


def test_3d_structure_tensor_of_a_ramp():
    # f = g·p: constant gradient g, so the structure tensor is g gᵀ (eigenvalues |g|², 0, 0)
    g = np.array([0.6, -0.3, 0.2])  # x, y, z
    z, y, x = _grid(24)
    vol = g[0] * x + g[1] * y + g[2] * z + 20.0
    sel = _one_feature(4)
    f = compute_features(vol, sel, axes="zyx", rounding="exact")
    inner = f[9:15, 9:15, 9:15].reshape(-1, 3)
    want = np.array([g @ g, 0.0, 0.0])
    np.testing.assert_allclose(inner, np.broadcast_to(want, inner.shape), atol=2e-3 * (g @ g))
    assert (np.diff(f, axis=-1) <= 0).all()
