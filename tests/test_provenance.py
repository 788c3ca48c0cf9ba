"""Every run records where it came from: ibcli version, git commit (in a checkout), torch and Python
versions, device and torch thread count; a resume adds its own to `ibcli.resumes`."""

from __future__ import annotations

import json
import platform
import subprocess

import pytest
import torch

from conftest import REPO, ib12_train, run_cli, run_json, seed_store

import ibcli
from ibcli import provenance
from ibcli.store import Store

TRAIN = ib12_train(2)


def _head() -> str | None:
    if not (REPO / ".git").exists():
        return None
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()


def _check(tags: dict, device: str, threads: int) -> None:
    assert tags[provenance.VERSION_TAG] == ibcli.__version__
    assert tags[provenance.TORCH_TAG] == torch.__version__
    assert tags[provenance.PYTHON_TAG] == platform.python_version()
    assert tags[provenance.DEVICE_TAG] == device
    assert tags[provenance.THREADS_TAG] == str(threads)
    head = _head()
    if head:
        assert tags[provenance.COMMIT_TAG] == head and tags[provenance.DIRTY_TAG] in ("true", "false")
    else:
        assert provenance.COMMIT_TAG not in tags


def test_train_mi_and_plot_runs_record_their_provenance(tmp_path, store_template, capsys):
    uri = seed_store(store_template, tmp_path)
    rid = run_json([*TRAIN, "--tracking-uri", uri], capsys)["run_id"]
    mi = run_json(["mi", rid, "--tracking-uri", uri], capsys)["mi_run_id"]
    plot = run_json(["plot", rid, "--tracking-uri", uri], capsys)["plot_run_id"]
    s = Store(uri)
    # the ib net trains on one CPU thread (Trainer); mi and plot ran in this process
    _check(s.find_run(rid).data.tags, "cpu", 1)
    _check(s.find_run(mi).data.tags, "cpu", torch.get_num_threads())
    _check(s.find_run(plot).data.tags, "cpu", torch.get_num_threads())


def test_a_resume_records_its_own_provenance(tmp_path, store_template, capsys, monkeypatch):
    from ibcli import training

    uri = seed_store(store_template, tmp_path)
    real = training.Trainer._take_snapshot

    def stop_after_epoch_1(self):
        real(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(training.Trainer, "_take_snapshot", stop_after_epoch_1)
    code, _, err = run_cli([*TRAIN, "--tracking-uri", uri, "--quiet"], capsys)
    assert code == 130, err
    monkeypatch.undo()
    rid = Store(uri).all_runs()[0].info.run_id
    before = Store(uri).find_run(rid).data.tags
    assert "ibcli.resumes" not in before
    out = run_json(["train", "--resume", rid, "--tracking-uri", uri], capsys)
    assert out["status"] == "FINISHED"
    tags = Store(uri).find_run(rid).data.tags
    _check(tags, "cpu", 1)  # the start's tags stay
    resumes = json.loads(tags["ibcli.resumes"])
    assert len(resumes) == 1 and resumes[0]["from_epoch"] == 1
    assert resumes[0][provenance.VERSION_TAG] == ibcli.__version__ and resumes[0][provenance.DEVICE_TAG] == "cpu"


def test_git_state_outside_a_checkout(monkeypatch, tmp_path):
    """Installed (no .git beside the package): no commit, and no error."""
    fake = tmp_path / "site" / "ibcli" / "__init__.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("")
    monkeypatch.setattr(ibcli, "__file__", str(fake))
    provenance.git_state.cache_clear()
    try:
        assert provenance.git_state() == (None, None)
        tags = provenance.provenance_tags("cuda", threads=3)
        assert provenance.COMMIT_TAG not in tags and tags[provenance.THREADS_TAG] == "3" and tags[provenance.DEVICE_TAG] == "cuda"
        assert provenance.version_line() == f"ibcli {ibcli.__version__}"
    finally:
        provenance.git_state.cache_clear()


@pytest.mark.skipif(_head() is None, reason="not a git checkout")
def test_version_line_names_the_commit():
    assert provenance.version_line().startswith(f"ibcli {ibcli.__version__} (git {_head()[:12]}")
