"""A project folder copied or moved with its runs/ keeps every run usable: old runs read, new runs
write, under the new folder (MLflow stores absolute artifact paths; `Store` rewrites them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import ib12_train, run_cli, run_json, seed_store

from ibcli.store import Store

TRAIN = ib12_train(2, grad_stats=True)


def _files(folder: Path) -> dict[str, int]:
    """Every file under folder/runs/artifacts with its size (a snapshot to compare)."""
    root = folder / "runs" / "artifacts"
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def _in(cwd: Path, args, capsys, monkeypatch):
    """Run ibcli in `cwd` with the default store (./runs), as a user in the project folder would."""
    monkeypatch.chdir(cwd)
    if args[0] == "show":  # a listing: --json, no --quiet
        code, out, err = run_cli([*args, "--json"], capsys)
        assert code == 0, err
        return json.loads(out)
    return run_json(args, capsys)


@pytest.fixture
def project(tmp_path, store_template, capsys, monkeypatch):
    """A project folder whose default store holds a train run with an mi and a plot run."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    folder = tmp_path / "original"
    seed_store(store_template, folder)
    rid = _in(folder, TRAIN, capsys, monkeypatch)["run_id"]
    mi = _in(folder, ["mi", rid, "--method", "binning"], capsys, monkeypatch)["mi_run_id"]
    _in(folder, ["plot", rid], capsys, monkeypatch)
    return {"folder": folder, "run_id": rid, "mi_run_id": mi}


def _check_usable(folder: Path, project: dict, capsys, monkeypatch) -> None:
    """Every stage works in `folder`, and what it writes lands in `folder`."""
    rid = project["run_id"]
    store = Path(folder / "runs" / "artifacts").resolve()
    # old runs read from here: activations (a new mi), the mi table (plot), the listing (show)
    kde = _in(folder, ["mi", rid, "--method", "kde", "--layer", "output"], capsys, monkeypatch)
    assert kde["artifact_uri"].startswith(str(store))
    plot = _in(folder, ["plot", rid, "--output", "figs"], capsys, monkeypatch)
    assert (folder / "figs" / "information_plane.html").is_file()
    assert Store().find_run(plot["plot_run_id"]).info.artifact_uri.startswith(str(store))
    shown = _in(folder, ["show", rid], capsys, monkeypatch)
    assert shown["artifact_uri"].startswith(str(store)) and any(a["path"] == "activations/manifest.json" for a in shown["artifacts"])
    reused = _in(folder, ["mi", rid, "--method", "binning"], capsys, monkeypatch)
    assert reused["reused"] is True and reused["artifact_uri"].startswith(str(store))
    # new runs write here
    new = _in(folder, [*TRAIN, "--epochs", "1"], capsys, monkeypatch)
    assert new["artifact_uri"].startswith(str(store))
    assert (store / "ibcli" / new["run_id"] / "artifacts" / "activations" / "manifest.json").is_file()
    # and resume continues a run from its checkpoint here
    more = _in(folder, ["train", "--resume", new["run_id"], "--epochs", "2"], capsys, monkeypatch)
    assert more["status"] == "FINISHED" and more["epochs"] == 2


def test_a_copied_project_reads_and_writes_its_own_copy(project, tmp_path, capsys, monkeypatch):
    original = project["folder"]
    before = _files(original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    _check_usable(copy, project, capsys, monkeypatch)
    assert _files(original) == before  # nothing written into the folder the copy came from
    # the original still works on its own files
    out = _in(original, ["show", project["mi_run_id"]], capsys, monkeypatch)
    assert out["artifact_uri"].startswith(str(original.resolve()))


def test_a_moved_project_keeps_every_run_usable(project, tmp_path, capsys, monkeypatch):
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    monkeypatch.chdir(tmp_path)
    shutil.move(project["folder"], moved)
    assert not project["folder"].exists()
    _check_usable(moved, project, capsys, monkeypatch)
    # `ibcli runs` lists them, and the MLflow UI reads the same (rewritten) locations
    monkeypatch.chdir(moved)
    code, out, _ = run_cli(["runs", "--json"], capsys)
    assert code == 0 and project["run_id"] in {r["run_id"] for r in json.loads(out)}
    client = Store().client
    exp = client.get_experiment_by_name("ibcli")
    assert exp.artifact_location == str((moved / "runs" / "artifacts" / "ibcli").resolve())


def test_a_copied_database_alone_keeps_pointing_at_the_files(project, tmp_path, capsys, monkeypatch):
    """Only mlflow.db copied (its artifacts stayed behind): the locations are left alone, so runs still read."""
    alone = tmp_path / "db-only"
    (alone / "runs").mkdir(parents=True)
    shutil.copyfile(project["folder"] / "runs" / "mlflow.db", alone / "runs" / "mlflow.db")
    out = _in(alone, ["show", project["run_id"]], capsys, monkeypatch)
    assert out["artifact_uri"].startswith(str(project["folder"].resolve()))
    reused = _in(alone, ["mi", project["run_id"], "--method", "binning"], capsys, monkeypatch)
    assert reused["reused"] is True
