"""Matrix-based Rényi α-entropy and mutual information from Gram matrices, in NATS.

Sources
-------
- L. G. Sánchez Giraldo, M. Rao & J. C. Príncipe (2015), "Measures of entropy from data
  using infinitely divisible kernels", IEEE Trans. Inf. Theory 61(1):535-548
  (arXiv:1211.2459): the matrix-based entropy functional, the normalised Gram matrix, the
  joint entropy through the Hadamard product and the mutual information below.
- S. Yu, K. Wickstrøm, R. Jenssen & J. C. Príncipe (2019/2021), "Understanding convolutional
  neural networks with information theory: an initial exploration", IEEE TNNLS 32(1):435-442
  (arXiv:1804.06537), and S. Yu & J. C. Príncipe (2019), "Understanding autoencoders with
  information theoretic concepts", Neural Networks 117:104-123 (arXiv:1804.00057): these
  quantities for a network's layers (the information plane), a Gaussian kernel per layer
  whose width follows Silverman's rule of thumb, sigma = gamma N^(-1/(4+d)), gamma chosen
  from the data's average marginal variance, and the labels through their own Gram matrix.

The quantities (natural logarithm, so nats; the papers use log2)
-----------------------------------------------------------------
For N samples and a positive-definite kernel K, the normalised Gram matrix is

    A_ij = K_ij / (N sqrt(K_ii K_jj)),         A is N x N, positive semi-definite, tr(A) = 1,

and its matrix-based Rényi α-entropy (α > 0) is

    S_α(A) = 1/(1-α) ln tr(A^α) = 1/(1-α) ln Σ_i λ_i^α        (λ_i the eigenvalues of A),
    S_1(A) = lim_{α->1} S_α(A) = -Σ_i λ_i ln λ_i               (von Neumann entropy),
    S_2(A) = -ln tr(A²) = -ln ||A||_F² = -ln Σ_ij A_ij²        (no eigendecomposition).

Two variables measured on the same N samples have the joint entropy
S_α(A, B) = S_α(A∘B / tr(A∘B)) (∘: elementwise product) and the mutual information
I_α(A; B) = S_α(A) + S_α(B) - S_α(A, B); since S_α(A∘B / tr(A∘B)) >= max(S_α(A), S_α(B)),
0 <= I_α <= min(S_α(A), S_α(B)) <= ln N. These are Rényi quantities of the Gram matrices,
NOT Shannon mutual information: plots say I_α(X;T), I_α(T;Y).

In the information plane X is the probe input (N, d_x), T a layer (N, d), Y the labels:
X and T get Gaussian kernels K_ij = exp(-||a_i - a_j||² / (2 sigma²)) (unit diagonal, so
A = K / N), Y the delta kernel K_ij = [y_i = y_j] (A's eigenvalues are the class
proportions p_c, hence S_α(A_Y) = 1/(1-α) ln Σ_c p_c^α, the Rényi entropy of the labels).

Cost
----
One eigendecomposition of an N x N matrix is about 10^12 flops at N = 10 000. Hence:

- α = 2 (default) never forms an N x N matrix: tr(A²) = Σ_ij K_ij² / N², and for the joint
  Gram matrices Σ_ij (K^X_ij K^T_ij)² / N² and Σ_{ij: y_i = y_j} (K^T_ij)² / N². One pass
  over the upper-triangular chunk x chunk tiles of the pairwise squared distances (a BLAS
  matrix product per tile, rows sorted by class so a class is a contiguous run) gives all of
  them, all N samples used. Work memory: at most three chunk² tiles per worker thread (24 MiB
  per worker at the default chunk 1024 in float64, 12 MiB in float32), never N x N; the
  optional X cache (`XGramCache`) adds about 2 N² bytes in float32.
- α != 2 eigendecomposes the Gram matrices of a seeded random subsample of at most
  `eig_samples` probe samples (default 1000, drawn by position with
  numpy.random.default_rng(seed); the same seed gives the same subsample), so those values
  are entropies of that subsample and their ceiling is ln(eig_samples), not ln N. The joint
  Gram matrix of T and Y is block diagonal by class, so it costs one eigendecomposition per
  class.

float32 input is computed in float32 (float64 in float64); all sums accumulate in float64.
"""

from __future__ import annotations

import hashlib
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from ._threads import default_workers
from ._validation import as_2d_float, as_int, as_labels, check_same_length
from .errors import EstimatorInputError
from .interface import FLAG_COLUMN, Column, Estimator, Param, PlanePoint

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_EIG_SAMPLES",
    "X_CACHE_MAX_BYTES",
    "silverman_width",
    "gaussian_kernel",
    "delta_kernel",
    "normalized_gram",
    "hadamard_gram",
    "renyi_entropy_from_eigenvalues",
    "matrix_renyi_entropy",
    "matrix_joint_entropy",
    "matrix_mutual_information",
    "gaussian_renyi2_entropy",
    "XGramCache",
    "RenyiPlaneResult",
    "renyi_information_plane",
    "RenyiEstimator",
]

DEFAULT_CHUNK_SIZE = 1024
#: Subsample for α != 2: per point two eigendecompositions of this size (T and X∘T) and one per
#: class block of T∘Y, so a point costs seconds, not minutes (O(m³)).
DEFAULT_EIG_SAMPLES = 1000
#: The most memory the X cache (`XGramCache`) may hold: 1 GiB.
X_CACHE_MAX_BYTES = 1 << 30


