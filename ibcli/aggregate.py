"""Aggregate information-plane tables over the seeds of a sweep.

Input is the concatenation of several train runs' ``mi.parquet`` tables (one per
seed), with a ``seed`` column added. Output is one row per (method, noise_var,
layer, layer_index, epoch, step) with the mean over seeds and a band around it, for
plots of mean trajectories with their spread (e.g. Saxe et al. 2018 show single runs;
averaging seeds separates the network's behaviour from one run's noise).

All MI values are in bits, as in ``mi.parquet``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["aggregate_over_seeds", "group_keys"]

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
            (resample the seeds with replacement ``n_boot`` times, take the
            ``(1-ci)/2`` and ``(1+ci)/2`` quantiles of the resampled means).
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
    """Percentile bootstrap interval of the mean, per group, for each column.

    ``columns[v]`` is a float64 array over the table's rows, ``gid`` the group id
    (0..n_groups-1) of each row. Returns ``{v: (n_groups, 2) array of (lo, hi)}``.
    Groups of equal size are resampled together, in chunks, vectorised; one resample
    of a group's seeds serves all columns (paired). NaN values are skipped in each
    resampled mean; a group whose values are all NaN gets NaN bounds.
    """
    rng = np.random.default_rng(seed)
    q = [(1.0 - ci) / 2.0, (1.0 + ci) / 2.0]
    bounds = {v: np.full((n_groups, 2), np.nan) for v in columns}
    order = np.argsort(gid, kind="stable")
    counts = np.bincount(gid, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for n in np.unique(counts):
        groups = np.flatnonzero(counts == n)
        # Row positions of each group of this size: (G, n).
        rows = order[starts[groups][:, None] + np.arange(n)[None, :]]
        chunk = max(1, 2_000_000 // (n_boot * n))  # ~16 MB of float64 per chunk
        for c in range(0, len(groups), chunk):
            g = groups[c : c + chunk]
            r = rows[c : c + chunk]
            draws = rng.integers(0, n, size=(len(g), n_boot, n))
            for v, col in columns.items():
                x = col[r]  # (G, n)
                sample = np.take_along_axis(x[:, None, :], draws, axis=2)  # (G, n_boot, n)
                if np.isnan(x).any():
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        means = np.nanmean(sample, axis=2)
                        bounds[v][g] = np.nanquantile(means, q, axis=1).T
                else:
                    bounds[v][g] = np.quantile(sample.mean(axis=2), q, axis=1).T
    return bounds
