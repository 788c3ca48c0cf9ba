"""k-nearest-neighbour estimators of mutual information and entropy, in nats.

- `ksg_mi(x, y, k)`: Kraskov, Stoegbauer & Grassberger (2004), algorithm 1 (eq. 8):
      I = psi(k) + psi(N) - < psi(n_x + 1) + psi(n_y + 1) >
  eps_i = distance from point i to its k-th neighbour in the joint space, where the joint
  distance is the larger of the x-distance and the y-distance (as in the paper);
  n_x(i) = number of points j != i strictly closer than eps_i in x, n_y(i) likewise in y.
- `ksg_mixed_mi(x, labels, k)`: Ross (2014, eq. 2), the continuous-discrete estimator that
  scikit-learn's `mutual_info_classif` uses for one feature, generalised to a vector x:
      I = psi(N) - < psi(N_c(i)) > + < psi(k_i) > - < psi(m_i) >
  d_i = distance to the k_i-th neighbour among the points of i's class,
  k_i = min(k, N_c(i) - 1); m_i = number of points of any class (i itself included)
  strictly closer than d_i. Classes with one sample are dropped; N counts what remains.
- `ksg_entropy(x, k)`: Kozachenko-Leonenko (Kraskov et al. 2004, eq. 20):
  H = psi(N) - psi(k) + ln V_d + d < ln r_i >, r_i the k-th neighbour distance, V_d the
  volume of the unit ball of the norm.
- `ksg_information_plane(t, labels, noise_vars)`: I(X; T+Z) and I(T+Z; Y) of one layer on
  the probe set, X the probe index (see "The information plane" below).

The norm within each variable
-----------------------------
`norm="euclidean"` (the default of the MI estimators): the Euclidean distance within x and
within y; the joint distance is the larger of the two, as algorithm 1 requires. Kraskov et
al. (2004, section II) allow any norm within each variable; this is the benchmark's choice
(Czyz et al. 2023, `KSGEnsembleFirstEstimator`) and it loses less to the known downward bias
in higher dimension. `norm="max"`: the max-norm over every coordinate (kd-trees, fast in
low dimension).

Units: standardisation
----------------------
`standardize=True` (the default): every column of x and of y is shifted to mean 0 and divided
by its standard deviation (a constant column is only shifted) before anything else. This is
an invertible map of each coordinate, so the true I is unchanged, while the distances compare
coordinates, so without it the estimate depends on their units (I(1000 x; y) would come out
as 0). Rescaling a column by any a != 0 then gives the same estimate up to rounding.

Ties and atoms
--------------
An *atom* of a variable is a value that more than k samples share exactly (ReLU zeros,
saturated units, a constant column, discrete data). Distances and counts are otherwise those
of the papers; atoms follow two rules, both of which vanish for continuous data:

1. Zero radius, closed ball. When point i has at least k exact copies in the joint space
   (ksg_mi) or within its class (ksg_mixed_mi), its k-th neighbour distance is 0 and the
   strict counts of the paper are empty; its ball is then taken closed, i itself included:
   ksg_mi uses psi(c_xy) + psi(N) - psi(c_x) - psi(c_y), c = the number of copies of (x_i, y_i),
   x_i and y_i (i included), i.e. the plug-in pointwise information of the atom; ksg_mixed_mi
   uses k_i = copies of x_i in its class and m_i = copies of x_i overall. So x constant gives
   exactly 0, and an x that is 0 on one of two equiprobable classes gives ln 2.
   (Gao, Kannan, Oh & Viswanath 2017 take the same zero-radius ball, counting i out.)
2. Foreign atoms are not neighbours. Point i does not see the copies of an atom other than
   its own value: they are left out of its neighbour search and of its counts. An atom
   carries probability mass, not density, and counting it in the ball of a continuous
   point near it would credit that point with the atom's mass. Points that share i's own
   atom are seen (at distance 0), so an atom in one variable with a continuous other
   variable gives the conditional density of the latter, as it should.
Exact ties at a positive distance (quantised data) are left as the papers define them:
the k-th distance, strict counts.

The information plane
---------------------
The probe inputs X are N distinct points, taken uniform: X is a discrete index, and
T = f(X) is deterministic, so I(X;T) is ln N or infinite. As Saxe et al. (2018) and
Goldfeld et al. (2019) do, T is observed through Gaussian noise Z ~ N(0, s2 I), and
`ksg_information_plane` estimates I(X; T+Z) and I(T+Z; Y):

- draws: M independent noise draws per probe input, N*M points v_im = t_i + z_im
  (M = 2 by default; 1 for a layer flagged too wide, to bound its cost);
- I(X; T+Z) = h(T+Z) - h(T+Z | X) = h(T+Z) - h(Z) (the noise is independent of X):
  Kozachenko-Leonenko on the N*M points, minus the same estimator on the very draws z_im
  that made them. The two estimates share their k-NN bias at this n, d and k, and most of
  their noise, so the difference keeps neither (a constant layer gives 0 exactly, at any
  width). Distances between probe inputs are never used: on the probe set they carry
  nothing (all 4096 inputs of the 12-bit task are 1 apart in the max-norm). Subtracting the
  closed form d/2 ln(2 pi e s2) instead would leave the k-NN bias: hundreds of bits at
  d = 1 024;
- I(T+Z; Y): Ross's estimator on the same N*M points with the probe labels, with
  min(k, M - 1) neighbours (k when M = 1): a point's class ball then can stay inside its own
  input's cloud of draws when the inputs lie apart, where I(T+Z; Y) = H(Y); with k > M - 1
  it must reach other inputs and mixes their labels (0.65 instead of 0.96 bits on the 12-bit
  task's first layer at s2 = 0.01);
- repeats: R independent sets of draws; the reported value is the mean, clipped to
  [0, ln N] (I(X;T+Z)) and [0, H(Y)] (I(T+Z;Y), H(Y) the probe labels' entropy), with the
  sd over the repeats and se = sd / sqrt(R);
- baseline (opt-in): B more sets of draws with the labels shuffled among the N*M points
  (independent of T+Z: truth 0); the mean and 95 % quantile of I(T+Z; Y) on them show the
  estimator's bias and spread at zero information for this layer. I(X; T+Z) has no such
  baseline: its estimate never looks at which input a point came from (a shuffled pairing
  would change nothing), and its null, a constant layer, gives 0 by construction;
- flag: a layer wider than `max_width(N)` coordinates is flagged "too wide": k-NN
  estimates need a number of points exponential in the dimension (about 2.5 per axis
  here), and on the 12-bit task they are off by more than 10 % from width 10 on at
  s2 = 0.01. Its value is computed the same way (one draw per input) and clipped to the
  same range.

The neighbour searches are exact (`knn.py`); their paths agree to the last bit, ties
included. `device="cuda"` runs them by brute force in torch on the GPU (`knn`'s
neighbours="torch", float64, the same code as on the CPU): the same k-th distances and
counts, so the same estimates; the noise is drawn on the CPU by NumPy either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, gammaln

from . import knn
from ._device import is_cpu, torch_device
from ._validation import as_2d_float, as_labels
from .errors import EstimatorInputError
from .interface import BASELINE_COLUMNS, FLAG_COLUMN, NOISE_VAR, SD_COLUMNS, SE_COLUMNS, Estimator, Param, PlanePoint

__all__ = ["ksg_mi", "ksg_mixed_mi", "ksg_entropy", "ksg_information_plane", "KSGPlanePoint", "max_width",
           "NEIGHBOURS", "NORMS", "KSGEstimator"]

NEIGHBOURS = knn.NEIGHBOURS
NORMS = knn.NORMS


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


def _check_choice(value, allowed, what: str, fn: str):
    if not isinstance(value, str) or value not in allowed:
        raise EstimatorInputError(f"{fn}: {what} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _check_search(norm, neighbours, fn: str, device="cpu") -> tuple[str, str, object]:
    """(norm, neighbours, torch device or None): "auto" on a device other than the CPU is the
    torch path there; None is the CPU's own paths."""
    norm = _check_choice(norm, NORMS, "norm", fn)
    neighbours = _check_choice(neighbours, NEIGHBOURS, "neighbours", fn)
    if neighbours in ("kdtree", "sklearn") and norm != "max":
        raise EstimatorInputError(f"{fn}: neighbours={neighbours!r} serves the max-norm only; use norm='max' or "
                                  "neighbours='auto'")
    try:
        dev = None if is_cpu(device) else torch_device(device)
    except EstimatorInputError as exc:
        raise EstimatorInputError(f"{fn}: {exc}") from None
    if dev is not None:
        if neighbours not in ("auto", "torch"):
            raise EstimatorInputError(f"{fn}: neighbours={neighbours!r} runs on the CPU; on device {device!r} "
                                      "use neighbours='auto' or 'torch'")
        neighbours = "torch"
    elif neighbours == "torch":
        dev = torch_device("cpu")
    return norm, neighbours, dev


