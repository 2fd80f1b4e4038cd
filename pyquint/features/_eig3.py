"""Eigenvalues of symmetric 3×3 fields with fastfilters' float32 arithmetic (spec ilastik.md §1b).

ilastik ≥ 1.4 gets the eigenvalues of 3-D Hessians and structure tensors from fastfilters'
``fastfilters_linalg_ev3d`` (``src/library/linalg_avx2.c`` of ilastik's fastfilters fork,
unchanged since 2017). On x86-64 CPUs with AVX2 (the dispatch ilastik's builds take) it solves
the characteristic polynomial in closed form (Eberly's trigonometric formula, as vigra's
``symmetric3x3Eigenvalues``), eight voxels at a time, entirely in float32:

- overflow guard: the six entries are divided by the largest entry magnitude ``m`` (``m = 1``
  for a zero matrix) and the eigenvalues multiplied by ``m`` at the end;
- the coefficients ``c0 = det``, ``c1`` (sum of principal 2×2 minors), ``c2 = trace`` as
  left-to-right chains of float32 products and sums, then ``a/3 = min((c1 - c2·c2/3)/3, 0)``,
  ``-b/2 = (c0 + c2/3·(2·(c2/3)² - c1))/2`` and ``q = min((-b/2)² + (a/3)³, 0)``;
- ``angle = atan2(√-q, -b/2)/3`` with a polynomial ``atan2`` (degree-15 odd polynomial in
  ``s = min/max`` on ``[0, 1]``, octant fix-ups by ±π/2 and π, patches for zero arguments),
  and ``sin``/``cos`` of it with Cephes' ``sincosf`` (range reduction by π/4 in three parts,
  two short polynomials in ``x²``);
- ``r0 = c2/3 + 2μ·cos``, ``r1 = c2/3 - μ·(cos + √3·sin)``, ``r2 = c2/3 - μ·(cos - √3·sin)``
  with ``μ = √(-a/3)``, sorted by a min/max network into descending order.

The build ilastik ships compiles this file with ``-mavx2`` only (no ``-mfma``, no
``-Ofast``, ISO C): every product and sum is rounded to float32 separately, in source order.
The last ``n mod 8`` voxels of an array take fastfilters' scalar loop: the same formula in C
with a reciprocal instead of the division, ``double`` literals (some sums in double) and
``atan2``/``cos``/``sin`` from libm in double.

fastfilters passes the six fields as ``(zz, yz, xz, yy, xy, xx)`` to its ``(a00, a01, a02,
a11, a12, a22)``, where ``x`` is the fastest axis; :func:`eig3_fastfilters` takes them in the
same order, so the callers decide the permutation.

Two quirks are kept because ilastik's numbers have them: the ``atan2`` returns 0 (π for
``x = -0``), not π/2, for ``atan2(y > 0, ±0)`` (its zero test looks at the swapped arguments), so a field whose
``-b/2`` is exactly 0 while ``q < 0`` (e.g. ``diag(1, 0, -1)``) gets the eigenvalues of angle
0: ``(2μ, -μ, -μ)`` shifted by ``c2/3`` instead of ``(√3μ, 0, -√3μ)``; and float32 rounding
of ``c0 … q`` costs accuracy for nearly degenerate matrices (errors up to ~1e-3 of the largest
entry where two eigenvalues nearly coincide; ~1e-6 elsewhere), where a double solver is exact.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["eig3_fastfilters"]

_F = np.float32
_INV3 = _F(1.0 / 3.0)
_ROOT3 = np.sqrt(_F(3.0))  # _mm256_sqrt_ps of 3.0f
_TWO, _HALF, _ZERO, _ONE = _F(2.0), _F(0.5), _F(0.0), _F(1.0)
# atan2: odd polynomial coefficients (highest first), π, π/2 as float32
_AT = tuple(_F(c) for c in (
    0.00282363896258175373077393, -0.0159569028764963150024414, 0.0425049886107444763183594,
    -0.0748900920152664184570312, 0.106347933411598205566406, -0.142027363181114196777344,
    0.199926957488059997558594, -0.333331018686294555664062,
))
_PI, _PI2 = _F(math.pi), _F(math.pi / 2.0)
# Cephes sincosf: 4/π, the three parts of π/4 (negated), sine and cosine coefficients
_FOPI = _F(1.27323954473516)
_DP1, _DP2, _DP3 = _F(-0.78515625), _F(-2.4187564849853515625e-4), _F(-3.77489497744594108e-8)
_S0, _S1, _S2 = _F(-1.9515295891e-4), _F(8.3321608736e-3), _F(-1.6666654611e-1)
_C0, _C1, _C2 = _F(2.443315711809948e-005), _F(-1.388731625493765e-003), _F(4.166664568298827e-002)


@njit(cache=True, nogil=True)
def _vmin(a, b):  # pragma: no cover - compiled
    """``_mm256_min_ps``: ``a < b ? a : b`` (the second operand on ties and NaN)."""
    return a if a < b else b


@njit(cache=True, nogil=True)
def _vmax(a, b):  # pragma: no cover - compiled
    """``_mm256_max_ps``: ``a > b ? a : b``."""
    return a if a > b else b


@njit(cache=True, nogil=True)
def _atan2_poly(y, x):  # pragma: no cover - compiled
    """fastfilters' float32 ``atan2_256_ps(y, x)``, one lane."""
    neg_x = math.copysign(1.0, x) < 0.0  # sign bits, -0 included
    neg_y = math.copysign(1.0, y) < 0.0
    ax, ay = abs(x), abs(y)
    q = -_TWO if neg_x else _ZERO
    if ay > ax:  # fold to |s| <= 1: atan(y/x) = π/2 - atan(x/y)
        xs, ys = ay, -ax
        q = q + _ONE
    else:
        xs, ys = ax, ay
    if xs == 0.0:
        t = _PI2
    else:
        s = ys / xs
        t = s * s
        u = _AT[0]
        u = t * u + _AT[1]
        u = t * u + _AT[2]
        u = t * u + _AT[3]
        u = t * u + _AT[4]
        u = t * u + _AT[5]
        u = t * u + _AT[6]
        u = t * u + _AT[7]
        t = (t * s) * u + s
        t = q * _PI2 + t
        if neg_x:
            t = -t
    if ys == 0.0:  # on the swapped value: atan2(y > 0, 0) comes out 0 (or π for x = -0)
        t = _PI if neg_x else _ZERO
    return -t if neg_y else t


