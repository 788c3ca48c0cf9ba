"""`ibcli sweep`: seeds syntax, option forwarding, a tiny real sweep on ib12, averaging over seeds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli, run_json, seed_store
from ibcli.errors import UserError
from ibcli.aggregate import average_mi, compression_summary
from ibcli.cli import parse_train_args
from ibcli.stages.sweep import parse_seeds


# ---------------------------------------------------------------------------- seeds
@pytest.mark.parametrize("spec, seeds", [
    ("0-9", list(range(10))), ("0,1,5", [0, 1, 5]), ("3", [3]), (" 2 - 4 , 9", [2, 3, 4, 9]),
    ("0-2,1,7", [0, 1, 2, 7]), ("5,5", [5]), ("4-4", [4]),
])
def test_parse_seeds(spec, seeds):
    assert parse_seeds(spec) == seeds


@pytest.mark.parametrize("spec", ["", "a", "5-2", "-1", "1-", "0,,2", "1.5", "0-20000"])
def test_parse_seeds_rejects(spec):
    with pytest.raises(UserError, match="seeds"):
        parse_seeds(spec)


# ---------------------------------------------------------------------------- forwarded train options
def test_train_args_parsed_by_train():
    parsed = parse_train_args(["--dataset", "ib12", "--model", "ib", "--lr", "0.01", "--activation", "relu"])
    assert parsed == {"dataset": "ib12", "model": "ib", "lr": 0.01, "activation": "relu"}


@pytest.mark.parametrize("args, match", [
    (["--seed", "3"], "--seeds"), (["--resume", "abc"], "--resume"), (["--bogus"], "bogus"),
    (["--epochs", "x"], "epochs"), (["extra"], "extra"),
])
def test_train_args_rejected(args, match):
    with pytest.raises(UserError, match=match):
        parse_train_args(args)


def test_bad_sweep_is_one_line_and_creates_nothing(store_env, capsys):
    code, out, err = run_cli(["sweep", "--seeds", "0-1", "--dataset", "ib12", "--model", "ib", "--lr", "-1"], capsys)
    assert code == 2 and "--lr must be a positive number" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (store_env / "runs").exists()
    code, _, err = run_cli(["sweep", "--seeds", "3-1", "--dataset", "ib12"], capsys)
    assert code == 2 and "backwards" in err


# ---------------------------------------------------------------------------- a tiny real sweep
def test_tiny_sweep_grouping_mi_and_plot(store_env, store_template, capsys):
    """ib12, 2 seeds, 3 epochs, 2 jobs: tags, one mi child per member, the averaged plot."""
    from mlflow import MlflowClient

    seed_store(store_template, store_env)
    summary = run_json(["sweep", "--seeds", "0-1", "--jobs", "2", "--dataset", "ib12", "--model", "ib",
                        "--epochs", "3", "--log-epochs", "log:2", "--batch-size", "1024", "--no-grad-stats"], capsys)
    assert summary["status"] == "FINISHED" and summary["seeds"] == [0, 1] and summary["threads"] >= 1
    sweep_id = summary["sweep_id"]
    members = {m["seed"]: m["run_id"] for m in summary["members"]}
    assert set(members) == {0, 1} and all(m["status"] == "FINISHED" for m in summary["members"])

    client = MlflowClient(f"sqlite:///{store_env / 'runs' / 'mlflow.db'}")
    sweep = client.get_run(sweep_id)
    assert sweep.data.tags["ibcli.stage"] == "sweep" and sweep.info.status == "FINISHED"
    assert sweep.data.params["seeds"] == "0,1" and sweep.data.params["dataset"] == "ib12"
    # provenance: the members' device option and thread count
    assert sweep.data.tags["ibcli.version"] and sweep.data.tags["ibcli.torch_version"]
    assert sweep.data.tags["ibcli.torch_threads"] == str(summary["threads"]) and sweep.data.tags["ibcli.device"] == "auto"
    for seed, run_id in members.items():
        run = client.get_run(run_id)
        assert run.data.tags["ibcli.stage"] == "train"
        assert run.data.tags["mlflow.parentRunId"] == sweep_id and run.data.tags["ibcli.sweep"] == sweep_id
        assert run.data.params["seed"] == str(seed) and run.info.experiment_id == sweep.info.experiment_id

    mi = run_json(["mi", sweep_id[:10], "--method", "binning", "--bins", "10"], capsys)
    assert mi["sweep_id"] == sweep_id and sorted(r["seed"] for r in mi["members"]) == [0, 1]
    for row in mi["members"]:
        mi_run = client.get_run(row["mi_run_id"])
        assert mi_run.data.tags["ibcli.stage"] == "mi"
        assert mi_run.data.tags["mlflow.parentRunId"] == members[row["seed"]]
        assert row["records"] == 3  # epochs 0, 1 and 3

    plot = run_json(["plot", sweep_id, "--output", store_env / "out", "--band", "bootstrap"], capsys)
    assert plot["sweep_id"] == sweep_id and plot["seeds"] == [0, 1] and plot["band"] == "bootstrap"
    names = {p.rsplit("/", 1)[-1] for p in plot["files"]}
    assert {"information_plane_mean.html", "mi_per_epoch_mean.html", "training_curves_mean.html", "mi_mean.parquet"} <= names
    assert (store_env / "out" / "information_plane_mean.html").stat().st_size > 10_000
    plot_run = client.get_run(plot["plot_run_id"])
    assert plot_run.data.tags["mlflow.parentRunId"] == sweep_id and plot_run.data.tags["ibcli.stage"] == "plot"
    agg = pd.read_parquet(store_env / "out" / "mi_mean.parquet")
    assert (agg["n_seeds"] == 2).all() and len(agg) == 3 * 6  # 3 records x 6 layers
    assert sorted(agg["epoch"].unique()) == [0.0, 1.0, 3.0]

    # A single member still works as a plain train run.
    single = run_json(["plot", members[1], "--output", store_env / "one"], capsys)
    assert single["train_run_id"] == members[1]


# ---------------------------------------------------------------------------- averaging
def _synthetic(seeds=(0, 1, 2, 3), noise=(-1.5, -0.5, 0.5, 1.5)):
    """Per seed an I(X;T) curve that rises to a peak at epoch 10 and falls, plus a known offset."""
    epochs = [0.0, 1.0, 10.0, 100.0, 1000.0]
    curve = {"layer1": [5.0, 7.0, 9.0, 8.0, 6.5], "layer2": [2.0, 2.5, 3.0, 3.5, 4.0]}
    rows = []
    for seed, eps in zip(seeds, noise):
        for idx, (layer, values) in enumerate(curve.items(), start=1):
            for e, v in zip(epochs, values):
                rows.append(dict(seed=seed, epoch=e, step=int(e * 7), layer=layer, layer_index=idx, method="binning",
                                 noise_var=np.nan, i_xt_bits=v + eps, i_ty_bits=0.1 * v + 0.01 * eps,
                                 i_xt_lower_bits=np.nan, i_ty_bd_bits=np.nan, ceiling_bits=12.0))
    return pd.DataFrame(rows)


def test_average_mi_known_mean_and_sd():
    agg = average_mi(_synthetic())
    sd = math.sqrt(5.0 / 3.0)  # ddof=1 of -1.5, -0.5, 0.5, 1.5
    assert len(agg) == 10 and (agg["n_seeds"] == 4).all()
    assert "i_xt_lower_bits_mean" not in agg.columns  # binning has no lower bound
    r = agg[(agg.layer == "layer1") & (agg.epoch == 10.0)].iloc[0]
    assert r.i_xt_bits_mean == pytest.approx(9.0) and r.i_xt_bits_sd == pytest.approx(sd)
    assert r.i_xt_bits_lo == pytest.approx(9.0 - sd) and r.i_xt_bits_hi == pytest.approx(9.0 + sd)
    assert r.i_ty_bits_mean == pytest.approx(0.9) and r.i_ty_bits_sd == pytest.approx(0.01 * sd)
    boot = average_mi(_synthetic(), band="bootstrap")
    b = boot[(boot.layer == "layer1") & (boot.epoch == 10.0)].iloc[0]
    assert 7.5 <= b.i_xt_bits_lo < 9.0 < b.i_xt_bits_hi <= 10.5


def test_compression_summary_peak_and_fall():
    summary = compression_summary(average_mi(_synthetic())).set_index("layer")
    assert summary.loc["layer1", "peak_epoch"] == 10.0
    assert summary.loc["layer1", "fall_bits"] == pytest.approx(9.0 - 6.5)
    assert summary.loc["layer1", "last_epoch"] == 1000.0
    assert summary.loc["layer1", "rise_bits"] == pytest.approx(9.0 - 5.0) and not summary.loc["layer1", "at_ceiling"]
    assert summary.loc["layer2", "peak_epoch"] == 1000.0 and summary.loc["layer2", "fall_bits"] == 0.0
    assert summary.loc["layer2", "i_ty_last_bits"] == pytest.approx(0.4)


def test_reproduce_summary_table_fits_80_columns():
    """`ibcli reproduce`'s summary table (summary.txt and stdout) was about 140 columns wide."""
    from ibcli.stages.reproduce import summary_lines

    binning = compression_summary(average_mi(_synthetic()))
    kde = binning.assign(method="kde", noise_var=0.001, at_ceiling=[True, False])
    lines = summary_lines({"tanh": pd.concat([binning, kde]), "relu": binning})
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    row = next(line.split() for line in lines if line.startswith("tanh kde s2=0.001  layer1"))
    assert row[4:] == ["5.000", "9.000", "10", "2.500", f"{math.sqrt(5.0 / 3.0):.3f}", "0.500", "0.650*"]
    assert lines[-1].startswith("* at the log2 N ceiling throughout")


def test_averaged_figures_carry_the_band():
    from ibcli import plots

    agg = average_mi(_synthetic())
    sd = math.sqrt(5.0 / 3.0)
    fig = plots.information_plane_mean(agg)
    traces = [t for t in fig.data if t.name == "layer1"]
    assert len(traces) == 1
    np.testing.assert_allclose(traces[0].x, [5.0, 7.0, 9.0, 8.0, 6.5])
    np.testing.assert_allclose(traces[0].error_x.array, [sd] * 5)
    np.testing.assert_allclose(traces[0].error_x.arrayminus, [sd] * 5)
    per_epoch = plots.mi_per_epoch_mean(agg)
    bands = [t for t in per_epoch.data if t.fill == "toself" and t.legendgroup == "layer1"]
    assert len(bands) == 2  # I(X;T) and I(T;Y)
    upper = np.asarray(bands[0].y[:5])
    np.testing.assert_allclose(upper, np.array([5.0, 7.0, 9.0, 8.0, 6.5]) + sd)
    grid = plots.information_plane_mean_grid({"tanh": agg, "relu": agg})
    assert len([t for t in grid.data if t.name == "layer1"]) == 2