def _labels(labels, n: int, fn: str) -> np.ndarray:
    """Class codes 0..C-1 of shape (n,)."""
    lab = np.asarray(labels)
    if lab.ndim == 2 and lab.shape[1] == 1:
        lab = lab[:, 0]
    if lab.ndim != 1:
        raise EstimatorInputError(f"{fn}: labels must be 1-d (n,), got shape {lab.shape}")
    if lab.shape[0] != n:
        raise EstimatorInputError(f"{fn}: x and labels must have the same number of samples, got {n} and {lab.shape[0]}")
    if lab.dtype.kind == "f" and not np.all(np.isfinite(lab)):
        raise EstimatorInputError(f"{fn}: labels must be finite, got NaN/inf")
    return np.unique(lab, return_inverse=True)[1].reshape(-1)


def _standardize(a: np.ndarray) -> np.ndarray:
    """Each column to mean 0 and standard deviation 1 (a constant column to 0, not divided)."""
    sd = a.std(axis=0)
    return (a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


# ---------------------------------------------------------------------------
# Atoms (see the module notes)
# ---------------------------------------------------------------------------

def _copies(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(value id, number of rows equal to it, itself included) per row; -0.0 == 0.0."""
    _, inverse, counts = np.unique(a + 0.0, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    return inverse, counts[inverse]


def _atoms(a: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(atom id per row, -1 where the value is not an atom; copies per row)."""
    ids, copies = _copies(a)
    return np.where(copies > k, ids, -1), copies


def _count_seen(p: knn.Prepared, ids: np.ndarray, copies: np.ndarray, rows: np.ndarray, r: np.ndarray,
                neighbours: str, device=None) -> np.ndarray:
    """For each point in `rows` (r > 0): the points it sees strictly closer than r, itself
    included: every non-atom point, plus the copies of its own atom (all at distance 0)."""
    plain = ids == -1
    base = p if plain.all() else p.rows(np.flatnonzero(plain))
    queries = p.a if rows.size == p.n else p.a[rows]  # rows are sorted: all of them is p.a
    seen = knn.count(base, queries, r, neighbours, device)  # a non-atom query counts itself here
    return seen + np.where(ids[rows] >= 0, copies[rows], 0)


def _kth_seen(p: knn.Prepared, k: int, rows: np.ndarray, visible: np.ndarray, fallback: np.ndarray | None,
              neighbours: str, device=None) -> np.ndarray:
    """k-th neighbour distance of `rows` among the `visible` points (a boolean mask that holds
    `rows`); with k or fewer visible others, among the `fallback` points (None: all of p)."""
    data = np.flatnonzero(visible)
    if data.size <= k:
        data = np.arange(p.n) if fallback is None else np.flatnonzero(fallback)
    if data.size == p.n:
        return knn.kth(p, k, rows, neighbours, device)
    return knn.kth(p.rows(data), k, np.searchsorted(data, rows), neighbours, device)


# ---------------------------------------------------------------------------
# The estimators' per-point terms
# ---------------------------------------------------------------------------

def _ksg_terms(p: knn.Prepared, k: int, neighbours: str, device=None) -> np.ndarray:
    """Per-point terms of KSG algorithm 1 (their mean is the estimate); p = joint (x, y)."""
    n = p.n
    px, py = p.block(0), p.block(1)
    xid, cx = _atoms(px.a, k)
    yid, cy = _atoms(py.a, k)
    _, cxy = _copies(p.a)
    cont = np.flatnonzero(cxy <= k)  # rule 1 for the others: their k-th distance is 0
    eps = np.zeros(n)
    if cont.size:
        pairs, which = np.unique(np.stack([xid[cont], yid[cont]], axis=1), axis=0, return_inverse=True)
        which = which.reshape(-1)
        for g, (gx, gy) in enumerate(pairs):  # rule 2: each point sees its own atoms only
            rows = cont[which == g]
            visible = ((xid == -1) | (xid == gx)) & ((yid == -1) | (yid == gy))
            eps[rows] = _kth_seen(p, k, rows, visible, None, neighbours, device)
    kk = cxy.astype(np.float64)  # rule 1: the closed zero-radius ball, i included
    nx1, ny1 = cx.astype(np.float64), cy.astype(np.float64)
    if cont.size:
        kk[cont] = k
        nx1[cont] = _count_seen(px, xid, cx, cont, eps[cont], neighbours, device)  # n_x + 1
        ny1[cont] = _count_seen(py, yid, cy, cont, eps[cont], neighbours, device)
    return digamma(kk) + digamma(n) - digamma(nx1) - digamma(ny1)


def _mixed_terms(p: knn.Prepared, codes: np.ndarray, k: int, neighbours: str, atoms: bool = True,
                 device=None) -> np.ndarray:
    """Per-point terms of Ross's estimator (codes 0..C-1, every class >= 2 points);
    `atoms=False` skips the search for atoms (continuous data)."""
    n = p.n
    sizes = np.bincount(codes)
    k_i = np.minimum(k, sizes[codes] - 1).astype(np.float64)
    if atoms:
        xid, cx = _atoms(p.a, k)
        _, c_in = _copies(np.hstack([p.a, codes[:, None].astype(np.float64)]))
    else:
        xid, cx, c_in = np.full(n, -1), np.ones(n, dtype=np.int64), np.ones(n, dtype=np.int64)
    cont = np.flatnonzero(c_in <= k_i)  # rule 1 for the others
    radius = np.zeros(n)
    for c in range(sizes.size):
        rows_c = cont[codes[cont] == c]
        kc = int(min(k, sizes[c] - 1))
        in_c = codes == c
        for gx in np.unique(xid[rows_c]):  # rule 2
            rows = rows_c[xid[rows_c] == gx]
            radius[rows] = _kth_seen(p, kc, rows, in_c & ((xid == -1) | (xid == gx)), in_c, neighbours, device)
    # rule 1: k_i = copies of x_i in its class, m_i = copies overall (i included)
    k_all = np.where(c_in > k_i, c_in, k_i).astype(np.float64)
    m = np.where(c_in > k_i, cx, 0).astype(np.float64)
    if cont.size:
        m[cont] = _count_seen(p, xid, cx, cont, radius[cont], neighbours, device)
    return digamma(n) - digamma(sizes[codes]) + digamma(k_all) - digamma(m)


# ---------------------------------------------------------------------------
# Public estimators
# ---------------------------------------------------------------------------

def ksg_mi(x, y, k: int = 3, *, norm: str = "euclidean", standardize: bool = True,
           neighbours: str = "auto", device: str = "cpu") -> float:
    """Mutual information I(X;Y) in nats, KSG algorithm 1 (Kraskov et al. 2004, eq. 8).

    Parameters
    ----------
    x : array-like, shape (n, d_x) or (n,), real, finite (used as float64).
    y : array-like, shape (n, d_y) or (n,), real, finite.
    k : int >= 1, neighbours in the joint space; n must exceed k.
    norm : "euclidean" (default) | "max": the distance within x and within y; the joint
        distance is the larger of the two (module notes).
    standardize : bool, default True: each column of x and y to mean 0, sd 1 first (a constant
        column is only shifted); False runs on the data as given, whose units then matter.
    neighbours : "auto" | "kdtree" | "brute" | "torch" | "sklearn" (module `knn`; kdtree and sklearn serve the
        max-norm only; "torch": brute force in torch on `device`).
    device : "cpu" (default) | "cuda" ("cuda:k"): a GPU runs the torch path there (float64,
        the same distances and counts, so the same estimate).

    Returns
    -------
    float, nats: psi(k) + psi(N) - <psi(n_x + 1) + psi(n_y + 1)>, with the atom rules of
    the module notes; can be slightly negative for independent data (not clipped).

    Raises
    ------
    EstimatorInputError: wrong ndim, no columns, different lengths, NaN/inf, n <= k, bad k,
        norm, neighbours or device (unknown, unavailable, or a CPU-only neighbours on a GPU).
    """
    fn = "ksg_mi"
    norm, neighbours, dev = _check_search(norm, neighbours, fn, device)
    xa, ya = _as_2d(x, "x", fn), _as_2d(y, "y", fn)
    if xa.shape[0] != ya.shape[0]:
        raise EstimatorInputError(
            f"{fn}: x and y must have the same number of samples, got {xa.shape[0]} and {ya.shape[0]}"
        )
    k = _check_k(k, xa.shape[0], fn)
    if standardize:
        xa, ya = _standardize(xa), _standardize(ya)
    return float(np.mean(_ksg_terms(knn.prepare([xa, ya], norm), k, neighbours, dev)))


def ksg_mixed_mi(x, labels, k: int = 3, *, norm: str = "euclidean", standardize: bool = True,
                 neighbours: str = "auto", device: str = "cpu") -> float:
    """Mutual information I(X;Y) in nats between a continuous x and discrete labels
    (Ross 2014, eq. 2; scikit-learn's mutual_info_classif for one feature).

    Parameters
    ----------
    x : array-like, shape (n, d) or (n,), real, finite.
    labels : array-like, shape (n,), class labels (any values np.unique can sort).
    k : int >= 1; clipped to (class size - 1) per class; classes with a single sample are
        dropped (N then counts the samples that remain).
    norm : "euclidean" (default) | "max", the distance within x.
    standardize : bool, default True: standardize every column of x first (see ksg_mi).
    neighbours : "auto" | "kdtree" | "brute" | "torch" | "sklearn"; device : "cpu" | "cuda" (see ksg_mi).

    Returns
    -------
    float, nats: psi(N) - <psi(N_c)> + <psi(k_i)> - <psi(m_i)>, not clipped at 0; atoms as
    in the module notes (x constant gives 0).

    Raises
    ------
    EstimatorInputError: wrong shapes or lengths, NaN/inf, n <= k, no class with two
        samples, bad k, norm, neighbours or device.
    """
    fn = "ksg_mixed_mi"
    norm, neighbours, dev = _check_search(norm, neighbours, fn, device)
    xa = _as_2d(x, "x", fn)
    codes = _labels(labels, xa.shape[0], fn)
    k = _check_k(k, xa.shape[0], fn)
    sizes = np.bincount(codes)
    keep = sizes[codes] > 1
    if not np.any(keep):
        raise EstimatorInputError(f"{fn}: needs a class with at least 2 samples, got {len(sizes)} singleton classes")
    xa = xa[keep]
    codes = np.unique(codes[keep], return_inverse=True)[1].reshape(-1)
    if standardize:
        xa = _standardize(xa)
    return float(np.mean(_mixed_terms(knn.prepare([xa], norm), codes, k, neighbours, device=dev)))


def _log_unit_ball(d: int, norm: str) -> float:
    """ln of the volume of the unit ball in d dimensions: (2r)^d for the max-norm,
    pi^(d/2) / Gamma(d/2 + 1) for the Euclidean norm."""
    return d * math.log(2.0) if norm == "max" else 0.5 * d * math.log(math.pi) - float(gammaln(0.5 * d + 1.0))


def ksg_entropy(x, k: int = 3, *, norm: str = "max", neighbours: str = "auto", device: str = "cpu") -> float:
    """Differential entropy H(X) in nats, Kozachenko-Leonenko (Kraskov et al. 2004, eq. 20).

    H = psi(N) - psi(k) + ln V_d + d <ln r_i>, r_i the distance to the k-th neighbour, V_d the
    volume of the unit ball (2^d for the max-norm, pi^(d/2) / Gamma(d/2 + 1) Euclidean).
    x : (n, d) or (n,), real, finite; norm : "max" (default) | "euclidean". Not standardized
    (an entropy depends on the units). neighbours, device: as in ksg_mi.

    Raises
    ------
    EstimatorInputError: wrong shape, NaN/inf, n <= k, bad k, norm or neighbours, or
        duplicate points that make some r_i = 0 (data with atoms has differential entropy
        -inf: add noise); bad device.
    """
    fn = "ksg_entropy"
    norm, neighbours, dev = _check_search(norm, neighbours, fn, device)
    xa = _as_2d(x, "x", fn)
    n, d = xa.shape
    k = _check_k(k, n, fn)
    p = knn.prepare([xa], norm)
    r = knn.kth(p, k, neighbours=neighbours, device=dev)
    zero = int(np.count_nonzero(r <= 0))
    if zero:
        raise EstimatorInputError(
            f"{fn}: x has repeated points ({zero} of {n} have their k={k}-th neighbour at distance 0); "
            "expected continuous data (add small noise)"
        )
    log_r = 0.5 * np.log(r) if p.squared else np.log(r)  # Euclidean distances come squared
    return float(digamma(n) - digamma(k) + _log_unit_ball(d, norm) + d * np.mean(log_r))


# ---------------------------------------------------------------------------
# The information plane: I(X; T+Z) and I(T+Z; Y) on the probe set
# ---------------------------------------------------------------------------

#: A k-NN estimate needs about 2.5 points per coordinate axis: wider layers are flagged.
POINTS_PER_AXIS = 2.5


def max_width(n: int) -> int:
    """The widest layer (coordinates) whose k-NN estimate on n probe inputs is not flagged:
    the largest d with n >= 2.5^d (9 at n = 4 096, 10 at n = 10 000)."""
    d = int(math.floor(math.log(n) / math.log(POINTS_PER_AXIS)))
    while POINTS_PER_AXIS ** (d + 1) <= n:  # guard the rounding of the logarithms
        d += 1
    while d > 0 and POINTS_PER_AXIS ** d > n:
        d -= 1
    return max(d, 1)


def default_draws(n: int, d: int | None) -> int:
    """Noise draws per input when none are given: 1 for a layer wider than `max_width(n)`
    (flagged; its k-NN estimate is not trusted anyway), else 2. d None (width unknown): 2."""
    return 1 if d is not None and d > max_width(n) else 2


@dataclass(frozen=True)
class KSGPlanePoint:
    """One layer's information-plane point at one noise variance, in nats.

    i_xt, i_ty: the mean over the repeats, clipped to [0, ceiling] and [0, h_y].
    i_xt_unclipped, i_ty_unclipped: that mean before clipping.
    i_xt_sd, i_ty_sd: sd (ddof=1) over the repeats; i_xt_se, i_ty_se: sd / sqrt(repeats)
        (None with one repeat).
    i_ty_baseline, i_ty_baseline_q95: mean and 95 % quantile of I(T+Z; Y) on shuffled labels
        (truth 0), None without `baseline`; i_xt_baseline, i_xt_baseline_q95: always None
        (the null of this I(X; T+Z) is 0 by construction; module notes).
    flag: why the point is not to be read as is ("too wide: ..."), None when it can.
    ceiling: ln N; h_y: the probe labels' entropy H(Y), the ceiling of I(T;Y).
    """

    noise_var: float
    i_xt: float
    i_ty: float
    i_xt_unclipped: float
    i_ty_unclipped: float
    i_xt_sd: float | None
    i_ty_sd: float | None
    i_xt_se: float | None
    i_ty_se: float | None
    i_xt_baseline: float | None
    i_xt_baseline_q95: float | None
    i_ty_baseline: float | None
    i_ty_baseline_q95: float | None
    flag: str | None
    ceiling: float
    h_y: float

    def columns(self) -> dict:
        """The values keyed as `interface` names its shared columns (SD_COLUMNS, SE_COLUMNS,
        BASELINE_COLUMNS: key = column name without `_bits`, nats; FLAG_COLUMN: "flag")."""
        keys = ("i_xt_sd", "i_ty_sd", "i_xt_se", "i_ty_se", "i_xt_baseline", "i_xt_baseline_q95",
                "i_ty_baseline", "i_ty_baseline_q95", "flag")
        return {key: getattr(self, key) for key in keys}


def _check_int(value, name: str, low: int, fn: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise EstimatorInputError(f"{fn}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _noise_vars(noise_vars, fn: str) -> list[float]:
    values = [noise_vars] if np.isscalar(noise_vars) else list(noise_vars)
    if not values:
        raise EstimatorInputError(f"{fn}: noise_vars must hold at least one variance")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v) or v <= 0:
            raise EstimatorInputError(f"{fn}: every noise variance must be a finite number > 0, got {v!r}")
        out.append(float(v))
    return out


_REFERENCE_CACHE: dict = {}


def _kl_entropy(p: knn.Prepared, d: int, k: int, neighbours: str, device=None) -> float:
    """Kozachenko-Leonenko H in nats of d-dimensional continuous points (no repeated points)."""
    r = knn.kth(p, k, neighbours=neighbours, device=device)
    log_r = 0.5 * np.log(r) if p.squared else np.log(r)  # Euclidean distances come squared
    norm = "euclidean" if p.squared else "max"
    return float(digamma(p.n) - digamma(k) + _log_unit_ball(d, norm) + d * np.mean(log_r))


def _reference_entropy(n: int, d: int, k: int, norm: str, seed: np.random.SeedSequence, neighbours: str,
                       device=None) -> float:
    """The KL estimate of h(Z) on the n standard-normal draws that `_noisy_points` makes from
    `seed` (the same numbers), memoised per process: it depends on (n, d, k, norm, seed) only,
    so every layer of that width reuses it, at every record (every path gives the same number)."""
    key = (n, d, k, norm, repr(seed.entropy), tuple(seed.spawn_key))
    value = _REFERENCE_CACHE.get(key)
    if value is None:
        z = np.random.default_rng(seed).standard_normal((n, d))
        value = _kl_entropy(knn.Prepared(z, np.array([d], dtype=np.int64), norm == "euclidean"), d, k, neighbours,
                            device)
        if len(_REFERENCE_CACHE) >= 512:
            _REFERENCE_CACHE.clear()
        _REFERENCE_CACHE[key] = value
    return value


def _noisy_points(t_cols: np.ndarray, draws: int, s2: float, seed: np.random.SeedSequence, norm: str) -> knn.Prepared:
    """N*M points t_i + z_im (rows i*M .. i*M+M-1 belong to input i), z ~ N(0, s2 I), prepared
    without copies: the noise makes every column non-constant, t_cols is already ordered."""
    n, d = t_cols.shape
    v = np.random.default_rng(seed).standard_normal((n * draws, d))
    v *= math.sqrt(s2)
    v.reshape(n, draws, d)[:] += t_cols[:, None, :]
    return knn.Prepared(v, np.array([d], dtype=np.int64), norm == "euclidean")


def _plane_ty(p: knn.Prepared, y_rep: np.ndarray, k: int, neighbours: str, device=None) -> float:
    """Ross's estimate of I(T+Z; Y) on the noisy points (continuous: no atoms); a class with a
    single point is left out, as ksg_mixed_mi does."""
    sizes = np.bincount(y_rep)
    keep = sizes[y_rep] > 1
    if not keep.all():
        p = p.rows(np.flatnonzero(keep))
        y_rep = np.unique(y_rep[keep], return_inverse=True)[1].reshape(-1)
    if p.n <= k:
        raise EstimatorInputError("ksg_information_plane: I(T;Y) needs more than k noisy points in classes of at least 2; "
                                  "use more draws")
    return float(np.mean(_mixed_terms(p, y_rep, k, neighbours, atoms=False, device=device)))


def _summary(values: list[float]) -> tuple[float, float | None, float | None]:
    a = np.asarray(values, dtype=np.float64)
    if a.size < 2:
        return float(a.mean()), None, None
    sd = float(a.std(ddof=1))
    return float(a.mean()), sd, sd / math.sqrt(a.size)


def _null(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(np.mean(values)), float(np.quantile(values, 0.95))


def ksg_information_plane(t, labels, noise_vars=(0.1,), *, k: int = 3, draws: int | None = None, repeats: int = 5,
                          baseline: int = 0, seed: int = 0, norm: str = "max",
                          neighbours: str = "auto", device: str = "cpu") -> list[KSGPlanePoint]:
    """I(X; T+Z) and I(T+Z; Y) of one layer on the probe set, in nats, one point per noise variance.

    X is the probe index (uniform on N inputs), Z ~ N(0, s2 I) (module notes, "The
    information plane"). With M = `draws` noise draws per input, V = the N*M points t_i + z_im:

    - I(X; T+Z) = h(T+Z) - h(Z): Kozachenko-Leonenko on V minus the same estimator on the
      draws z_im themselves (their k-NN biases cancel; a constant layer gives 0 at any width);
    - I(T+Z; Y): Ross's mixed estimator on V with the probe labels (each repeated M times),
      min(k, M - 1) neighbours (k when M = 1).

    Parameters
    ----------
    t : array-like (N, d), real, finite: the layer's activations on the N probe inputs.
    labels : array-like (N,): the probe labels.
    noise_vars : float or sequence of floats > 0: s2, in T's units squared.
    k : int >= 1, neighbours.
    draws : int >= 1 or None, M; None: 2, or 1 for a layer flagged too wide (its estimate is
        not trusted anyway, and the searches cost O((N M)^2 d) there).
    repeats : int >= 1, R sets of independent draws (the reported value is their mean).
    baseline : int >= 0, B sets of null data.
    seed : int >= 0, seeds every draw (the same draws serve every s2 and, for the entropy of
        the draws alone, every layer of the same width).
    norm : "max" (default) | "euclidean"; neighbours : "auto" | "kdtree" | "brute" | "torch" | "sklearn".
    device : "cpu" (default) | "cuda": a GPU runs every neighbour search by brute force in torch
        there (float64; the same distances and counts, so the same numbers; the draws stay
        NumPy's on the CPU).

    Returns
    -------
    list[KSGPlanePoint], in the order of `noise_vars`, nats. The baseline of I(T+Z; Y): the
    estimator with the labels shuffled among the N*M points (truth 0), reported unclipped;
    I(X; T+Z) has none (module notes): its baseline fields stay None.

    Raises
    ------
    EstimatorInputError: t not (N, d) finite, labels of another length, bad noise variances,
        k, draws, repeats, baseline, seed, norm, neighbours or device.
    """
    fn = "ksg_information_plane"
    norm, neighbours, dev = _check_search(norm, neighbours, fn, device)
    ta = _as_2d(t, "t", fn)
    n, d = ta.shape
    codes = _labels(labels, n, fn)
    nv = _noise_vars(noise_vars, fn)
    k = _check_int(k, "k", 1, fn)
    wide = d > max_width(n)
    draws = default_draws(n, d) if draws is None else _check_int(draws, "draws", 1, fn)
    repeats = _check_int(repeats, "repeats", 1, fn)
    baseline = _check_int(baseline, "baseline", 0, fn)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise EstimatorInputError(f"{fn}: seed must be an integer >= 0, got {seed!r}")
    if n < 2 or n * draws <= k:
        raise EstimatorInputError(f"{fn}: needs more than k={k} noisy points, got {n} inputs x {draws} draw(s)")

    nm = n * draws
    ceiling = math.log(n)
    p_y = np.bincount(codes) / n
    h_y = float(-np.sum(p_y * np.log(p_y)))
    span = ta.max(axis=0) - ta.min(axis=0)
    t_cols = np.ascontiguousarray(ta[:, np.argsort(-span, kind="stable")])  # widest first: earlier exits
    y_rep = np.repeat(codes, draws)
    # I(T;Y): at most M - 1 neighbours, so that a class's ball can stay inside one input's
    # cloud of draws when the inputs lie apart (module notes)
    k_y = k if draws == 1 else min(k, draws - 1)
    flag = (f"too wide: {d} coordinates for {n} probe inputs (k-NN estimates are trusted up to "
            f"{max_width(n)}); computed as any layer, {draws} draw(s) per input") if wide else None

    seeds = np.random.SeedSequence(int(seed)).spawn(repeats + 2 * baseline)
    xt = {s2: [] for s2 in nv}
    ty = {s2: [] for s2 in nv}
    for r in range(repeats):
        # h(Z) on the very draws Z that make T+Z (common random numbers: the two estimates'
        # errors largely cancel, and a constant layer gives 0 exactly); KL(s Z) = KL(Z) + d ln s
        h_ref = _reference_entropy(nm, d, k, norm, seeds[r], neighbours, dev)
        for s2 in nv:
            p = _noisy_points(t_cols, draws, s2, seeds[r], norm)
            xt[s2].append(_kl_entropy(p, d, k, neighbours, dev) - h_ref - 0.5 * d * math.log(s2))
            ty[s2].append(_plane_ty(p, y_rep, k_y, neighbours, dev))

    ty_null = {s2: [] for s2 in nv}
    for b in range(baseline):
        noise_seed, perm_seed = seeds[repeats + 2 * b: repeats + 2 * b + 2]
        # labels shuffled among the N*M points: independent of T+Z (shuffling them among the
        # inputs would not be: T+Z still tells the inputs apart when s2 is small)
        shuffled = np.random.default_rng(perm_seed).permutation(y_rep)
        for s2 in nv:
            p = _noisy_points(t_cols, draws, s2, noise_seed, norm)
            ty_null[s2].append(_plane_ty(p, shuffled, k_y, neighbours, dev))

    out = []
    for s2 in nv:
        i_xt, xt_sd, xt_se = _summary(xt[s2])
        i_ty, ty_sd, ty_se = _summary(ty[s2])
        xb, xq = None, None  # see the docstring: the null of I(X; T+Z) is 0 by construction
        yb, yq = _null(ty_null[s2])
        out.append(KSGPlanePoint(
            noise_var=s2, i_xt=min(max(i_xt, 0.0), ceiling), i_ty=min(max(i_ty, 0.0), h_y),
            i_xt_unclipped=i_xt, i_ty_unclipped=i_ty, i_xt_sd=xt_sd, i_ty_sd=ty_sd, i_xt_se=xt_se,
            i_ty_se=ty_se, i_xt_baseline=xb, i_xt_baseline_q95=xq, i_ty_baseline=yb, i_ty_baseline_q95=yq,
            flag=flag, ceiling=ceiling, h_y=h_y,
        ))
    return out


# ---------------------------------------------------------------------------
# Adapter
# ---------------------------------------------------------------------------

#: Defaults of `ibcli mi --method kraskov` (the Python function's own defaults are the same).
PLANE_DEFAULTS = {"k": 3, "draws": None, "repeats": 5, "baseline": 0}


class KSGEstimator(Estimator):
    """`ibcli mi --method kraskov`: `ksg_information_plane` (I(X; T+Z) by Kozachenko-Leonenko on
    N*M noisy points minus the same estimator on noise, I(T+Z; Y) by Ross 2014; mean over
    repeats, sd, se, optional null baselines, width flag); `mutual_information` is `ksg_mi`
    (continuous y) or `ksg_mixed_mi` (labels), `entropy` is `ksg_entropy`."""

    name = "kraskov"
    aliases = ("ksg",)
    title = ("k-NN estimators on T+Z: Kozachenko-Leonenko for I(X;T), Ross's mixed KSG for I(T;Y) "
             "(Kraskov et al. 2004; Ross 2014)")
    params = (
        NOISE_VAR,
        Param("k", int, PLANE_DEFAULTS["k"], "neighbours of the k-NN estimators", low=1),
        Param("repeats", int, PLANE_DEFAULTS["repeats"],
              "independent sets of noise draws per point; their mean is reported, with sd and se", low=1),
        Param("ksg_draws", int, PLANE_DEFAULTS["draws"],
              "noise draws per probe input in each set (N*M points); default 2, 1 for a layer flagged too wide", low=1),
        Param("ksg_baseline", int, PLANE_DEFAULTS["baseline"],
              "sets of null data (truth 0) for the bias baseline columns; 0: none", low=0),
    )
    columns = SE_COLUMNS + SD_COLUMNS + BASELINE_COLUMNS + (FLAG_COLUMN,)
    uses_device = True

    def check_sizes(self, params: dict, n: int, widths: dict) -> None:
        """--k below the noisy points N x M of every chosen layer (M: --ksg-draws, else 2, or 1 for
        a layer flagged too wide), as `ksg_information_plane` needs; checked before the run exists.

        Raises:
            EstimatorInputError: k too large for a layer (the message gives the largest k allowed).
        """
        k, given = params["k"], params["ksg_draws"]
        for layer, d in widths.items():
            draws = given if given is not None else default_draws(n, d)
            if n * draws <= k:
                raise EstimatorInputError(
                    f"--k {k} needs more than {k} noisy points, but layer {layer} has {n} probe inputs x "
                    f"{draws} noise draw(s): pass --k {n * draws - 1} or less")

    def points(self, t, labels, *, x=None, params, context=None, seed=0, device="cpu"):
        pts = ksg_information_plane(t, labels, params["noise_var"], k=params["k"], draws=params["ksg_draws"],
                                    repeats=params["repeats"], baseline=params["ksg_baseline"], seed=seed,
                                    device=device)
        return [PlanePoint(p.i_xt, p.i_ty, {key: v for key, v in p.columns().items() if v is not None},
                           {"noise_var": p.noise_var}) for p in pts]

    def mutual_information(self, x, y, y_discrete: bool, *, k: int = 3, norm: str = "euclidean",
                           standardize: bool = True, neighbours: str = "auto", device: str = "cpu") -> float:
        """KSG algorithm 1 (Kraskov et al. 2004, eq. 8) for a continuous y, Ross (2014, eq. 2) for
        labels; nats. Each column standardised first unless standardize=False; the Euclidean
        norm within each variable unless norm="max"; atoms as in the `ksg` module notes."""
        xa = as_2d_float(x, "x")
        kw = dict(k=k, norm=norm, standardize=standardize, neighbours=neighbours, device=device)
        if y_discrete:
            return ksg_mixed_mi(xa, as_labels(y, "y"), **kw)
        return ksg_mi(xa, as_2d_float(y, "y"), **kw)

    def entropy(self, x, *, k: int = 3, norm: str = "max", neighbours: str = "auto", device: str = "cpu") -> float:
        """Kozachenko-Leonenko differential entropy (Kraskov et al. 2004, eq. 20), nats; in x's own
        units (not standardised)."""
        return ksg_entropy(as_2d_float(x, "x"), k=k, norm=norm, neighbours=neighbours, device=device)
