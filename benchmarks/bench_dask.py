"""Item 4 of the server/Dask issue: `ibcli mi` serially, with --jobs 2 and on a 2-worker LocalCluster,
and each stage against a tracking server vs the local store. Prints seconds and ratios.

    python benchmarks/bench_dask.py --data-dir ../shared/data                 # 20-epoch MLP, kde
    python benchmarks/bench_dask.py --data-dir ../shared/data --epochs 3      # shorter
    python benchmarks/bench_dask.py --run RUN_ID --tracking-uri sqlite:///runs/mlflow.db --no-server

A measurement, not a test: the first line prints the load average; run it on a quiet machine.
Needs the server and dask extras, and PostgreSQL (Debian's package) for the server part: it
starts its own PostgreSQL and `ibcli server` on loopback (tests/servers.py), as `nobody` when
run as root, and removes everything it wrote unless --keep.

Part 1 (estimation): `ibcli mi RUN --method kde` three ways on the same run, each its own
process: serial with --threads cores//2 (the arithmetic of one worker), --jobs 2 (2 workers x
cores//2 threads), and --scheduler on a LocalCluster of 2 processes x 1 task at a time
(workers unpinned). Reported: the mi stage's own seconds (tasks + reading, not the cluster's
start) and the whole command's wall time; ratios serial / parallel; whether the tables agree.

Part 2 (store): `ibcli train` (same options), `ibcli mi --method binning` and `ibcli plot` on the
local SQLite store and on the server; per-epoch training seconds (median of the runs'
`epoch_seconds`) and each command's wall time; ratios server / local.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def ibcli(args: list[str], cwd: Path, env: dict | None = None) -> tuple[dict, float]:
    """Run `ibcli ARGS --json --quiet` in a subprocess; (its JSON summary, wall seconds)."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ibcli.cli", *map(str, args), "--json", "--quiet"], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"ibcli {' '.join(map(str, args[:2]))} failed ({done.returncode}): {done.stderr.strip()[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), wall


def mi_table(uri: str, mi_run_id: str):
    from ibcli.store import Store

    store = Store(uri)
    import pandas as pd

    return pd.read_parquet(store.artifacts(store.find_run(mi_run_id)).local_path("mi.parquet")).drop(columns="seconds")


def compare(a, b) -> str:
    import numpy as np

    if a.equals(b):
        return "bitwise equal"
    rel = max(float(np.max(np.abs(b[c] - a[c]) / np.maximum(np.abs(a[c]), 1e-300))) for c in ("i_xt_bits", "i_ty_bits"))
    return f"max relative difference {rel:.2e}"


def part_estimation(uri: str, run_id: str, method: str, cwd: Path, extra: list[str]) -> None:
    import distributed

    from ibcli.executor import available_cores

    cores = available_cores()
    half = max(1, cores // 2)
    # --force: each way computes (the same settings would otherwise reuse the first mi run)
    base = ["mi", run_id, "--method", method, "--tracking-uri", uri, "--force", *extra]
    print(f"# part 1: ibcli mi --method {method} on run {run_id[:8]} ({cores} cores)")
    serial, serial_wall = ibcli([*base, "--threads", half], cwd)
    jobs, jobs_wall = ibcli([*base, "--jobs", 2], cwd)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=40) as cluster:
        dask, dask_wall = ibcli([*base, "--scheduler", cluster.scheduler_address], cwd)
    ref = mi_table(uri, serial["mi_run_id"])
    for name, out, wall in (("serial", serial, serial_wall), ("--jobs 2", jobs, jobs_wall),
                            ("LocalCluster 2 workers", dask, dask_wall)):
        agree = "" if out is serial else f"; vs serial: {compare(ref, mi_table(uri, out['mi_run_id']))}"
        print(f"{name:24s} mi {out['seconds']:8.1f} s   command {wall:8.1f} s   [{out['executor']}]{agree}")
    print(f"ratio serial / --jobs 2: mi {serial['seconds'] / jobs['seconds']:.2f}, command {serial_wall / jobs_wall:.2f}")
    print(f"ratio serial / LocalCluster: mi {serial['seconds'] / dask['seconds']:.2f}, command {serial_wall / dask_wall:.2f}")


