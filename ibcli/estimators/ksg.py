"""k-nearest-neighbour estimators with the max-norm (Chebyshev distance), in nats.

- `ksg_mi(x, y, k)`: Kraskov, Stoegbauer & Grassberger (2004), algorithm 1:
      I = psi(k) + psi(N) - < psi(n_x + 1) + psi(n_y + 1) >
  eps_i = max-norm distance from point i to its k-th neighbour in the joint space
  (x, y); n_x(i) = number of points j != i strictly closer than eps_i in the x
  marginal, n_y(i) likewise in y.
- `ksg_mixed_mi(x, labels, k)`: Ross (2014), the continuous-discrete estimator that
  scikit-learn's `mutual_info_classif` uses for one feature, generalised to a vector
  x with the max-norm:
      I = psi(N) - < psi(N_c(i)) > + < psi(k_i) > - < psi(m_i) >
  d_i = distance to the k_i-th neighbour among the points of i's class,
  k_i = min(k, N_c(i) - 1); m_i = number of points of any class (i itself included)
  strictly closer than d_i (the points at distance 0 when d_i = 0, as scikit-learn
  counts them). Classes with one sample are dropped, and N counts what remains.
  The raw estimate is returned (scikit-learn clips its value at 0; we do not).
- `ksg_entropy(x, k)`: Kozachenko-Leonenko with the max-norm, whose unit ball has
  volume 2^d:  H = psi(N) - psi(k) + d * < ln(2 r_i) >, r_i the k-th neighbour distance.

Neighbour search
----------------
`neighbours="kdtree"`: scipy's cKDTree with p=inf (fast in low dimension).
`neighbours="brute"`: every pair. With numba (compiled on first use, then cached on
disk): parallel kernels over tiles of rows, O(N d) memory, that stop scanning a
pair's coordinates as soon as the pair is known to be too far (exact pruning, no
approximation); constant columns are dropped and the widest columns scanned first.
Without numba: torch.cdist(p=inf) over row blocks, memory bounded by
`_BRUTE_BLOCK_BYTES` (same results, several times slower). `"auto"` uses the
kd-tree in low dimension (`KDTREE_MAX_DIM_KNN`, `KDTREE_MAX_DIM_COUNT`), brute
force above.

Every path converts the data to float64 (exact for float32 input), computes a
distance as max_t |a_t - b_t| in float64, and decides "strictly closer than eps"
on those same values, so the kd-tree and brute paths give identical counts on the
same data, ties included. Exact ties (ReLU zeros, saturated units, duplicate
points) are legal: eps_i = 0 gives n_x(i) = 0, so every digamma argument is >= 1 and
the result is finite.
"""

from __future__ import annotations

import math
import threading

import numpy as np
from scipy.special import digamma

from ._validation import as_2d_float, as_labels
from .errors import EstimatorInputError
from .interface import NOISE_VAR, Estimator, Param, PlanePoint

__all__ = ["ksg_mi", "ksg_mixed_mi", "ksg_entropy", "NEIGHBOURS", "KSGEstimator"]

NEIGHBOURS = ("auto", "kdtree", "brute")
# "auto": kd-tree for the k-th-neighbour search in up to this many coordinates, and
# for the "strictly closer than eps" counts in up to KDTREE_MAX_DIM_COUNT (the radii
# come from the joint space, so the balls are large and trees lose sooner); brute
# force above. Crossovers measured on 2 cores at N = 5 000 and 10 000.
KDTREE_MAX_DIM_KNN = 12
KDTREE_MAX_DIM_COUNT = 3
# Memory bound of one block of the torch fallback's distance matrix (bytes).
_BRUTE_BLOCK_BYTES = 256 * 2**20
# Rows per tile of the numba kernels.
_TILE_ROWS = 32


# ---------------------------------------------------------------------------
# Input checks (one-line messages: what was expected, what came)
# ---------------------------------------------------------------------------

