"""A shared store: `ibcli server` (MLflow on a real PostgreSQL, proxied artifacts) on loopback.

train -> mi -> plot through the server; runs/show/ui against it; `ibcli mi` downloads only
what it reads, into its cache; three writers at once lose nothing; a server stopped
mid-run is one line and a resumable run. The services come from conftest's session
fixtures (tests/servers.py); without PostgreSQL these tests skip (CI requires them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA, run_cli, run_json
from servers import CLIENT_ENV, MlflowServer

from ibcli import activations as act
from ibcli.store import PARENT_TAG, Store

TINY = ["--data-dir", str(SHARED_DATA), "--train-fraction", "0.01", "--probe-size", "100", "--log-epochs", "all"]


@pytest.fixture(autouse=True)
def _mnist():
    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST not found under {SHARED_DATA}")


@pytest.fixture
def on_server(mlflow_server, tmp_path, monkeypatch):
    """This test's commands use the server (no --tracking-uri needed) and a fresh cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("IBCLI_CACHE_DIR", str(tmp_path / "cache"))
    return mlflow_server


def _files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_train_mi_plot_through_the_server(on_server, tmp_path, capsys):
    train = run_json(["train", "--epochs", "2", *TINY], capsys)
    assert train["status"] == "FINISHED" and train["records"] == 3
    assert train["artifact_uri"].startswith("mlflow-artifacts:/")
    assert not (tmp_path / "runs").exists()  # nothing written to a local store
    rid = train["run_id"]

    # mi reads only the manifest, the probe and the chosen (record, layer): into the cache
    mi = run_json(["mi", rid[:8], "--layer", "layer2", "--epoch", "1"], capsys)
    assert mi["rows"] == 1
    assert _files_under(tmp_path / "cache" / rid) == [
        "activations/manifest.json", "activations/probe.parquet", "activations/step_0000005/layer2.parquet"]
    full = run_json(["mi", rid[:8], "--method", "binning"], capsys)
    assert full["rows"] == 3 * 6
    plot = run_json(["plot", rid, "--output", tmp_path / "figs"], capsys)
    assert {Path(f).name for f in plot["files"]} >= {"information_plane.html", "training_curves.html"}

    # everything landed on the server: runs linked, artifacts in its --artifacts-destination
    store = Store()
    train_run = store.find_run(rid, stage="train")
    assert train_run.info.status == "FINISHED"
    for child_id, stage in ((mi["mi_run_id"], "mi"), (full["mi_run_id"], "mi"), (plot["plot_run_id"], "plot")):
        child = store.find_run(child_id, stage=stage)
        assert child.info.status == "FINISHED" and child.data.tags[PARENT_TAG] == rid
    served = on_server.artifacts / train_run.info.experiment_id / rid / "artifacts"
    names = _files_under(served)
    assert "activations/manifest.json" in names and "checkpoints/last.pt" in names
    assert sum(n.startswith("activations/step_") for n in names) == 3 * 6
    table = pd.read_parquet(store.artifacts(store.find_run(full["mi_run_id"])).local_path("mi.parquet"))
    assert len(table) == 18 and table["i_xt_bits"].between(0, np.log2(100) + 1e-9).all()
    # the narrow run's one row (read from the cache) is the full run's row for (epoch 1, layer2)
    narrow = pd.read_parquet(store.artifacts(store.find_run(mi["mi_run_id"])).local_path("mi.parquet"))
    same = table[(table["epoch"] == 1) & (table["layer"] == "layer2")].reset_index(drop=True)
    pd.testing.assert_frame_equal(narrow.drop(columns="seconds"), same.drop(columns="seconds"), check_exact=True)
    manifest = act.load_manifest(store.artifacts(train_run))
    assert [r["step"] for r in manifest.records] == [0, 5, 10]

    # browsing works against the server
    code, out, _ = run_cli(["runs", "--json"], capsys)
    row = next(r for r in json.loads(out) if r["run_id"] == rid)
    assert code == 0 and len(row["mi"]) == 2 and len(row["plots"]) == 1
    code, out, _ = run_cli(["show", mi["mi_run_id"], "--json"], capsys)
    assert code == 0 and [a["path"] for a in json.loads(out)["artifacts"]] == ["mi.parquet"]
    code, out, _ = run_cli(["ui"], capsys)
    assert code == 0 and out.strip() == on_server.url + "/"


