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


def _summary(rid: str, uri: str, capsys) -> dict:
    code, out, err = run_cli(["show", rid, "--summary", "--json", "--tracking-uri", uri], capsys)
    assert code == 0 and err == "", err
    return json.loads(out)


def test_a_partial_latest_mi_run_is_noted(runs, capsys, tmp_path):
    """A later mi run on fewer layers is the default (the latest of its method), and plot and
    show --summary say which older run covers more and how to pick it."""
    uri = runs["uri"]
    rid = _json([*TRAIN, "--activation", "tanh", "--seed", 7, "--tracking-uri", uri])["run_id"]
    full = _json(["mi", rid, "--method", "binning", "--tracking-uri", uri])["mi_run_id"]
    kde = _json(["mi", rid, "--method", "kde", "--noise-var", 0.1, "--layer", "output", "--tracking-uri", uri])["mi_run_id"]
    part = _json(["mi", rid, "--method", "binning", "--seed", 5, "--layer", "output", "--tracking-uri", uri])["mi_run_id"]
    note = (f"binning: the latest mi run {part[:8]} covers 1 layer and 6 records, the older mi run {full[:8]} covers "
            f"6 layers and 6 records: ")
    picks = f"--mi-run {full[:8]} --mi-run {kde[:8]}"
    plot = run_json(["plot", rid, "--no-histograms", "--output", tmp_path / "a", "--tracking-uri", uri], capsys)
    assert sorted(plot["mi_run_ids"]) == sorted([part, kde]) and plot["notes"] == [note + f"pick it with {picks}"]
    code, _, err = run_cli(["plot", rid, "--no-histograms", "--output", tmp_path / "b", "--tracking-uri", uri], capsys)
    assert code == 0 and f"note: {note}pick it with {picks}" in err
    # the picks plot the full run, with no note; the kde run (one layer, the only one of its method) never gets one
    picked = run_json(["plot", rid, *picks.split(), "--no-histograms", "--output", tmp_path / "c", "--tracking-uri", uri], capsys)
    assert sorted(picked["mi_run_ids"]) == sorted([full, kde]) and picked["notes"] == []
    # compared runs: the note names the run by its label
    both = run_json(["plot", rid, runs["relu"], "--output", tmp_path / "d", "--tracking-uri", uri], capsys)
    assert [n for n in both["notes"] if "binning:" in n] == [f"{both['labels'][0]}: {note}pick it with {picks}"]
    summary = _summary(rid, uri, capsys)
    assert summary["notes"] == [note + f"plot it with `ibcli plot {rid[:8]} {picks}`"]
    assert [m["mi_run_id"] for m in summary["mi"] if m["method"] == "binning"] == [part]  # the default is kept
    code, out, err = run_cli(["show", rid, "--summary", "--tracking-uri", uri], capsys)
    assert code == 0 and f"note: {note}plot it with" in err
    # a newer run on every layer again: nothing to note
    _json(["mi", rid, "--method", "binning", "--seed", 6, "--tracking-uri", uri])
    assert _summary(rid, uri, capsys)["notes"] == []
