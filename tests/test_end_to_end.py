"""Real MNIST, end to end: train 2 epochs -> mi (binning) -> plot, then inspect the store."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import SHARED_DATA, run_json

from ibcli import activations as act
from ibcli.store import PARENT_TAG, STAGE_TAG, Store

PROBE = 600


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A fresh working directory (the default store runs/ starts empty) holding one train run,
    2 epochs: (folder, the train summary). Each test here needs only this run, so they pass
    in any order, alone, or on different workers of `pytest -n` (each builds its own)."""
    import contextlib
    import io
    import os

    from ibcli.cli import main

    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST not found under {SHARED_DATA}")
    root = tmp_path_factory.mktemp("e2e")
    old = os.getcwd()
    old_uri = os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.chdir(root)
    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):  # capsys is per test, this fixture per module
            code = main([str(a) for a in ["train", "--model", "mlp", "--data-dir", _data(), "--epochs", 2,
                                          "--train-fraction", 0.03, "--probe-size", PROBE, "--log-epochs", "all",
                                          "--json", "--quiet"]])
        assert code == 0
        yield root, json.loads(out.getvalue().strip().splitlines()[-1])
    finally:
        os.chdir(old)
        if old_uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = old_uri


def test_train_mi_plot_store_contents(pipeline, capsys):
    root, train = pipeline
    assert train["status"] == "FINISHED" and train["records"] == 3  # step 0 + 2 epochs
    mi = run_json(["mi", train["run_id"][:8], "--method", "binning"], capsys)
    plot = run_json(["plot", train["run_id"], "--output", root / "figs"], capsys)

    store = Store()
    train_run = store.find_run(train["run_id"], stage="train")
    mi_run = store.find_run(mi["mi_run_id"], stage="mi")
    plot_run = store.find_run(plot["plot_run_id"], stage="plot")
    # one train run; the mi and plot runs are children of it
    assert [r.info.run_id for r in store.all_runs() if r.data.tags.get(STAGE_TAG) == "train"] == [train_run.info.run_id]
    assert {mi_run.info.run_id, plot_run.info.run_id} <= {r.info.run_id for r in store.children(train_run.info.run_id)}
    for child in (mi_run, plot_run):
        assert child.data.tags[PARENT_TAG] == train_run.info.run_id
        assert child.info.status == "FINISHED"
    assert train_run.data.tags[STAGE_TAG] == "train" and train_run.info.status == "FINISHED"
    assert train_run.data.metrics["train/accuracy_test"] > 0.5
    assert train_run.info.run_name == "mlp-tanh-adam-s0" and mi_run.info.run_name == "mi-binning-bins=30"
    assert train_run.data.tags["mlflow.note.content"].startswith("```\nibcli train --model mlp")

    # activations: the documented shapes and dtypes
    arts = store.artifacts(train_run)
    manifest = act.load_manifest(arts)
    assert [r["step"] for r in manifest.records] == [0, 15, 30]  # 1800 train samples / batch 128 -> 15 steps
    widths = {layer["name"]: layer["width"] for layer in manifest.layers}
    assert widths == {"layer1": 1024, "layer2": 20, "layer3": 20, "layer4": 20, "layer5": 20, "output": 10}
    sample_index, labels, x = act.load_probe(arts)
    assert sample_index.dtype == np.int64 and labels.dtype == np.int64 and x.dtype == np.float32
    assert x.shape == (PROBE, 784) and np.array_equal(sample_index, np.arange(PROBE))
    for rec in manifest.records:
        for name, width in widths.items():
            table = pq.read_table(arts.local_path(rec["files"][name]))
            assert table.num_rows == PROBE and table.schema.field("activation").type.list_size == width
            assert str(table.schema.field("activation").type.value_type) == "float"
    out = act.load_layer(arts, manifest.records[-1], "output")
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)  # softmax rows

    # mi table: one row per (record, layer), values inside their ceilings
    table = pq.read_table(store.artifacts(mi_run).local_path("mi.parquet")).to_pandas()
    assert len(table) == 3 * 6
    for col in ("epoch", "step", "layer", "layer_index", "method", "i_xt_bits", "i_ty_bits",
                "i_xt_lower_bits", "i_ty_bd_bits", "ceiling_bits", "unique_fraction", "bins"):
        assert col in table.columns
    assert (table["method"] == "binning").all() and (table["bins"] == 30).all()
    assert np.allclose(table["ceiling_bits"], math.log2(PROBE))
    assert (table["i_xt_bits"] >= 0).all() and (table["i_xt_bits"] <= math.log2(PROBE) + 1e-9).all()
    assert (table["i_ty_bits"] >= 0).all() and (table["i_ty_bits"] <= math.log2(10) + 1e-9).all()
    assert table["i_xt_lower_bits"].isna().all()
    # the 1024-wide tanh layer separates every probe sample: it sits at the ceiling
    wide = table[table["layer"] == "layer1"]
    assert np.allclose(wide["i_xt_bits"], math.log2(PROBE))

    # mi metrics: step = epoch for whole epochs
    history = store.client.get_metric_history(mi_run.info.run_id, "mi/i_xt_bits/layer5")
    assert sorted(m.step for m in history) == [0, 1, 2]

    # plots: one HTML file per figure with plotly.js once beside them in --output; the plot run
    # keeps one self-contained report (what MLflow's artifact viewer can show)
    figures = {"information_plane", "information_plane_by_method", "mi_per_epoch", "training_curves", "gradient_snr",
               "activation_histograms"}
    assert {p.name for p in (root / "figs").iterdir()} == (
        {f"{n}.html" for n in figures} | {"plotly.min.js", "report.html", "activation_histograms.parquet"})
    for name in figures:
        html = (root / "figs" / f"{name}.html").read_text()
        assert '<script charset="utf-8" src="plotly.min.js"></script>' in html and len(html) < 1_000_000
    report = store.artifacts(plot_run).local_path("figures/report.html").read_text()
    assert len(report) > 3_000_000 and all(f'id="{n}"' in report for n in figures)  # plotly.js inline, once
    assert report.count("Plotly.newPlot") == len(figures)
    hist = pq.read_table(store.artifacts(plot_run).local_path("activation_histograms.parquet")).to_pandas()
    sums = hist.groupby(["step", "layer"]).agg(count=("count", "sum"), n=("n_values", "first"))
    assert (sums["count"] == sums["n"]).all() and len(sums) == 3 * 6  # every value in a bin, every record and layer