def _as_2d(a, name: str, fn: str) -> np.ndarray:
    if isinstance(a, np.ndarray):
        arr = a
    else:
        try:  # torch tensors and the like
            arr = np.asarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a)
        except (TypeError, ValueError) as exc:
            raise EstimatorInputError(f"{fn}: {name} must be a numeric array, got {type(a).__name__}") from exc
    if arr.dtype.kind not in "fiub":
        raise EstimatorInputError(f"{fn}: {name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim != 2:
        raise EstimatorInputError(f"{fn}: {name} must be 1-d (n,) or 2-d (n, d), got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise EstimatorInputError(f"{fn}: {name} must have at least one column, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise EstimatorInputError(f"{fn}: {name} must be finite, got {bad} NaN/inf value(s)")
    return arr


def _check_k(k, n: int, fn: str) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise EstimatorInputError(f"{fn}: k must be an integer >= 1, got {k!r}")
    if n <= k:
        raise EstimatorInputError(f"{fn}: needs more samples than k={k} neighbours, got n={n}")
    return int(k)


def _check_neighbours(neighbours, fn: str) -> str:
    if neighbours not in NEIGHBOURS:
        raise EstimatorInputError(f"{fn}: neighbours must be one of {', '.join(NEIGHBOURS)}, got {neighbours!r}")
    return neighbours


def _standardize(a: np.ndarray) -> np.ndarray:
    """Each column to mean 0 and standard deviation 1 (constant columns to 0)."""
    sd = a.std(axis=0)
    return (a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _use_kdtree(neighbours: str, dim: int, max_dim: int) -> bool:
    return neighbours == "kdtree" or (neighbours == "auto" and dim <= max_dim)


# ---------------------------------------------------------------------------
# The two primitives, each with a kd-tree and a brute-force implementation
#   kth_distance(z, k)[i] = k-th smallest max-norm distance from z_i to z_j, j != i
#   count_closer(a, r)[i] = #{j != i : max-norm distance(a_i, a_j) < r_i}
# Data, distances and radii are float64.
# ---------------------------------------------------------------------------

def _kth_kdtree(z: np.ndarray, k: int) -> np.ndarray:
    from scipy.spatial import cKDTree

    # k + 1: the point itself comes back at distance 0 (or a duplicate does, which
    # is the same value); the last column is the k-th distance among the others.
    dist, _ = cKDTree(z).query(z, k=k + 1, p=np.inf, workers=-1)
    return np.ascontiguousarray(dist[:, -1], dtype=np.float64)


def _count_kdtree(a: np.ndarray, r: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    pos = r > 0
    counts = np.zeros(len(r), dtype=np.int64)
    if np.any(pos):
        # dist <= nextafter(r, 0)  <=>  dist < r  (distances are floats); the point
        # itself (distance 0 < r) is counted by the tree and removed here.
        radius = np.nextafter(r[pos], 0.0)
        found = cKDTree(a).query_ball_point(a[pos], r=radius, p=np.inf, return_length=True, workers=-1)
        counts[pos] = np.asarray(found, dtype=np.int64) - 1
    return counts


_NUMBA_KERNELS = None  # (kth, count) once compiled; False when numba is unavailable
# One parallel kernel at a time: numba's workqueue threading layer (the one used when
# neither OpenMP nor TBB is there) aborts the process on concurrent launches.
_KERNEL_LOCK = threading.Lock()


def _numba_kernels():
    """Compile (or load from numba's cache) the brute-force kernels; None without numba."""
    global _NUMBA_KERNELS
    if _NUMBA_KERNELS is None:
        try:
            from numba import njit, prange
        except Exception:  # ImportError, or a numba that fails to load
            _NUMBA_KERNELS = False
            return None

        # Rows are processed in tiles of `ti`: each row j read from memory serves the
        # whole tile while it is in cache (about 2x faster than row by row).
        @njit(parallel=True, cache=True)
        def kth_kernel(z, k, ti, out):  # pragma: no cover - compiled
            n, d = z.shape
            for tile in prange((n + ti - 1) // ti):
                i0 = tile * ti
                m = min(n, i0 + ti) - i0
                best = np.full((m, k), np.inf)  # per row: the k smallest distances, ascending
                for j in range(n):
                    for ii in range(m):
                        i = i0 + ii
                        if j == i:
                            continue
                        thr = best[ii, k - 1]
                        dist = 0.0
                        for t in range(d):
                            v = abs(z[i, t] - z[j, t])
                            if v > dist:
                                dist = v
                                if dist >= thr:  # cannot enter the k smallest: stop
                                    break
                        if dist < thr:
                            p = k - 1
                            while p > 0 and best[ii, p - 1] > dist:
                                best[ii, p] = best[ii, p - 1]
                                p -= 1
                            best[ii, p] = dist
                for ii in range(m):
                    out[i0 + ii] = best[ii, k - 1]

        @njit(parallel=True, cache=True)
        def count_kernel(a, r, span, ti, out):  # pragma: no cover - compiled
            n, d = a.shape
            for tile in prange((n + ti - 1) // ti):
                i0 = tile * ti
                i1 = min(n, i0 + ti)
                for i in range(i0, i1):
                    out[i] = 0
                for j in range(n):
                    for i in range(i0, i1):
                        ri = r[i]
                        # ri <= 0: nothing is closer; ri > span: everything is (set below)
                        if j == i or ri <= 0.0 or ri > span:
                            continue
                        inside = True
                        for t in range(d):
                            if abs(a[i, t] - a[j, t]) >= ri:
                                inside = False
                                break
                        if inside:
                            out[i] += 1
                for i in range(i0, i1):
                    if r[i] > span:
                        out[i] = n - 1

        _NUMBA_KERNELS = (kth_kernel, count_kernel)
    return _NUMBA_KERNELS or None


def _prepare_brute(a: np.ndarray) -> np.ndarray:
    """Drop constant columns (they add 0 to every distance) and put the widest
    columns first, so the early exits of the numba kernels come sooner; the
    max-norm distance between any two rows is unchanged."""
    span = a.max(axis=0) - a.min(axis=0)
    keep = np.flatnonzero(span > 0)
    if keep.size == 0:
        keep = np.array([0])
    order = keep[np.argsort(-span[keep], kind="stable")]
    return np.ascontiguousarray(a[:, order])


def _span(a: np.ndarray) -> float:
    """The largest distance any pair can have: rounding is monotone, so no computed
    |a_it - a_jt| exceeds the computed max_t (max a_t - min a_t)."""
    return float(np.max(a.max(axis=0) - a.min(axis=0)))


def _block_rows(n: int, itemsize: int) -> int:
    # about three (rows x n) temporaries live at once in the torch fallback
    return int(max(1, min(n, _BRUTE_BLOCK_BYTES // max(1, 3 * n * itemsize))))


def _kth_brute(z: np.ndarray, k: int) -> np.ndarray:
    z = _prepare_brute(z)
    kernels = _numba_kernels()
    out = np.empty(z.shape[0], dtype=np.float64)
    if kernels is not None:
        with _KERNEL_LOCK:
            kernels[0](z, k, _TILE_ROWS, out)
        return out
    import torch

    for s, e, d in _distance_blocks(z):
        out[s:e] = torch.kthvalue(d, k, dim=1).values.numpy()
    return out


def _count_brute(a: np.ndarray, r: np.ndarray) -> np.ndarray:
    a = _prepare_brute(a)
    r = np.ascontiguousarray(r, dtype=np.float64)
    kernels = _numba_kernels()
    out = np.empty(a.shape[0], dtype=np.int64)
    if kernels is not None:
        with _KERNEL_LOCK:
            kernels[1](a, r, _span(a), _TILE_ROWS, out)
        return out
    import torch

    rt = torch.from_numpy(r)
    for s, e, d in _distance_blocks(a):
        out[s:e] = (d < rt[s:e, None]).sum(dim=1).numpy()
    return out


def _distance_blocks(a: np.ndarray):
    """Without numba: yield (s, e, D) over row blocks, D the (e - s, n) max-norm
    distances of rows s..e-1 to all rows, each row's distance to itself set to inf
    (a point is neither its own neighbour nor counted)."""
    import torch

    at = torch.from_numpy(a)
    n = a.shape[0]
    step = _block_rows(n, a.itemsize)
    for s in range(0, n, step):
        e = min(n, s + step)
        d = torch.cdist(at[s:e], at, p=float("inf"))
        d[torch.arange(e - s), torch.arange(s, e)] = float("inf")
        yield s, e, d


def _kth(z: np.ndarray, k: int, neighbours: str) -> np.ndarray:
    return _kth_kdtree(z, k) if _use_kdtree(neighbours, z.shape[1], KDTREE_MAX_DIM_KNN) else _kth_brute(z, k)


def _count(a: np.ndarray, r: np.ndarray, neighbours: str) -> np.ndarray:
    if _use_kdtree(neighbours, a.shape[1], KDTREE_MAX_DIM_COUNT):
        return _count_kdtree(a, r)
    return _count_brute(a, r)


# ---------------------------------------------------------------------------
# Public estimators
# ---------------------------------------------------------------------------

def ksg_mi(x, y, k: int = 3, *, neighbours: str = "auto", standardize: bool = False) -> float:
    """Mutual information I(X;Y) in nats, KSG algorithm 1 with the max-norm.

    Parameters
    ----------
    x : array-like, shape (n, d_x) or (n,), real, finite (used as float64).
    y : array-like, shape (n, d_y) or (n,), real, finite.
    k : int >= 1, neighbours in the joint space; n must exceed k.
    neighbours : "auto" | "kdtree" | "brute"; "auto" takes the kd-tree in low
        dimension, brute force above (see the module notes).
    standardize : bool, default False. If True, z-score every column of x and y
        first (an invertible map, so the true I is unchanged). The max-norm mixes
        coordinates, so the estimate depends on their relative scales; standardizing
        removes that dependence. False is KSG algorithm 1 on the data as given.

    Returns
    -------
    float, nats. psi(k) + psi(N) - <psi(n_x + 1) + psi(n_y + 1)>; can be slightly
    negative for independent data; finite for any finite input, ties included.

    Raises
    ------
    EstimatorInputError: wrong ndim, no columns, different lengths, NaN/inf,
        n <= k, bad k or neighbours.
    """
    fn = "ksg_mi"
    neighbours = _check_neighbours(neighbours, fn)
    xa, ya = _as_2d(x, "x", fn), _as_2d(y, "y", fn)
    if xa.shape[0] != ya.shape[0]:
        raise EstimatorInputError(
            f"{fn}: x and y must have the same number of samples, got {xa.shape[0]} and {ya.shape[0]}"
        )
    n = xa.shape[0]
    k = _check_k(k, n, fn)
    if standardize:
        xa, ya = _standardize(xa), _standardize(ya)
    eps = _kth(np.hstack([xa, ya]), k, neighbours)  # joint max-norm = max of the two
    nx = _count(xa, eps, neighbours)
    ny = _count(ya, eps, neighbours)
    mi = digamma(k) + digamma(n) - np.mean(digamma(nx + 1.0) + digamma(ny + 1.0))
    return float(mi)


def ksg_mixed_mi(x, labels, k: int = 3, *, neighbours: str = "auto", standardize: bool = False) -> float:
    """Mutual information I(X;Y) in nats between a continuous x and discrete labels
    (Ross 2014, max-norm; scikit-learn's mutual_info_classif for one feature).

    Parameters
    ----------
    x : array-like, shape (n, d) or (n,), real, finite.
    labels : array-like, shape (n,), class labels (any values np.unique can sort).
    k : int >= 1; clipped to (class size - 1) per class; classes with a single
        sample are dropped (N then counts the samples that remain).
    neighbours : "auto" | "kdtree" | "brute".
    standardize : bool, default False: z-score every column of x first (see ksg_mi).

    Returns
    -------
    float, nats: psi(N) - <psi(N_c)> + <psi(k_i)> - <psi(m_i)>, not clipped at 0.

    Raises
    ------
    EstimatorInputError: wrong shapes or lengths, NaN/inf, n <= k, no class with
        two samples, bad k or neighbours.
    """
    fn = "ksg_mixed_mi"
    neighbours = _check_neighbours(neighbours, fn)
    xa = _as_2d(x, "x", fn)
    lab = np.asarray(labels)
    if lab.ndim == 2 and lab.shape[1] == 1:
        lab = lab[:, 0]
    if lab.ndim != 1:
        raise EstimatorInputError(f"{fn}: labels must be 1-d (n,), got shape {lab.shape}")
    if lab.shape[0] != xa.shape[0]:
        raise EstimatorInputError(
            f"{fn}: x and labels must have the same number of samples, got {xa.shape[0]} and {lab.shape[0]}"
        )
    if lab.dtype.kind == "f" and not np.all(np.isfinite(lab)):
        raise EstimatorInputError(f"{fn}: labels must be finite, got NaN/inf")
    k = _check_k(k, xa.shape[0], fn)
    _, codes, sizes = np.unique(lab, return_inverse=True, return_counts=True)
    codes = codes.reshape(-1)
    keep = sizes[codes] > 1
    if not np.any(keep):
        raise EstimatorInputError(f"{fn}: needs a class with at least 2 samples, got {len(sizes)} singleton classes")
    xa, codes = xa[keep], codes[keep]
    if standardize:
        xa = _standardize(xa)
    n = xa.shape[0]
    radius = np.empty(n, dtype=np.float64)
    k_all = np.empty(n, dtype=np.float64)
    for c in np.unique(codes):
        idx = np.flatnonzero(codes == c)
        kc = min(k, idx.size - 1)
        radius[idx] = _kth(xa[idx], kc, neighbours)
        k_all[idx] = kc
    # m_i counts i itself and every point strictly closer than d_i; when d_i = 0,
    # the points at distance 0 (as scikit-learn's radius query does): "< tiny".
    r = np.where(radius > 0, radius, np.nextafter(0.0, 1.0))
    m = _count(xa, r, neighbours) + 1
    n_c = np.bincount(codes)[codes]  # class sizes (singletons already dropped)
    mi = digamma(n) - np.mean(digamma(n_c)) + np.mean(digamma(k_all)) - np.mean(digamma(m))
    return float(mi)


def ksg_entropy(x, k: int = 3, *, neighbours: str = "auto") -> float:
    """Differential entropy H(X) in nats, Kozachenko-Leonenko with the max-norm.

    H = psi(N) - psi(k) + d ln 2 + d <ln r_i>, r_i the max-norm distance to the k-th
    neighbour (the max-norm ball of radius r has volume (2r)^d).

    Raises
    ------
    EstimatorInputError: wrong shape, NaN/inf, n <= k, or duplicate points that make
        some r_i = 0 (data with atoms has differential entropy -inf: add noise).
    """
    fn = "ksg_entropy"
    neighbours = _check_neighbours(neighbours, fn)
    xa = _as_2d(x, "x", fn)
    n, d = xa.shape
    k = _check_k(k, n, fn)
    r = _kth(xa, k, neighbours)
    zero = int(np.count_nonzero(r <= 0))
    if zero:
        raise EstimatorInputError(
            f"{fn}: x has repeated points ({zero} of {n} have their k={k}-th neighbour at distance 0); "
            "expected continuous data (add small noise)"
        )
    return float(digamma(n) - digamma(k) + d * math.log(2.0) + d * np.mean(np.log(r)))


# ---------------------------------------------------------------------------
# Adapter
# ---------------------------------------------------------------------------

def _unit_scale(a: np.ndarray) -> np.ndarray:
    """a divided by the root-mean-square of its column standard deviations (one scalar)."""
    spread = math.sqrt(float(np.mean(a.var(axis=0))))
    return a / spread if spread > 0 else a


class KSGEstimator(Estimator):
    """`ibcli mi --method kraskov`: KSG on the noisy layer, I(X; T+Z) and I(T+Z; Y) (Ross 2014 for Y).

    A deterministic T = f(X) makes I(X;T) infinite, so the noise Z ~ N(0, s2 I) of kde is added
    (one standard-normal draw seeded with `seed`, scaled by sqrt(s2) for each s2).
    """

    name = "kraskov"
    aliases = ("ksg",)
    title = "KSG k-nearest-neighbour estimator on T+Z (Kraskov et al. 2004, algorithm 1; Ross 2014 for labels)"
    params = (NOISE_VAR, Param("k", int, 3, "neighbours of the KSG estimator", low=1))
    needs_x = True

    def points(self, t, labels, *, x, params, context=None, seed=0, device="cpu"):
        t64 = t.astype(np.float64, copy=False)
        z = np.random.default_rng(seed).standard_normal(t64.shape)
        # The max-norm joint space compares an x-distance with a (T+Z)-distance, so put the
        # two spaces on one scale (each divided by its RMS coordinate spread; geometry within
        # each space is kept). Raw MNIST pixels vs a noisy layer otherwise gives exactly 0.
        xs = _unit_scale(np.asarray(x, dtype=np.float64))
        out = []
        for s2 in params["noise_var"]:
            tz = t64 + math.sqrt(s2) * z
            out.append(PlanePoint(ksg_mi(xs, _unit_scale(tz), k=params["k"]), ksg_mixed_mi(tz, labels, k=params["k"]),
                                  params={"noise_var": s2}))
        return out

    def mutual_information(self, x, y, y_discrete: bool, k: int = 3, neighbours: str = "auto") -> float:
        """KSG algorithm 1 (Kraskov et al. 2004, eq. 8) for a continuous y, Ross (2014) eq. 2 for labels; nats."""
        xa = as_2d_float(x, "x")
        if y_discrete:
            return float(ksg_mixed_mi(xa, as_labels(y, "y"), k=k, neighbours=neighbours))
        return float(ksg_mi(xa, as_2d_float(y, "y"), k=k, neighbours=neighbours))

    def entropy(self, x, k: int = 3, neighbours: str = "auto") -> float:
        """Kozachenko-Leonenko differential entropy with the max-norm (Kraskov et al. 2004, eq. 20); nats."""
        return float(ksg_entropy(as_2d_float(x, "x"), k=k, neighbours=neighbours))