def _start(args: list[str], url: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, **CLIENT_ENV, "MLFLOW_TRACKING_URI": url, "IBCLI_CACHE_DIR": str(cwd / "cache")}
    return subprocess.Popen([sys.executable, "-m", "ibcli.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _finish(procs: list[subprocess.Popen], timeout: float = 600) -> list[tuple[int, str, str]]:
    out = []
    try:
        for p in procs:
            o, e = p.communicate(timeout=timeout)
            out.append((p.returncode, o, e))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


def test_three_writers_at_once_lose_nothing(on_server, tmp_path, capsys):
    first = run_json(["train", "--epochs", "1", *TINY], capsys)
    procs = [_start(["train", "--epochs", "2", *TINY, "--json", "--quiet"], on_server.url, tmp_path),
             _start(["train", "--epochs", "2", *TINY, "--json", "--quiet"], on_server.url, tmp_path),
             _start(["mi", first["run_id"], "--method", "kde", "--json", "--quiet"], on_server.url, tmp_path)]
    results = _finish(procs)
    for rc, out, err in results:
        assert rc == 0 and "Traceback" not in err, err
    summaries = [json.loads(out.strip().splitlines()[-1]) for _, out, _ in results]
    store = Store()
    for s in summaries[:2]:
        run = store.find_run(s["run_id"], stage="train")
        assert run.info.status == "FINISHED"
        assert [m.step for m in store.client.get_metric_history(s["run_id"], "train/loss_train")] == [1, 2]
        arts = store.artifacts(run)
        manifest = act.load_manifest(arts)
        assert [r["step"] for r in manifest.records] == [0, 5, 10]
        for rec in manifest.records:
            for layer in ("layer1", "output"):
                assert act.load_layer(arts, rec, layer).shape[0] == 100
    mi_run = store.find_run(summaries[2]["mi_run_id"], stage="mi")
    assert mi_run.info.status == "FINISHED" and mi_run.data.tags[PARENT_TAG] == first["run_id"]
    assert summaries[2]["rows"] == 2 * 6
    assert [e.name for e in store.client.search_experiments()].count("ibcli") == 1


def test_a_server_stopped_mid_run_is_one_line_and_the_run_resumes(on_server, tmp_path, capsys):
    # A second server on the same database and artifact folder: stopping it leaves the session's
    # server (the same store) up, which then plays "the server is back".
    second = MlflowServer(on_server.backend_uri, on_server.artifacts)
    name = f"stopped-{time.time_ns()}"
    try:
        proc = _start(["train", "--epochs", "3000", *TINY[:-2], "--log-epochs", "every:3", "--run-name", name,
                       "--json", "--quiet"], second.url, tmp_path)
        store = Store(on_server.url)
        run_id, deadline = None, time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            runs = store.all_runs(f"attributes.run_name = '{name}'")
            if runs:
                run_id = runs[0].info.run_id
                if store.client.list_artifacts(run_id, "checkpoints") and len(
                        act.load_manifest(store.artifacts(runs[0])).records) >= 2:
                    break
            time.sleep(0.5)
        assert run_id is not None and proc.poll() is None, "the run did not get going"
        second.stop()
        [(rc, out, err)] = _finish([proc], timeout=300)
    finally:
        second.close()
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert rc == 2 and "Traceback" not in err, err
    assert len(lines) == 1 and "does not answer" in lines[0] and f"--resume {run_id[:8]}" in lines[0], err

    # other commands against the stopped server: one line too
    code, _, err = run_cli(["mi", run_id, "--tracking-uri", second.url], capsys)
    assert code == 2 and "does not answer" in err and len(err.strip().splitlines()) == 1

    # the server is back (the same store): resume from the last checkpoint it received
    run = store.find_run(run_id, stage="train")
    assert run.info.status == "RUNNING"
    import torch

    done = int(torch.load(store.artifacts(run).local_path("checkpoints/last.pt"), weights_only=False)["epoch"])
    resumed = run_json(["train", "--resume", run_id, "--epochs", str(done + 2), "--tracking-uri", on_server.url], capsys)
    assert resumed["status"] == "FINISHED" and resumed["epochs"] == done + 2
    run = store.find_run(run_id, stage="train")
    assert run.info.status == "FINISHED"
    arts = store.artifacts(run)
    manifest = act.load_manifest(arts)
    steps = [r["step"] for r in manifest.records]
    assert steps == sorted(set(steps)) and steps[-1] == (done + 2) * 5
    for rec in manifest.records:
        assert act.load_layer(arts, rec, "layer5").shape == (100, 20)