def _data():
    return SHARED_DATA


def test_mi_on_chosen_epochs_and_layers_with_a_noise_sweep(pipeline, capsys):
    """kde on one epoch and one layer, two noise variances: one row each, bounds ordered."""
    from conftest import run_cli

    store = Store()
    train_id = pipeline[1]["run_id"]
    mi = run_json(["mi", train_id, "--method", "kde", "--epoch", 2, "--layer", "layer5",
                   "--noise-var", 0.1, "--noise-var", 0.01], capsys)
    table = pq.read_table(store.artifacts(store.find_run(mi["mi_run_id"])).local_path("mi.parquet")).to_pandas()
    assert list(table["epoch"]) == [2.0, 2.0] and list(table["layer"]) == ["layer5", "layer5"]
    assert sorted(table["noise_var"]) == [0.01, 0.1]
    assert (table["i_xt_lower_bits"] <= table["i_xt_bits"] + 1e-9).all()
    assert (table["i_xt_bits"] <= math.log2(PROBE) + 1e-9).all()
    # less noise keeps more information about X
    by_s2 = table.set_index("noise_var")
    assert by_s2.loc[0.01, "i_xt_bits"] > by_s2.loc[0.1, "i_xt_bits"]
    code, _, err = run_cli(["mi", train_id, "--epoch", 7], capsys)
    assert code == 2 and "epoch 7 was not recorded" in err and len(err.strip().splitlines()) == 1