def epoch_seconds(uri: str, run_id: str) -> float:
    from ibcli.store import Store

    from ibcli.metric_names import read_keys

    store = Store(uri)
    for name in read_keys("epoch_seconds"):  # the grouped name, or the flat one of older runs
        values = [m.value for m in store.client.get_metric_history(run_id, name)]
        if values:
            return statistics.median(values)
    raise SystemExit(f"run {run_id} has no seconds-per-epoch metric")


def part_store(train_args: list[str], server_url: str, cwd: Path) -> None:
    print("# part 2: each stage on the local SQLite store vs the tracking server")
    rows = {}
    for name, uri in (("local", f"sqlite:///{cwd}/runs/mlflow.db"), ("server", server_url)):
        env = {"IBCLI_CACHE_DIR": str(cwd / f"cache-{name}")}
        train, train_wall = ibcli(["train", *train_args, "--tracking-uri", uri], cwd, env)
        mi, mi_wall = ibcli(["mi", train["run_id"], "--method", "binning", "--tracking-uri", uri], cwd, env)
        _, plot_wall = ibcli(["plot", train["run_id"], "--tracking-uri", uri], cwd, env)
        rows[name] = {"epoch": epoch_seconds(uri, train["run_id"]), "train": train_wall, "mi": mi_wall,
                      "mi_stage": mi["seconds"], "plot": plot_wall}
        r = rows[name]
        print(f"{name:7s} train {r['train']:7.1f} s (median epoch {r['epoch']:.2f} s)   mi binning {r['mi']:6.1f} s "
              f"(stage {r['mi_stage']:.1f} s)   plot {r['plot']:6.1f} s")
    loc, srv = rows["local"], rows["server"]
    print(f"ratio server / local: median epoch {srv['epoch'] / loc['epoch']:.2f} "
          f"({srv['epoch'] - loc['epoch']:+.2f} s per epoch), train {srv['train'] / loc['train']:.2f}, "
          f"mi {srv['mi'] / loc['mi']:.2f}, plot {srv['plot'] / loc['plot']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--epochs", type=int, default=20, help="epochs of the MLP run (default 20, every epoch recorded)")
    ap.add_argument("--method", default="kde")
    ap.add_argument("--run", help="use this train run for part 1 instead of training one")
    ap.add_argument("--tracking-uri", help="the store of --run")
    ap.add_argument("--mi-args", default="", help="extra `ibcli mi` options for part 1, e.g. '--epoch 20'")
    ap.add_argument("--no-server", action="store_true", help="skip part 2")
    ap.add_argument("--no-estimation", action="store_true", help="skip part 1")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    print(f"# load average {os.getloadavg()}, {os.cpu_count()} cpus, python {sys.version.split()[0]}")
    work = Path(tempfile.mkdtemp(prefix="ibcli-bench-dask-"))
    # The commands run in a temporary folder: a relative --data-dir is taken from here.
    train_args = ["--model", "mlp", "--data-dir", str(Path(args.data_dir).resolve()), "--epochs", args.epochs]
    pg = server = None
    try:
        if not args.no_estimation:
            uri, run_id = args.tracking_uri, args.run
            if run_id is None:
                uri = f"sqlite:///{work}/runs/mlflow.db"
                run_id = ibcli(["train", *train_args, "--tracking-uri", uri], work)[0]["run_id"]
            part_estimation(uri, run_id, args.method, work, args.mi_args.split())
        if not args.no_server:
            from servers import CLIENT_ENV, MlflowServer, Postgres

            pg = Postgres()
            server = MlflowServer(pg.create_database("bench"), work / "server-artifacts")
            os.environ.update({k: v for k, v in CLIENT_ENV.items() if k == "MLFLOW_HTTP_REQUEST_TIMEOUT"})
            part_store(train_args, server.url, work)
        print(f"# load average {os.getloadavg()}")
    finally:
        if server is not None:
            server.close()
        if pg is not None:
            pg.stop()
        if args.keep:
            print(f"# kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
