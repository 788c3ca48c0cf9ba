"""MI estimation and sweeps on Dask: a real dask.distributed LocalCluster on loopback.

The mi table from Dask workers equals the serial one (bitwise with the same threads; within
1e-12 relative otherwise); a worker lost mid-task is retried; a failing task names its
epoch and layer; `ibcli sweep --scheduler` trains its members on the cluster.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA, run_cli, run_json

from ibcli.store import STAGE_TAG, SWEEP_TAG, Store

try:
    import distributed
except ImportError:  # CI installs the dask extra and requires these tests (IBCLI_REQUIRE_SERVER_TESTS=1)
    if os.environ.get("IBCLI_REQUIRE_SERVER_TESTS") == "1":
        raise
    pytest.skip("dask.distributed is not installed (pip install -e '.[dask]')", allow_module_level=True)

TINY = ["--data-dir", str(SHARED_DATA), "--train-fraction", "0.01", "--probe-size", "300", "--log-epochs", "all",
        "--epochs", "2"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """Workers inherit the environment they start with: their artifact cache goes here."""
    path = tmp_path_factory.mktemp("dask-cache")
    old = os.environ.get("IBCLI_CACHE_DIR")
    os.environ["IBCLI_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("IBCLI_CACHE_DIR", None)
    else:
        os.environ["IBCLI_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def cluster(cache_dir):
    """A 2-worker LocalCluster (processes, one thread each) on 127.0.0.1; yields its address."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=40) as lc:
        yield lc.scheduler_address


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A 2-epoch train run (300 probe samples) in a local store; yields (store URI, run id)."""
    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST not found under {SHARED_DATA}")
    from conftest import main_json

    root = tmp_path_factory.mktemp("dask-store")
    uri = f"sqlite:///{root}/runs/mlflow.db"
    train = main_json(["train", *TINY, "--tracking-uri", uri])
    return uri, train["run_id"]


def _table(uri: str, mi_run_id: str) -> pd.DataFrame:
    store = Store(uri)
    return pd.read_parquet(store.artifacts(store.find_run(mi_run_id)).local_path("mi.parquet")).drop(columns="seconds")


def test_local_workers_equal_the_serial_run_bitwise(small_run, capsys):
    uri, rid = small_run
    args = ["mi", rid, "--method", "kde", "--noise-var", "0.1", "--noise-var", "0.01", "--tracking-uri", uri]
    serial = run_json([*args, "--threads", "1"], capsys)
    jobs = run_json([*args, "--jobs", "2", "--force"], capsys)  # 2 workers x 1 thread; --force: not the serial run again
    assert jobs["executor"] == "local dask: 2 workers x 1 threads" and serial["executor"] == "serial, 1 threads"
    a, b = _table(uri, serial["mi_run_id"]), _table(uri, jobs["mi_run_id"])
    assert len(a) == 3 * 6 * 2
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert Store(uri).find_run(jobs["mi_run_id"]).data.params["executor"] == jobs["executor"]


def test_a_cluster_gives_the_serial_table(small_run, cluster, capsys):
    uri, rid = small_run
    # The cluster's workers run BLAS on one thread (Dask's default) but see both cores (kde may
    # split its blocks over them); the serial run: one thread on one core.
    for method in ("binning", "kde"):
        serial = run_json(["mi", rid, "--method", method, "--tracking-uri", uri, "--threads", "1"], capsys)
        dask = run_json(["mi", rid, "--method", method, "--tracking-uri", uri, "--scheduler", cluster, "--force"], capsys)
        a, b = _table(uri, serial["mi_run_id"]), _table(uri, dask["mi_run_id"])
        assert dask["executor"].startswith(f"dask cluster {cluster}")
        numbers = [c for c in a.columns if c.endswith("_bits") and c != "ceiling_bits"]
        assert a.drop(columns=numbers).equals(b.drop(columns=numbers))  # the same rows in the same order
        for col in numbers:
            np.testing.assert_allclose(b[col], a[col], rtol=1e-12, atol=0, err_msg=f"{method} {col}")


@pytest.mark.parametrize("args, message", [
    (["--jobs", "2", "--scheduler", "tcp://127.0.0.1:1"], "not both"),
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--scheduler", "tcp://127.0.0.1:1", "--threads", "2"], "keep their own threads"),
])
def test_executor_options_are_checked_in_one_line(small_run, args, message, capsys):
    uri, rid = small_run
    code, _, err = run_cli(["mi", rid, "--tracking-uri", uri, *args], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def _die_once(marker: str, item: int) -> int:
    """Kills its worker process the first time it sees item 1 (a worker lost mid-task)."""
    if item == 1 and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return item * 10


def _fail_on_two(item: int) -> int:
    if item == 2:
        raise ValueError("no good")
    return item


def test_a_lost_worker_is_retried_and_a_failing_task_is_named(cluster, tmp_path):
    from ibcli.executor import Executor, TaskFailed

    with distributed.Client(cluster) as client:
        ex = Executor(client, "test cluster")
        out = ex.map(_die_once, [0, 1, 2, 3], ["a", "b", "c", "d"], str(tmp_path / "died"))
        assert (tmp_path / "died").exists() and out == [0, 10, 20, 30]
        with pytest.raises(TaskFailed, match=r"^task c: ValueError: no good$"):
            ex.map(_fail_on_two, [1, 2, 3], ["task a", "task c", "task d"], retries=1)


def test_a_failing_mi_task_names_its_epoch_and_layer(small_run, cluster, capsys):
    uri, rid = small_run
    store = Store(uri)
    arts = store.artifacts(store.find_run(rid))
    path = arts.local_path("activations/step_0000005/layer3.parquet")
    saved = path.read_bytes()
    try:
        path.write_bytes(b"not parquet")
        code, _, err = run_cli(["mi", rid, "--scheduler", cluster, "--tracking-uri", uri, "--quiet", "--force"], capsys)
    finally:
        path.write_bytes(saved)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    # a damaged file is the reader's UserError, passed on as it is: it names the record and the layer by its file
    assert f"run {rid}: activations/step_0000005/layer3.parquet is unreadable (ArrowInvalid" in err, err


def test_sweep_members_train_on_the_cluster(cluster, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/runs/mlflow.db"
    summary = run_json(["sweep", "--seeds", "0-1", "--scheduler", cluster, "--tracking-uri", uri, "--dataset", "ib12",
                        "--model", "ib", "--epochs", "3", "--log-epochs", "all"], capsys)
    assert summary["status"] == "FINISHED" and [m["seed"] for m in summary["members"]] == [0, 1]
    store = Store(uri)
    for m in summary["members"]:
        run = store.find_run(m["run_id"], stage="train")
        assert run.info.status == "FINISHED" and run.data.tags[SWEEP_TAG] == summary["sweep_id"]
        assert run.data.params["seed"] == str(m["seed"])
    assert store.find_run(summary["sweep_id"]).data.tags[STAGE_TAG] == "sweep"


def test_workers_read_from_the_server(mnist_dir, mlflow_server, cluster, cache_dir, tmp_path, monkeypatch, capsys):
    """Workers download what their tasks read (into their cache); the table is the serial one."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("IBCLI_CACHE_DIR", str(tmp_path / "driver-cache"))
    train = run_json(["train", *TINY], capsys)
    serial = run_json(["mi", train["run_id"], "--method", "binning"], capsys)
    dask = run_json(["mi", train["run_id"], "--method", "binning", "--scheduler", cluster, "--force"], capsys)
    a, b = _table(mlflow_server.url, serial["mi_run_id"]), _table(mlflow_server.url, dask["mi_run_id"])
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert (cache_dir / train["run_id"] / "activations" / "step_0000005").is_dir()  # the workers' cache
