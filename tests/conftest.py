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


def main_json(args: list[str]) -> dict:
    """`ibcli ARGS --json --quiet` in-process without capsys (e.g. in a module-scoped fixture)."""
    import contextlib
    import io

    from ibcli.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main([str(a) for a in [*args, "--json", "--quiet"]])
    assert code == 0, f"ibcli {args[0]} exited {code}"
    return json.loads(buf.getvalue().strip().splitlines()[-1])


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


def ib12_train(epochs: int, grad_stats: bool = False) -> list[str]:
    """`ibcli train` arguments of a small, fast run: the 12-bit task's net, every epoch recorded."""
    return ["train", "--dataset", "ib12", "--model", "ib", "--epochs", str(epochs), "--log-epochs", "all",
            "--batch-size", "512", *([] if grad_stats else ["--no-grad-stats"])]


# ---- a real PostgreSQL and MLflow server (tests/servers.py), once per session ----------------
# Skipped where PostgreSQL or the server extras are missing; CI sets IBCLI_REQUIRE_SERVER_TESTS=1
# so that there they fail instead of skipping.
def _unavailable(reason: str):
    if os.environ.get("IBCLI_REQUIRE_SERVER_TESTS") == "1":
        pytest.fail(f"server tests required but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster on a free loopback port (as `nobody` when run as root)."""
    from servers import Postgres, postgres_bindir

    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install -e '.[server]')")
    if postgres_bindir() is None:
        _unavailable("PostgreSQL is not installed (apt-get install postgresql)")
    try:
        pg = Postgres()
    except (RuntimeError, OSError) as exc:
        _unavailable(f"PostgreSQL could not be started: {exc}")
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def mlflow_server(postgres, tmp_path_factory):
    """`ibcli server` on PostgreSQL with proxied artifacts on a free loopback port; the client's
    HTTP retries are short for the whole session (a stopped server is reported in seconds)."""
    from servers import CLIENT_ENV, MlflowServer

    saved = {k: os.environ.get(k) for k in CLIENT_ENV}
    os.environ.update(CLIENT_ENV)
    server = MlflowServer(postgres.create_database("mlflow"), tmp_path_factory.mktemp("server-artifacts"))
    server.database = postgres
    try:
        yield server
    finally:
        server.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
