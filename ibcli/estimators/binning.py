"""Binning (plug-in) estimators of entropy and mutual information, in nats.

The information-plane recipe of Shwartz-Ziv & Tishby (2017), "Opening the black box
of deep neural networks via information", arXiv:1703.00810, section 3: discretise a
layer's activations T into bins; T is a deterministic function of the input X, and
X is uniform over the N probe samples, so H(T_binned | X) = 0 and

    I(X; T) = H(T_binned),
    I(T; Y) = H(T_binned) - sum_y p(y) H(T_binned | Y = y),

with plug-in (maximum-likelihood) entropies H = -sum_k p_k ln p_k of the empirical
pattern frequencies. Equal-mass ("adaptive") bins follow Chelombiev, Houghton &
O'Donnell (2019), "Adaptive estimators show information compression in deep neural
networks", ICLR.

Ceiling: with N distinct probe samples I(X;T) <= ln N; a wide layer whose binned
patterns are all distinct sits there at every epoch, so `binning_information_plane`
also reports the share of samples whose pattern is unique.

Fast path: `discretize` maps values to bin codes with arithmetic on a fine uniform
grid plus one exact comparison (no per-value binary search), codes are uint8 for up
to 256 bins, and `pattern_ids` gives each distinct row of codes one integer id from a
64-bit hash of the row that is then verified row by row (a collision falls back to
np.unique on the rows as byte strings, so distinct patterns are never merged). One
pass of ids serves both H(T) and H(T|Y).
"""

from __future__ import annotations

import numpy as np

from ._validation import as_2d_float, as_labels, check_finite, check_same_length, is_discrete_dtype
from .errors import EstimatorInputError
from .interface import Column, Estimator, Param, PlanePoint

__all__ = [
    "bin_edges",
    "discretize",
    "pattern_ids",
    "discrete_entropy",
    "discrete_mi",
    "binning_information_plane",
    "STRATEGIES",
    "BinningEstimator",
]

STRATEGIES = ("uniform", "adaptive")


