"""Shared fixtures: where real MNIST lives, and an isolated MLflow store per test."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("IBCLI_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def mnist_dir() -> Path:
    """The data dir holding MNIST/raw (../shared/data beside the repo)."""
    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST not found under {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def store_env(tmp_path, monkeypatch):
    """Run in a fresh working directory, so the default store is tmp_path/runs."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Call the console entry point in-process; returns (exit code, stdout, stderr)."""
    from ibcli.cli import main

    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def run_json(args: list[str], capsys) -> dict:
    code, out, err = run_cli([*args, "--json", "--quiet"], capsys)
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])
