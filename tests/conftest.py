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


@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite database, migrated once per session (a new store runs all of
    MLflow's schema migrations: 5-20 s); `seed_store` copies it where a test needs a store."""
    from ibcli.store import Store

    db = tmp_path_factory.mktemp("store-template") / "mlflow.db"
    Store(f"sqlite:///{db}")
    return db


def seed_store(template: Path, folder: Path) -> str:
    """Put a copy of the empty template store at folder/runs/mlflow.db; returns its tracking URI."""
    import shutil

    (folder / "runs").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, folder / "runs" / "mlflow.db")
    return f"sqlite:///{folder}/runs/mlflow.db"