@njit(cache=True, nogil=True)
def _sincos_poly(x):  # pragma: no cover - compiled
    """Cephes ``sincosf`` as fastfilters' ``sincos256_ps``, one lane: ``(sin x, cos x)``."""
    neg = math.copysign(1.0, x) < 0.0
    ax = abs(x)
    j = np.int32(ax * _FOPI)  # truncation (cvttps)
    j = (j + 1) & ~1
    y = np.float32(j)
    sin_flip = (j & 4) != 0
    cos_flip = ((j - 2) & 4) == 0
    use_sin_poly = (j & 2) == 0
    r = ((ax + y * _DP1) + y * _DP2) + y * _DP3
    z = r * r
    pc = _C0 * z
    pc = pc + _C1
    pc = pc * z
    pc = pc + _C2
    pc = pc * z
    pc = pc * z
    pc = pc - z * _HALF
    pc = pc + _ONE
    ps = _S0 * z
    ps = ps + _S1
    ps = ps * z
    ps = ps + _S2
    ps = ps * z
    ps = ps * r
    ps = ps + r
    # the vector code selects with masks and adds the zeroed other half: x + 0
    if use_sin_poly:
        sn, cs = ps + _ZERO, pc + _ZERO
    else:
        sn, cs = pc + _ZERO, ps + _ZERO
    if neg != sin_flip:
        sn = -sn
    if cos_flip:
        cs = -cs
    return sn, cs


@njit(cache=True, nogil=True)
def _max_abs(a00, a01, a02, a11, a12, a22):  # pragma: no cover - compiled
    """The largest entry magnitude, in fastfilters' pairing order."""
    m0 = _vmax(abs(a00), abs(a01))
    m1 = _vmax(abs(a02), abs(a11))
    m2 = _vmax(abs(a12), abs(a22))
    return _vmax(_vmax(m0, m1), m2)


@njit(cache=True, nogil=True)
def _lane(a00, a01, a02, a11, a12, a22):  # pragma: no cover - compiled
    """One voxel of the AVX2 loop, float32 throughout: ``(largest, middle, smallest)``."""
    # overflow guard: solve for the matrix divided by its largest |entry| (1 for a zero matrix)
    m = _max_abs(a00, a01, a02, a11, a12, a22)
    if m == 0.0:
        m = _ONE
    a00, a01, a02, a11, a12, a22 = a00 / m, a01 / m, a02 / m, a11 / m, a12 / m, a22 / m
    c0 = ((((a00 * a11) * a22 + ((_TWO * a01) * a02) * a12) - (a00 * a12) * a12)
          - (a11 * a02) * a02) - (a22 * a01) * a01
    c1 = ((((a00 * a11 - a01 * a01) + a00 * a22) - a02 * a02) + a11 * a22) - a12 * a12
    c2 = (a00 + a11) + a22
    c2d3 = c2 * _INV3
    ad3 = _vmin((c1 - c2 * c2d3) * _INV3, _ZERO)
    mbd2 = _HALF * (c0 + c2d3 * ((_TWO * c2d3) * c2d3 - c1))
    q = _vmin(mbd2 * mbd2 + (ad3 * ad3) * ad3, _ZERO)
    mag = np.sqrt(-ad3)
    angle = _atan2_poly(np.sqrt(-q), mbd2) * _INV3
    sn, cs = _sincos_poly(angle)
    r0 = c2d3 + (_TWO * mag) * cs
    r1 = c2d3 - mag * (cs + _ROOT3 * sn)
    r2 = c2d3 - mag * (cs - _ROOT3 * sn)
    lo = _vmin(r0, r1)
    hi = _vmax(r0, r1)
    smallest = _vmin(lo, r2)
    t = _vmax(lo, r2)
    return _vmax(hi, t) * m, _vmin(hi, t) * m, smallest * m


