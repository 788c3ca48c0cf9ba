"""Exact k-nearest-neighbour distances and radius counts, for the estimators in `ksg.py`.

The rows of an (n, d) array are points; its columns are split into consecutive blocks, one
block per variable (x, then y). The distance between two rows is, for

- norm "max":       max over every column of |a_t - b_t| (the max-norm);
- norm "euclidean": max over the blocks of sum_{t in block} (a_t - b_t)^2, i.e. the SQUARE of
  max(||a_x - b_x||_2, ||a_y - b_y||_2).

Euclidean distances stay squared everywhere here (no square roots), so every comparison is
made on the same float64 numbers on every path; callers take roots where they need lengths.

The two primitives
------------------
`kth(p, k, rows)[i]`      the k-th smallest distance from row rows[i] of p to the OTHER rows of p;
`count(p, q, r)[i]`       the number of rows of p strictly closer than r[i] to query q[i] (a query
                          that is itself a row of p counts itself when r[i] > 0: callers subtract).

`neighbours="kdtree"`: scipy's cKDTree with p=inf (max-norm only; fast in low dimension).
`neighbours="sklearn"`: scikit-learn's `KDTree` (Chebyshev metric; max-norm
only): the plain reference k-NN path beside the fast ones, slower, never chosen by "auto"; the
tests hold every other path to its k-th distances and counts.
`neighbours="brute"`: every pair. With numba (compiled on first use, then cached on disk):
parallel kernels over tiles of query rows, O(n d) memory, that stop scanning a pair's
coordinates as soon as the pair is known to be too far (exact pruning, no approximation).
Without numba: the torch path on the CPU. `"auto"` uses the kd-tree for the max-norm in low
dimension (`KDTREE_MAX_DIM_KNN`, `KDTREE_MAX_DIM_COUNT`), brute force otherwise.
`neighbours="torch"`: every pair in torch on `device` (a CUDA GPU, or the CPU: the same code),
by blocks of query rows against all rows (memory about `_TORCH_BLOCK_BYTES` per block): a block
of float64 distances, then `torch.topk` for the k-th distance and `d < r` for the counts. On a
GPU the block comes from one Triton kernel (`_knn_triton`, a tile of pairs in registers; see
`TRITON`); otherwise from torch operations: the max-norm by `torch.cdist(p=inf)` (a maximum of
|a_t - b_t|: exact), the squared Euclidean distance summed column by column in the blocks'
order. Both sum as the numba kernels do (separate float64 operations, no fused multiply-add),
so every path sees the same float64 distances: the same k-th distances and counts, ties
included, for both norms (tests/test_gpu_estimators.py).

`prepare` fixes, once per estimate, the float64 array every path reads: constant columns
dropped (they add 0 to every distance) and, within each block, the widest columns first (the
early exits come sooner). Row subsets of one prepared array keep its column order, so a
distance is computed the same way (same terms, same order) wherever it is needed, and
"strictly closer than the k-th neighbour" is decided on the very numbers that defined it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

# torch is imported inside the functions that use it (deferred on purpose): the registry loads
# this module for `ibcli --help` and the CLI's options, which start without torch.

__all__ = ["NEIGHBOURS", "NORMS", "Prepared", "prepare", "kth", "count", "triton_in_use", "TRITON", "KDTREE_MAX_DIM_KNN",
           "KDTREE_MAX_DIM_COUNT"]

NEIGHBOURS = ("auto", "kdtree", "brute", "torch", "sklearn")
NORMS = ("euclidean", "max")
# "auto": kd-tree for the k-th-neighbour search in up to this many coordinates, and for the
# "strictly closer than r" counts in up to KDTREE_MAX_DIM_COUNT (the radii come from a joint
# space, so the balls are large and trees lose sooner); brute force above. Crossovers measured
# on 2 cores at N = 5 000 and 10 000.
KDTREE_MAX_DIM_KNN = 12
KDTREE_MAX_DIM_COUNT = 3
# Memory bound of one block of query rows of the torch path (bytes), per kind of device.
_TORCH_BLOCK_BYTES = {"cuda": 2**30, "cpu": 64 * 2**20}
#: The torch path's distance blocks from the Triton kernel: "auto" on CUDA devices when Triton
#: loads, "never" (torch operations only), "always" (also on the CPU, where it needs
#: TRITON_INTERPRET=1 set before Triton is imported: the tests run it so).
TRITON = "auto"
_TRITON_STATE: dict = {}  # "module": the loaded kernel module, or "failed": why not
# Query rows per tile of the numba kernels.
_TILE_ROWS = 32


@dataclass(frozen=True)
class Prepared:
    """Points ready for the primitives: `a` (n, d') float64 C-contiguous, `ends` the end column
    of each block in `a` (int64), `squared` True for the per-block squared Euclidean distance.
    `devices` holds copies of `a` as torch tensors, one per device the torch path used; row and
    block subsets are cut from them there (no second transfer)."""

    a: np.ndarray
    ends: np.ndarray
    squared: bool
    devices: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def n(self) -> int:
        return self.a.shape[0]

    def on(self, device):
        """`a` as a float64 tensor on torch device `device` (made once, then kept)."""
        import torch

        key = str(device)
        if key not in self.devices:
            self.devices[key] = torch.from_numpy(self.a).to(device)
        return self.devices[key]

    def rows(self, idx) -> "Prepared":
        """The same points' subset `idx` (integer indices), same columns and blocks."""
        idx = np.asarray(idx)
        sub = Prepared(np.ascontiguousarray(self.a[idx]), self.ends, self.squared)
        if self.devices:
            import torch

            index = torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64))
            sub.devices.update({key: t.index_select(0, index.to(t.device)) for key, t in self.devices.items()})
        return sub

    def block(self, b: int) -> "Prepared":
        """Block b alone (e.g. x out of the joint (x, y)), same column order."""
        start, end = 0 if b == 0 else int(self.ends[b - 1]), int(self.ends[b])
        a = np.ascontiguousarray(self.a[:, start:end])
        sub = Prepared(a, np.array([a.shape[1]], dtype=np.int64), self.squared)
        sub.devices.update({key: t[:, start:end].contiguous() for key, t in self.devices.items()})
        return sub

    def span(self, q: np.ndarray | None = None) -> float:
        """An upper bound of every distance between two rows (and the queries q, if given),
        computed so that no computed distance exceeds it (rounding is monotone; the sums run
        in the same order as the kernels')."""
        hi, lo = self.a.max(axis=0), self.a.min(axis=0)
        if q is not None and len(q):
            hi, lo = np.maximum(hi, q.max(axis=0)), np.minimum(lo, q.min(axis=0))
        w = hi - lo
        if not self.squared:
            return float(w.max())
        start, best = 0, 0.0
        for end in self.ends:
            s = 0.0
            for t in range(start, int(end)):
                s += float(w[t]) * float(w[t])
            best, start = max(best, s), int(end)
        return best


