"""`ibcli rm`: a run goes with every run below it and all their artifact files; --dry-run deletes
nothing; --status picks runs in bulk; a run being trained is refused."""

from __future__ import annotations

import json

import pytest

from conftest import ib12_train, run_cli, run_json, seed_store

from ibcli.store import Store

TRAIN = ib12_train(2)


@pytest.fixture
def filled(tmp_path, store_template, capsys):
    """Two real train runs, the first with an mi and a plot run, plus a FAILED train run with one file."""
    uri = seed_store(store_template, tmp_path)
    a = run_json([*TRAIN, "--tracking-uri", uri], capsys)["run_id"]
    mi = run_json(["mi", a, "--tracking-uri", uri], capsys)["mi_run_id"]
    plot = run_json(["plot", a, "--tracking-uri", uri], capsys)["plot_run_id"]
    b = run_json([*TRAIN, "--tracking-uri", uri], capsys)["run_id"]
    s = Store(uri)
    failed = s.create_run("ibcli", "train", run_name="broken")
    arts = s.artifacts(failed)
    path = arts.writable_path("activations/manifest.json")
    path.write_text("{}")
    arts.commit(path, "activations/manifest.json")
    s.finish(failed.info.run_id, "FAILED", "boom")
    return {"uri": uri, "root": tmp_path, "a": a, "mi": mi, "plot": plot, "b": b, "failed": failed.info.run_id}


def _folder(f, run_id):
    return f["root"] / "runs" / "artifacts" / "ibcli" / run_id


def _listed(f, capsys):
    code, out, _ = run_cli(["runs", "--json", "--tracking-uri", f["uri"]], capsys)
    return {r["run_id"] for r in json.loads(out)}


def test_dry_run_then_delete_a_train_run_with_its_children(filled, capsys):
    f = filled
    code, out, err = run_cli(["rm", f["a"][:8], "--dry-run", "--json", "--tracking-uri", f["uri"]], capsys)
    assert code == 0, err
    plan = json.loads(out)
    assert plan["dry_run"] is True
    assert [r["run_id"] for r in plan["runs"]][0] == f["a"]
    assert {r["run_id"] for r in plan["runs"]} == {f["a"], f["mi"], f["plot"]}
    on_disk = sum(p.stat().st_size for run in (f["a"], f["mi"], f["plot"]) for p in _folder(f, run).rglob("*") if p.is_file())
    assert plan["bytes"] == on_disk > 0
    assert all(_folder(f, r).is_dir() for r in (f["a"], f["mi"], f["plot"]))  # nothing deleted
    assert _listed(f, capsys) == {f["a"], f["b"], f["failed"]}

    code, out, err = run_cli(["rm", f["a"][:8], "--tracking-uri", f["uri"]], capsys)
    assert code == 0 and "deleted 3 run(s)" in err, err
    assert not any(_folder(f, r).exists() for r in (f["a"], f["mi"], f["plot"]))
    assert _folder(f, f["b"]).is_dir()
    assert _listed(f, capsys) == {f["b"], f["failed"]}
    for gone in (f["a"], f["mi"]):
        code, _, err = run_cli(["show", gone, "--tracking-uri", f["uri"]], capsys)
        assert code == 2 and "no run with id" in err
    # MLflow's soft delete: the rows remain for `mlflow gc`, marked deleted
    assert Store(f["uri"]).client.get_run(f["mi"]).info.lifecycle_stage == "deleted"


def test_rm_by_status(filled, capsys):
    f = filled
    code, out, err = run_cli(["rm", "--status", "failed", "--dry-run", "--tracking-uri", f["uri"]], capsys)
    assert code == 0 and "would delete 1 run(s)" in err and f["failed"][:8] in err, err
    assert _folder(f, f["failed"]).is_dir()
    code, out, err = run_cli(["rm", "--status", "FAILED", "--tracking-uri", f["uri"]], capsys)
    assert code == 0 and not _folder(f, f["failed"]).exists()
    assert _listed(f, capsys) == {f["a"], f["b"]}


def test_rm_refuses_a_run_in_training_and_needs_a_target(filled, capsys):
    f = filled
    s = Store(f["uri"])
    live = s.create_run("ibcli", "train", run_name="live")
    lock = s.hold_run(live.info.run_id)
    try:
        code, _, err = run_cli(["rm", live.info.run_id, f["b"], "--tracking-uri", f["uri"]], capsys)
    finally:
        lock.release()
    assert code == 2 and "being trained right now" in err and "nothing was deleted" in err
    assert _folder(f, f["b"]).is_dir() and f["b"] in _listed(f, capsys)
    code, _, err = run_cli(["rm", "--tracking-uri", f["uri"]], capsys)
    assert code == 2 and "name the runs to delete" in err