# --------------------------------------------------------------------------- checks
def _alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)) \
            or not math.isfinite(alpha) or alpha <= 0:
        raise EstimatorInputError(f"alpha must be a finite number > 0; got {alpha!r}")
    return float(alpha)


def _width(width, name: str) -> float | None:
    if width is None:
        return None
    if isinstance(width, bool) or not isinstance(width, (int, float, np.integer, np.floating)) \
            or not math.isfinite(width) or width < 0:
        raise EstimatorInputError(f"{name} must be a finite number >= 0 (0: the vanishing-width limit) or None; "
                                  f"got {width!r}")
    return float(width)


def _at_least_two(n: int) -> None:
    if n < 2:
        raise EstimatorInputError(f"matrix-based Rényi entropies need at least 2 samples; got {n}")


def _workers(workers) -> int:
    return default_workers() if workers is None else as_int(workers, "workers")


def _spread(spread) -> float:
    if isinstance(spread, bool) or not isinstance(spread, (int, float, np.integer, np.floating)) \
            or not math.isfinite(spread) or spread < 0:
        raise EstimatorInputError(f"spread must be a finite number >= 0; got {spread!r}")
    return float(spread)


def _square(a, name: str) -> np.ndarray:
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise EstimatorInputError(f"{name} must be a numeric N x N matrix") from None
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise EstimatorInputError(f"{name} must be a square N x N matrix; got shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise EstimatorInputError(f"{name} has NaN or inf entries; a Gram matrix must be finite")
    return arr


# --------------------------------------------------------------------------- kernels
def silverman_width(data, spread: float | None = None) -> float:
    """The Gaussian kernel width of Silverman's rule of thumb as Yu et al. use it, in data's units.

    sigma = s * N^(-1/(4 + d)), where N and d are data's rows and columns and s is the
    data's spread: by default the root of its average marginal variance,
    s = sqrt(mean_k Var(data[:, k])) (ddof = 1). Yu & Príncipe (2019, Neural Networks 117)
    and Yu et al. (2019, IEEE TNNLS) take sigma = gamma N^(-1/(4+d)) with an empirical gamma
    chosen with the data's average marginal variance in mind; here gamma = s, so the width
    follows the data's scale and needs no tuning. Silverman's normal-reference rule (Silverman 1986,
    Density Estimation, h = (4/(d+2))^(1/(d+4)) s N^(-1/(d+4))) has the extra factor
    (4/(d+2))^(1/(d+4)), between 0.92 and 1.06 for every d, which Yu et al. leave out.

    Parameters
    ----------
    data : array-like, shape (N, d) (or (N,)), finite numbers.
    spread : float >= 0, optional
        s given instead of computed (e.g. one spread per layer pooled over all records).

    Returns
    -------
    float >= 0, in data's units. 0 when every column is constant (all rows identical):
    the vanishing-width limit, under which `gaussian_kernel` gives the right all-ones matrix.

    Raises
    ------
    EstimatorInputError
        bad shape, NaN/inf, fewer than 2 rows (when spread is not given), spread < 0 or not finite.
    """
    arr = as_2d_float(data, "data", keep_float32=True)
    n, d = arr.shape
    if spread is None:
        _at_least_two(n)
        var = np.var(arr, axis=0, ddof=1, dtype=np.float64)
        var[np.ptp(arr, axis=0) == 0] = 0.0  # exactly: the mean's rounding leaves ~1e-32
        spread = math.sqrt(float(np.mean(var)))
    return _spread(spread) * n ** (-1.0 / (4.0 + d))


def _row_codes(arr: np.ndarray) -> np.ndarray:
    """One integer per distinct row (np.unique's inverse), shape (N,)."""
    return np.unique(arr, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)


def gaussian_kernel(data, width: float) -> np.ndarray:
    """The Gaussian kernel matrix K_ij = exp(-||a_i - a_j||² / (2 width²)) of data's rows (dense).

    Parameters
    ----------
    data : array-like, shape (N, d) (or (N,)), finite numbers.
    width : float >= 0, in data's units. 0 is the vanishing-width limit: K_ij = 1 where rows
        i and j are identical, else 0.

    Returns
    -------
    np.ndarray, shape (N, N), float64, symmetric, unit diagonal (exactly), entries in [0, 1].
    Memory 8 N² bytes: for tests and subsamples; `gaussian_renyi2_entropy` and
    `renyi_information_plane` never form it at full N for α = 2.

    Raises
    ------
    EstimatorInputError
        bad shape, NaN/inf, width < 0 or not finite.
    """
    arr = as_2d_float(data, "data")
    w = _width(width, "width")
    if w is None:
        raise EstimatorInputError("width must be a number >= 0; got None (use silverman_width(data))")
    if w == 0.0:
        return delta_kernel(_row_codes(arr))
    c = arr - arr.mean(axis=0)  # centring cuts the cancellation in |a|² + |b|² - 2 a.b
    sq = np.einsum("ij,ij->i", c, c)
    dist = sq[:, None] + sq[None, :] - 2.0 * (c @ c.T)
    np.maximum(dist, 0.0, out=dist)
    k = np.exp(dist * (-0.5 / w**2), out=dist)
    np.fill_diagonal(k, 1.0)
    return k


def delta_kernel(labels) -> np.ndarray:
    """The delta kernel K_ij = [y_i = y_j] of discrete labels (dense).

    Parameters
    ----------
    labels : array-like, shape (N,) (or (N, k): each distinct row is one symbol), any numeric dtype.

    Returns
    -------
    np.ndarray, shape (N, N), float64 of 0.0 / 1.0. Its normalised Gram matrix K / N has
    the class proportions as eigenvalues (one per class) and zeros.

    Raises
    ------
    EstimatorInputError
        bad shape, NaN/inf, no samples.
    """
    y = as_labels(labels, "labels")
    return (y[:, None] == y[None, :]).astype(np.float64)


def normalized_gram(k) -> np.ndarray:
    """The normalised Gram matrix A_ij = K_ij / (N sqrt(K_ii K_jj)) (Sánchez Giraldo et al. 2015).

    Parameters
    ----------
    k : array-like, shape (N, N): a kernel (Gram) matrix, positive semi-definite with a
        positive diagonal.

    Returns
    -------
    np.ndarray, shape (N, N), float64, trace 1 (to rounding).

    Raises
    ------
    EstimatorInputError
        not square, NaN/inf, a diagonal entry <= 0.
    """
    arr = _square(k, "k")
    diag = np.diag(arr)
    if np.any(diag <= 0):
        raise EstimatorInputError("k must have a positive diagonal (K_ii > 0) to be normalised")
    r = 1.0 / np.sqrt(diag)
    return arr * r[:, None] * r[None, :] / arr.shape[0]


def hadamard_gram(a, b) -> np.ndarray:
    """The joint Gram matrix A∘B / tr(A∘B) of two variables on the same N samples.

    Sánchez Giraldo et al. (2015): S_α(A, B) = S_α(A∘B / tr(A∘B)) is the joint entropy.

    Parameters
    ----------
    a, b : array-like, shape (N, N), Gram matrices (normalised or not) of the same samples.

    Returns
    -------
    np.ndarray, shape (N, N), float64, trace 1.

    Raises
    ------
    EstimatorInputError
        not square, shapes differ, NaN/inf, tr(A∘B) <= 0.
    """
    aa, bb = _square(a, "a"), _square(b, "b")
    if aa.shape != bb.shape:
        raise EstimatorInputError(f"a and b must have the same shape; got {aa.shape} and {bb.shape}")
    c = aa * bb
    tr = float(np.trace(c))
    if not tr > 0:
        raise EstimatorInputError(f"tr(A∘B) must be > 0; got {tr!r}")
    return c / tr


# --------------------------------------------------------------------------- entropies
def renyi_entropy_from_eigenvalues(eigenvalues, alpha: float) -> float:
    """S_α = 1/(1-α) ln Σ λ^α of a trace-one PSD matrix from its eigenvalues, in nats.

    α = 1 gives the von Neumann entropy -Σ λ ln λ (the limit). The eigenvalues are clipped
    at 0 (rounding leaves tiny negatives) and divided by their sum (the trace), so those of
    any positive multiple of a normalised Gram matrix give the same value. Near α = 1,
    ln Σ λ^α = log1p(Σ λ expm1((α-1) ln λ)) keeps full precision (Σ λ^α is then close to 1).

    Parameters
    ----------
    eigenvalues : array-like of real numbers (any shape; flattened), sum > 0.
    alpha : float > 0.

    Returns
    -------
    float in [0, ln(number of positive eigenvalues)], nats.

    Raises
    ------
    EstimatorInputError
        alpha <= 0 or not finite, NaN/inf eigenvalues, no positive eigenvalue.

    Eigenvalues below size * eps * max (eps = 2.2e-16; numpy.linalg.matrix_rank's tolerance)
    are rounding noise around zero and count as zero.
    """
    a = _alpha(alpha)
    lam = np.asarray(eigenvalues, dtype=np.float64).reshape(-1)
    if lam.size == 0 or not np.isfinite(lam).all():
        raise EstimatorInputError("eigenvalues must be a non-empty array of finite numbers")
    total = float(np.clip(lam, 0.0, None).sum())
    if not total > 0:
        raise EstimatorInputError("eigenvalues must have a positive sum (the trace)")
    # An eigensolver returns a zero eigenvalue as +-(size * eps * largest) of rounding noise
    # (numpy.linalg.matrix_rank's tolerance); counted as zero, as they are: for α < 1 their
    # λ^α would otherwise add up to ~ N sqrt(eps) at α = 1/2.
    noise = lam.size * np.finfo(np.float64).eps * float(lam.max())
    p = lam[lam > noise] / total
    log_p = np.log(p)
    if a == 1.0:
        return max(float(-(p * log_p).sum()), 0.0)
    s = float(np.sum(p * np.expm1((a - 1.0) * log_p)))  # Σ p^α - 1
    if s > -0.5:
        log_sum = math.log1p(s)
    else:  # Σ p^α far below 1 (large α): log-sum-exp keeps the tiny sum's precision
        z = a * log_p
        zmax = float(z.max())
        log_sum = zmax + math.log(float(np.exp(z - zmax).sum()))
    return max(log_sum / (1.0 - a), 0.0)


def matrix_renyi_entropy(a, alpha: float = 2.0) -> float:
    """The matrix-based Rényi α-entropy S_α(A) = 1/(1-α) ln tr(A^α) of a Gram matrix, in nats.

    Sánchez Giraldo, Rao & Príncipe (2015). A is divided by its trace first, so a kernel
    matrix with a constant diagonal may be passed as is. α = 2 uses the Frobenius norm,
    S_2 = -ln ||A||_F² (no eigendecomposition, O(N²)); every other α eigendecomposes A
    (numpy.linalg.eigvalsh, O(N³)); α = 1 is the von Neumann entropy -Σ λ ln λ.

    Parameters
    ----------
    a : array-like, shape (N, N), symmetric positive semi-definite, trace > 0.
    alpha : float > 0 (default 2).

    Returns
    -------
    float in [0, ln N], nats.

    Raises
    ------
    EstimatorInputError
        not square, NaN/inf, trace <= 0, alpha <= 0.
    """
    arr = _square(a, "a")
    al = _alpha(alpha)
    tr = float(np.trace(arr))
    if not tr > 0:
        raise EstimatorInputError(f"a must have a positive trace; got {tr!r}")
    if al == 2.0:
        return max(-math.log(float(np.sum(np.square(arr / tr)))), 0.0)
    return renyi_entropy_from_eigenvalues(np.linalg.eigvalsh(arr / tr), al)


def matrix_joint_entropy(a, b, alpha: float = 2.0) -> float:
    """S_α(A, B) = S_α(A∘B / tr(A∘B)), the joint entropy of two Gram matrices, in nats.

    Sánchez Giraldo et al. (2015); Yu et al. (2019) for layers. See `hadamard_gram` and
    `matrix_renyi_entropy` (shapes, errors).
    """
    return matrix_renyi_entropy(hadamard_gram(a, b), alpha)


def matrix_mutual_information(a, b, alpha: float = 2.0) -> float:
    """I_α(A; B) = S_α(A) + S_α(B) - S_α(A, B) of two Gram matrices of the same samples, in nats.

    Sánchez Giraldo et al. (2015); Yu et al. (2019). A Rényi quantity, not Shannon mutual
    information; between 0 and min(S_α(A), S_α(B)) (rounding aside).

    Parameters
    ----------
    a, b : array-like, shape (N, N), Gram matrices (normalised or not) of the same N samples.
    alpha : float > 0 (default 2).

    Raises
    ------
    EstimatorInputError
        as `matrix_renyi_entropy` and `hadamard_gram`.
    """
    return (matrix_renyi_entropy(a, alpha) + matrix_renyi_entropy(b, alpha)
            - matrix_joint_entropy(a, b, alpha))


# --------------------------------------------------------------------------- the α = 2 pass
class _SquaredKernel:
    """Tiles of K_ij² for one variable whose rows are already in the pass order.

    Gaussian (width > 0): K_ij² = exp(-||a_i - a_j||² / width²). One matrix product of
    augmented rows gives the exponent of a whole tile: with c = 1 / width²,
    [sqrt(2c) a_i, -c |a_i|², 1] . [sqrt(2c) a_j, 1, -c |a_j|²] = -c ||a_i - a_j||²
    (a centred in float64 first). Exponents are clipped to [floor, 0]: e^-87 (float32) or
    e^-700 (float64) is far below the sums' rounding (every sum holds the diagonal's N ones)
    and keeps exp out of slow denormals. Width 0: the limit, [row i == row j].
    """

    def __init__(self, data: np.ndarray, width: float):
        self.n, d = data.shape
        self.codes = None
        if width == 0.0:
            self.codes = _row_codes(data)
            self.dtype = data.dtype
            return
        centred = data.astype(np.float64) - data.mean(axis=0, dtype=np.float64)
        sq = np.einsum("ij,ij->i", centred, centred)
        c = 1.0 / width**2
        big = c * (float(sq.max()) + 1.0)
        self.dtype = np.dtype(np.float32) if data.dtype == np.float32 and big < 1e30 else np.dtype(np.float64)
        self.floor = -87.0 if self.dtype == np.float32 else -700.0
        cols = -(-(d + 2) // 16) * 16  # a multiple of 16 columns suits BLAS
        self.left = np.zeros((self.n, cols), dtype=self.dtype)
        self.right = np.zeros((self.n, cols), dtype=self.dtype)
        self.left[:, :d] = centred * math.sqrt(2.0 * c)
        self.right[:, :d] = self.left[:, :d]
        self.left[:, d] = -c * sq
        self.left[:, d + 1] = 1.0
        self.right[:, d] = 1.0
        self.right[:, d + 1] = -c * sq

    def tile(self, i0: int, i1: int, j0: int, j1: int, out: np.ndarray) -> np.ndarray:
        """K² on rows [i0, i1) x columns [j0, j1) into `out` (shape (i1-i0, j1-j0))."""
        if self.codes is not None:
            out[...] = self.codes[i0:i1, None] == self.codes[None, j0:j1]
            return out
        np.matmul(self.left[i0:i1], self.right[j0:j1].T, out=out)
        np.clip(out, self.floor, 0.0, out=out)
        np.exp(out, out=out)
        if i0 == j0:
            np.fill_diagonal(out, 1.0)  # exp(0), exactly
        return out


def _tile_pairs(n: int, chunk: int) -> list[tuple[int, int, int, int]]:
    starts = range(0, n, chunk)
    return [(i0, min(i0 + chunk, n), j0, min(j0 + chunk, n)) for i0 in starts for j0 in starts if j0 >= i0]


def _blas_single_threaded():
    return threadpool_limits(limits=1, user_api="blas")


def _frobenius_sums(tk: _SquaredKernel, bounds: np.ndarray | None, xk: _SquaredKernel | None,
                    x_tiles: dict | None, keep_x_tiles: bool, chunk: int, workers: int):
    """Σ over ALL ordered pairs (i, j) of K^T², of K^T² with y_i = y_j, of (K^X K^T)², of K^X².

    Only the upper-triangular tiles are computed (an off-diagonal tile counts twice).
    bounds: class runs [bounds[c], bounds[c+1]) of the class-sorted rows (None: no labels).
    K^X² comes from `x_tiles` (cached, same tiling) or is computed from `xk` (then its sum is
    returned too, and with keep_x_tiles each tile is kept in the returned dict); neither: no X.
    Returns (sums float64 array [tt, ty, xt, xx], new tiles dict or None).
    """
    pairs = _tile_pairs(tk.n, chunk)
    new_tiles = {} if keep_x_tiles else None
    with_x = xk is not None or x_tiles is not None
    x_dtype = xk.dtype if xk is not None else next(iter(x_tiles.values())).dtype if x_tiles else tk.dtype
    dt = np.result_type(tk.dtype, x_dtype)

    def same_class_sum(e, i0, i1, j0, j1) -> float:
        total = 0.0
        lo = int(np.searchsorted(bounds, i0, side="right")) - 1
        hi = int(np.searchsorted(bounds, i1, side="left"))
        for c in range(lo, hi):
            r0, r1 = max(i0, bounds[c]), min(i1, bounds[c + 1])
            c0, c1 = max(j0, bounds[c]), min(j1, bounds[c + 1])
            if r0 < r1 and c0 < c1:
                total += float(e[r0 - i0:r1 - i0, c0 - j0:c1 - j0].sum(dtype=np.float64))
        return total

    def run(share) -> np.ndarray:
        acc = np.zeros(4)
        buf_t = np.empty(chunk * chunk, dtype=tk.dtype)
        buf_x = np.empty(chunk * chunk if xk is not None and not keep_x_tiles else 0, dtype=dt)
        buf_p = np.empty(chunk * chunk if with_x else 0, dtype=dt)
        for i0, i1, j0, j1 in share:
            w = 1.0 if i0 == j0 else 2.0  # the mirrored tile (j, i) has the same sums
            shape = (i1 - i0, j1 - j0)
            e = tk.tile(i0, i1, j0, j1, buf_t[: shape[0] * shape[1]].reshape(shape))
            acc[0] += w * float(e.sum(dtype=np.float64))
            if bounds is not None:
                acc[1] += w * same_class_sum(e, i0, i1, j0, j1)
            if not with_x:
                continue
            if x_tiles is not None:
                q = x_tiles[(i0, j0)]
            else:
                q_out = np.empty(shape, dtype=xk.dtype) if keep_x_tiles else \
                    buf_x[: shape[0] * shape[1]].reshape(shape)
                q = xk.tile(i0, i1, j0, j1, q_out)
                acc[3] += w * float(q.sum(dtype=np.float64))
                if keep_x_tiles:
                    new_tiles[(i0, j0)] = q  # distinct keys per thread: dict assignment is safe
            p = np.multiply(e, q, out=buf_p[: shape[0] * shape[1]].reshape(shape))
            acc[2] += w * float(p.sum(dtype=np.float64))
        return acc

    n_workers = max(1, min(workers, len(pairs)))
    if n_workers == 1:
        sums = run(pairs)
    else:  # static striping: each worker's share, hence the float64 sums, is repeatable
        with _blas_single_threaded(), ThreadPoolExecutor(n_workers) as pool:
            sums = np.sum(list(pool.map(lambda k: run(pairs[k::n_workers]), range(n_workers))), axis=0)
    return sums, new_tiles


def _entropy2(pair_sum: float, n: int) -> float:
    """S_2 of a normalised Gram matrix K/N (unit diagonal) from Σ_ij K_ij²: -ln(Σ / N²)."""
    return min(max(2.0 * math.log(n) - math.log(pair_sum), 0.0), math.log(n))


def gaussian_renyi2_entropy(data, width: float | None = None, chunk_size: int | None = None,
                            workers: int | None = None) -> float:
    """S_2 of the normalised Gaussian Gram matrix of data's rows, blocked, in nats.

    S_2(A) = -ln tr(A²) = -ln Σ_ij K_ij² / N² with K_ij = exp(-||a_i - a_j||² / (2 width²))
    (Sánchez Giraldo et al. 2015; tr(A²) = ||A||_F² for symmetric A). Computed tile by tile
    over the upper triangle, never forming the N x N matrix: O(N² d) time, work memory one
    chunk_size² tile per worker (`DEFAULT_CHUNK_SIZE` = 1024: 8 MiB per worker in float64).

    Parameters
    ----------
    data : array-like, shape (N, d) (or (N,)), finite; float32 is computed in float32.
    width : float >= 0, optional (default `silverman_width(data)`); 0: the vanishing-width limit.
    chunk_size : int >= 1, optional (default 1024).
    workers : int >= 1, optional (default: the CPUs this process may use); BLAS runs
        single-threaded inside them.

    Returns
    -------
    float in [0, ln N], nats.

    Raises
    ------
    EstimatorInputError
        bad shape, NaN/inf, N < 2, width < 0, bad chunk_size / workers.
    """
    arr = as_2d_float(data, "data", keep_float32=True)
    _at_least_two(arr.shape[0])
    w = _width(width, "width")
    w = silverman_width(arr) if w is None else w
    chunk = as_int(DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size, "chunk_size")
    sums, _ = _frobenius_sums(_SquaredKernel(arr, w), None, None, None, False, chunk, _workers(workers))
    return _entropy2(float(sums[0]), arr.shape[0])


# --------------------------------------------------------------------------- the information plane
@dataclass(frozen=True)
class RenyiPlaneResult:
    """One layer's matrix-based Rényi quantities, in nats (ln), on `n_samples` probe samples.

    i_xt = s_x + s_t - s_xt = I_α(X;T) and i_ty = s_t + s_y - s_ty = I_α(T;Y): Rényi
    quantities of the Gram matrices (Sánchez Giraldo et al. 2015; Yu et al. 2019), not
    Shannon MI. s_*: S_α of X, T, Y and of the joint Gram matrices X∘T, T∘Y.
    width_x, width_t: the Gaussian kernel widths used (X's and T's units).
    n_samples: samples in the Gram matrices: N for α = 2, else min(N, eig_samples); the
    ceiling of every entropy is ln(n_samples).
    """

    alpha: float
    i_xt: float
    i_ty: float
    s_x: float
    s_t: float
    s_y: float
    s_xt: float
    s_ty: float
    width_x: float
    width_t: float
    n_samples: int


class XGramCache:
    """Keeps what X contributes to `renyi_information_plane` between calls with the same x.

    x (the probe inputs) is the same for every (record, layer) point of an mi run, so its
    kernel is computed once: for α = 2 the upper-triangular tiles of (K^X)² in the pass order
    (about 2 N² bytes in float32: 200 MB at N = 10 000) and S_2(X); for α != 2 the subsample's
    K^X (8 m² bytes: 8 MB at m = 1000) and S_α(X). Tiles that would exceed `max_bytes`
    (default `X_CACHE_MAX_BYTES`, 1 GiB) are not kept (then only S(X) is cached and K^X is
    recomputed per call). One entry: a call with another x, labels, width, α-path or
    subsample replaces it. The key hashes x's and the labels' bytes (BLAKE2b), so a changed
    array is never mistaken for the cached one. Safe to share between threads.
    """

    def __init__(self, max_bytes: int = X_CACHE_MAX_BYTES):
        self.max_bytes = as_int(max_bytes, "max_bytes", low=0)
        self._key = None
        self._value: dict | None = None
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached X kernel (tiles or subsample matrix)."""
        with self._lock:
            v = self._value or {}
        tiles = v.get("tiles") or {}
        k = v.get("kx")
        return sum(a.nbytes for a in tiles.values()) + (k.nbytes if k is not None else 0)

    def clear(self) -> None:
        """Drop the cached entry (frees its memory)."""
        with self._lock:
            self._key, self._value = None, None

    def _get(self, key):
        with self._lock:
            return self._value if key == self._key else None

    def _put(self, key, value: dict) -> None:
        with self._lock:
            self._key, self._value = key, value


def _digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.blake2b(digest_size=16)
    h.update(str((a.dtype.str, a.shape)).encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def renyi_information_plane(x, t, labels, *, alpha: float = 2.0, t_width: float | None = None,
                            x_width: float | None = None, eig_samples: int = DEFAULT_EIG_SAMPLES,
                            seed: int = 0, t_spread: float | None = None, chunk_size: int | None = None,
                            workers: int | None = None, x_cache: XGramCache | None = None) -> RenyiPlaneResult:
    """One layer's information-plane pair (I_α(X;T), I_α(T;Y)) from the matrix Rényi α-entropy, nats.

    Sánchez Giraldo, Rao & Príncipe (2015) for the quantities; Yu et al. (2019, IEEE TNNLS)
    and Yu & Príncipe (2019, Neural Networks) for their use on a network's layers. X and T
    get Gaussian kernels (width by `silverman_width` unless given), Y the delta kernel;
    I_α(X;T) = S_α(X) + S_α(T) - S_α(X∘T), I_α(T;Y) = S_α(T) + S_α(Y) - S_α(T∘Y).

    α = 2 uses all N samples through the Frobenius norm (blocked, see the module notes;
    O(N² (d + d_x)) time, or O(N² d) with a warm `x_cache`). Any other α eigendecomposes the
    Gram matrices of a seeded random subsample of min(N, eig_samples) samples (O(m³)):
    rows `numpy.random.default_rng(seed).choice(N, m, replace=False)`, sorted; the widths are
    then computed on the subsample (its own N).

    Parameters
    ----------
    x : array-like, shape (N, d_x), probe inputs (e.g. 784 pixels), finite.
    t : array-like, shape (N, d) (or (N,)), the layer's activations on them, finite.
        float32 inputs are computed in float32 (sums in float64).
    labels : array-like, shape (N,), class labels (ints, or floats holding ints).
    alpha : float > 0, default 2; 1 is the von Neumann (Shannon-like) limit.
    t_width, x_width : float >= 0, optional: Gaussian widths for T and X in their units;
        None: `silverman_width`; 0: the vanishing-width limit (identical rows only).
    eig_samples : int >= 2, the subsample size for α != 2 (default `DEFAULT_EIG_SAMPLES`).
    seed : int, seeds the subsample (α != 2).
    t_spread : float >= 0, optional: T's spread for Silverman's rule instead of this t's own
        (e.g. one spread per layer pooled over every record, so the width does not follow
        each record's scale).
    chunk_size : int >= 1, optional: tile size of the α = 2 pass (default 1024).
    workers : int >= 1, optional: threads of the α = 2 pass (default: usable CPUs).
    x_cache : XGramCache, optional: keeps X's kernel between calls with the same x.

    Returns
    -------
    RenyiPlaneResult (nats).

    Raises
    ------
    EstimatorInputError
        lengths differ, NaN/inf, bad shapes, N < 2, alpha <= 0, widths < 0, eig_samples < 2,
        bad chunk_size / workers / t_spread.
    """
    xa = as_2d_float(x, "x", keep_float32=True)
    ta = as_2d_float(t, "t", keep_float32=True)
    check_same_length(("x", xa), ("t", ta), ("labels", labels))
    codes = as_labels(labels, "labels")
    n = ta.shape[0]
    _at_least_two(n)
    al = _alpha(alpha)
    tw, xw = _width(t_width, "t_width"), _width(x_width, "x_width")
    m = as_int(eig_samples, "eig_samples", low=2)
    if t_spread is not None:
        t_spread = _spread(t_spread)
    chunk = as_int(DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size, "chunk_size")
    n_workers = _workers(workers)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise EstimatorInputError(f"seed must be an integer; got {seed!r}")
    data_key = (_digest(xa), _digest(codes), xw)
    if al == 2.0:
        return _plane_frobenius(xa, ta, codes, tw, xw, t_spread, chunk, n_workers, x_cache, data_key)
    return _plane_eig(xa, ta, codes, al, tw, xw, t_spread, m, int(seed), x_cache, data_key)


def _plane_frobenius(xa, ta, codes, tw, xw, t_spread, chunk, workers, cache, data_key) -> RenyiPlaneResult:
    n = ta.shape[0]
    order = np.argsort(codes, kind="stable")  # each class a contiguous run of rows and columns
    counts = np.bincount(codes)
    bounds = np.concatenate([[0], np.cumsum(counts[counts > 0])])
    width_t = silverman_width(ta, spread=t_spread) if tw is None else tw
    tk = _SquaredKernel(ta[order], width_t)
    key = data_key + ("frobenius", chunk)
    hit = cache._get(key) if cache is not None else None
    if hit is not None:
        sums, _ = _frobenius_sums(tk, bounds, None if hit["tiles"] else _SquaredKernel(xa[order], hit["width_x"]),
                                  hit["tiles"], False, chunk, workers)
        sum_xx, width_x = hit["sum_xx"], hit["width_x"]
    else:
        width_x = silverman_width(xa) if xw is None else xw
        xk = _SquaredKernel(xa[order], width_x)
        tile_bytes = sum((i1 - i0) * (j1 - j0) for i0, i1, j0, j1 in _tile_pairs(n, chunk)) * xk.dtype.itemsize
        keep = cache is not None and tile_bytes <= cache.max_bytes
        sums, tiles = _frobenius_sums(tk, bounds, xk, None, keep, chunk, workers)
        sum_xx = float(sums[3])
        if cache is not None:
            cache._put(key, {"tiles": tiles, "sum_xx": sum_xx, "width_x": width_x})
    s_x, s_t = _entropy2(sum_xx, n), _entropy2(float(sums[0]), n)
    s_xt, s_ty = _entropy2(float(sums[2]), n), _entropy2(float(sums[1]), n)
    s_y = _entropy2(float(np.sum(counts.astype(np.float64) ** 2)), n)
    return RenyiPlaneResult(2.0, max(s_x + s_t - s_xt, 0.0), max(s_t + s_y - s_ty, 0.0), s_x, s_t, s_y, s_xt, s_ty,
                            float(width_x), float(width_t), n)


def _eig_entropy(k: np.ndarray, alpha: float) -> float:
    """S_α of the normalised Gram matrix of a unit-diagonal kernel matrix k (eigendecomposed)."""
    return renyi_entropy_from_eigenvalues(np.linalg.eigvalsh(k / k.shape[0]), alpha)


def _plane_eig(xa, ta, codes, alpha, tw, xw, t_spread, m_max, seed, cache, data_key) -> RenyiPlaneResult:
    n = ta.shape[0]
    m = min(n, m_max)
    idx = np.arange(n) if m == n else np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False))
    ts, ys = ta[idx], codes[idx]
    key = data_key + ("eig", alpha, m, seed)
    hit = cache._get(key) if cache is not None else None
    if hit is None:
        xs = xa[idx]
        width_x = silverman_width(xs) if xw is None else xw
        kx = gaussian_kernel(xs, width_x)
        hit = {"kx": kx, "s_x": _eig_entropy(kx, alpha), "width_x": width_x}
        if cache is not None and kx.nbytes <= cache.max_bytes:
            cache._put(key, hit)
    kx, s_x, width_x = hit["kx"], hit["s_x"], hit["width_x"]
    width_t = silverman_width(ts, spread=t_spread) if tw is None else tw
    kt = gaussian_kernel(ts, width_t)
    s_t = _eig_entropy(kt, alpha)
    s_xt = _eig_entropy(kx * kt, alpha)  # unit diagonals: tr(K^X∘K^T) = m, so A = K^X∘K^T / m
    # K^T∘K^Y is block diagonal by class: its spectrum is the union of the class blocks' spectra
    eig_ty = [np.linalg.eigvalsh(kt[np.ix_(rows, rows)] / m) for rows in
              (np.flatnonzero(ys == c) for c in np.unique(ys))]
    s_ty = renyi_entropy_from_eigenvalues(np.concatenate(eig_ty), alpha)
    s_y = renyi_entropy_from_eigenvalues(np.bincount(ys).astype(np.float64), alpha)
    return RenyiPlaneResult(alpha, max(s_x + s_t - s_xt, 0.0), max(s_t + s_y - s_ty, 0.0), s_x, s_t, s_y, s_xt, s_ty,
                            float(width_x), float(width_t), m)


# --------------------------------------------------------------------------- the adapter
#: Values per record drawn by `RenyiEstimator.prepare` for a layer's pooled spread.
_SPREAD_SAMPLES_PER_RECORD = 20_000
#: A point is flagged when S_α(T) is this close to its ceiling ln n (T's Gram matrix ~ identity).
_CEILING_GAP_NATS = 1e-3

ALPHA = Param("alpha", float, 2.0,
              "order α of the matrix Rényi entropy; 2 uses all N samples (Frobenius norm), any other value "
              "eigendecomposes a seeded subsample (--eig-samples); 1 = von Neumann", low=0.0, low_open=True)
KERNEL_WIDTH = Param("kernel_width", float, None,
                     "Gaussian kernel width for T, in T's units; default: Silverman's rule s N^(-1/(4+d)) as Yu et al., "
                     "s = sd of the layer's values pooled over all records", low=0.0, low_open=True)
X_KERNEL_WIDTH = Param("x_kernel_width", float, None,
                       "Gaussian kernel width for the probe inputs X, in X's units; default: Silverman's rule "
                       "s N^(-1/(4+d_x)), s = root of X's average marginal variance", low=0.0, low_open=True)
EIG_SAMPLES = Param("eig_samples", int, DEFAULT_EIG_SAMPLES,
                    "alpha != 2 only: seeded random subsample of the probe set whose Gram matrices are "
                    "eigendecomposed (values then have the ceiling ln of it)", low=2)


class RenyiEstimator(Estimator):
    """`ibcli mi --method renyi`: matrix-based Rényi α-entropy MI, I_α(X;T) and I_α(T;Y), nats.

    See `renyi_information_plane`. The X part (K^X and S_α(X)) is cached in the instance
    between calls with the same x (`XGramCache`, at most 1 GiB: 200 MB at N = 10 000 for
    α = 2); `clear_cache()` frees it. T's default width uses one spread per layer pooled over
    every record (`prepare`), so the width does not follow each record's scale (a per-record
    width would rescale saturation away, as a per-epoch bin range would); without a
    context it falls back to the record's own spread. For α != 2 the subsample is drawn with
    `seed`: the same seed for every point of a run gives every point the same subsample (and
    lets the X cache serve them all).
    """

    name = "renyi"
    title = "matrix-based Rényi α-entropy (Sánchez Giraldo, Rao & Príncipe 2015; Yu et al. 2019)"
    quantity = ("I_α(X;T)", "I_α(T;Y)")
    params = (ALPHA, KERNEL_WIDTH, X_KERNEL_WIDTH, EIG_SAMPLES)
    columns = (
        Column("kernel_width_t", "float64", "Gaussian kernel width used for T (T's units)"),
        Column("kernel_width_x", "float64", "Gaussian kernel width used for the probe inputs X (X's units)"),
        Column("gram_samples", "Int64", "samples in the Gram matrices: N for alpha = 2, else min(N, eig_samples); "
                                        "the ceiling is log2 of it"),
        Column("s_t_bits", "float64", "matrix Rényi α-entropy S_α(T), the most I_α(X;T) can be", nats=True),
        FLAG_COLUMN,
    )
    needs_x = True

    def __init__(self):
        self._cache = XGramCache()

    def clear_cache(self) -> None:
        """Free the cached X kernel."""
        self._cache.clear()

    def label(self, row: dict) -> str:
        a = row.get("alpha")
        shown = [f"α={a:g}"] if isinstance(a, (int, float)) and not math.isnan(a) else []
        w = row.get("kernel_width")
        if isinstance(w, (int, float)) and not math.isnan(w):
            shown.append(f"σ={w:g}")
        return f"{self.name} ({', '.join(shown)})" if shown else self.name

    def prepare(self, layers, layer_names: list[str], params: dict, seed: int) -> dict:
        """Each layer's spread s (sd of its values pooled over every record), for the default width,
        and the run's seed: every record then uses the same subsample (for alpha != 2), so epochs
        compare on the same samples and the X cache serves them all.

        Returns {layer: {"spread": s or None, "seed": seed}}.
        """
        given = params.get("kernel_width") is not None
        return {name: {"seed": seed, "spread": None if given else
                       float(np.std(layers.sample(name, _SPREAD_SAMPLES_PER_RECORD, seed), dtype=np.float64))}
                for name in layer_names}

    def points(self, t, labels, *, x, params: dict, context=None, seed: int = 0,
               device: str = "cpu") -> list[PlanePoint]:
        """One PlanePoint: I_α(X;T), I_α(T;Y) in nats and the declared columns (see `Estimator.points`)."""
        if x is None:
            raise EstimatorInputError("method 'renyi' needs the probe inputs x (its I(X;T) uses X's Gram matrix)")
        spread = context.get("spread") if isinstance(context, dict) else None
        seed = context.get("seed", seed) if isinstance(context, dict) else seed
        r = renyi_information_plane(x, t, labels, alpha=params["alpha"], t_width=params["kernel_width"],
                                    x_width=params["x_kernel_width"], eig_samples=params["eig_samples"],
                                    seed=seed, t_spread=spread, x_cache=self._cache)
        flag = None
        if math.log(r.n_samples) - r.s_t < _CEILING_GAP_NATS:
            flag = (f"T's Gram matrix is nearly the identity at kernel width {r.width_t:.3g} (every sample its own "
                    f"cluster): I_α(X;T) = S_α(X) and I_α(T;Y) = S_α(Y), their ceilings; try a wider --kernel-width")
        return [PlanePoint(r.i_xt, r.i_ty, values={
            "kernel_width_t": r.width_t, "kernel_width_x": r.width_x, "gram_samples": r.n_samples,
            "s_t": r.s_t, "flag": flag})]
