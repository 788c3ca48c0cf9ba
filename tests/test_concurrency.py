"""Several ibcli processes on one default SQLite store at once: separate, correct runs.

Real subprocesses, started together: two `ibcli train` and one `ibcli mi` on a store that
holds a train run; and two `ibcli train` on a store that does not exist yet (both race to
create the database and the experiment).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED_DATA, run_json, seed_store

from ibcli import activations as act
from ibcli.store import PARENT_TAG, STAGE_TAG, Store

TRAIN = ["train", "--data-dir", str(SHARED_DATA), "--train-fraction", "0.01", "--probe-size", "100",
         "--epochs", "1", "--log-epochs", "all", "--json", "--quiet"]


@pytest.fixture(autouse=True)
def _mnist():
    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST not found under {SHARED_DATA}")


def start_all(commands: list[list[str]], cwd: Path) -> list[dict]:
    """Start every command at once (default store: cwd/runs); wait; return their JSON summaries."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    procs = [subprocess.Popen([sys.executable, "-m", "ibcli.cli", *c], cwd=cwd, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in commands]
    results = []
    try:
        for c, p in zip(commands, procs):
            out, err = p.communicate(timeout=540)
            assert p.returncode == 0, f"{c[0]} exited {p.returncode}:\n{err}"
            assert "Traceback" not in err, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


def check_train_runs(store: Store, summaries: list[dict]) -> None:
    ids = [s["run_id"] for s in summaries]
    assert len(set(ids)) == len(ids)
    roots = set()
    for rid in ids:
        run = store.find_run(rid, stage="train")
        assert run.info.status == "FINISHED"
        assert [m.step for m in store.client.get_metric_history(rid, "train/loss_train")] == [1]
        arts = store.artifacts(run)
        roots.add(arts.local_root)
        manifest = act.load_manifest(arts)
        assert [r["step"] for r in manifest.records] == [0, 5]  # 600 samples / batch 128
        for rec in manifest.records:
            assert act.load_layer(arts, rec, "layer2").shape == (100, 20)
    assert len(roots) == len(ids)
    names = [e.name for e in store.client.search_experiments()]
    assert names.count("ibcli") == 1


def test_two_trains_and_an_mi_on_one_store(tmp_path, monkeypatch, capsys, store_template):
    seed_store(store_template, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first = run_json(TRAIN[:-2], capsys)
    trains_and_mi = start_all([TRAIN, TRAIN, ["mi", first["run_id"][:12], "--bins", "10", "--json", "--quiet"]], tmp_path)
    store = Store()
    check_train_runs(store, [first, *trains_and_mi[:2]])
    mi = trains_and_mi[2]
    mi_run = store.find_run(mi["mi_run_id"], stage="mi")
    assert mi_run.info.status == "FINISHED" and mi_run.data.tags[PARENT_TAG] == first["run_id"]
    assert mi["records"] == 2 and mi["rows"] == 2 * 6
    assert len(store.all_runs()) == 4


def test_two_trains_create_the_store_together(tmp_path):
    assert not (tmp_path / "runs").exists()
    summaries = start_all([TRAIN, TRAIN], tmp_path)
    store = Store(f"sqlite:///{tmp_path}/runs/mlflow.db")
    check_train_runs(store, summaries)
    assert {r.data.tags[STAGE_TAG] for r in store.all_runs()} == {"train"}