def prepare(blocks, norm: str) -> Prepared:
    """Join the float64 arrays `blocks` ((n, d_b) each, one per variable) into a `Prepared`.

    When every variable has one non-constant column, "euclidean" is the max-norm (|a - b| in
    each), and is prepared as such: the kd-tree can then serve it.
    """
    cols, ends, end = [], [], 0
    for a in blocks:
        w = a.max(axis=0) - a.min(axis=0)
        keep = np.flatnonzero(w > 0)
        if keep.size == 0:  # a constant variable: one zero column keeps the block
            cols.append(np.zeros((a.shape[0], 1)))
            end += 1
        else:
            cols.append(a[:, keep[np.argsort(-w[keep], kind="stable")]])
            end += keep.size
        ends.append(end)
    widths = np.diff(np.r_[0, ends])
    return Prepared(np.ascontiguousarray(np.hstack(cols), dtype=np.float64),
                    np.asarray(ends, dtype=np.int64), norm == "euclidean" and bool(np.any(widths > 1)))


def _use_kdtree(p: Prepared, neighbours: str, max_dim: int) -> bool:
    if p.squared or neighbours in ("torch", "sklearn"):
        return False
    return neighbours == "kdtree" or (neighbours == "auto" and p.a.shape[1] <= max_dim)


# ---------------------------------------------------------------------------
# kd-tree (max-norm)
# ---------------------------------------------------------------------------

