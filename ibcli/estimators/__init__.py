"""Estimators of entropy and mutual information, and the information-plane entry point.

Everything here returns NATS (files and plots use bits; convert with
`ibcli.estimators.units.nats_to_bits`). Methods (see DESIGN.md, "Estimators"):

- "binning": plug-in entropies of binned / discrete values (Shwartz-Ziv & Tishby 2017).
- "kde": pairwise-distance bounds on the entropy of the Gaussian mixture T+Z
  (Kolchinsky & Tracey 2017; Saxe et al. 2018).
- "kraskov" (alias "ksg"): k-nearest-neighbour estimators, KSG algorithm 1
  (Kraskov, Stoegbauer & Grassberger 2004), the mixed continuous/discrete estimator
  of Ross (2014) and the Kozachenko-Leonenko entropy.
- "mine": the Donsker-Varadhan neural estimator (Belghazi et al. 2018).

Bad input raises `EstimatorInputError` (a ValueError) with a one-line message.
"""

from __future__ import annotations

import numpy as np

from ._validation import as_2d_float, as_labels, check_finite, check_same_length, is_discrete_dtype
from .binning import bin_edges
from .errors import EstimatorInputError
from .plane import InformationPlanePoint, information_plane

__all__ = [
    "METHODS",
    "ALIASES",
    "canonical_method",
    "mutual_information",
    "entropy",
    "information_plane",
    "InformationPlanePoint",
    "EstimatorInputError",
    "bin_edges",
]

METHODS = ("binning", "kde", "kraskov", "mine")
ALIASES = {"ksg": "kraskov"}

# Keyword parameters each method accepts (anything else is a user error).
_MI_PARAMS = {
    "binning": ("bins", "strategy"),
    "kde": ("noise_var", "bound", "chunk_size"),
    "kraskov": ("k", "neighbours"),
    "mine": ("hidden", "lr", "steps", "batch_size", "ema_decay", "holdout_fraction", "seed", "device"),
}
_H_PARAMS = {
    "binning": ("bins", "strategy"),
    "kde": ("noise_var", "bound", "chunk_size"),
    "kraskov": ("k", "neighbours"),
    "mine": (),
}


def canonical_method(name) -> str:
    """The canonical name of an estimator method ("ksg" -> "kraskov").

    Case and surrounding blanks are ignored.

    Raises
    ------
    EstimatorInputError
        unknown name; the message lists the valid ones.
    """
    key = str(name).strip().lower() if isinstance(name, str) else None
    key = ALIASES.get(key, key)
    if key not in METHODS:
        valid = ", ".join(METHODS) + " (alias: " + ", ".join(f"{a} = {b}" for a, b in ALIASES.items()) + ")"
        raise EstimatorInputError(f"unknown estimator method {name!r}; valid methods: {valid}")
    return key


def _check_params(method: str, params: dict, table: dict, what: str) -> None:
    unknown = sorted(set(params) - set(table[method]))
    if unknown:
        accepted = ", ".join(table[method]) or "none"
        raise EstimatorInputError(
            f"{what} method {method!r} got unknown parameter(s) {', '.join(unknown)}; accepted: {accepted}"
        )


