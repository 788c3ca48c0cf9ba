"""Finding your way: `ibcli runs`, `ibcli show`, `ibcli ui`, examples in every --help, shell completion.

The store is filled directly (no training): a finished and a killed train run, an mi and a
plot child of the first, one artifact file.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

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
    assert info["params"]["model"] == "mlp" and info["metrics"]["train/accuracy_test"] == 0.875
    assert [a["path"] for a in info["artifacts"]] == ["activations/manifest.json"]
    assert sorted(c["stage"] for c in info["children"]) == ["mi", "mi", "mi", "plot"]
    code, out, err = run_cli(["show", filled["plot"], "--tracking-uri", filled["uri"]], capsys)
    assert code == 0, err
    assert f"plot run {filled['plot']}" in out and filled["a"] in out  # its parent
    code, out, err = run_cli(["show", filled["a"], "--tracking-uri", filled["uri"]], capsys)
    for text in ("params", "metrics", "activations/manifest.json", "train/accuracy_test", "child runs"):
        assert text in out


def test_ui_command(filled, capsys):
    code, out, err = run_cli(["ui", "--port", "5077", "--host", "0.0.0.0", "--dry-run", "--tracking-uri", filled["uri"]], capsys)
    assert code == 0, err
    command, url = out.strip().splitlines()
    argv = shlex.split(command)
    env = dict(a.split("=", 1) for a in argv[:2])
    assert env == {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PYTHONWARNINGS": "ignore"}  # no job runner, no warnings
    assert argv[3:6] == ["-m", "mlflow", "ui"]
    opts = dict(zip(argv[6::2], argv[7::2]))
    assert opts == {"--backend-store-uri": filled["uri"], "--registry-store-uri": filled["uri"],
                    "--default-artifact-root": str(filled["root"] / "runs" / "artifacts"),
                    "--host": "0.0.0.0", "--port": "5077", "--workers": "1",
                    "--uvicorn-opts": "--log-level warning --no-access-log"}
    experiment = Store(filled["uri"]).client.get_experiment_by_name("ibcli").experiment_id
    # the runs table of the ibcli experiment, in MLflow 3's classic (not GenAI) view
    assert url == f"http://127.0.0.1:5077/#/experiments/{experiment}/runs?workflowType=machine_learning"
    code, out, err = run_cli(["ui", "--experiment", "ibcli", "--dry-run", "--tracking-uri", filled["uri"]], capsys)
    assert code == 0 and out.strip().splitlines()[1] == f"http://127.0.0.1:5000/#/experiments/{experiment}/runs?workflowType=machine_learning"


def test_ui_unknown_experiment(filled, capsys, tmp_path, store_template):
    """A mistyped --experiment is a one-line error naming the store's experiments (it silently opened the
    experiments list, exit 0); without --experiment, a store with no ibcli experiment opens that list."""
    code, out, err = run_cli(["ui", "--experiment", "nope", "--dry-run", "--tracking-uri", filled["uri"]], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: no experiment 'nope' in the store") and "'ibcli'" in lines[0], lines[0]
    empty = seed_store(store_template, tmp_path)
    code, out, err = run_cli(["ui", "--dry-run", "--tracking-uri", empty], capsys)
    assert code == 0 and out.strip().splitlines()[1] == "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning", err


FAKE_SERVER = """
import http.server, sys
print("[MLflow] Security middleware enabled with default settings (localhost-only). To allow ...", flush=True)
print("a line that matters", flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404); self.end_headers(); self.wfile.write(b"OK")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_ui_waits_for_the_server_prints_the_url_and_drops_the_noise(capfd, monkeypatch):
    """serve_ui on a stand-in server: the address once /health answers, the start-up noise gone,
    other lines passed on, Ctrl-C ends it with exit code 0, a taken port is one line."""
    from ibcli.errors import UserError
    from ibcli.stages import browse

    port = _free_port()
    url = f"http://127.0.0.1:{port}/#/experiments/1/runs?workflowType=machine_learning"
    said = []

    def say(text):
        said.append(text)
        raise KeyboardInterrupt  # the user presses Ctrl-C once the address is out

    monkeypatch.setattr(browse, "_can_open_browser", lambda: False)
    code = browse.serve_ui([sys.executable, "-c", FAKE_SERVER, str(port)], url, "127.0.0.1", port, True, say=say)
    assert code == 0 and said == [f"MLflow UI: {url}  (Ctrl-C stops it)"]
    err = capfd.readouterr().err
    assert "a line that matters" in err and "Security middleware" not in err
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the stand-in's connections may be in TIME_WAIT
        busy.bind(("127.0.0.1", port))
        busy.listen()
        with pytest.raises(UserError, match=f"port {port} on 127.0.0.1 is in use"):
            browse.serve_ui([sys.executable, "-c", "pass"], url, "127.0.0.1", port, False)


@pytest.mark.skipif(not os.environ.get("IBCLI_TEST_UI"), reason="starts the real MLflow UI (20-60 s): set IBCLI_TEST_UI=1")
def test_ui_serves_the_runs_table(filled):
    """`ibcli ui` for real on a free port: the page answers, one server process, no warning lines."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "ibcli.cli", "ui", "--port", str(port), "--no-open", "--tracking-uri",
                             filled["uri"]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        lines = []
        for raw in proc.stderr:
            lines.append(raw.decode())
            if "MLflow UI:" in lines[-1]:
                break
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
        assert len(_descendants(proc.pid)) == 2  # mlflow's launcher and one uvicorn worker (no job runner)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    text = "".join(lines)
    assert "Warning" not in text and "INFO" not in text and len(lines) == 2, text


def _descendants(pid: int) -> list[str]:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return children + [d for c in children for d in _descendants(int(c))]


def test_old_metric_names_are_still_read(store_template, tmp_path):
    """Runs logged before the grouped names (test_accuracy, train_loss) read as before."""
    from ibcli.results import load_training_metrics
    from ibcli.stages.browse import list_runs

    uri = seed_store(store_template, tmp_path)
    s = Store(uri)
    run = s.create_run("ibcli", "train")
    s.log_params(run.info.run_id, {"model": "mlp", "activation": "tanh"})
    for step, (acc, loss) in enumerate([(0.5, 2.0), (0.75, 1.0)]):
        s.client.log_metric(run.info.run_id, "test_accuracy", acc, step=step)  # the raw client: no renaming
        s.client.log_metric(run.info.run_id, "train_loss", loss, step=step)
    s.finish(run.info.run_id)
    assert list_runs(uri)[0]["test_accuracy"] == 0.75
    table = load_training_metrics(s, run.info.run_id)
    assert table.pivot(index="epoch", columns="key", values="value").to_dict() == {
        "test_accuracy": {0: 0.5, 1: 0.75}, "train_loss": {0: 2.0, 1: 1.0}}


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
