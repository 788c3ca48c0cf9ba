"""Aggregate information-plane tables over the seeds of a sweep.

Input is the concatenation of several train runs' ``mi.parquet`` tables (one per
seed), with a ``seed`` column added. Output is one row per (method, noise_var,
layer, layer_index, epoch, step) with the mean over seeds and a band around it, for
plots of mean trajectories with their spread (e.g. Saxe et al. 2018 show single runs;
averaging seeds separates the network's behaviour from one run's noise).

All MI values are in bits, as in ``mi.parquet``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ibcli.errors import UserError
from ibcli.estimators import registry

__all__ = ["aggregate_over_seeds", "group_keys", "average_mi", "compression_summary", "check_same_settings"]

#: Group keys, in output order; ``noise_var`` only where the column exists.
BASE_KEYS = ("method", "noise_var", "layer", "layer_index", "epoch", "step")
#: MI columns aggregated by default.
DEFAULT_VALUES = ("i_xt_bits", "i_ty_bits")


def group_keys(df: pd.DataFrame, extra_keys: Sequence[str] = ()) -> list[str]:
    """The columns ``aggregate_over_seeds`` groups by for this table.

    ``method``, ``noise_var`` (only if the column is present), ``layer``,
    ``layer_index``, ``epoch``, ``step``, then ``extra_keys`` in the given order.
    """
    keys = [k for k in BASE_KEYS if k != "noise_var" or k in df.columns]
    keys += [k for k in extra_keys if k not in keys]
    return keys


def aggregate_over_seeds(
    df: pd.DataFrame,
    band: str = "sd",
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    *,
    values: Sequence[str] = DEFAULT_VALUES,
    extra_keys: Sequence[str] = (),
) -> pd.DataFrame:
    """Mean and spread of the MI over seeds, per (method, noise_var, layer, epoch, step).

    Args:
        df: concatenated per-seed MI tables. Required columns: ``seed``, ``epoch``
            (float, fractional epochs allowed), ``step`` (int), ``layer`` (str),
            ``layer_index`` (int), ``method`` (str) and each column of ``values``
            (default ``i_xt_bits``, ``i_ty_bits``; bits). Optional ``noise_var``
            (the KDE/KSG/MINE noise variance s2; NaN or absent for binning): when
            present it is a group key and NaN is a key value of its own
            (``groupby(dropna=False)``), so binning rows are kept, not dropped.
            Other columns are ignored.
        band: ``"sd"``: ``lo, hi = mean -/+ sd`` (sd with ddof=1, over seeds);
            ``"bootstrap"``: percentile bootstrap interval of the mean over seeds
            (``scipy.stats.bootstrap``, method "percentile": the seeds resampled with
            replacement ``n_boot`` times, the ``(1-ci)/2`` and ``(1+ci)/2`` quantiles
            of the resampled means).
        n_boot: number of bootstrap resamples (``band="bootstrap"`` only), >= 1.
        ci: coverage of the bootstrap interval, in (0, 1).
        seed: seed of the bootstrap's ``numpy.random.default_rng``; the output is
            deterministic for a given table and seed.
        values: MI columns to aggregate (e.g. add ``i_xt_lower_bits``).
        extra_keys: further group keys, e.g. an estimator parameter (``n_bins``,
            ``k``) when the table mixes several settings of one method.

    Returns:
        A new DataFrame, one row per group, sorted by the keys (NaN ``noise_var``
        last), index 0..G-1, with the key columns (see :func:`group_keys`), then
        ``n_seeds`` (int64: the number of seeds with a row in this group; a seed
        missing a record simply does not count), then for each value column ``v``:
        ``v_mean``, ``v_sd`` (ddof=1; NaN when fewer than 2 seeds), ``v_lo``,
        ``v_hi`` (float64, bits). NaN values are skipped in the statistics of their
        column. With one seed, the "sd" band is NaN and the bootstrap band is the
        value itself.

    Raises:
        ValueError: a required column is missing, the table is empty, ``band`` is
            not "sd" or "bootstrap", ``n_boot`` < 1, ``ci`` not in (0, 1), or one
            seed has two rows in the same group (duplicated records).
    """
    if band not in ("sd", "bootstrap"):
        raise ValueError(f"band must be 'sd' or 'bootstrap', got {band!r}")
    if band == "bootstrap":
        if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
            raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")
        if not (0.0 < float(ci) < 1.0):
            raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    values = list(values)
    keys = group_keys(df, extra_keys)
    required = ["seed", *keys, *values]
    missing = [c for c in dict.fromkeys(required) if c not in df.columns]
    if missing:
        raise ValueError(f"MI table lacks required column(s) {missing}; it has {list(df.columns)}")
    if len(df) == 0:
        raise ValueError("MI table is empty: nothing to aggregate")

    dup = df.duplicated(subset=[*keys, "seed"], keep=False)
    if dup.any():
        first = df.loc[dup, [*keys, "seed"]].iloc[0].to_dict()
        raise ValueError(
            f"a seed has more than one row in one group ({int(dup.sum())} rows), e.g. {first}; "
            "pass extra_keys for estimator parameters that differ between those rows"
        )

    # Number the groups once (NaN is a key value of its own), then work on the integer
    # group id, which has no NaN and no ordering subtleties.
    gid = df.groupby(keys, dropna=False, sort=True).ngroup().to_numpy()
    if (gid < 0).any():  # pragma: no cover - pandas drops NaN keys despite dropna=False
        raise RuntimeError("pandas did not number the groups with NaN keys")
    by_gid = df.groupby(gid, sort=True)
    out = by_gid[keys].first()  # keys are constant within a group; NaN stays NaN
    out["n_seeds"] = by_gid.size().astype("int64")
    for v in values:
        col = by_gid[v]
        out[f"{v}_mean"] = col.mean().astype("float64")
        out[f"{v}_sd"] = col.std(ddof=1).astype("float64")
        if band == "sd":
            out[f"{v}_lo"] = out[f"{v}_mean"] - out[f"{v}_sd"]
            out[f"{v}_hi"] = out[f"{v}_mean"] + out[f"{v}_sd"]

    if band == "bootstrap":
        lo_hi = _bootstrap_bounds(
            {v: df[v].to_numpy(dtype="float64", na_value=np.nan) for v in values}, gid, len(out), n_boot, ci, seed
        )
        for v in values:
            out[f"{v}_lo"] = lo_hi[v][:, 0]
            out[f"{v}_hi"] = lo_hi[v][:, 1]

    ordered = [*keys, "n_seeds"] + [f"{v}_{s}" for v in values for s in ("mean", "sd", "lo", "hi")]
    out = out[ordered].sort_values(keys, na_position="last", kind="stable")
    return out.reset_index(drop=True)


def _bootstrap_bounds(
    columns: dict[str, np.ndarray], gid: np.ndarray, n_groups: int, n_boot: int, ci: float, seed: int
) -> dict[str, np.ndarray]:
    """Percentile bootstrap interval of the mean, per group, for each column (scipy.stats.bootstrap).

    ``columns[v]`` is a float64 array over the table's rows, ``gid`` the group id
    (0..n_groups-1) of each row. Returns ``{v: (n_groups, 2) array of (lo, hi)}``. NaN
    values are left out of their group; a group with no value gets NaN bounds, one whose
    values are all equal (one seed, say) gets that value as both bounds (resampling cannot move it).
    """
    rng = np.random.default_rng(seed)
    bounds = {v: np.full((n_groups, 2), np.nan) for v in columns}
    order = np.argsort(gid, kind="stable")
    splits = np.cumsum(np.bincount(gid, minlength=n_groups))[:-1]
    for v, col in columns.items():
        for g, values in enumerate(np.split(col[order], splits)):
            values = values[~np.isnan(values)]
            if values.size == 0:
                continue
            if values.size < 2 or np.ptp(values) == 0:
                bounds[v][g] = values.mean()
                continue
            res = stats.bootstrap((values,), np.mean, n_resamples=n_boot, confidence_level=ci,
                                  method="percentile", vectorized=True, rng=rng)
            bounds[v][g] = (res.confidence_interval.low, res.confidence_interval.high)
    return bounds


# ---------------------------------------------------------------------------- sweeps of mi tables
def check_same_settings(mi: pd.DataFrame) -> None:
    """Members' latest runs of one method must share its settings, or they do not average.

    Raises:
        UserError: two seeds' tables of one method differ in a stored parameter or in the set
            of noise variances.
    """
    for method, g in mi.groupby("method"):
        est = registry.get(method)
        settings = [p.name for p in est.params if p.column and not p.multiple and p.name in g.columns]
        per_seed = g.groupby("seed")[settings].first().astype(str).drop_duplicates() if settings else []
        if len(per_seed) > 1:
            desc = ", ".join(f"{c}={sorted(set(per_seed[c]))}" for c in settings)
            raise UserError(f"the members' latest {method} mi runs use different settings ({desc}): "
                            f"rerun `ibcli mi SWEEP_ID --method {method} ...` so all members share them")
        if "noise_var" in g.columns and g["noise_var"].notna().any():
            sets = g.groupby("seed")["noise_var"].apply(lambda s: tuple(sorted(s.dropna().unique())))
            if sets.nunique() > 1:
                raise UserError(f"the members' latest {method} mi runs use different --noise-var values: "
                                f"rerun `ibcli mi SWEEP_ID --method {method} ...` so all members share them")


def average_mi(mi: pd.DataFrame, band: str = "sd", n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The members' mi tables averaged over seeds (`aggregate_over_seeds`), lower bounds included.

    Returns one row per (method, noise_var, layer, layer_index, epoch, step) with n_seeds and,
    for each of i_xt_bits, i_ty_bits (and i_xt_lower_bits, i_ty_bd_bits when any row has
    them): `_mean`, `_sd`, `_lo`, `_hi` (bits), plus `ceiling_bits`.

    Raises:
        UserError: the members' settings of one method differ (`check_same_settings`).
    """
    check_same_settings(mi)
    values = ["i_xt_bits", "i_ty_bits"]
    values += [c for c in ("i_xt_lower_bits", "i_ty_bd_bits") if c in mi.columns and mi[c].notna().any()]
    table = mi.copy()
    if "noise_var" in table.columns and table["noise_var"].isna().all():
        table = table.drop(columns="noise_var")
    out = aggregate_over_seeds(table, band=band, n_boot=n_boot, seed=seed, values=values)
    if "ceiling_bits" in mi.columns:
        out["ceiling_bits"] = float(mi["ceiling_bits"].max())
    return out