def _as_2d_symbols(a, name: str) -> np.ndarray:
    """(n,) or (n, d) integer/bool array kept as symbols, shape (n, d)."""
    arr = np.asarray(a)
    if arr.ndim == 0 or arr.ndim > 2:
        raise EstimatorInputError(
            f"{name} must be an array of shape (n,) or (n, d); got shape {tuple(arr.shape)}"
        )
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise EstimatorInputError(f"{name} must have at least one row and one column; got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _binned_ids(a, name: str, bins: int, strategy: str, discrete: bool) -> np.ndarray:
    from .binning import discretize, pattern_ids

    if discrete:
        return pattern_ids(_as_2d_symbols(a, name))[0]
    arr = as_2d_float(a, name, keep_float32=True)
    return pattern_ids(discretize(arr, bin_edges(arr, bins, strategy)))[0]


def mutual_information(x, y, method: str = "kraskov", discrete_y: bool | None = None, **params) -> float:
    """Estimate I(X;Y) in nats from paired samples.

    Parameters
    ----------
    x : array-like, shape (n, dx) or (n,), real (float64 inside; for binning an
        integer/bool x is used as symbols directly, each distinct row one symbol)
    y : array-like, shape (n, dy) or (n,)
        Continuous values, or labels when discrete.
    method : {"binning", "kde", "kraskov" (alias "ksg"), "mine"}
    discrete_y : bool or None
        None: integer/bool-typed y is discrete, float y continuous. True: y is
        labels whatever its dtype (labels read back as floats stay labels);
        False: y is continuous even if integer-typed.
    **params : method parameters
        binning: bins=30, strategy="uniform"|"adaptive" -- float inputs are
            binned with `bins` bins over their own range (`bin_edges`), discrete
            ones used as symbols; plug-in I = H(X) + H(Y) - H(X,Y), exact on
            discrete tables (Shwartz-Ziv & Tishby 2017).
        kde: noise_var=0.1, bound="upper"|"lower", chunk_size -- needs a
            discrete y: I(X+Z;Y) = H(X+Z) - sum_y p(y) H(X+Z|Y=y), Z ~ N(0,
            noise_var I), each entropy by the KL ("upper") or Bhattacharyya
            ("lower") pairwise bound (Kolchinsky & Tracey 2017). An estimate,
            not a bound.
        kraskov: k=3 (and ksg's `neighbours`) -- KSG algorithm 1 (Kraskov et
            al. 2004, eq. 8) for continuous y, Ross (2014) eq. 2 for discrete y.
        mine: hidden, lr, steps, batch_size, ema_decay, holdout_fraction,
            seed, device -- held-out Donsker-Varadhan estimate (Belghazi et al.
            2018); a discrete y is one-hot encoded.

    Returns
    -------
    float, nats.

    Raises
    ------
    EstimatorInputError
        unknown method or parameter, x and y of different lengths, NaN/inf,
        more than 2 dimensions, kde with a continuous y, and the estimators' own
        conditions (e.g. k >= n for kraskov).
    """
    name = canonical_method(method)
    _check_params(name, params, _MI_PARAMS, "mutual_information")
    if discrete_y not in (None, True, False):
        raise EstimatorInputError(f"discrete_y must be None, True or False; got {discrete_y!r}")
    y_is_discrete = is_discrete_dtype(y) if discrete_y is None else bool(discrete_y)
    check_same_length(("x", x), ("y", y))

    if name == "binning":
        from .binning import discrete_mi

        bins = params.get("bins", 30)
        strategy = params.get("strategy", "uniform")
        x_ids = _binned_ids(x, "x", bins, strategy, is_discrete_dtype(x))
        y_ids = as_labels(y, "y") if y_is_discrete else _binned_ids(y, "y", bins, strategy, False)
        return float(discrete_mi(x_ids, y_ids))

    xa = as_2d_float(x, "x", keep_float32=(name == "kde"))
    if name == "kde":
        if not y_is_discrete:
            raise EstimatorInputError(
                "kde mutual information needs a discrete y (class labels): it is H(X+Z) - sum_y p(y) H(X+Z|Y=y); "
                "for a continuous y use method='kraskov' or 'mine'"
            )
        from .kde import kde_information_plane

        bound = params.get("bound", "upper")
        if bound not in ("upper", "lower"):
            raise EstimatorInputError(f"bound must be 'upper' or 'lower'; got {bound!r}")
        res = kde_information_plane(xa, as_labels(y, "y"), [params.get("noise_var", 0.1)],
                                    chunk_size=params.get("chunk_size"))[0]
        return float(res.i_ty_kl if bound == "upper" else res.i_ty_bd)

    if name == "kraskov":
        from . import ksg

        kw = {name_: params[name_] for name_ in ("k", "neighbours") if name_ in params}
        if y_is_discrete:
            return float(ksg.ksg_mixed_mi(xa, as_labels(y, "y"), **kw))
        return float(ksg.ksg_mi(xa, as_2d_float(y, "y"), **kw))

    from . import mine  # name == "mine"

    if y_is_discrete:
        codes = as_labels(y, "y")
        ya = np.eye(int(codes.max()) + 1, dtype=np.float64)[codes]
    else:
        ya = as_2d_float(y, "y")
    return float(mine.mine_mi(xa, ya, **params))


def entropy(x, method: str = "kraskov", **params) -> float:
    """Estimate the entropy H(X) in nats.

    Parameters
    ----------
    x : array-like, shape (n, d) or (n,), real (for binning an integer/bool x is
        used as symbols directly, each distinct row one symbol)
    method : {"binning", "kde", "kraskov" (alias "ksg")}; "mine" has none.
    **params
        binning: bins=30, strategy="uniform"|"adaptive" -- plug-in entropy of
            the binned (or discrete) values, -sum p ln p (a discrete entropy).
        kde: noise_var=0.1, bound="upper"|"lower", chunk_size -- pairwise
            bound on the differential entropy of X+Z, Z ~ N(0, noise_var I),
            i.e. of the mixture (1/n) sum_i N(x_i, noise_var I): KL upper bound
            or Bhattacharyya lower bound (Kolchinsky & Tracey 2017, eq. 10).
        kraskov: k=3 (and ksg's `neighbours`) -- Kozachenko-Leonenko differential entropy with the
            max-norm (Kraskov et al. 2004, eq. 20).

    Returns
    -------
    float, nats.

    Raises
    ------
    EstimatorInputError
        unknown method or parameter, "mine has no entropy estimator", NaN/inf,
        more than 2 dimensions.
    """
    name = canonical_method(method)
    if name == "mine":
        raise EstimatorInputError("mine has no entropy estimator; use binning, kde or kraskov")
    _check_params(name, params, _H_PARAMS, "entropy")
    if name == "binning":
        from .binning import discrete_entropy

        ids = _binned_ids(x, "x", params.get("bins", 30), params.get("strategy", "uniform"),
                          is_discrete_dtype(x))
        return float(discrete_entropy(ids))
    if name == "kde":
        from .kde import kde_entropy

        return float(kde_entropy(as_2d_float(x, "x", keep_float32=True), params.get("noise_var", 0.1),
                                 bound=params.get("bound", "upper"), chunk_size=params.get("chunk_size")))
    from . import ksg

    kw = {name_: params[name_] for name_ in ("k", "neighbours") if name_ in params}
    return float(ksg.ksg_entropy(as_2d_float(x, "x"), **kw))