# --------------------------------------------------------------------------- edges
def bin_edges(values, bins: int = 30, strategy: str = "uniform") -> np.ndarray:
    """Bin edges that fit the range (or the distribution) of `values`.

    Parameters
    ----------
    values : array-like, any shape, real
        Every value the edges must cover. For the information plane pass one
        layer's activations over ALL recorded epochs (e.g. stacked, or just their
        overall min and max for "uniform"), so the range fits the activation
        (ReLU's [0, 7], tanh's [-1, 1]) and is the same at every epoch.
    bins : int, > 0
        Number of bins.
    strategy : {"uniform", "adaptive"}
        "uniform": `bins` equal-width bins over [min, max] (Shwartz-Ziv & Tishby
        2017). "adaptive": equal-mass bins, edges at the quantiles
        0, 1/bins, ..., 1 of `values` (Chelombiev et al. 2019); repeated
        quantiles (e.g. ReLU's mass at 0) are merged, so fewer bins may result.

    Returns
    -------
    np.ndarray, shape (m + 1,), float64, strictly increasing, with m = bins for
    "uniform" (m <= bins for "adaptive"). Constant values give the degenerate
    edge set [v, v]: one bin that holds everything.

    Raises
    ------
    EstimatorInputError
        bins not a positive integer, unknown strategy, no values, NaN/inf.
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins <= 0:
        raise EstimatorInputError(f"bins must be a positive integer; got {bins!r}")
    if strategy not in STRATEGIES:
        raise EstimatorInputError(
            f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}"
        )
    arr = np.asarray(values)
    if arr.dtype.kind not in "iubf":
        raise EstimatorInputError(f"values must be real numbers; got dtype {arr.dtype}")
    if arr.size == 0:
        raise EstimatorInputError("values must hold at least one number to fit bin edges; got none")
    check_finite(arr, "values")
    lo = float(arr.min())
    hi = float(arr.max())
    if lo == hi:
        return np.array([lo, hi], dtype=np.float64)
    if strategy == "uniform":
        edges = np.linspace(lo, hi, int(bins) + 1)
        edges[0], edges[-1] = lo, hi
        return edges
    q = np.quantile(arr.reshape(-1).astype(np.float64, copy=False), np.linspace(0.0, 1.0, int(bins) + 1))
    q[0], q[-1] = lo, hi
    return np.unique(q)


def _check_edges(edges) -> np.ndarray:
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2:
        raise EstimatorInputError(
            f"edges must be a 1-d array of at least 2 increasing values (from bin_edges); got shape {e.shape}"
        )
    check_finite(e, "edges")
    d = np.diff(e)
    if not (np.all(d > 0) or (e.size == 2 and d[0] == 0)):
        raise EstimatorInputError("edges must be strictly increasing (as bin_edges returns them)")
    return e


def _code_dtype(n_bins: int):
    if n_bins <= 256:
        return np.uint8
    if n_bins <= 65536:
        return np.uint16
    return np.int32


# --------------------------------------------------------------------------- codes
def _lut_plan(edges: np.ndarray, dtype) -> tuple | None:
    """Plan for exact fast binning: a uniform grid of cells, each of which (widened
    by a rounding margin) holds at most one interior edge. None if no grid <= 2^16
    cells does that (very uneven edges): the caller falls back to searchsorted."""
    lo, hi = float(edges[0]), float(edges[-1])
    interior = edges[1:-1]
    eps = float(np.finfo(dtype).eps)
    margin = 32.0 * eps * (abs(lo) + abs(hi)) + 1e-300
    n_bins = edges.size - 1
    cells = 2 * n_bins
    while cells <= 65536:
        w = (hi - lo) / cells
        if w > 8 * margin:
            left = lo + w * np.arange(cells)
            right = left + w
            # interior edges inside each widened cell [left - margin, right + margin]
            first = np.searchsorted(interior, left - margin, side="left")
            last = np.searchsorted(interior, right + margin, side="right")
            if np.all(last - first <= 1):
                base = first  # number of interior edges below the widened cell
                edge_in = np.full(cells, np.inf)
                has = last > first
                edge_in[has] = interior[first[has]]
                return lo, hi, cells, base, edge_in
        cells *= 4
    return None


def _edge_for_dtype(e: np.ndarray, dtype) -> np.ndarray:
    """Smallest `dtype` value >= each float64 edge, so that for values v of that
    dtype, v >= edge_cast <=> v >= edge (exact comparisons without upcasting v)."""
    if dtype == np.float64:
        return e
    with np.errstate(over="ignore"):
        c = e.astype(dtype)
    low = np.isfinite(c) & (c.astype(np.float64) < e)
    c[low] = np.nextafter(c[low], dtype(np.inf))
    return c


def discretize(t, edges) -> np.ndarray:
    """Bin codes of each value: code k means edges[k] <= value < edges[k + 1].

    Values below edges[0] go to bin 0 and values at or above edges[-1] go to the
    last bin (so the maximum itself is in the last bin), exactly as
    ``np.searchsorted(edges[1:-1], t, side="right")`` but much faster (uniform-grid
    arithmetic plus one exact comparison per value).

    Parameters
    ----------
    t : array-like, shape (n, d) (any shape is accepted and kept), real, finite
        Activations; float32 stays float32.
    edges : array-like, shape (m + 1,), strictly increasing (from `bin_edges`)

    Returns
    -------
    np.ndarray, same shape as `t`, dtype uint8 when m <= 256 bins (uint16 up to
    65536, else int32), C-contiguous.

    Raises
    ------
    EstimatorInputError
        bad edges, NaN/inf in t.
    """
    e = _check_edges(edges)
    arr = np.asarray(t)
    if arr.dtype.kind not in "iubf":
        raise EstimatorInputError(f"t must hold real numbers; got dtype {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    check_finite(arr, "t")
    return _discretize(arr, e)


def _discretize(arr: np.ndarray, e: np.ndarray) -> np.ndarray:
    """`discretize` on checked input: finite float array, checked edges."""
    n_bins = e.size - 1
    cdt = _code_dtype(n_bins)
    if e.size == 2:
        return np.zeros(arr.shape, dtype=cdt)
    work = arr.dtype.type if arr.dtype in (np.float32, np.float64) else np.float64
    arr = np.ascontiguousarray(arr, dtype=work)
    plan = _lut_plan(e, work)
    if plan is None:  # very uneven edges: exact binary search (slower)
        return np.searchsorted(_edge_for_dtype(e[1:-1], work), arr, side="right").astype(cdt)
    lo, hi, cells, base, edge_in = plan
    base = base.astype(cdt)
    edge_w = _edge_for_dtype(edge_in, work)
    lo_w, scale = work(lo), work(cells / (hi - lo))
    flat = arr.reshape(-1)
    codes = np.empty(flat.shape, dtype=cdt)
    # Work in blocks that stay in cache, with reused buffers (no large temporaries).
    block = min(flat.size, 1 << 16)
    fbuf = np.empty(block, dtype=work)
    ibuf = np.empty(block, dtype=np.intp)
    bbuf = np.empty(block, dtype=bool)
    for s0 in range(0, flat.size, block):
        s1 = min(s0 + block, flat.size)
        m = s1 - s0
        v, f, ix, b, out = flat[s0:s1], fbuf[:m], ibuf[:m], bbuf[:m], codes[s0:s1]
        np.subtract(v, lo_w, out=f)
        np.multiply(f, scale, out=f)
        np.clip(f, 0, cells - 1, out=f)
        np.copyto(ix, f, casting="unsafe")  # truncation = floor for f >= 0
        np.take(base, ix, out=out)
        np.take(edge_w, ix, out=f)
        np.greater_equal(v, f, out=b)
        out += b.view(np.uint8) if cdt == np.uint8 else b
    return codes.reshape(arr.shape)


_HASH_MULT = None


def _hash_multipliers(m: int) -> np.ndarray:
    """m fixed random odd 64-bit multipliers (a fixed seed: ids are repeatable)."""
    global _HASH_MULT
    if _HASH_MULT is None or _HASH_MULT.size < m:
        rng = np.random.default_rng(0x1B5EED)
        _HASH_MULT = rng.integers(0, 2**63, size=max(m, 256), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    return _HASH_MULT[:m]


def _void_unique_ids(c: np.ndarray) -> tuple[np.ndarray, int]:
    n = c.shape[0]
    rows = c.view(np.dtype((np.void, c.shape[1] * c.dtype.itemsize))).reshape(n)
    uniq, inv = np.unique(rows, return_inverse=True)
    return inv.reshape(-1).astype(np.int64, copy=False), int(uniq.size)


def pattern_ids(codes) -> tuple[np.ndarray, int]:
    """Give each distinct row of `codes` one integer id (exact).

    Parameters
    ----------
    codes : array-like, shape (n, d) (or (n,)), integer, bool or float
        Rows are patterns; two rows get the same id iff they are equal
        (for floats, iff their values are equal; -0.0 equals 0.0).

    Returns
    -------
    (ids, n_patterns): ids np.ndarray shape (n,), int64 in 0..n_patterns-1, in
    no particular order.

    Implementation: rows of at most 8 bytes are packed into one uint64 key
    (exact). Wider rows get a 64-bit linear hash of their 8-byte words
    (fixed random odd multipliers, arithmetic mod 2^64), ids come from np.unique
    on the hashes, and the result is VERIFIED by comparing every row with its
    group's first row byte for byte; on any collision it falls back to np.unique
    on the rows viewed as opaque byte strings. Either way distinct patterns are
    never merged.
    """
    c = np.asarray(codes)
    if c.ndim == 1:
        c = c.reshape(-1, 1)
    if c.ndim != 2:
        raise EstimatorInputError(f"codes must have shape (n,) or (n, d); got {c.shape}")
    n = c.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0
    if c.dtype.kind == "f":
        c = c + 0.0  # -0.0 and 0.0 are equal numbers but differ as bytes
    elif c.dtype.kind not in "iub":
        c = np.ascontiguousarray(c)
        return _void_unique_ids(c)
    if c.shape[1] == 1 and c.dtype.kind in "iub":
        uniq, inv = np.unique(c[:, 0], return_inverse=True)
        return inv.reshape(-1).astype(np.int64, copy=False), int(uniq.size)
    width = c.shape[1] * c.dtype.itemsize
    if width == 0:
        return np.zeros(n, dtype=np.int64), 1
    c = np.ascontiguousarray(c)
    raw = c.view(np.uint8).reshape(n, width)
    if width % 8:
        padded = np.zeros((n, width + 8 - width % 8), dtype=np.uint8)
        padded[:, :width] = raw
        raw = padded
    words = raw.view(np.uint64)
    if words.shape[1] == 1:  # the row is its own key: exact
        uniq, inv = np.unique(words[:, 0], return_inverse=True)
        return inv.reshape(-1).astype(np.int64, copy=False), int(uniq.size)
    h = words @ _hash_multipliers(words.shape[1])  # wraps mod 2^64
    uniq, first, inv = np.unique(h, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    if np.array_equal(words[first[inv]], words):
        return inv.astype(np.int64, copy=False), int(uniq.size)
    return _void_unique_ids(c)  # a hash collision (about n^2 / 2^64 odds): exact fallback


# --------------------------------------------------------------------------- entropy
def _entropy_from_counts(counts: np.ndarray) -> float:
    counts = counts[counts > 0].astype(np.float64)
    if counts.size <= 1:
        return 0.0  # one symbol (or none): exactly zero, no rounding residue
    p = counts / counts.sum()
    return max(float(-np.dot(p, np.log(p))), 0.0)


def _symbol_ids(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim == 0:
        raise EstimatorInputError(f"{name} must be an array of symbols of shape (n,) or (n, d); got a scalar")
    if arr.ndim > 2:
        raise EstimatorInputError(f"{name} must have shape (n,) or (n, d); got {arr.shape}")
    if arr.shape[0] == 0:
        raise EstimatorInputError(f"{name} must hold at least one sample; got none")
    if arr.dtype.kind == "f":
        check_finite(arr, name)
    if arr.ndim == 1 and arr.dtype.kind in "iu" and arr.size and arr.min() >= 0 and arr.max() < 4 * arr.size + 1024:
        return arr.astype(np.int64, copy=False)  # already small non-negative ids: bincount directly
    return pattern_ids(arr)[0]


def discrete_entropy(ids) -> float:
    """Plug-in entropy of discrete symbols, in nats.

    H = -sum_k p_k ln p_k with p_k the empirical frequency of symbol k (the
    maximum-likelihood "plug-in" estimate; exact for an exactly known table:
    feed each cell as many times as its count). Its bias for a sample of size n
    from m symbols is about -(m - 1) / (2 n) nats (Miller 1955).

    Parameters
    ----------
    ids : array-like, shape (n,) symbols (any integer or float values), or (n, d)
        where each distinct row is one symbol (e.g. bin codes from `discretize`).

    Returns
    -------
    float, nats, in [0, ln n].

    Raises
    ------
    EstimatorInputError
        empty, more than 2-d, NaN/inf.
    """
    return _entropy_from_counts(np.bincount(_symbol_ids(ids, "ids")))


def discrete_mi(a_ids, b_ids) -> float:
    """Plug-in mutual information of two discrete variables, in nats.

    I(A;B) = H(A) + H(B) - H(A,B) with plug-in entropies (see
    `discrete_entropy`); exact on exactly known tables. Bias for n samples of an
    |A| x |B| table with independent A, B: about (|A||B| - |A| - |B| + 1) / (2n)
    nats upwards (Miller 1955; Roulston 1999).

    Parameters
    ----------
    a_ids, b_ids : array-like, shape (n,) or (n, d) (rows are symbols); paired.

    Returns
    -------
    float, nats, >= 0.

    Raises
    ------
    EstimatorInputError
        different numbers of samples, empty, NaN/inf.
    """
    check_same_length(("a_ids", a_ids), ("b_ids", b_ids))
    a = _symbol_ids(a_ids, "a_ids")
    b = _symbol_ids(b_ids, "b_ids")
    a = np.unique(a, return_inverse=True)[1].reshape(-1)
    b = np.unique(b, return_inverse=True)[1].reshape(-1)
    nb = int(b.max()) + 1
    joint = a * nb + b
    h_a = _entropy_from_counts(np.bincount(a))
    h_b = _entropy_from_counts(np.bincount(b))
    h_ab = _entropy_from_counts(np.bincount(joint))
    return max(h_a + h_b - h_ab, 0.0)


# --------------------------------------------------------------------------- plane
def binning_information_plane(t, labels, edges) -> tuple[float, float, float]:
    """I(X;T) and I(T;Y) of one layer by binning (Shwartz-Ziv & Tishby 2017), nats.

    T is a deterministic function of X and X is uniform over the N probe
    samples, so I(X;T) = H(T_binned) (at most ln N) and
    I(T;Y) = H(T_binned) - sum_y p(y) H(T_binned | Y = y), all plug-in.

    Parameters
    ----------
    t : array-like, shape (N, d) (or (N,)), float (float32 is kept), finite
        The layer's activations on the probe set at one epoch.
    labels : array-like, shape (N,), class labels (ints, or floats holding ints)
    edges : array-like, shape (m + 1,)
        From `bin_edges` over this layer's values across all recorded epochs.

    Returns
    -------
    (i_xt_nats, i_ty_nats, unique_fraction): unique_fraction is the share of
    the N samples whose binned pattern no other sample has (1.0 means I(X;T) is
    at its ceiling ln N). Constant activations give exactly (0.0, 0.0, ...).

    Raises
    ------
    EstimatorInputError
        lengths differ, NaN/inf, wrong shapes, bad edges.
    """
    arr = np.asarray(t)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise EstimatorInputError(f"t must have shape (N, d); got {arr.ndim} dimensions {arr.shape}")
    check_same_length(("t", arr), ("labels", labels))
    y = as_labels(labels, "labels")
    if arr.shape[0] == 0:
        raise EstimatorInputError("t must hold at least one sample; got none")
    codes = discretize(arr, edges)
    return _plane_from_codes(codes, y)


def _plane_from_codes(codes: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """The binning plane from bin codes (N, d) and class codes y (N,) int 0..K-1."""
    ids, n_pat = pattern_ids(codes)
    counts = np.bincount(ids, minlength=n_pat)
    h_t = _entropy_from_counts(counts)
    unique_fraction = float(np.count_nonzero(counts == 1)) / ids.size
    n_classes = int(y.max()) + 1
    joint = ids * n_classes + y
    h_ty = _entropy_from_counts(np.bincount(joint))
    h_y = _entropy_from_counts(np.bincount(y))
    h_t_given_y = max(h_ty - h_y, 0.0)
    i_ty = h_t - h_t_given_y
    if n_pat <= 1:
        h_t, i_ty = 0.0, 0.0
    return float(h_t), float(min(max(i_ty, 0.0), h_t)), unique_fraction


# --------------------------------------------------------------------------- adapter
class BinningEstimator(Estimator):
    """`ibcli mi --method binning`: I(X;T) = H(T_binned), I(T;Y) by plug-in entropies.

    The edges span each layer's values over ALL recorded epochs (`prepare`), so saturation
    shows instead of being rescaled away per epoch (DESIGN: binning).
    """

    name = "binning"
    title = "plug-in entropies of binned activations (Shwartz-Ziv & Tishby 2017; adaptive: Chelombiev et al. 2019)"
    params = (
        Param("bins", int, 30, "number of bins spanning the layer's range over all recorded epochs (adaptive: at most)", low=1),
        Param("binning", str, "uniform", "uniform: equal-width bins; adaptive: equal-mass bins (quantiles)", choices=STRATEGIES),
    )
    columns = (
        Column("unique_fraction", "float64", "share of probe samples whose binned pattern no other sample has"),
        Column("bin_lo", "float64", "the layer's lowest bin edge (activation units)"),
        Column("bin_hi", "float64", "the layer's highest bin edge (activation units)"),
    )
    #: Values per record pooled for the quantiles of adaptive edges.
    ADAPTIVE_SAMPLE = 200_000

    def prepare(self, layers, layer_names, params, seed):
        if params["binning"] == "uniform":
            return {n: bin_edges(np.array(layers.value_range(n)), params["bins"], "uniform") for n in layer_names}
        return {n: bin_edges(layers.sample(n, self.ADAPTIVE_SAMPLE, seed), params["bins"], "adaptive") for n in layer_names}

    def points(self, t, labels, *, x=None, params, context=None, seed=0, device="cpu"):
        if context is None:
            raise EstimatorInputError(
                "binning needs edges: pass bin_edges(values, bins) over the layer's values across all epochs"
            )
        edges = _check_edges(context)
        i_xt, i_ty, unique = _plane_from_codes(_discretize(t, edges), labels)
        return [PlanePoint(i_xt, i_ty, {"unique_fraction": unique, "bin_lo": float(edges[0]), "bin_hi": float(edges[-1])})]

    def mutual_information(self, x, y, y_discrete: bool, bins: int = 30, strategy: str = "uniform") -> float:
        """Plug-in I = H(X) + H(Y) - H(X,Y) of binned (float) or symbol (int/bool) rows, nats."""
        x_ids = _binned_ids(x, "x", bins, strategy, is_discrete_dtype(x))
        y_ids = as_labels(y, "y") if y_discrete else _binned_ids(y, "y", bins, strategy, False)
        return float(discrete_mi(x_ids, y_ids))

    def entropy(self, x, bins: int = 30, strategy: str = "uniform") -> float:
        """Plug-in entropy -sum p ln p of the binned (or symbol) rows, nats."""
        return float(discrete_entropy(_binned_ids(x, "x", bins, strategy, is_discrete_dtype(x))))


def _binned_ids(a, name: str, bins: int, strategy: str, discrete: bool) -> np.ndarray:
    """One integer id per row: rows of symbols as they are, float rows after binning over their own range."""
    if discrete:
        return pattern_ids(_as_2d_symbols(a, name))[0]
    arr = as_2d_float(a, name, keep_float32=True)
    return pattern_ids(discretize(arr, bin_edges(arr, bins, strategy)))[0]


def _as_2d_symbols(a, name: str) -> np.ndarray:
    """(n,) or (n, d) integer/bool array kept as symbols, shape (n, d)."""
    arr = np.asarray(a)
    if arr.ndim == 0 or arr.ndim > 2:
        raise EstimatorInputError(f"{name} must be an array of shape (n,) or (n, d); got shape {tuple(arr.shape)}")
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise EstimatorInputError(f"{name} must have at least one row and one column; got shape {arr.shape}")
    return np.ascontiguousarray(arr)
