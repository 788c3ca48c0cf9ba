"""One layer at one epoch -> its point(s) in the information plane, in nats.

`information_plane` is what the mi stage calls for every (epoch, layer). Which
quantity each method measures (DESIGN.md, "Estimators"):

- binning: I(X;T) = H(T_binned), I(T;Y) = H(T_binned) - H(T_binned | Y)
  (Shwartz-Ziv & Tishby 2017); needs `edges` from `bin_edges` over the layer's
  values across ALL recorded epochs.
- kde: pairwise-distance bounds on I(X; T+Z), Z ~ N(0, s2 I) (Kolchinsky & Tracey
  2017; Saxe et al. 2018): the KL (upper) bound in i_xt_nats, the Bhattacharyya
  (lower) bound in i_xt_lower_nats; for I(T+Z; Y) the KL and BD ESTIMATES go to
  i_ty_nats and i_ty_lower_nats (a difference of bounds is not a bound).
- kraskov / mine: a deterministic T = f(X) makes I(X;T) infinite, so both estimate
  I(X; T+Z) and I(T+Z; Y) with the same Gaussian noise of variance s2 as kde, drawn
  from a generator seeded with `seed` (one standard-normal draw, scaled by sqrt(s2)
  for each s2). They need the probe inputs `x`. I(T+Z; Y) uses the mixed
  continuous/discrete KSG estimator (Ross 2014) or MINE on one-hot labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ._validation import as_2d_float, as_labels, check_same_length
from .errors import EstimatorInputError
from .units import nats_to_bits

__all__ = ["InformationPlanePoint", "information_plane", "MINE_PARAMS"]

# Keyword arguments of mine.mine_mi that callers may set (seed and device are separate).
MINE_PARAMS = ("hidden", "lr", "steps", "batch_size", "ema_decay", "holdout_fraction")


@dataclass
class InformationPlanePoint:
    """One information-plane point of one layer, in nats.

    i_xt_nats, i_ty_nats: I(X;T) and I(T;Y) (for kde the KL upper bound and the
    KL estimate); i_xt_lower_nats, i_ty_lower_nats: kde's Bhattacharyya lower
    bound and BD estimate, None for the other methods. extras: method-specific
    values, e.g. unique_fraction and n_bins (binning), noise_var (kde, kraskov,
    mine), k (kraskov), ceiling_nats = ln N (all).
    """

    i_xt_nats: float
    i_ty_nats: float
    i_xt_lower_nats: float | None = None
    i_ty_lower_nats: float | None = None
    extras: dict = field(default_factory=dict)

    def bits(self) -> dict:
        """The four values in bits (None stays None), keyed i_xt_bits, i_ty_bits,
        i_xt_lower_bits, i_ty_lower_bits, as mi.parquet names its columns."""
        def conv(v):
            return None if v is None else float(nats_to_bits(v))

        return {
            "i_xt_bits": conv(self.i_xt_nats),
            "i_ty_bits": conv(self.i_ty_nats),
            "i_xt_lower_bits": conv(self.i_xt_lower_nats),
            "i_ty_lower_bits": conv(self.i_ty_lower_nats),
        }


def _unit_scale(a: np.ndarray) -> np.ndarray:
    """a divided by the root-mean-square of its column standard deviations (one scalar)."""
    spread = math.sqrt(float(np.mean(a.var(axis=0))))
    return a / spread if spread > 0 else a


def _noise_vars(noise_vars) -> list[float]:
    from .kde import _noise_list

    return _noise_list(noise_vars)


def information_plane(
    t,
    labels,
    method: str,
    *,
    x=None,
    edges=None,
    noise_vars=(0.1,),
    k: int = 3,
    mine_params: Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str = "cpu",
    chunk_size: int | None = None,
) -> list[InformationPlanePoint]:
    """Estimate I(X;T) and I(T;Y) of one layer at one epoch, in nats.

    Parameters
    ----------
    t : array-like, shape (N, d) (or (N,)), float (float32 is kept for binning
        and kde), finite. The layer's output on the N probe samples.
    labels : array-like, shape (N,), the probe samples' class labels (ints, or
        floats holding ints).
    method : {"binning", "kde", "kraskov" (alias "ksg"), "mine"}
    x : array-like, shape (N, d_x), float, optional
        The probe inputs (e.g. (N, 784) for MNIST); required by kraskov and mine.
    edges : array-like, shape (m + 1,), optional
        Bin edges from `bin_edges` over this layer's values across all epochs;
        required by binning.
    noise_vars : float or sequence of floats > 0
        Noise variance(s) s2 of Z (kde, kraskov, mine); one point per value.
    k : int
        Neighbours for kraskov.
    mine_params : mapping, optional
        Extra keyword arguments for `ibcli.estimators.mine.mine_mi`: any of
        hidden, lr, steps, batch_size, ema_decay, holdout_fraction.
    seed : int
        Seeds the noise Z (kraskov, mine) and MINE's training.
    device : str
        Torch device for MINE.
    chunk_size : int, optional
        Block size of kde's pairwise pass (default 1024).

    Returns
    -------
    list[InformationPlanePoint]: one point for binning, one per noise variance
    for kde, kraskov and mine (in the order of `noise_vars`).

    Raises
    ------
    EstimatorInputError
        unknown method, t/labels/x of different lengths, NaN/inf, wrong shapes,
        binning without edges, kraskov/mine without x, bad noise variances.
    """
    from . import canonical_method

    name = canonical_method(method)
    arr = as_2d_float(t, "t", keep_float32=True)
    check_same_length(("t", arr), ("labels", labels), ("x", x))
    y = as_labels(labels, "labels")
    n = arr.shape[0]
    ceiling = math.log(n)

    if name == "binning":
        from .binning import _check_edges, _discretize, _plane_from_codes

        if edges is None:
            raise EstimatorInputError(
                "binning needs edges: pass bin_edges(values, bins) over the layer's values across all epochs"
            )
        # t and labels are checked above: skip binning_information_plane's second check
        i_xt, i_ty, uf = _plane_from_codes(_discretize(arr, _check_edges(edges)), y)
        n_bins = int(np.asarray(edges).size) - 1
        return [InformationPlanePoint(i_xt, i_ty, None, None,
                                      {"unique_fraction": uf, "n_bins": n_bins, "ceiling_nats": ceiling})]

    nv = _noise_vars(noise_vars)
    if name == "kde":
        from .kde import kde_information_plane

        out = []
        for r in kde_information_plane(arr, y, nv, chunk_size=chunk_size):
            out.append(InformationPlanePoint(
                r.i_xt_upper, r.i_ty_kl, r.i_xt_lower, r.i_ty_bd,
                {"noise_var": r.noise_var, "h_upper_nats": r.h_upper, "h_lower_nats": r.h_lower,
                 "ceiling_nats": ceiling},
            ))
        return out

    if x is None:
        raise EstimatorInputError(
            f"method {name!r} estimates I(X; T+Z) and needs x, the probe inputs of shape (N, d_x)"
        )
    xa = as_2d_float(x, "x")
    t64 = arr.astype(np.float64, copy=False)
    z = np.random.default_rng(seed).standard_normal(t64.shape)
    out = []
    if name == "kraskov":
        from . import ksg

        # The max-norm joint space compares an x-distance with a (T+Z)-distance, so put the
        # two spaces on one scale (each divided by its RMS coordinate spread; geometry within
        # each space is kept). Raw MNIST pixels vs a noisy layer otherwise gives exactly 0.
        xs = _unit_scale(xa)
        for s2 in nv:
            tz = t64 + math.sqrt(s2) * z
            out.append(InformationPlanePoint(
                float(ksg.ksg_mi(xs, _unit_scale(tz), k=k)), float(ksg.ksg_mixed_mi(tz, y, k=k)), None, None,
                {"noise_var": s2, "k": k, "ceiling_nats": ceiling},
            ))
        return out

    from . import mine  # name == "mine"

    params = dict(mine_params or {})
    unknown = sorted(set(params) - set(MINE_PARAMS))
    if unknown:
        raise EstimatorInputError(
            f"unknown mine_params {', '.join(unknown)}; accepted: {', '.join(MINE_PARAMS)} "
            "(seed and device are arguments of their own)"
        )
    onehot = np.eye(int(y.max()) + 1, dtype=np.float64)[y]
    for s2 in nv:
        tz = t64 + math.sqrt(s2) * z
        i_xt = float(mine.mine_mi(xa, tz, seed=seed, device=device, **params))
        i_ty = float(mine.mine_mi(tz, onehot, seed=seed, device=device, **params))
        out.append(InformationPlanePoint(i_xt, i_ty, None, None,
                                         {"noise_var": s2, "ceiling_nats": ceiling}))
    return out
