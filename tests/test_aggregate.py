"""aggregate_over_seeds on synthetic sweeps with known mean and spread."""

import math

import numpy as np
import pandas as pd
import pytest

from ibcli.aggregate import aggregate_over_seeds


def _table(values_xt, values_ty, method="binning", noise_var=None, layer="h1", epochs=(0.0, 1.0)):
    rows = []
    for s, (vx, vy) in enumerate(zip(values_xt, values_ty)):
        for e in epochs:
            row = dict(seed=s, epoch=e, step=int(e * 10), layer=layer, layer_index=0,
                       method=method, i_xt_bits=vx + e, i_ty_bits=vy)
            if noise_var is not None:
                row["noise_var"] = noise_var
            rows.append(row)
    return pd.DataFrame(rows)


def test_sd_band_exact():
    df = _table([1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5])
    out = aggregate_over_seeds(df)
    assert "noise_var" not in out.columns
    assert list(out.columns[:6]) == ["method", "layer", "layer_index", "epoch", "step", "n_seeds"]
    assert len(out) == 2 and (out["n_seeds"] == 4).all() and out["n_seeds"].dtype == np.int64
    sd = math.sqrt(5.0 / 3.0)  # ddof=1 of 1,2,3,4
    r0 = out[out.epoch == 0.0].iloc[0]
    r1 = out[out.epoch == 1.0].iloc[0]
    assert abs(r0.i_xt_bits_mean - 2.5) < 1e-12 and abs(r1.i_xt_bits_mean - 3.5) < 1e-12
    assert abs(r0.i_xt_bits_sd - sd) < 1e-12
    assert abs(r0.i_xt_bits_lo - (2.5 - sd)) < 1e-12 and abs(r0.i_xt_bits_hi - (2.5 + sd)) < 1e-12
    assert r0.i_ty_bits_mean == 0.5 and r0.i_ty_bits_sd == 0.0
    assert r0.i_ty_bits_lo == 0.5 and r0.i_ty_bits_hi == 0.5


def test_bootstrap_contains_mean_and_is_narrow():
    rng = np.random.default_rng(1)
    vals = rng.normal(3.0, 1.0, size=50)
    df = _table(vals, vals / 3.0, epochs=(0.0,))
    out = aggregate_over_seeds(df, band="bootstrap", n_boot=2000, ci=0.95, seed=0)
    r = out.iloc[0]
    assert r.n_seeds == 50
    assert abs(r.i_xt_bits_mean - vals.mean()) < 1e-12
    assert abs(r.i_xt_bits_sd - vals.std(ddof=1)) < 1e-12
    for v in ("i_xt_bits", "i_ty_bits"):
        lo, hi, mean, sd = r[f"{v}_lo"], r[f"{v}_hi"], r[f"{v}_mean"], r[f"{v}_sd"]
        assert lo < mean < hi
        # Interval of the mean ~ 2 * 1.96 sd / sqrt(50) ~ 0.55 sd, well inside mean +/- sd.
        assert hi - lo < 2.0 * sd
        assert hi - lo > 0.3 * sd
    again = aggregate_over_seeds(df, band="bootstrap", n_boot=2000, ci=0.95, seed=0)
    pd.testing.assert_frame_equal(out, again)
    other = aggregate_over_seeds(df, band="bootstrap", n_boot=2000, ci=0.95, seed=1)
    assert other.iloc[0].i_xt_bits_lo != r.i_xt_bits_lo


def test_missing_record_counts_present_seeds():
    df = _table([1.0, 2.0, 4.0], [0.1, 0.2, 0.3])
    df = df[~((df.seed == 2) & (df.epoch == 1.0))]
    out = aggregate_over_seeds(df)
    r0 = out[out.epoch == 0.0].iloc[0]
    r1 = out[out.epoch == 1.0].iloc[0]
    assert r0.n_seeds == 3 and r1.n_seeds == 2
    assert abs(r0.i_xt_bits_mean - 7.0 / 3.0) < 1e-12
    assert abs(r1.i_xt_bits_mean - 2.5) < 1e-12  # (2 + 3) / 2
    assert abs(r1.i_xt_bits_sd - math.sqrt(0.5)) < 1e-12


