"""`ibcli plot` on the 12-bit task (ships with ibcli): runs compared, a run without mi results,
--format checked before anything is written, mi metrics against epochs and optimizer steps."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from conftest import run_cli, run_json, seed_store

from ibcli.store import PARENT_TAG, STAGE_TAG, Store

TRAIN = ["train", "--dataset", "ib12", "--model", "ib", "--epochs", 3, "--batch-size", 512, "--lr", 0.003,
         "--log-epochs", "all", "--log-steps", "2,3"]


def _json(args: list) -> dict:
    """`ibcli ARGS --json --quiet` in this process (a module fixture has no capsys)."""
    from ibcli.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*map(str, args), "--json", "--quiet"]) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, store_template):
    root = tmp_path_factory.mktemp("plots")
    uri = seed_store(store_template, root)
    ids = {}
    for activation in ("tanh", "relu"):
        ids[activation] = _json([*TRAIN, "--activation", activation, "--tracking-uri", uri])["run_id"]
        ids[f"mi_{activation}"] = _json(["mi", ids[activation], "--method", "binning", "--tracking-uri", uri])["mi_run_id"]
    ids["no_mi"] = _json([*TRAIN, "--activation", "sigmoid", "--tracking-uri", uri])["run_id"]
    return {"uri": uri, "root": root, **ids}


def test_runs_compared_in_one_set_of_figures(runs, capsys, tmp_path):
    out = tmp_path / "cmp"
    plot = run_json(["plot", runs["tanh"][:8], runs["relu"], "--output", out, "--tracking-uri", runs["uri"]], capsys)
    assert plot["labels"] == ["tanh", "relu"] and plot["train_run_ids"] == [runs["tanh"], runs["relu"]]
    assert sorted(plot["mi_run_ids"]) == sorted([runs["mi_tanh"], runs["mi_relu"]])
    assert {p.name for p in out.iterdir()} == {"information_plane.html", "mi_per_epoch.html", "training_curves.html",
                                               "gradient_snr.html", "report.html", "plotly.min.js"}
    run = Store(runs["uri"]).find_run(plot["plot_run_id"])
    assert run.info.run_name == "compare-tanh-vs-relu" and run.data.tags[STAGE_TAG] == "plot"
    assert PARENT_TAG not in run.data.tags and run.data.params["train_run_ids"] == f"{runs['tanh']},{runs['relu']}"
    html = (out / "information_plane.html").read_text()
    assert "tanh \\u00b7 binning" in html and "relu \\u00b7 binning" in html  # legend entries (JSON-escaped ·)


def test_a_run_without_mi_results_gets_its_training_figures(runs, capsys, tmp_path):
    plot = run_json(["plot", runs["no_mi"], "--output", tmp_path, "--tracking-uri", runs["uri"]], capsys)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"training_curves.html", "gradient_snr.html", "activation_histograms.html"} <= names
    assert not any(n.startswith(("information_plane", "mi_per_epoch")) for n in names)
    assert "no finished mi results" in plot["notes"][0] and f"ibcli mi {runs['no_mi'][:8]}" in plot["notes"][0]
    assert Store(runs["uri"]).find_run(plot["plot_run_id"]).info.run_name == "plot-training"
    # compared with a run that has them: its mi figures hold the other run only
    both = run_json(["plot", runs["no_mi"], runs["tanh"], "--output", tmp_path / "both", "--tracking-uri", runs["uri"]], capsys)
    assert both["labels"] == ["sigmoid", "tanh"] and both["mi_run_ids"] == [runs["mi_tanh"]]


def test_bad_plot_requests_are_one_line_and_leave_no_run(runs, capsys, monkeypatch):
    from ibcli import figure_files

    store = Store(runs["uri"])
    before = len(store.all_runs())
    monkeypatch.setattr(figure_files, "find_browser", lambda: None)
    for args, text in ((["--format", "png"], "needs a Chromium-family browser"), (["--format", "gif"], "--format takes"),
                       (["--mi-run", runs["mi_relu"]], "belongs to train run")):
        code, _, err = run_cli(["plot", runs["tanh"], *args, "--tracking-uri", runs["uri"]], capsys)
        assert code == 2 and text in err and len(err.strip().splitlines()) == 1, err
    assert len(store.all_runs()) == before


def test_mi_metrics_against_epochs_and_steps(runs):
    """Whole epochs under mi/ with step = epoch; records inside an epoch (--log-steps 2,3 of 7
    steps per epoch) under mi_steps/ with step = the optimizer step."""
    client = Store(runs["uri"]).client
    epochs = sorted(m.step for m in client.get_metric_history(runs["mi_tanh"], "mi/i_xt_bits/layer5"))
    steps = sorted(m.step for m in client.get_metric_history(runs["mi_tanh"], "mi_steps/i_ty_bits/layer5"))
    assert epochs == [0, 1, 2, 3] and steps == [2, 3]