def _kth_kdtree(p: Prepared, k: int, rows: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    # k + 1: the point itself comes back at distance 0 (or a copy does, the same value);
    # the last column is the k-th distance among the others.
    dist, _ = cKDTree(p.a).query(p.a[rows], k=k + 1, p=np.inf, workers=-1)
    return np.ascontiguousarray(dist[:, -1], dtype=np.float64)


def _count_kdtree(p: Prepared, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    pos = r > 0
    out = np.zeros(len(r), dtype=np.int64)
    if np.any(pos):
        # dist <= nextafter(r, 0)  <=>  dist < r (distances are floats)
        found = cKDTree(p.a).query_ball_point(q[pos], r=np.nextafter(r[pos], 0.0), p=np.inf,
                                              return_length=True, workers=-1)
        out[pos] = np.asarray(found, dtype=np.int64)
    return out


# ---------------------------------------------------------------------------
# scikit-learn (max-norm): the reference path
# ---------------------------------------------------------------------------

def _sklearn_tree(p: Prepared):
    from sklearn.neighbors import KDTree

    if p.squared:  # callers check first (EstimatorInputError); this guards direct use
        raise ValueError("neighbours='sklearn' serves the max-norm only (the per-block Euclidean distance is not "
                         "a scikit-learn metric)")
    return KDTree(p.a, metric="chebyshev")


def _kth_sklearn(p: Prepared, k: int, rows: np.ndarray) -> np.ndarray:
    # k + 1 as for scipy's tree: the point itself (or a copy) comes back at distance 0.
    dist, _ = _sklearn_tree(p).query(p.a[rows], k=k + 1)
    return np.ascontiguousarray(dist[:, -1], dtype=np.float64)


def _count_sklearn(p: Prepared, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    pos = r > 0
    out = np.zeros(len(r), dtype=np.int64)
    if np.any(pos):  # dist <= nextafter(r, 0)  <=>  dist < r
        out[pos] = _sklearn_tree(p).query_radius(q[pos], r=np.nextafter(r[pos], 0.0), count_only=True)
    return out


# ---------------------------------------------------------------------------
# brute force: numba kernels, torch fallback
# ---------------------------------------------------------------------------

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

        # Query rows are processed in tiles of `ti`: each data row j read from memory serves
        # the whole tile while it is in cache (about 2x faster than row by row). A pair's
        # scan stops as soon as one block's partial value reaches the threshold: partial
        # maxima and partial sums of non-negative terms only grow.
        @njit(parallel=True, cache=True)
        def kth_kernel(z, rows, k, ends, sq, ti, out):  # pragma: no cover - compiled
            n = z.shape[0]
            nq = rows.shape[0]
            nb = ends.shape[0]
            for tile in prange((nq + ti - 1) // ti):
                q0 = tile * ti
                m = min(nq, q0 + ti) - q0
                best = np.full((m, k), np.inf)  # per query: the k smallest distances, ascending
                for j in range(n):
                    for ii in range(m):
                        i = rows[q0 + ii]
                        if j == i:
                            continue
                        thr = best[ii, k - 1]
                        dist = 0.0
                        start = 0
                        for b in range(nb):
                            s = 0.0
                            for t in range(start, ends[b]):
                                v = abs(z[i, t] - z[j, t])
                                if sq:
                                    s += v * v
                                elif v > s:
                                    s = v
                                if s >= thr:
                                    break
                            if s > dist:
                                dist = s
                            if dist >= thr:  # cannot enter the k smallest: stop
                                break
                            start = ends[b]
                        if dist < thr:
                            p = k - 1
                            while p > 0 and best[ii, p - 1] > dist:
                                best[ii, p] = best[ii, p - 1]
                                p -= 1
                            best[ii, p] = dist
                for ii in range(m):
                    out[q0 + ii] = best[ii, k - 1]

        @njit(parallel=True, cache=True)
        def count_kernel(a, q, r, ends, sq, span, ti, out):  # pragma: no cover - compiled
            n = a.shape[0]
            nq = q.shape[0]
            nb = ends.shape[0]
            for tile in prange((nq + ti - 1) // ti):
                i0 = tile * ti
                i1 = min(nq, i0 + ti)
                for i in range(i0, i1):
                    out[i] = 0
                for j in range(n):
                    for i in range(i0, i1):
                        ri = r[i]
                        # ri <= 0: nothing is closer; ri > span: everything is (set below)
                        if ri <= 0.0 or ri > span:
                            continue
                        inside = True
                        start = 0
                        for b in range(nb):
                            s = 0.0
                            for t in range(start, ends[b]):
                                v = abs(q[i, t] - a[j, t])
                                if sq:
                                    s += v * v
                                elif v > s:
                                    s = v
                                if s >= ri:
                                    inside = False
                                    break
                            if not inside:
                                break
                            start = ends[b]
                        if inside:
                            out[i] += 1
                for i in range(i0, i1):
                    if r[i] > span:
                        out[i] = n

        _NUMBA_KERNELS = (kth_kernel, count_kernel)
    return _NUMBA_KERNELS or None


def _kth_brute(p: Prepared, k: int, rows: np.ndarray) -> np.ndarray:
    kernels = _numba_kernels()
    if kernels is None:
        return _kth_torch(p, k, rows, "cpu")
    out = np.empty(len(rows), dtype=np.float64)
    with _KERNEL_LOCK:
        kernels[0](p.a, rows, k, p.ends, p.squared, _TILE_ROWS, out)
    return out


def _count_brute(p: Prepared, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    kernels = _numba_kernels()
    if kernels is None:
        return _count_torch(p, q, r, "cpu")
    out = np.empty(len(r), dtype=np.int64)
    span = p.span(q)
    with _KERNEL_LOCK:
        kernels[1](p.a, np.ascontiguousarray(q), r, p.ends, p.squared, span, _TILE_ROWS, out)
    return out


# ---------------------------------------------------------------------------
# brute force in torch, on any device
# ---------------------------------------------------------------------------

def _triton_kernel(device):
    """The Triton kernel module when `TRITON` says to use it on `device`, else None. A kernel that
    fails to load or to run once is given up for the process, with one warning."""
    import torch

    if TRITON == "never" or (TRITON == "auto" and torch.device(device).type != "cuda") or "failed" in _TRITON_STATE:
        return None
    if "module" not in _TRITON_STATE:
        try:
            from . import _knn_triton  # imports Triton: only when a CUDA device asks

            _TRITON_STATE["module"] = _knn_triton
        except Exception as exc:  # no Triton, or one that cannot load here
            _triton_failed(exc)
            return None
    return _TRITON_STATE["module"]


def _triton_failed(exc: Exception) -> None:
    import warnings

    _TRITON_STATE["failed"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    warnings.warn(f"knn: the Triton distance kernel is not used ({_TRITON_STATE['failed']}); torch operations instead",
                  RuntimeWarning, stacklevel=3)


def triton_in_use(device) -> bool:
    """Whether the torch path's distance blocks on `device` come from the Triton kernel."""
    return _triton_kernel(device) is not None


def _column_ranges(ends: np.ndarray, device):
    """(starts, ends) of each variable's columns as int64 tensors on `device` (for the kernel)."""
    import torch

    e = np.asarray(ends, dtype=np.int64)
    return (torch.from_numpy(np.r_[0, e[:-1]].astype(np.int64)).to(device), torch.from_numpy(e).to(device))


def _torch_distances(a, q, ends: np.ndarray, squared: bool, ranges=None):
    """(m, n) float64 distances of the queries q (m, d') to the rows a (n, d'), both tensors on
    one device, computed as the numba kernels compute them: the max-norm as a maximum of
    |q_t - a_t| (exact, in any order), the squared Euclidean distance of each block as a sum
    over its columns in order, one separate float64 operation per step (no fused multiply-add,
    so every device rounds it alike), the largest block's sum kept. ranges: `_column_ranges`
    on a's device, when the Triton kernel is to be used."""
    import torch

    kernel = _triton_kernel(a.device) if ranges is not None else None
    if kernel is not None and q.shape[0] and a.shape[0]:
        try:
            return kernel.distances(a, q.contiguous(), ranges[0], ranges[1], squared)
        except Exception as exc:  # a kernel that does not compile or launch here: torch instead
            _triton_failed(exc)
    if not squared:
        return torch.cdist(q, a, p=float("inf"))
    dist, start = None, 0
    for end in ends:
        s = None
        for t in range(start, int(end)):
            v = torch.sub(q[:, t, None], a[None, :, t])
            v.mul_(v)
            s = v if s is None else s.add_(v)
        dist = s if dist is None else torch.maximum(dist, s, out=dist)
        start = int(end)
    return dist


def _query_rows(n: int, device) -> int:
    """Query rows per block: the distances, their squared-sum buffers and the masks."""
    import torch

    kind = torch.device(device).type
    budget = _TORCH_BLOCK_BYTES.get(kind, _TORCH_BLOCK_BYTES["cpu"])
    return int(max(1, budget // (4 * 8 * max(n, 1))))


def _kth_torch(p: Prepared, k: int, rows: np.ndarray, device) -> np.ndarray:
    """k-th smallest distance from rows[i] to the other rows of p, in torch on `device`."""
    import torch

    a = p.on(device)
    rows_t = torch.from_numpy(rows).to(a.device)
    ranges = _column_ranges(p.ends, a.device) if triton_in_use(a.device) else None
    out = np.empty(len(rows), dtype=np.float64)
    step = _query_rows(p.n, device)
    with torch.no_grad():
        for s in range(0, len(rows), step):
            e = min(len(rows), s + step)
            idx = rows_t[s:e]
            d = _torch_distances(a, a.index_select(0, idx), p.ends, p.squared, ranges)
            d[torch.arange(e - s, device=a.device), idx] = float("inf")  # not its own neighbour
            # the k smallest (unordered), then their largest: the k-th distance
            out[s:e] = torch.topk(d, k, dim=1, largest=False, sorted=False).values.amax(dim=1).cpu().numpy()
            del d
    return out


def _count_torch(p: Prepared, q: np.ndarray, r: np.ndarray, device) -> np.ndarray:
    """How many rows of p lie strictly closer than r[i] to q[i], in torch on `device`."""
    import torch

    a = p.on(device)
    qt = a if q is p.a else torch.from_numpy(np.ascontiguousarray(q, dtype=np.float64)).to(a.device)
    rt = torch.from_numpy(r).to(a.device)
    ranges = _column_ranges(p.ends, a.device) if triton_in_use(a.device) else None
    out = np.empty(len(r), dtype=np.int64)
    step = _query_rows(p.n, device)
    with torch.no_grad():
        for s in range(0, len(r), step):
            e = min(len(r), s + step)
            d = _torch_distances(a, qt[s:e], p.ends, p.squared, ranges)
            out[s:e] = (d < rt[s:e, None]).sum(dim=1).cpu().numpy()
            del d
    return out


# ---------------------------------------------------------------------------
# The primitives
# ---------------------------------------------------------------------------

def kth(p: Prepared, k: int, rows=None, neighbours: str = "auto", device="cpu") -> np.ndarray:
    """The k-th smallest distance from each row in `rows` (default: all) to the other rows of p.

    Returns (len(rows),) float64 (squared for "euclidean"). Needs 1 <= k < p.n.
    device: the torch device of neighbours="torch" (ignored by the other paths).
    """
    rows = np.arange(p.n, dtype=np.int64) if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return np.empty(0)
    if neighbours == "torch":
        return _kth_torch(p, k, rows, device)
    if neighbours == "sklearn":
        return _kth_sklearn(p, k, rows)
    if _use_kdtree(p, neighbours, KDTREE_MAX_DIM_KNN):
        return _kth_kdtree(p, k, rows)
    return _kth_brute(p, k, rows)


def count(p: Prepared, q: np.ndarray, r: np.ndarray, neighbours: str = "auto", device="cpu") -> np.ndarray:
    """How many rows of p lie strictly closer than r[i] to the query q[i] (q: (m, d') in p's
    columns, e.g. `p.a[idx]`; r: (m,) in p's units). Returns (m,) int64; r <= 0 gives 0.
    device: the torch device of neighbours="torch" (ignored by the other paths)."""
    r = np.ascontiguousarray(r, dtype=np.float64)
    if len(r) == 0 or p.n == 0:
        return np.zeros(len(r), dtype=np.int64)
    if neighbours == "torch":
        return _count_torch(p, q, r, device)
    if neighbours == "sklearn":
        return _count_sklearn(p, q, r)
    if _use_kdtree(p, neighbours, KDTREE_MAX_DIM_COUNT):
        return _count_kdtree(p, q, r)
    return _count_brute(p, q, r)
