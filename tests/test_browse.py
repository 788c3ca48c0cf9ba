"""Finding your way: `ibcli runs`, `ibcli show`, `ibcli ui`, examples in every --help, shell completion.

The store is filled directly (no training): a finished and a killed train run, an mi and a
plot child of the first, one artifact file.
"""

from __future__ import annotations

import json
import shlex

import pytest

from conftest import run_cli, seed_store

from ibcli.store import EPOCHS_DONE_TAG, EPOCHS_TAG, Store


@pytest.fixture(scope="module")
def filled(tmp_path_factory, store_template):
    root = tmp_path_factory.mktemp("browse")
    uri = seed_store(store_template, root)
    s = Store(uri)
    a = s.create_run("ibcli", "train", run_name="mlp-tanh")
    s.log_params(a.info.run_id, {"model": "mlp", "activation": "tanh", "dataset": "mnist", "epochs": 2})
    s.log_metrics(a.info.run_id, {"test_accuracy": 0.5, "train_loss": 2.0}, step=1)
    s.log_metrics(a.info.run_id, {"test_accuracy": 0.875, "train_loss": 1.5}, step=2)
    s.client.set_tag(a.info.run_id, EPOCHS_DONE_TAG, "2")
    arts = s.artifacts(a)
    path = arts.writable_path("activations/manifest.json")
    path.write_text("{}")
    arts.commit(path, "activations/manifest.json")
    s.finish(a.info.run_id)
    for method in ("binning", "kde"):
        mi = s.create_child_run(a, "mi", run_name=f"mi-{method}")
        s.log_params(mi.info.run_id, {"method": method})
        s.finish(mi.info.run_id)
    failed = s.create_child_run(a, "mi", run_name="mi-mine")
    s.log_params(failed.info.run_id, {"method": "mine"})
    s.finish(failed.info.run_id, "FAILED", "boom")
    plot = s.create_child_run(a, "plot", run_name="plot")
    s.finish(plot.info.run_id)
    b = s.create_run("ibcli", "train", run_name="relu")
    s.log_params(b.info.run_id, {"model": "cnn", "activation": "relu", "dataset": "mnist", "epochs": 20})
    s.client.set_tag(b.info.run_id, EPOCHS_TAG, "30")
    s.client.set_tag(b.info.run_id, EPOCHS_DONE_TAG, "7")
    s.finish(b.info.run_id, "KILLED", "interrupted by SIGINT/SIGTERM")
    return {"uri": uri, "root": root, "a": a.info.run_id, "b": b.info.run_id, "plot": plot.info.run_id}


def test_runs_json(filled, capsys):
    code, out, err = run_cli(["runs", "--json", "--tracking-uri", filled["uri"]], capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert [r["run_id"] for r in rows] == [filled["b"], filled["a"]]  # train runs only, newest first
    b, a = rows
    assert (a["model"], a["activation"], a["epochs_done"], a["epochs"], a["status"]) == ("mlp", "tanh", 2, 2, "FINISHED")
    assert a["test_accuracy"] == 0.875
    assert sorted((m["method"], m["status"]) for m in a["mi"]) == [("binning", "FINISHED"), ("kde", "FINISHED"), ("mine", "FAILED")]
    assert [p["run_id"] for p in a["plots"]] == [filled["plot"]]
    assert (b["epochs_done"], b["epochs"], b["status"], b["failure"]) == (7, 30, "KILLED", "interrupted by SIGINT/SIGTERM")


def test_runs_table(filled, capsys):
    code, out, err = run_cli(["runs", "--tracking-uri", filled["uri"]], capsys)
    assert code == 0, err
    line_a = next(line for line in out.splitlines() if filled["a"][:8] in line)
    for cell in ("mlp", "tanh", "0.8750", "binning, kde", "FINISHED"):
        assert cell in line_a, (cell, line_a)
    assert "mine" not in line_a  # only finished mi runs count as done
    line_b = next(line for line in out.splitlines() if filled["b"][:8] in line)
    assert "7/30" in line_b and "KILLED" in line_b


def test_show(filled, capsys):
    code, out, err = run_cli(["show", filled["a"][:8], "--json", "--tracking-uri", filled["uri"]], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert info["run_id"] == filled["a"] and info["stage"] == "train" and info["status"] == "FINISHED"
    assert info["params"]["model"] == "mlp" and info["metrics"]["test_accuracy"] == 0.875
    assert [a["path"] for a in info["artifacts"]] == ["activations/manifest.json"]
    assert sorted(c["stage"] for c in info["children"]) == ["mi", "mi", "mi", "plot"]
    code, out, err = run_cli(["show", filled["plot"], "--tracking-uri", filled["uri"]], capsys)
    assert code == 0, err
    assert f"plot run {filled['plot']}" in out and filled["a"] in out  # its parent
    code, out, err = run_cli(["show", filled["a"], "--tracking-uri", filled["uri"]], capsys)
    for text in ("params", "metrics", "activations/manifest.json", "test_accuracy", "child runs"):
        assert text in out


def test_ui_command(filled, capsys):
    code, out, err = run_cli(["ui", "--port", "5077", "--host", "0.0.0.0", "--dry-run", "--tracking-uri", filled["uri"]], capsys)
    assert code == 0, err
    argv = shlex.split(out.strip())
    assert argv[1:4] == ["-m", "mlflow", "ui"]
    opts = dict(zip(argv[4::2], argv[5::2]))
    assert opts == {"--backend-store-uri": filled["uri"], "--default-artifact-root": str(filled["root"] / "runs" / "artifacts"),
                    "--host": "0.0.0.0", "--port": "5077"}


def test_every_help_has_an_example(capsys):
    from ibcli.cli import app

    import typer.main

    group = typer.main.get_command(app)
    names = sorted(group.commands)
    assert {"train", "mi", "plot", "runs", "show", "ui"} <= set(names)
    for name in names:
        code, out, err = run_cli([name, "--help"], capsys)
        assert code == 0, (name, err)
        assert "Example:" in out and f"ibcli {name}" in out, name


def test_shell_completion(capsys, monkeypatch):
    code, out, _ = run_cli(["--show-completion", "bash"], capsys)
    assert code == 0
    assert "_ibcli_completion" in out and "complete " in out
    # and the completion itself: the shell calls ibcli with these variables set
    monkeypatch.setenv("_IBCLI_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "ibcli sh")
    monkeypatch.setenv("COMP_CWORD", "1")
    code, out, _ = run_cli([], capsys)
    assert code == 0 and out.split() == ["show"]