@njit(cache=True, nogil=True)
def _scalar(a00, a01, a02, a11, a12, a22):  # pragma: no cover - compiled
    """fastfilters' scalar tail loop: C float variables, ``double`` literals and libm."""
    m = _max_abs(a00, a01, a02, a11, a12, a22)
    if m == 0.0:
        return _ZERO, _ZERO, _ZERO
    inv = _ONE / m  # scaled by a reciprocal here, by a division in the vector loop
    a00, a01, a02, a11, a12, a22 = a00 * inv, a01 * inv, a02 * inv, a11 * inv, a12 * inv, a22 * inv
    # float products, promoted where a double literal or a double partial sum enters
    c0 = np.float32(np.float64(a00 * a11 * a22) + 2.0 * np.float64(a01) * np.float64(a02) * np.float64(a12)
                    - np.float64(a00 * a12 * a12) - np.float64(a11 * a02 * a02)
                    - np.float64(a22 * a01 * a01))
    c1 = a00 * a11 - a01 * a01 + a00 * a22 - a02 * a02 + a11 * a22 - a12 * a12
    c2 = a00 + a11 + a22
    c2d3 = c2 * _INV3
    ad3 = (c1 - c2 * c2d3) * _INV3
    if ad3 > 0.0:
        ad3 = _ZERO
    e = np.float64(c2d3)
    mbd2 = np.float32(0.5 * (np.float64(c0) + e * (2.0 * e * e - np.float64(c1))))
    q = mbd2 * mbd2 + ad3 * ad3 * ad3
    if q > 0.0:
        q = _ZERO
    mag = np.float32(math.sqrt(-np.float64(ad3)))
    angle = np.float32(math.atan2(math.sqrt(-np.float64(q)), np.float64(mbd2)) * np.float64(_INV3))
    cs = np.float32(math.cos(np.float64(angle)))
    sn = np.float32(math.sin(np.float64(angle)))
    r0 = np.float32(e + 2.0 * np.float64(mag) * np.float64(cs))
    r1 = c2d3 - mag * (cs + _ROOT3 * sn)
    r2 = c2d3 - mag * (cs - _ROOT3 * sn)
    if r0 < r1:
        r0, r1 = r1, r0
    if r0 < r2:
        r0, r2 = r2, r0
    if r1 < r2:
        r1, r2 = r2, r1
    return r0 * m, r1 * m, r2 * m


@njit(cache=True, nogil=True)
def _ev3d(a00, a01, a02, a11, a12, a22, e0, e1, e2):  # pragma: no cover - compiled
    n = a00.shape[0]
    vec_end = n & ~7
    for i in range(vec_end):
        e0[i], e1[i], e2[i] = _lane(a00[i], a01[i], a02[i], a11[i], a12[i], a22[i])
    for i in range(vec_end, n):
        e0[i], e1[i], e2[i] = _scalar(a00[i], a01[i], a02[i], a11[i], a12[i], a22[i])


def eig3_fastfilters(
    a00: np.ndarray, a01: np.ndarray, a02: np.ndarray,
    a11: np.ndarray, a12: np.ndarray, a22: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigenvalues of the symmetric matrices ``[[a00, a01, a02], [a01, a11, a12], [a02, a12, a22]]``.

    Bit for bit as fastfilters' ``fastfilters_linalg_ev3d`` on an AVX2 CPU, for arrays that
    fastfilters would be given whole (the scalar tail is the last ``size mod 8`` elements in
    C order).

    Parameters
    ----------
    a00, a01, a02, a11, a12, a22 : ndarray
        The six distinct entries, all of one shape; cast to float32.

    Returns
    -------
    tuple of three float32 ndarrays
        Largest, middle and smallest eigenvalue, each of the input shape.
    """
    fields = [np.ascontiguousarray(a, dtype=np.float32) for a in (a00, a01, a02, a11, a12, a22)]
    shape = fields[0].shape
    if any(f.shape != shape for f in fields):
        raise ValueError("eig3_fastfilters: the six fields must have one shape")
    flat = [f.reshape(-1) for f in fields]
    out = [np.empty(flat[0].shape, dtype=np.float32) for _ in range(3)]
    _ev3d(*flat, *out)
    return tuple(o.reshape(shape) for o in out)  # type: ignore[return-value]
