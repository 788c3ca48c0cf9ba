"""Pairwise-distance (KDE) bounds on the entropy of a Gaussian mixture, in nats.

Kolchinsky & Tracey (2017), "Estimating mixture entropy with pairwise distances",
Entropy 19(7):361, eqs. (9)-(10) and section 4; used for the information plane by
Saxe et al. (2018), "On the information bottleneck theory of deep learning", ICLR.

Model: a layer's output T plus noise Z ~ N(0, s2 I_d), with X uniform over the N
probe samples. Then T + Z is the Gaussian mixture (1/N) sum_i N(t_i, s2 I), and
H(T+Z | X) = d/2 ln(2 pi e s2). With D_ij = ||t_i - t_j||^2 the pairwise bounds are

    upper (KL):            H <= d/2 ln(2 pi e s2) - (1/N) sum_i ln (1/N) sum_j exp(-D_ij / (2 s2))
    lower (Bhattacharyya): H >= d/2 ln(2 pi e s2) - (1/N) sum_i ln (1/N) sum_j exp(-D_ij / (8 s2))

(KL(p_i||p_j) = D_ij / (2 s2) and the Bhattacharyya distance BD(p_i, p_j) = D_ij / (8 s2)
for equal isotropic covariances). Hence the bounds on I(X; T+Z) = H(T+Z) - H(T+Z|X):

    I_upper = ln N - (1/N) sum_i ln S^KL_i,   I_lower = ln N - (1/N) sum_i ln S^BD_i,

with S_i = sum_j exp(-D_ij * c); both lie in [0, ln N]. For the labels Y,
I(T;Y) = H(T) - sum_y p(y) H(T | Y=y) is a DIFFERENCE of two bounds, so its KL and
BD versions are estimates, not bounds: they are called `i_ty_kl` and `i_ty_bd`.

Computation: one blocked pass over the upper triangle of the pairwise squared-distance
matrix (||a||^2 + ||b||^2 - 2 a.b from a BLAS matrix product on centred data, clamped
at 0, exact 0 on the diagonal) serves H(T), every class-conditional H(T|Y=y) (rows are
sorted by class, so the row sums of exp(-c D) split by the column's class are segment
sums) and every noise variance. float32 input is computed in float32
(float64 input in float64); the per-row sums are accumulated in float64. Each row
sum contains its own term exp(0) = 1, so no max-shift is needed: the exponent is
clamped at -87 (float32; -700 for float64), which changes a sum >= 1 by less than
N e^-87 (about 1e-34 relative). The KL kernel exp(-D/(2 s2)) is the 4th power of the
Bhattacharyya kernel exp(-D/(8 s2)), so when both are wanted one exp serves both. The
blocks are shared out to worker threads (one per CPU by default), each with
single-threaded kernels and its own buffers. Memory is O(workers * chunk_size^2 + N d),
never N x N.

On a torch device (`device="cuda"`, or `backend="torch"` on the CPU, which runs the very same
code) the pass is `_pairwise_sums_torch`: the same augmented rows, one matrix product per
block of full rows (both halves of the symmetric matrix: the device has the arithmetic to
spare and the code stays short), the same clamped exponent, exp(0) = 1 set exactly on the
diagonal, and the row sums split by class as a float64 product with the one-hot class matrix
(so the sums are accumulated in float64 here too). TF32 is off for its float32 products
(`_device.ieee_float32`): the numbers match the CPU path's to float rounding (tests: float64
within 1e-9 relative; float32 within max(1e-4 |I|, 1e-3 bits)). Memory: one block of
about `_TORCH_BLOCK_BYTES` + O(N d) on the device.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._device import ieee_float32, is_cpu, torch_device
from ._threads import single_threaded_kernels, workers as _workers
from ._validation import as_2d_float, as_labels, check_same_length, noise_variances
from .errors import EstimatorInputError
from .interface import NOISE_VAR, Column, Estimator, PlanePoint

# torch is imported inside the functions that use it (deferred on purpose): the registry loads
# this module for `ibcli --help` and the CLI's options, which start without torch.

__all__ = [
    "KDEEntropyBounds",
    "KDEPlaneResult",
    "kde_entropy_bounds",
    "kde_entropy",
    "kde_information_plane",
    "DEFAULT_CHUNK_SIZE",
    "KDEEstimator",
]

DEFAULT_CHUNK_SIZE = 1024
BACKENDS = ("auto", "numpy", "torch")
# Bytes of one block of rows of the torch path (the products, the kernel and its float64 copy).
_TORCH_BLOCK_BYTES = {"cuda": 2 * 2**30, "cpu": 64 * 2**20}
_LOG_2PI_E = math.log(2.0 * math.pi * math.e)


@dataclass(frozen=True)
class KDEEntropyBounds:
    """Bounds on H(T+Z), Z ~ N(0, noise_var I), in nats (None: not computed)."""

    noise_var: float
    upper: float | None  # KL pairwise bound (Kolchinsky & Tracey 2017, eq. 10 with KL)
    lower: float | None  # Bhattacharyya pairwise bound


@dataclass(frozen=True)
class KDEPlaneResult:
    """One layer's information-plane values at one noise variance, in nats.

    i_xt_upper >= I(X; T+Z) >= i_xt_lower are true bounds. i_ty_kl and i_ty_bd are
    ESTIMATES of I(T+Z; Y) (differences of two bounds), not bounds.
    h_upper / h_lower bound H(T+Z); h_cond is d/2 ln(2 pi e s2) = H(T+Z | X).
    """

    noise_var: float
    i_xt_upper: float
    i_xt_lower: float
    i_ty_kl: float
    i_ty_bd: float
    h_upper: float
    h_lower: float
    h_cond: float


# --------------------------------------------------------------------------- helpers
def _chunk(chunk_size) -> int:
    if chunk_size is None:
        return DEFAULT_CHUNK_SIZE
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size <= 0:
        raise EstimatorInputError(f"chunk_size must be a positive integer; got {chunk_size!r}")
    return int(chunk_size)


def _pairwise_sums(t: np.ndarray, scales: Sequence[float], codes: np.ndarray | None,
                   chunk_size: int, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Row sums of exp(-c ||t_i - t_j||^2) over all j and over j in i's class.

    Returns (full, own), each shape (len(scales), N), float64:
    full[s, i] = sum_j exp(-scales[s] D_ij), own[s, i] = the same over j with
    codes[j] == codes[i] (own = full when codes is None).

    t: (N, d) float32 or float64 (computation stays in that dtype). One pass over
    the upper-triangular blocks of the distance matrix, shared out to `workers`
    threads (each with its own buffers and accumulators; kernels single-threaded).
    The matrix product yields -c0 D directly from augmented rows
    a' = [sqrt(2 c0) a, -c0 |a|^2, 1], b' = [sqrt(2 c0) b, 1, -c0 |b|^2]
    (a'.b' = -c0 ||a - b||^2), computed by NumPy's BLAS; exp runs in torch on the
    same memory. Rows are sorted by class first, so each class is a contiguous run
    of rows and of columns and the class sums are plain segment sums.
    Memory: 2 chunk_size^2 values per worker + O(N d).
    """
    import torch

    n, d = t.shape
    dt = t.dtype
    floor = -87.0 if dt == np.float32 else -700.0  # keeps exp() out of denormals (slow)
    order = None
    if codes is not None and np.any(codes != codes[0]):
        order = np.argsort(codes, kind="stable")
        t = t[order]
        sorted_codes = codes[order]
        seg_bounds = np.concatenate([[0], np.flatnonzero(np.diff(sorted_codes)) + 1, [n]])
        seg_class = sorted_codes[seg_bounds[:-1]]
    # Centre (in float64) to cut the cancellation in ||a||^2 + ||b||^2 - 2 a.b.
    tc = t.astype(np.float64) - t.mean(axis=0, dtype=np.float64)
    sq = np.einsum("ij,ij->i", tc, tc)
    c0 = float(max(scales))
    if dt == np.float32 and c0 * (float(sq.max()) + 1.0) > 1e30:
        c0 = 1.0  # keep the augmented columns inside float32's range
    width = -(-(d + 2) // 16) * 16  # pad to a multiple of 16 columns for BLAS
    left = np.zeros((n, width), dtype=dt)
    right = np.zeros((n, width), dtype=dt)
    left[:, :d] = tc * math.sqrt(2.0 * c0)
    right[:, :d] = left[:, :d]
    left[:, d] = -c0 * sq
    left[:, d + 1] = 1.0
    right[:, d] = 1.0
    right[:, d + 1] = -c0 * sq
    del tc

    def segments(a: int, b: int) -> list[tuple[int, int, int]]:
        """Class runs inside rows/columns [a, b) as (start, stop, class), relative to a."""
        if order is None:
            return [(0, b - a, 0)]
        lo = np.searchsorted(seg_bounds, a, side="right") - 1
        hi = np.searchsorted(seg_bounds, b, side="left")
        cuts = np.clip(seg_bounds[lo:hi + 1], a, b) - a
        return [(int(cuts[m]), int(cuts[m + 1]), int(seg_class[lo + m])) for m in range(hi - lo)]

    cs = min(chunk_size, n)
    starts = list(range(0, n, cs))
    pairs = [(i0, j0) for i0 in starts for j0 in starts if j0 >= i0]
    segs = {a: segments(a, min(a + cs, n)) for a in starts}
    n_workers = max(1, min(workers, len(pairs)))
    n_scales = len(scales)

    # A KL scale right before its Bhattacharyya scale (c_KL = 4 c_BD, same s2) is derived
    # as exp(-c_BD D)^4 by two squarings instead of a second exp. exp(-c_BD D) is first
    # raised to at least pow_floor, so the 4th power stays a normal float: a term it
    # lifts was below e^floor anyway (the same floor every exponent gets).
    pow_floor = math.exp(floor / 4.0)
    derived = [i + 1 < n_scales and scales[i] == 4.0 * scales[i + 1] for i in range(n_scales)]
    need_e = n_scales > 1
    need_k = any(derived[:-2]) if n_scales > 2 else False

    def run(pair_iter) -> tuple[np.ndarray, np.ndarray]:
        full = np.zeros((n_scales, n), dtype=np.float64)
        own = np.zeros((n_scales, n), dtype=np.float64) if order is not None else full
        g_buf = np.empty(cs * cs, dtype=dt)
        e_buf = np.empty(cs * cs if need_e else 0, dtype=dt)
        k_buf = np.empty(cs * cs if need_k else 0, dtype=dt)
        for i0, j0 in pair_iter:
            i1, j1 = min(i0 + cs, n), min(j0 + cs, n)
            bi, bj = i1 - i0, j1 - j0
            row_segs, col_segs = segs[i0], segs[j0]
            g = g_buf[: bi * bj].reshape(bi, bj)
            np.matmul(left[i0:i1], right[j0:j1].T, out=g)  # -c0 * D for the block
            diag = i0 == j0

            def kernel(c, out):
                """out = exp(max(-c D, floor)), from g = -c0 D (out may be g)."""
                ratio = c / c0
                if ratio != 1.0:
                    np.multiply(g, ratio, out=out)
                    np.clip(out, floor, 0.0, out=out)
                else:
                    np.clip(g, floor, 0.0, out=out)
                torch.from_numpy(out).exp_()
                if diag:
                    np.fill_diagonal(out, 1.0)  # exp(-c * 0), exactly

            s = 0
            while s < n_scales:
                if derived[s]:  # (KL, BD) pair
                    last = s + 2 >= n_scales  # g is not needed after this pair
                    e = e_buf[: bi * bj].reshape(bi, bj)
                    kernel(scales[s + 1], e)
                    accumulate(s + 1, e, full, own, i0, i1, j0, j1, row_segs, col_segs, diag)
                    k = g if last else k_buf[: bi * bj].reshape(bi, bj)
                    np.maximum(e, pow_floor, out=k)
                    np.square(k, out=k)
                    np.square(k, out=k)
                    accumulate(s, k, full, own, i0, i1, j0, j1, row_segs, col_segs, diag)
                    s += 2
                else:
                    e = g if s == n_scales - 1 else e_buf[: bi * bj].reshape(bi, bj)
                    kernel(scales[s], e)
                    accumulate(s, e, full, own, i0, i1, j0, j1, row_segs, col_segs, diag)
                    s += 1
        return full, own

    def accumulate(s, e, full, own, i0, i1, j0, j1, row_segs, col_segs, diag) -> None:
        """Add block e = exp(-c_s D) of rows [i0, i1) x columns [j0, j1) to the row
        sums (and, off the diagonal, the mirrored block's row sums = e's column sums)."""
        if order is None:
            full[s, i0:i1] += e.sum(axis=1)
            if not diag:
                full[s, j0:j1] += e.sum(axis=0)
            return
        # rows of this block: sums over each column run of one class
        by_col_class = np.add.reduceat(e, [a for a, _, _ in col_segs], axis=1)
        full[s, i0:i1] += by_col_class.sum(axis=1)
        col_index = {cls: m for m, (_, _, cls) in enumerate(col_segs)}
        for a, b, cls in row_segs:
            m = col_index.get(cls)
            if m is not None:
                own[s, i0 + a:i0 + b] += by_col_class[a:b, m]
        if diag:
            return
        # columns of this block (the mirrored pairs): all rows, and the own class's rows
        full[s, j0:j1] += e.sum(axis=0)
        row_index = {cls: (a, b) for a, b, cls in row_segs}
        for a, b, cls in col_segs:
            r = row_index.get(cls)
            if r is not None:
                own[s, j0 + a:j0 + b] += e[r[0]:r[1], a:b].sum(axis=0)

    if n_workers == 1:
        full, own = run(pairs)
    else:  # static striping: each worker's share (and so the float64 sums) is repeatable
        with single_threaded_kernels(), ThreadPoolExecutor(n_workers) as pool:
            parts = list(pool.map(lambda w: run(pairs[w::n_workers]), range(n_workers)))
        full = np.sum([p[0] for p in parts], axis=0)
        own = np.sum([p[1] for p in parts], axis=0) if order is not None else full
    if order is not None:
        full_u, own_u = np.empty_like(full), np.empty_like(own)
        full_u[:, order] = full
        own_u[:, order] = own
        full, own = full_u, own_u
    return full, own


def _augmented(t: np.ndarray, scales: Sequence[float]) -> tuple[np.ndarray, np.ndarray, float]:
    """(left, right, c0): rows a' = [sqrt(2 c0) a, -c0 |a|^2, 1] and b' = [sqrt(2 c0) b, 1,
    -c0 |b|^2] of the centred t in t's dtype, so that a'.b' = -c0 ||a - b||^2 (as in
    `_pairwise_sums`, without its BLAS padding)."""
    n, d = t.shape
    tc = t.astype(np.float64) - t.mean(axis=0, dtype=np.float64)  # centred: less cancellation
    sq = np.einsum("ij,ij->i", tc, tc)
    c0 = float(max(scales))
    if t.dtype == np.float32 and c0 * (float(sq.max()) + 1.0) > 1e30:
        c0 = 1.0  # keep the augmented columns inside float32's range
    left = np.empty((n, d + 2), dtype=t.dtype)
    right = np.empty((n, d + 2), dtype=t.dtype)
    left[:, :d] = tc * math.sqrt(2.0 * c0)
    right[:, :d] = left[:, :d]
    left[:, d], left[:, d + 1] = -c0 * sq, 1.0
    right[:, d], right[:, d + 1] = 1.0, -c0 * sq
    return left, right, c0


def _pairwise_sums_torch(t: np.ndarray, scales: Sequence[float], codes: np.ndarray | None,
                         dev, block_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`_pairwise_sums` in torch on device `dev`: the same (full, own), each (len(scales), N)
    float64 NumPy arrays, row sums of exp(-c ||t_i - t_j||^2) over all j and over j in i's class.

    t: (N, d) float32 or float64 (computed in that dtype, sums in float64). Per block of rows,
    one product of augmented rows gives -c0 D against every column; per scale, exp of the
    clamped exponent (diagonal set to exp(0) = 1 exactly), then the block times the one-hot
    class matrix in float64 gives every row's sum per class (own = the row's class, full = all).
    Memory: about block_bytes (default `_TORCH_BLOCK_BYTES` of the device's kind) + O(N d).
    """
    import torch

    n, d = t.shape
    floor = -87.0 if t.dtype == np.float32 else -700.0  # keeps exp() out of denormals
    left, right, c0 = _augmented(t, scales)
    lt, rt = torch.from_numpy(left).to(dev), torch.from_numpy(right).to(dev)
    split = codes is not None and bool(np.any(codes != codes[0]))
    if split:
        code_t = torch.from_numpy(np.ascontiguousarray(codes, dtype=np.int64)).to(dev)
        onehot = torch.zeros((n, int(codes.max()) + 1), dtype=torch.float64, device=dev)
        onehot[torch.arange(n, device=dev), code_t] = 1.0
    full = torch.empty((len(scales), n), dtype=torch.float64, device=dev)
    own = torch.empty_like(full) if split else full
    budget = block_bytes or _TORCH_BLOCK_BYTES.get(dev.type, _TORCH_BLOCK_BYTES["cpu"])
    rows = max(1, min(n, budget // (n * (2 * t.itemsize + 8))))
    ctx = ieee_float32() if dev.type == "cuda" else nullcontext()
    with torch.no_grad(), ctx:
        for i0 in range(0, n, rows):
            i1 = min(n, i0 + rows)
            g = lt[i0:i1] @ rt.T  # -c0 D for rows [i0, i1) x all columns
            diag = (torch.arange(i1 - i0, device=dev), torch.arange(i0, i1, device=dev))
            for s, c in enumerate(scales):
                e = g * (c / c0) if c != c0 else g.clone()
                e.clamp_(floor, 0.0).exp_()
                e[diag] = 1.0  # exp(-c * 0), exactly
                if split:
                    by_class = e.to(torch.float64) @ onehot  # (rows, classes)
                    full[s, i0:i1] = by_class.sum(dim=1)
                    own[s, i0:i1] = by_class.gather(1, code_t[i0:i1, None])[:, 0]
                else:
                    full[s, i0:i1] = e.sum(dim=1, dtype=torch.float64)
                del e
            del g
    full_np = full.cpu().numpy()
    return full_np, (own.cpu().numpy() if split else full_np)


def _sums(arr: np.ndarray, scales, codes, chunk_size: int, workers, device, backend):
    """The row sums by the kernel `backend` picks ("auto": NumPy on the CPU, torch elsewhere)."""
    if backend not in BACKENDS:
        raise EstimatorInputError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    n_workers = _workers(workers)
    dev = torch_device(device) if not is_cpu(device) else None
    if backend == "numpy" and dev is not None:
        raise EstimatorInputError(f"backend 'numpy' runs on the CPU only; got device {device!r}")
    if backend == "torch" or dev is not None:
        return _pairwise_sums_torch(arr, scales, codes, dev if dev is not None else torch_device("cpu"))
    return _pairwise_sums(arr, scales, codes, chunk_size, n_workers)


def _prepare_t(t) -> np.ndarray:
    return as_2d_float(t, "t", keep_float32=True)


# --------------------------------------------------------------------------- public
def kde_entropy_bounds(t, noise_vars=(0.1,), chunk_size: int | None = None,
                       which: str = "both", workers: int | None = None, *, device: str = "cpu",
                       backend: str = "auto") -> list[KDEEntropyBounds]:
    """Pairwise-distance bounds on H(T+Z) for each noise variance, in nats.

    T+Z is the mixture (1/N) sum_i N(t_i, s2 I_d) (X uniform over the N rows);
    upper = KL bound, lower = Bhattacharyya bound, Kolchinsky & Tracey (2017)
    eq. (10): H <= / >= d/2 ln(2 pi e s2) - (1/N) sum_i ln (1/N) sum_j
    exp(-||t_i - t_j||^2 / (2 s2)) (KL) or exp(-||t_i - t_j||^2 / (8 s2)) (BD).

    Parameters
    ----------
    t : array-like, shape (N, d) (or (N,)), float32 (computed in float32) or
        float64 (computed in float64); finite.
    noise_vars : float or sequence of floats > 0
        Noise variances s2 (in T's units squared); all share one distance pass.
    chunk_size : int, optional
        Rows per block of the pairwise pass (default 1024); memory is about
        2 * chunk_size^2 values of t's dtype per worker.
    which : {"both", "upper", "lower"}
        Which bounds to compute (the other is None); "upper" halves the
        exponentials.
    workers : int, optional
        Threads that share the blocks (default: the CPUs this process may use);
        while they run, BLAS and torch kernels are single-threaded.
    device : str, default "cpu"
        Torch device of the pass: "cpu", or "cuda" ("cuda:k") for the torch kernel
        on that GPU (module notes; chunk_size and workers then do not apply).
    backend : {"auto", "numpy", "torch"}, default "auto"
        "auto": NumPy's BLAS with worker threads on the CPU, torch on any other
        device; "torch" on the CPU runs the GPU's code there (to check it).

    Returns
    -------
    list of KDEEntropyBounds(noise_var, upper, lower), one per noise variance,
    in the order given. Cost O(N^2 d) (half a BLAS N x N x d product).

    Raises
    ------
    EstimatorInputError
        NaN/inf, bad shape, non-positive noise variance, bad chunk_size /
        which / workers / backend, unknown or unavailable device.
    """
    arr = _prepare_t(t)
    nv = noise_variances(noise_vars)
    cs = _chunk(chunk_size)
    if which not in ("both", "upper", "lower"):
        raise EstimatorInputError(f"which must be 'both', 'upper' or 'lower'; got {which!r}")
    n, d = arr.shape
    scales, slots = [], []
    for s2 in nv:
        slot = {}
        if which in ("both", "upper"):
            slot["upper"] = len(scales)
            scales.append(1.0 / (2.0 * s2))
        if which in ("both", "lower"):
            slot["lower"] = len(scales)
            scales.append(1.0 / (8.0 * s2))
        slots.append(slot)
    sums, _ = _sums(arr, scales, None, cs, workers, device, backend)
    log_n = math.log(n)
    out = []
    for s2, slot in zip(nv, slots):
        h_cond = 0.5 * d * (_LOG_2PI_E + math.log(s2))
        vals = {}
        for key, idx in slot.items():
            i_xt = log_n - float(np.mean(np.log(sums[idx])))
            vals[key] = h_cond + min(max(i_xt, 0.0), log_n)
        out.append(KDEEntropyBounds(s2, vals.get("upper"), vals.get("lower")))
    return out


def kde_entropy(t, noise_var: float = 0.1, bound: str = "upper", chunk_size: int | None = None,
                workers: int | None = None, *, device: str = "cpu", backend: str = "auto") -> float:
    """One pairwise bound on H(T+Z), Z ~ N(0, noise_var I), in nats.

    See `kde_entropy_bounds` (also for device and backend). bound: "upper" (KL,
    default) or "lower" (Bhattacharyya). t: (N, d) or (N,) float array.

    Raises
    ------
    EstimatorInputError
        as `kde_entropy_bounds`; bound not "upper"/"lower".
    """
    if bound not in ("upper", "lower"):
        raise EstimatorInputError(f"bound must be 'upper' or 'lower'; got {bound!r}")
    res = kde_entropy_bounds(t, noise_var, chunk_size=chunk_size, which=bound, workers=workers, device=device,
                             backend=backend)[0]
    return res.upper if bound == "upper" else res.lower


def kde_information_plane(t, labels, noise_vars=(0.1,), chunk_size: int | None = None,
                          workers: int | None = None, *, device: str = "cpu",
                          backend: str = "auto") -> list[KDEPlaneResult]:
    """I(X; T+Z) bounds and I(T+Z; Y) estimates of one layer, per noise variance (nats).

    Saxe et al. (2018) with the bounds of Kolchinsky & Tracey (2017):
    I(X;T+Z) = H(T+Z) - d/2 ln(2 pi e s2), bounded above by the KL and below by
    the Bhattacharyya pairwise bound (both in [0, ln N]); I(T+Z;Y) = H(T+Z) -
    sum_y p(y) H(T+Z | Y=y) where each class-conditional entropy is the same
    bound on the class's own mixture, giving the estimates i_ty_kl and i_ty_bd
    (differences of bounds, so NOT bounds).

    Parameters
    ----------
    t : array-like, shape (N, d) (or (N,)), float32 or float64, finite
        The layer's activations on the N probe samples (X uniform over them).
    labels : array-like, shape (N,), class labels (ints or integer-valued floats)
    noise_vars : float or sequence of floats > 0
        Noise variances s2; one result each, all from ONE pairwise pass.
    chunk_size : int, optional (default 1024), see `kde_entropy_bounds`.
    workers : int, optional (default: all usable CPUs), see `kde_entropy_bounds`.
    device : str, default "cpu"; backend : "auto" | "numpy" | "torch", see
        `kde_entropy_bounds` ("cuda": the torch kernel on the GPU).

    Returns
    -------
    list of KDEPlaneResult, one per noise variance (in the given order).
    N = 1 gives zeros.

    Raises
    ------
    EstimatorInputError
        lengths differ, NaN/inf, wrong shape, bad noise variance, bad backend,
        unknown or unavailable device.
    """
    arr = _prepare_t(t)
    check_same_length(("t", arr), ("labels", labels))
    y = as_labels(labels, "labels")
    nv = noise_variances(noise_vars)
    cs = _chunk(chunk_size)
    n, d = arr.shape
    n_classes = int(y.max()) + 1
    scales = []
    for s2 in nv:
        scales += [1.0 / (2.0 * s2), 1.0 / (8.0 * s2)]
    full, own = _sums(arr, scales, y, cs, workers, device, backend)  # (S, N) each
    log_n = math.log(n)
    class_n = np.bincount(y, minlength=n_classes).astype(np.float64)
    log_ny = np.log(class_n)[y]  # ln N_{y_i}, per row
    out = []
    for k, s2 in enumerate(nv):
        h_cond = 0.5 * d * (_LOG_2PI_E + math.log(s2))
        res = {}
        for name, idx in (("kl", 2 * k), ("bd", 2 * k + 1)):
            i_xt = min(max(log_n - float(np.mean(np.log(full[idx]))), 0.0), log_n)
            # sum_y p(y) [H(T|Y=y) - h_cond] = (1/N) sum_i (ln N_{y_i} - ln S_{i, y_i})
            h_t_given_y = float(np.mean(log_ny - np.log(own[idx])))
            res[name] = (i_xt, i_xt - h_t_given_y)
        out.append(KDEPlaneResult(
            noise_var=s2,
            i_xt_upper=res["kl"][0],
            i_xt_lower=res["bd"][0],
            i_ty_kl=res["kl"][1],
            i_ty_bd=res["bd"][1],
            h_upper=h_cond + res["kl"][0],
            h_lower=h_cond + res["bd"][0],
            h_cond=h_cond,
        ))
    return out


# --------------------------------------------------------------------------- adapter
class KDEEstimator(Estimator):
    """`ibcli mi --method kde`: KL upper bound on I(X; T+Z) in i_xt_bits, Bhattacharyya lower
    bound in i_xt_lower_bits; the KL and BD *estimates* of I(T+Z; Y) in i_ty_bits / i_ty_bd_bits."""

    name = "kde"
    title = "KDE pairwise-distance bounds on the noisy layer T+Z (Kolchinsky & Tracey 2017; Saxe et al. 2018)"
    params = (NOISE_VAR,)
    columns = (
        Column("i_xt_lower_bits", "float64", "kde: Bhattacharyya lower bound on I(X;T+Z) (i_xt_bits is the KL upper bound)", nats=True),
        Column("i_ty_bd_bits", "float64", "kde: Bhattacharyya estimate of I(T+Z;Y), a difference of bounds, not a bound", nats=True),
    )
    uses_device = True

    def points(self, t, labels, *, x=None, params, context=None, seed=0, device="cpu"):
        return [PlanePoint(r.i_xt_upper, r.i_ty_kl, {"i_xt_lower": r.i_xt_lower, "i_ty_bd": r.i_ty_bd},
                           {"noise_var": r.noise_var})
                for r in kde_information_plane(t, labels, params["noise_var"], device=device)]

    def mutual_information(self, x, y, y_discrete: bool, noise_var: float = 0.1, bound: str = "upper",
                           chunk_size: int | None = None) -> float:
        """I(X+Z; Y) = H(X+Z) - sum_y p(y) H(X+Z|Y=y) for class labels y, each entropy by the KL
        ("upper") or Bhattacharyya ("lower") pairwise bound: an estimate, not a bound. Nats."""
        if not y_discrete:
            raise EstimatorInputError(
                "kde mutual information needs a discrete y (class labels): it is H(X+Z) - sum_y p(y) H(X+Z|Y=y); "
                "for a continuous y use method='kraskov' or 'mine'"
            )
        if bound not in ("upper", "lower"):
            raise EstimatorInputError(f"bound must be 'upper' or 'lower'; got {bound!r}")
        res = kde_information_plane(as_2d_float(x, "x", keep_float32=True), as_labels(y, "y"), [noise_var],
                                    chunk_size=chunk_size)[0]
        return float(res.i_ty_kl if bound == "upper" else res.i_ty_bd)

    def entropy(self, x, noise_var: float = 0.1, bound: str = "upper", chunk_size: int | None = None) -> float:
        """A pairwise bound on the differential entropy of X+Z, Z ~ N(0, noise_var I), nats."""
        return float(kde_entropy(as_2d_float(x, "x", keep_float32=True), noise_var, bound=bound, chunk_size=chunk_size))