def test_single_seed_bands():
    df = _table([1.0], [0.2], epochs=(0.0,))
    sd = aggregate_over_seeds(df).iloc[0]
    assert sd.n_seeds == 1 and math.isnan(sd.i_xt_bits_sd) and math.isnan(sd.i_xt_bits_lo)
    bs = aggregate_over_seeds(df, band="bootstrap", n_boot=50).iloc[0]
    assert bs.i_xt_bits_lo == 1.0 and bs.i_xt_bits_hi == 1.0


def test_nan_noise_var_is_its_own_group():
    binning = _table([1.0, 2.0], [0.1, 0.3], method="binning", noise_var=float("nan"))
    kde1 = _table([5.0, 7.0], [0.5, 0.7], method="kde", noise_var=0.1)
    kde2 = _table([9.0, 11.0], [0.9, 0.9], method="kde", noise_var=0.01)
    df = pd.concat([kde1, binning, kde2], ignore_index=True)
    for band in ("sd", "bootstrap"):
        out = aggregate_over_seeds(df, band=band, n_boot=200)
        assert len(out) == 6 and (out.n_seeds == 2).all()
        b = out[out.method == "binning"]
        assert len(b) == 2 and b.noise_var.isna().all()
        assert abs(b[b.epoch == 0.0].i_xt_bits_mean.iloc[0] - 1.5) < 1e-12
        k = out[(out.method == "kde") & (out.noise_var == 0.01) & (out.epoch == 0.0)].iloc[0]
        assert k.i_xt_bits_mean == 10.0 and abs(k.i_xt_bits_sd - math.sqrt(2.0)) < 1e-12
        k = out[(out.method == "kde") & (out.noise_var == 0.1) & (out.epoch == 1.0)].iloc[0]
        assert k.i_xt_bits_mean == 7.0
        assert k.i_xt_bits_lo <= 7.0 <= k.i_xt_bits_hi


def test_extra_keys_and_values():
    a = _table([1.0, 3.0], [0.0, 0.0], epochs=(0.0,)).assign(n_bins=30, i_xt_lower_bits=0.5)
    b = _table([10.0, 30.0], [0.0, 0.0], epochs=(0.0,)).assign(n_bins=100, i_xt_lower_bits=1.5)
    df = pd.concat([a, b], ignore_index=True)
    with pytest.raises(ValueError, match="extra_keys"):
        aggregate_over_seeds(df)
    out = aggregate_over_seeds(df, extra_keys=["n_bins"],
                               values=["i_xt_bits", "i_ty_bits", "i_xt_lower_bits"])
    assert list(out.n_bins) == [30, 100]
    assert list(out.i_xt_bits_mean) == [2.0, 20.0]
    assert list(out.i_xt_lower_bits_mean) == [0.5, 1.5]


def test_errors():
    df = _table([1.0, 2.0], [0.1, 0.2])
    with pytest.raises(ValueError, match="band"):
        aggregate_over_seeds(df, band="iqr")
    with pytest.raises(ValueError, match="n_boot"):
        aggregate_over_seeds(df, band="bootstrap", n_boot=0)
    with pytest.raises(ValueError, match="ci"):
        aggregate_over_seeds(df, band="bootstrap", ci=1.0)
    with pytest.raises(ValueError, match="seed"):
        aggregate_over_seeds(df.drop(columns="seed"))
    with pytest.raises(ValueError, match="i_ty_bits"):
        aggregate_over_seeds(df.drop(columns="i_ty_bits"))
    with pytest.raises(ValueError, match="empty"):
        aggregate_over_seeds(df.iloc[:0])


def test_nan_values_are_skipped():
    df = _table([1.0, 2.0, 6.0], [0.1, 0.2, 0.3], epochs=(0.0,))
    df.loc[df.seed == 2, "i_xt_bits"] = float("nan")
    for band in ("sd", "bootstrap"):
        r = aggregate_over_seeds(df, band=band, n_boot=200).iloc[0]
        assert r.n_seeds == 3  # rows present; the NaN is skipped in the statistics
        assert r.i_xt_bits_mean == 1.5 and abs(r.i_xt_bits_sd - math.sqrt(0.5)) < 1e-12
        if band == "bootstrap":  # resampled means of {1, 2} lie in [1, 2]
            assert 1.0 <= r.i_xt_bits_lo <= 1.5 <= r.i_xt_bits_hi <= 2.0
        else:
            assert abs(r.i_xt_bits_lo - (1.5 - math.sqrt(0.5))) < 1e-12
        assert abs(r.i_ty_bits_mean - 0.2) < 1e-12
