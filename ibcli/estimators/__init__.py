"""Estimators of entropy and mutual information, and the information-plane entry point.

Everything here returns NATS (files and plots use bits; convert with
`ibcli.estimators.units.nats_to_bits`). The methods are listed in `registry.ESTIMATORS`
(one module each; the README's "Estimators" section says what each number means):

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

import inspect

import numpy as np

from ._validation import as_2d_float, as_labels, check_same_length, is_discrete_dtype
from .binning import bin_edges
from .errors import EstimatorInputError
from .interface import PlanePoint
from .registry import ALIASES, ESTIMATORS, METHODS, canonical_method, get

__all__ = [
    "METHODS",
    "ALIASES",
    "ESTIMATORS",
    "canonical_method",
    "get",
    "mutual_information",
    "entropy",
    "information_plane",
    "PlanePoint",
    "EstimatorInputError",
    "bin_edges",
]


def _api_kwargs(fn, params: dict, what: str, method: str) -> None:
    """Refuse keyword parameters the method's function does not take (one line listing those it does)."""
    accepted = [n for n, p in inspect.signature(fn).parameters.items()
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n not in ("x", "y", "y_discrete")]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise EstimatorInputError(
            f"{what} method {method!r} got unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(accepted) or 'none'}"
        )


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
        kraskov: k=3, neighbours -- KSG algorithm 1 (Kraskov et al. 2004, eq. 8)
            for continuous y, Ross (2014) eq. 2 for discrete y.
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
    est = get(method)
    _api_kwargs(est.mutual_information, params, "mutual_information", est.name)
    if discrete_y not in (None, True, False):
        raise EstimatorInputError(f"discrete_y must be None, True or False; got {discrete_y!r}")
    y_discrete = is_discrete_dtype(y) if discrete_y is None else bool(discrete_y)
    check_same_length(("x", x), ("y", y))
    return float(est.mutual_information(x, y, y_discrete, **params))


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
        kraskov: k=3, neighbours -- Kozachenko-Leonenko differential entropy
            with the max-norm (Kraskov et al. 2004, eq. 20).

    Returns
    -------
    float, nats.

    Raises
    ------
    EstimatorInputError
        unknown method or parameter, a method without an entropy estimator, NaN/inf,
        more than 2 dimensions.
    """
    est = get(method)
    fn = getattr(est, "entropy", None)
    if fn is None:
        with_entropy = ", ".join(e.name for e in ESTIMATORS if hasattr(e, "entropy"))
        raise EstimatorInputError(f"{est.name} has no entropy estimator; use {with_entropy}")
    _api_kwargs(fn, params, "entropy", est.name)
    return float(fn(x, **params))


def information_plane(t, labels, method: str, *, x=None, edges=None, seed: int = 0, device: str = "cpu",
                      **params) -> list[PlanePoint]:
    """Estimate I(X;T) and I(T;Y) of one layer at one epoch, in nats.

    Parameters
    ----------
    t : array-like, shape (N, d) (or (N,)), float (float32 is kept), finite.
        The layer's output on the N probe samples.
    labels : array-like, shape (N,), the probe samples' class labels (ints, or
        floats holding ints).
    method : a name in METHODS (or an alias).
    x : array-like, shape (N, d_x), float, optional
        The probe inputs (e.g. (N, 784) for MNIST); required by the methods with
        `needs_x` (kraskov, mine).
    edges : array-like, shape (m + 1,), optional
        binning only, required there: bin edges from `bin_edges` over this layer's
        values across ALL epochs (the mi stage computes them with `prepare`).
    seed : int
        Seeds every random draw (the noise Z, MINE's training).
    device : str
        Torch device for the methods that use one.
    **params
        The method's `Param`s (see `get(method).params`), e.g. noise_var=(0.1, 0.01)
        (kde, kraskov, mine: one point per value), bins=30, k=3, mine_steps=1000.

    Returns
    -------
    list[PlanePoint]: one point, or one per value of a repeatable parameter such as
    noise_var; `point.values` holds the method's extra columns (nats where they are
    information), `point.params` the value of the repeatable parameter.

    Raises
    ------
    EstimatorInputError
        unknown method or parameter, t/labels/x of different lengths, NaN/inf,
        wrong shapes, binning without edges, x missing where needed, bad values.
    """
    est = get(method)
    checked = est.check_params(params)
    arr = as_2d_float(t, "t", keep_float32=True)
    check_same_length(("t", arr), ("labels", labels), ("x", x))
    y = as_labels(labels, "labels")
    if est.needs_x and x is None:
        raise EstimatorInputError(f"method {est.name!r} estimates I(X; T+Z) and needs x, the probe inputs of shape (N, d_x)")
    xa = as_2d_float(x, "x", keep_float32=True) if (est.needs_x and x is not None) else None
    return est.points(arr, y, x=xa, params=checked, context=None if edges is None else np.asarray(edges, dtype=np.float64),
                      seed=seed, device=device)