def compression_summary(agg: pd.DataFrame) -> pd.DataFrame:
    """Per (method, noise_var, layer): where mean I(X;T) peaks and how far it falls after.

    Columns: method, noise_var, layer, layer_index, first_i_xt_bits (first record),
    peak_epoch, peak_i_xt_bits, rise_bits (peak - first), last_epoch, last_i_xt_bits,
    fall_bits (peak - last, >= 0), fall_sd_bits (sd over seeds at the last epoch, for
    scale), i_ty_first_bits, i_ty_last_bits (mean I(T;Y) at the first and last record),
    at_ceiling (the mean never leaves log2 N by more than 0.05 bits: every probe input
    has its own pattern at every epoch, so this layer says nothing about compression).
    """
    keys = [k for k in ("method", "noise_var", "layer", "layer_index") if k in agg.columns]
    rows = []
    for key, g in agg.groupby(keys, dropna=False, sort=True):
        g = g.sort_values("step")
        i = int(np.argmax(g["i_xt_bits_mean"].to_numpy()))
        peak, last = g.iloc[i], g.iloc[-1]
        ceiling = float(g["ceiling_bits"].max()) if "ceiling_bits" in g.columns else math.inf
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                     "first_i_xt_bits": float(g.iloc[0]["i_xt_bits_mean"]),
                     "peak_epoch": float(peak["epoch"]), "peak_i_xt_bits": float(peak["i_xt_bits_mean"]),
                     "rise_bits": float(peak["i_xt_bits_mean"] - g.iloc[0]["i_xt_bits_mean"]),
                     "last_epoch": float(last["epoch"]), "last_i_xt_bits": float(last["i_xt_bits_mean"]),
                     "fall_bits": float(peak["i_xt_bits_mean"] - last["i_xt_bits_mean"]),
                     "fall_sd_bits": float(last["i_xt_bits_sd"]) if pd.notna(last["i_xt_bits_sd"]) else math.nan,
                     "i_ty_first_bits": float(g.iloc[0]["i_ty_bits_mean"]), "i_ty_last_bits": float(last["i_ty_bits_mean"]),
                     "at_ceiling": bool(g["i_xt_bits_mean"].min() >= ceiling - 0.05)})
    return pd.DataFrame(rows)
