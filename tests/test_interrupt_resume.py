"""A week of runs: interruption (SIGINT, SIGTERM, kill -9), resume, divergence.

The interruption tests kill real `ibcli train` subprocesses mid-epoch, once their
manifest lists >= 2 records; the three are started together (one module fixture) so
the slow start-up (torch + mlflow imports) is paid once in wall time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, run_cli, run_json, seed_store

from ibcli import activations as act
from ibcli.metric_names import mlflow_name
from ibcli.stages.mi import run_mi
from ibcli.store import FAILURE_TAG, STAGE_TAG, Store

PROBE = 100
KILLS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}
WIDTHS = {"layer1": 1024, "layer2": 20, "layer3": 20, "layer4": 20, "layer5": 20, "output": 10}


def _need_mnist():
    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST not found under {SHARED_DATA}")


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _manifests(folder: Path) -> list[Path]:
    return list(folder.glob("runs/artifacts/ibcli/*/artifacts/activations/manifest.json"))


def _records(manifest_path: Path) -> int:
    try:
        return len(json.loads(manifest_path.read_text())["records"])
    except (OSError, ValueError):
        return 0  # not there yet (it is replaced atomically, so never half-written)


@pytest.fixture(scope="module")
def killed(tmp_path_factory, store_template):
    """Three `ibcli train` subprocesses, killed mid-epoch with SIGINT, SIGTERM and SIGKILL
    once each has >= 2 complete records. Returns {name: (folder, returncode, stderr)}."""
    _need_mnist()
    procs = {}
    for name in KILLS:
        folder = tmp_path_factory.mktemp(f"kill-{name}")
        seed_store(store_template, folder)  # skip MLflow's slow migrations: this test is about killing
        cmd = [sys.executable, "-m", "ibcli.cli", "train", "--data-dir", str(SHARED_DATA), "--train-fraction", "0.05",
               "--probe-size", str(PROBE), "--epochs", "200", "--log-epochs", "all", "--quiet"]
        err = open(folder / "stderr.txt", "w")
        procs[name] = (folder, subprocess.Popen(cmd, cwd=folder, env=_env(), stdout=subprocess.DEVNULL, stderr=err,
                                                start_new_session=True), err)
    deadline = time.monotonic() + 600
    pending = dict(procs)
    try:
        while pending and time.monotonic() < deadline:
            for name, (folder, proc, _) in list(pending.items()):
                assert proc.poll() is None, f"{name}: train ended early:\n{(folder / 'stderr.txt').read_text()}"
                found = _manifests(folder)
                # kill -9 only once a checkpoint exists too, so the resume test has one to continue from
                ready = found and _records(found[0]) >= 2 and (
                    name != "SIGKILL" or (found[0].parents[1] / "checkpoints" / "last.pt").is_file())
                if ready:
                    run_id = found[0].parents[2].name
                    store = Store(f"sqlite:///{folder}/runs/mlflow.db")
                    assert store.is_live(run_id), name
                    if name == "SIGTERM":  # mi on a run that is still training: its complete records so far
                        live = run_mi(run_id, "binning", {"bins": 10}, tracking_uri=store.uri, quiet=True)
                        assert live["records"] >= 2 and "still training (live)" in " ".join(live["notes"])
                    proc.send_signal(KILLS[name])
                    del pending[name]
            time.sleep(0.2)
        assert not pending, f"no 2 records within the time limit: {sorted(pending)}"
        out = {}
        for name, (folder, proc, err) in procs.items():
            rc = proc.wait(timeout=300)
            err.close()
            out[name] = (folder, rc, (folder / "stderr.txt").read_text())
        yield out
    finally:
        for _, proc, err in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            err.close()


@pytest.mark.parametrize("name", list(KILLS))
def test_killed_train_keeps_complete_records(killed, name, capsys):
    folder, rc, err = killed[name]
    uri = f"sqlite:///{folder}/runs/mlflow.db"
    store = Store(uri)
    (run,) = train_runs(store)
    if name == "SIGKILL":
        assert rc == -signal.SIGKILL
        assert run.info.status == "RUNNING"  # nobody could end it
    else:
        assert rc == 130, err
        assert "Traceback" not in err, err
        assert run.info.status == "KILLED"
        assert "SIGINT/SIGTERM" in run.data.tags[FAILURE_TAG]
        # even with --quiet: what happened, and the command that continues it
        assert f"train run {run.info.run_id}: KILLED after" in err, err
        assert f"continue it with: ibcli train --resume {run.info.run_id}" in err, err
    assert store.is_live(run.info.run_id) is False  # the process is gone, even after kill -9

    # every record the manifest lists is complete: each layer file reads with the right shape
    arts = store.artifacts(run)
    manifest = act.load_manifest(arts)
    assert len(manifest.records) >= 2
    steps = [r["step"] for r in manifest.records]
    assert steps == sorted(set(steps)) and steps[0] == 0
    for rec in manifest.records:
        for layer, width in WIDTHS.items():
            values = act.load_layer(arts, rec, layer)
            assert values.shape == (PROBE, width) and np.isfinite(values).all()

    # mi uses exactly those records and says so (and, after kill -9, that no process trains the run)
    code, out, err = run_cli(["mi", run.info.run_id[:10], "--method", "binning", "--bins", "10",
                              "--tracking-uri", uri, "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["records"] == len(manifest.records)
    assert summary["rows"] == len(manifest.records) * len(WIDTHS)
    note = " ".join(summary["notes"])
    assert f"{len(manifest.records)} complete records" in note
    if name == "SIGKILL":
        assert "RUNNING" in note and "no process trains it" in note and "--resume" in note
    else:
        assert "KILLED" in note


def test_resume_after_kill9_finishes_the_same_run(killed, capsys):
    folder, _, _ = killed["SIGKILL"]
    uri = f"sqlite:///{folder}/runs/mlflow.db"
    store = Store(uri)
    (run,) = train_runs(store)
    done = int(torch_load_epoch(store, run))
    summary = run_json(["train", "--resume", run.info.run_id, "--epochs", done + 1, "--tracking-uri", uri], capsys)
    assert summary["run_id"] == run.info.run_id and summary["status"] == "FINISHED" and summary["epochs"] == done + 1
    run = store.find_run(run.info.run_id)
    assert run.info.status == "FINISHED" and FAILURE_TAG not in run.data.tags
    manifest = act.load_manifest(store.artifacts(run))
    steps = [r["step"] for r in manifest.records]
    assert steps == sorted(set(steps))
    assert manifest.records[-1]["epoch"] == done + 1
    assert len(train_runs(store)) == 1  # continued in place: no new train run


def train_runs(store) -> list:
    return [r for r in store.all_runs() if r.data.tags.get(STAGE_TAG) == "train"]


def torch_load_epoch(store, run) -> int:
    import torch

    ckpt = torch.load(store.artifacts(run).local_path("checkpoints/last.pt"), map_location="cpu", weights_only=False)
    return ckpt["epoch"]


# ------------------------------------------------------------------ resume == uninterrupted
def test_resume_equals_uninterrupted_run(store_env, capsys, mnist_dir, store_template):
    seed_store(store_template, store_env)
    common = ["--data-dir", mnist_dir, "--train-fraction", "0.01", "--probe-size", PROBE, "--log-epochs", "all",
              "--seed", "7", "--device", "cpu"]
    straight = run_json(["train", *common, "--epochs", 3], capsys)
    first = run_json(["train", *common, "--epochs", 2], capsys)
    resumed = run_json(["train", "--resume", first["run_id"][:12], "--epochs", 3], capsys)
    assert resumed["run_id"] == first["run_id"] and resumed["status"] == "FINISHED"

    store = Store()
    a, b = store.find_run(straight["run_id"]), store.find_run(first["run_id"])
    arts_a, arts_b = store.artifacts(a), store.artifacts(b)
    man_a, man_b = act.load_manifest(arts_a), act.load_manifest(arts_b)
    assert [r["step"] for r in man_a.records] == [r["step"] for r in man_b.records]
    for rec_a, rec_b in zip(man_a.records, man_b.records):
        for layer in WIDTHS:
            np.testing.assert_allclose(act.load_layer(arts_b, rec_b, layer), act.load_layer(arts_a, rec_a, layer),
                                       rtol=1e-5, atol=1e-6, err_msg=f"step {rec_a['step']} {layer}")
    for key in ("test_accuracy", "test_loss", "train_loss", "train_accuracy"):
        name = mlflow_name(key)
        hist_a = sorted((m.step, m.value) for m in store.client.get_metric_history(a.info.run_id, name))
        hist_b = sorted((m.step, m.value) for m in store.client.get_metric_history(b.info.run_id, name))
        assert [s for s, _ in hist_a] == [s for s, _ in hist_b] == ([0, 1, 2, 3] if key.startswith("test") else [1, 2, 3])
        np.testing.assert_allclose([v for _, v in hist_b], [v for _, v in hist_a], rtol=1e-5, err_msg=key)
    assert b.data.tags["ibcli.epochs"] == "3" and b.data.tags["ibcli.epochs_done"] == "3"

    # a finished run asked for no more epochs is left as it is
    code, _, err = run_cli(["train", "--resume", first["run_id"]], capsys)
    assert code == 2 and "already trained 3 epochs" in err and len(err.strip().splitlines()) == 1
    assert store.find_run(first["run_id"]).info.status == "FINISHED"


# ------------------------------------------------------------------ divergence
def test_divergence_fails_the_run_and_keeps_earlier_records(store_env, capsys, mnist_dir, store_template):
    seed_store(store_template, store_env)
    code, _, err = run_cli(["train", "--data-dir", mnist_dir, "--train-fraction", "0.01", "--probe-size", PROBE,
                            "--epochs", "2", "--activation", "relu", "--optimizer", "sgd", "--lr", "1e6",
                            "--log-steps", "1,2,3,4", "--quiet"], capsys)
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert "NaN or inf" in line or "loss became" in line, line
    assert "lower --lr" in line and "marked FAILED" in line and "ibcli mi" in line

    store = Store()
    (run,) = store.all_runs()
    assert run.info.status == "FAILED"
    assert "diverged" in run.data.tags[FAILURE_TAG] or "loss became" in run.data.tags[FAILURE_TAG]
    arts = store.artifacts(run)
    manifest = act.load_manifest(arts)
    assert manifest.records, "step 0 at least"
    for rec in manifest.records:  # nothing after the blow-up was listed
        for layer in WIDTHS:
            assert np.isfinite(act.load_layer(arts, rec, layer)).all()
    summary = run_json(["mi", run.info.run_id, "--method", "binning", "--bins", "10"], capsys)
    assert summary["records"] == len(manifest.records)
    assert "ended FAILED" in " ".join(summary["notes"])


# ------------------------------------------------------------------ resume across devices
def test_optimizer_state_keeps_the_loading_optimizers_implementation():
    """A fused, capturable Adam's state (what a GPU run saves) loads into PyTorch's plain Adam
    and back: each keeps its own flags, step counts and moments come across unchanged."""
    import torch

    from ibcli.training import load_optimizer_state

    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    gpu_like = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True, capturable=True)
    for _ in range(3):
        gpu_like.zero_grad()
        model(torch.randn(8, 5)).square().sum().backward()
        gpu_like.step()
    saved = gpu_like.state_dict()
    plain = torch.optim.Adam(model.parameters(), lr=1e-2)
    load_optimizer_state(plain, saved)
    group = plain.param_groups[0]
    assert not group["fused"] and not group["capturable"] and group["lr"] == 1e-2
    for p in model.parameters():
        state, ref = plain.state[p], gpu_like.state[p]
        assert float(state["step"]) == 3.0 and state["step"].device.type == "cpu"
        assert torch.equal(state["exp_avg"], ref["exp_avg"]) and torch.equal(state["exp_avg_sq"], ref["exp_avg_sq"])
    plain.step()  # PyTorch's plain Adam accepts the state
    back = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True, capturable=True)
    load_optimizer_state(back, plain.state_dict())
    assert back.param_groups[0]["fused"] and back.param_groups[0]["capturable"]
    assert all(float(back.state[p]["step"]) == 4.0 for p in model.parameters())


@pytest.mark.parametrize("eager", [False, True])
def test_resume_of_a_gpu_style_checkpoint_on_the_cpu(tmp_path, store_template, eager):
    """A run whose checkpoint holds a fused, capturable Adam (as on a GPU) resumes with the
    CPU's Adam (fused, not capturable; with --eager PyTorch's plain one): the optimizer keeps
    its own flags, the generators their CPU states, and the resumed run ends where a straight
    run ends (to 1e-4: the implementations round apart)."""
    import torch

    from ibcli.store import Store
    from ibcli.training import TrainConfig, Trainer, load_checkpoint, make_optimizer

    store = Store(seed_store(store_template, tmp_path))

    def config(epochs):
        return TrainConfig(dataset="ib12", model="ib", probe_split="all", epochs=epochs, log_epochs="all", lr=3e-3,
                           device="cpu", seed=5, experiment="t", eager=eager)

    first = Trainer(config(1))
    first.optimizer = make_optimizer(first.cfg, first.model, fused=True, capturable=True)
    run = store.create_run("t", "train")
    first.start(store, run)
    first.train()
    first.close()
    ckpt = load_checkpoint(first.artifacts.local_path("checkpoints/last.pt"))
    assert ckpt["optimizer"]["param_groups"][0]["capturable"] is True
    assert ckpt["generator"].dtype == torch.uint8 and ckpt["generator"].device.type == "cpu"

    resumed = Trainer(config(2))
    resumed.resume_from(store, store.find_run(run.info.run_id))
    assert resumed.state.epoch == 1
    group = resumed.optimizer.param_groups[0]
    assert not group["capturable"] and bool(group["fused"]) is not eager
    steps = {float(s["step"]) for s in resumed.optimizer.state.values()}
    assert steps == {float(resumed.steps_per_epoch)}  # Adam's step count came across
    assert {s["step"].device.type for s in resumed.optimizer.state.values()} == {"cpu"}
    assert torch.equal(resumed.generator.get_state(), first.generator.get_state())
    resumed.train()
    resumed.close()

    straight = Trainer(config(2))
    straight.start(store, store.create_run("t", "train"))
    straight.train()
    straight.close()
    for p, q in zip(resumed.model.parameters(), straight.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    assert resumed.state.history[-1]["test_loss"] == pytest.approx(straight.state.history[-1]["test_loss"], rel=1e-4)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_resume_on_cuda_and_across_devices(store_env, capsys, store_template):
    """Started on the GPU, resumed on the GPU (this failed: the CPU generator's state was
    loaded onto the GPU), then on the CPU, then on the GPU again; it ends where a straight
    GPU run ends (to 1e-3: CPU and GPU round apart)."""
    seed_store(store_template, store_env)
    common = ["--dataset", "ib12", "--model", "ib", "--log-epochs", "all", "--seed", "4", "--lr", "0.003"]
    straight = run_json(["train", *common, "--device", "cuda", "--epochs", 4], capsys)
    first = run_json(["train", *common, "--device", "cuda", "--epochs", 1], capsys)
    for epochs, device in ((2, "cuda"), (3, "cpu"), (4, "cuda")):
        summary = run_json(["train", "--resume", first["run_id"], "--epochs", epochs, "--device", device], capsys)
        assert summary["status"] == "FINISHED" and summary["epochs"] == epochs
    store = Store()
    run = store.find_run(first["run_id"])
    assert run.data.tags["ibcli.epochs_done"] == "4"
    steps = [r["step"] for r in act.load_manifest(store.artifacts(run)).records]
    assert steps == sorted(set(steps)) and len(steps) == 5
    # the optimizer carried its state across every device change: Adam's step count is the run's
    ckpt = torch_load(store.artifacts(run).local_path("checkpoints/last.pt"))
    assert ckpt["step"] == steps[-1] and {float(s["step"]) for s in ckpt["optimizer"]["state"].values()} == {steps[-1]}
    for key in ("train_loss", "test_loss"):
        assert summary["final_metrics"][key] == pytest.approx(straight["final_metrics"][key], rel=1e-2)
    assert abs(summary["final_metrics"]["test_accuracy"] - straight["final_metrics"]["test_accuracy"]) <= 0.01


def torch_load(path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)
