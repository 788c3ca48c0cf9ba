"""`ibcli sweep`: one train run per seed, grouped under a parent run.

A sweep is an MLflow run tagged `ibcli.stage=sweep`. Its members are ordinary train
runs (`ibcli.stage=train`, so `ibcli mi MEMBER` works on each), children of the sweep
(`mlflow.parentRunId`) and tagged `ibcli.sweep=<sweep run id>`. Members run as
subprocesses of `ibcli train ... --json`, `--jobs` at a time, each with `--threads`
torch threads (OMP_NUM_THREADS), so jobs x threads stays within the cores: a tiny
network slows down badly when its threads compete for busy cores. `ibcli mi` and
`ibcli plot` on a sweep id work on every finished member (stages/mi.py, stages/plot.py).
With `--scheduler ADDRESS` each member's `ibcli train` runs inside a task on that Dask
cluster instead (the executor `ibcli mi --scheduler` uses), as many at once as it has
worker threads; the store must be one every worker reaches (a server, or a shared folder).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from ibcli.errors import UserError
from ibcli.console import note, say
from ibcli.executor import available_cores, open_executor
from ibcli.progress import make_progress
from ibcli.provenance import provenance_tags
from ibcli.results import SWEEP_STAGE
from ibcli.run_names import sweep_run_name
from ibcli.seeds import MAX_SEED
from ibcli.store import SWEEP_ENV, SWEEP_TAG, Store
from ibcli.training import TrainConfig

MAX_SEEDS = 10_000
# Train options a sweep sets itself for each member.
RESERVED = ("seed", "resume")


class SweepInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM stopped the sweep; args[0] is its summary (running members were stopped)."""


class SweepFailed(UserError):
    """A member did not finish; `summary` holds every member's outcome."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


def parse_seeds(spec: str) -> list[int]:
    """Seeds from "0-9" (inclusive range), "0,1,5", "3", or a mix ("0-4,8").

    Returns the seeds in the given order without repeats.

    Raises:
        UserError: empty spec, a part that is not an integer in [0, 2^63-1] or a range a-b
            of them with a <= b, or more than 10 000 seeds.
    """
    text = str(spec).strip()
    hint = 'use a range "0-9", a list "0,1,5" or one seed "3"'
    if not text:
        raise UserError(f"empty --seeds: {hint}")
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:  # a range (a leading "-" would be a negative number)
                a, b = (int(p) for p in part.split("-", 1))
                if a > b:
                    raise UserError(f"bad --seeds {spec!r}: range {part!r} runs backwards; {hint}")
                values = range(a, b + 1)
            else:
                values = [int(part)]
        except ValueError:
            raise UserError(f"bad --seeds {spec!r}: {part!r} is not a seed or a range; {hint}") from None
        # values[0] and values[-1] are the bounds (O(1) on a range: "0-99999999999" must not loop)
        if values[0] < 0 or values[-1] > MAX_SEED:
            raise UserError(f"bad --seeds {spec!r}: seeds must be between 0 and 2^63-1")
        if values[-1] - values[0] + 1 + len(seeds) > MAX_SEEDS:  # len() of a huge range overflows
            raise UserError(f"bad --seeds {spec!r}: more than {MAX_SEEDS} seeds")
        seeds.extend(values)
    return list(dict.fromkeys(seeds))


def train_argv(options: dict) -> list[str]:
    """`ibcli train` options from {option name: value} (a bool `x` becomes `--x` / `--no-x`)."""
    argv = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + name.replace("_", "-"))
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def check_train_options(options: dict) -> TrainConfig:
    """The members' configuration (but the seed), validated before anything starts (no data loaded).

    Raises:
        UserError: an option the sweep sets itself, an unknown option, a value no run can use.
    """
    for name in RESERVED:
        if name in options:
            raise UserError(f"--{name} is set by the sweep for each member: use {'--seeds' if name == 'seed' else 'a sweep of its own'}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"unknown train option --{unknown[0].replace('_', '-')} (see `ibcli train --help`)")
    cfg = TrainConfig(**{k: v for k, v in options.items() if v is not None})
    cfg.validate()
    return cfg


class _Member:
    def __init__(self, seed: int, proc: subprocess.Popen, out_path: Path, err_path: Path):
        self.seed, self.proc, self.out_path, self.err_path = seed, proc, out_path, err_path
        self.t0 = time.perf_counter()

    def result(self) -> dict:
        return member_row(self.seed, self.proc.returncode, self.out_path.read_text(errors="replace"),
                          self.err_path.read_text(errors="replace"), time.perf_counter() - self.t0)


def member_row(seed: int, rc: int, out: str, err: str, seconds: float) -> dict:
    """A member's outcome from its `ibcli train --json` exit code, stdout and stderr."""
    out_lines, err_lines = out.strip().splitlines(), err.strip().splitlines()
    summary = {}
    if out_lines:
        try:
            summary = json.loads(out_lines[-1])
        except json.JSONDecodeError:
            summary = {}
    status = summary.get("status") or ("FINISHED" if rc == 0 else "KILLED" if rc in (130, -2, -15) else "FAILED")
    row = {"seed": seed, "run_id": summary.get("run_id"), "status": status, "exit_code": rc,
           "seconds": round(seconds, 2), "final_metrics": summary.get("final_metrics", {})}
    if status == "FAILED":
        row["error"] = _last_error_line(err_lines) or f"exit code {rc}"
    return row


def _last_error_line(lines: list[str]) -> str:
    for line in reversed(lines):
        line = line.strip()
        if line:
            return line.removeprefix("error: ")
    return ""


def run_sweep(train_options: dict, seeds_spec: str, jobs: int, threads: int | None, run_name: str | None,
              tracking_uri: str | None, quiet: bool, scheduler: str | None = None) -> dict:
    """The `ibcli sweep` stage: one `ibcli train` subprocess per seed, `jobs` at a time (or, given a
    Dask `scheduler` address, each inside a task on that cluster; `threads` then sets the members'
    torch threads only when given).

    train_options: the `ibcli train` options every member gets ({name: value}, e.g.
    {"dataset": "ib12", "lr": 0.003}); the sweep adds --seed, --run-name and its store.
    The sweep run ends FINISHED when every member finished, FAILED (reason in
    `ibcli.failure`) when one did not, KILLED on SIGINT/SIGTERM (members are stopped
    and keep their completed records).

    Raises:
        UserError: bad seeds, jobs, threads or train options.
        SweepFailed: a member did not finish (after all members ran; carries the summary).
        SweepInterrupted: SIGINT/SIGTERM (carries the summary).
    """
    seeds = parse_seeds(seeds_spec)
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    cores = available_cores()
    if scheduler:
        jobs = None
    else:
        threads = max(1, cores // jobs) if threads is None else threads
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    config = check_train_options(train_options)
    store = Store(tracking_uri)
    sweep_run = store.create_run(train_options.get("experiment") or "ibcli", SWEEP_STAGE,
                                 run_name=run_name or sweep_run_name(asdict(config)),
                                 tags=provenance_tags(config.device, threads=threads))
    sweep_id = sweep_run.info.run_id
    with store.tracked(sweep_id):
        notes = []
        if jobs is not None and jobs * threads > cores:
            notes.append(f"--jobs {jobs} x --threads {threads} > {cores} cores: members will compete for them")
        if not quiet:
            for text in notes:
                note(text)
        args = train_argv(train_options)
        store.client.set_tag(sweep_id, SWEEP_TAG, sweep_id)
        # What each member runs with; options a member resolves itself (data dir, probe split) stay None.
        shared = {k: (v if k in train_options or k not in ("data_dir", "probe_split") else None)
                  for k, v in asdict(config).items() if k != "seed"}
        store.log_params(sweep_id, {**shared, "seeds": ",".join(map(str, seeds)), "seeds_spec": seeds_spec,
                                    "n_seeds": len(seeds), "jobs": jobs, "threads": threads, "train_args": " ".join(args),
                                    "scheduler": scheduler})
        t0 = time.perf_counter()
        if scheduler:
            results, interrupted = _run_members_on_dask(store, sweep_id, run_name, args, seeds, scheduler, threads, quiet)
        else:
            results, interrupted = _run_members(store, sweep_id, run_name, args, seeds, jobs, threads, quiet)
        results.sort(key=lambda r: seeds.index(r["seed"]))
        seconds = time.perf_counter() - t0
        metrics = {"sweep_seconds": seconds, "members_finished": sum(r["status"] == "FINISHED" for r in results)}
        accs = [r["final_metrics"]["test_accuracy"] for r in results if "test_accuracy" in r["final_metrics"]]
        if accs:
            metrics.update(test_accuracy_mean=float(np.mean(accs)), test_accuracy_sd=float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0)
        store.log_metrics(sweep_id, metrics, step=0)
        bad = [r for r in results if r["status"] != "FINISHED"]
        status = "KILLED" if interrupted else "FAILED" if bad else "FINISHED"
        summary = {"sweep_id": sweep_id, "status": status, "seeds": seeds, "jobs": jobs, "threads": threads,
                   "members": results, "seconds": round(seconds, 2), "artifact_uri": sweep_run.info.artifact_uri,
                   "notes": notes}
        if interrupted:
            raise SweepInterrupted(summary)
        if bad:
            reason = "; ".join(f"seed {r['seed']}: {r['status']}" + (f" ({r['error']})" if r.get("error") else "") for r in bad)
            raise SweepFailed(f"sweep {sweep_id} FAILED: {reason}", summary)
    return summary


def _run_members(store: Store, sweep_id: str, name: str | None, args: list[str], seeds: list[int], jobs: int,
                 threads: int, quiet: bool) -> tuple[list[dict], bool]:
    """Run the members `jobs` at a time; (their results, whether SIGINT/SIGTERM stopped them).
    Members are named NAME-seedS, or like any train run (mlp-tanh-adam-s3) without a name."""
    env = {**os.environ, **_member_env(sweep_id, threads)}
    base = [sys.executable, "-m", "ibcli.cli", "train", *args, "--tracking-uri", store.uri, "--json", "--quiet"]
    staging = Path(tempfile.mkdtemp(prefix="ibcli-sweep-"))
    pending, running, results = list(seeds), [], []
    try:
        with make_progress(quiet) as progress:
            task = progress.add_task(f"sweep {sweep_id[:8]}", total=len(seeds), info=f"{jobs} job(s) x {threads} thread(s)")
            while pending or running:
                while pending and len(running) < jobs:
                    seed = pending.pop(0)
                    out, err = staging / f"seed{seed}.out", staging / f"seed{seed}.err"
                    with open(out, "wb") as fo, open(err, "wb") as fe:
                        named = ["--run-name", f"{name}-seed{seed}"] if name else []
                        proc = subprocess.Popen([*base, "--seed", str(seed), *named],
                                                stdout=fo, stderr=fe, env=env, start_new_session=True)
                    running.append(_Member(seed, proc, out, err))
                time.sleep(0.2)
                for m in [m for m in running if m.proc.poll() is not None]:
                    running.remove(m)
                    row = m.result()
                    results.append(row)
                    if not quiet:
                        acc = row["final_metrics"].get("test_accuracy")
                        line = f"seed {m.seed}: {row['status']} in {row['seconds']:.0f} s"
                        line += f", test accuracy {acc:.4f}" if acc is not None else ""
                        line += f" ({row['error']})" if "error" in row else ""
                        say(line, console=progress.console)
                    progress.update(task, advance=1, info=f"{len(running)} running")
    except KeyboardInterrupt:
        _stop(running)
        results += [m.result() for m in running]
        results += [{"seed": seed, "run_id": None, "status": "NOT_STARTED", "final_metrics": {}} for seed in pending]
        return results, True
    except BaseException:
        _stop(running)
        raise
    finally:
        for p in staging.iterdir():
            p.unlink()
        staging.rmdir()
    return results, False


def _member_env(sweep_id: str, threads: int | None) -> dict:
    env = {SWEEP_ENV: sweep_id}
    if threads is not None:
        env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)})
    return env


def train_member_task(argv: list[str], env: dict, seed: int, stop_event: str) -> dict:
    """Run one member's `ibcli train` (argv after `ibcli`) inside a Dask worker; its outcome row.

    Polls the cluster's Event `stop_event` each second: once it is set (the sweep was
    interrupted), the member gets SIGTERM and ends KILLED with its records kept.
    """
    from distributed import Event

    stop = Event(stop_event)
    if stop.is_set():
        return {"seed": seed, "run_id": None, "status": "NOT_STARTED", "final_metrics": {}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ibcli-member-") as tmp:
        out_path, err_path = Path(tmp) / "out", Path(tmp) / "err"
        with open(out_path, "wb") as fo, open(err_path, "wb") as fe:
            proc = subprocess.Popen([sys.executable, "-m", "ibcli.cli", *argv], stdout=fo, stderr=fe,
                                    env={**os.environ, **env}, start_new_session=True)
        try:
            while proc.poll() is None:
                if stop.is_set():
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=60)
                    break
                time.sleep(1.0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return member_row(seed, proc.returncode, out_path.read_text(errors="replace"),
                          err_path.read_text(errors="replace"), time.perf_counter() - t0)


def _run_members_on_dask(store: Store, sweep_id: str, name: str | None, args: list[str], seeds: list[int], scheduler: str,
                         threads: int | None, quiet: bool) -> tuple[list[dict], bool]:
    """Every member as a task on the Dask cluster at `scheduler`; (their results, whether interrupted)."""
    from distributed import Event, as_completed  # optional (ibcli[dask]): only here

    env = _member_env(sweep_id, threads)
    base = ["train", *args, "--tracking-uri", store.uri, "--json", "--quiet"]
    results = []
    with open_executor(scheduler=scheduler) as executor:
        client = executor.client
        stop_name = f"ibcli-sweep-stop-{sweep_id}"
        futures = {client.submit(train_member_task, [*base, "--seed", str(seed), *(["--run-name", f"{name}-seed{seed}"] if name else [])],
                                 env, seed, stop_name, pure=False, retries=0): seed for seed in seeds}
        try:
            with make_progress(quiet) as progress:
                task = progress.add_task(f"sweep {sweep_id[:8]}", total=len(seeds), info=executor.description)
                for future in as_completed(list(futures)):
                    seed = futures[future]
                    if future.status == "error":
                        exc = future.exception()
                        row = {"seed": seed, "run_id": None, "status": "FAILED", "final_metrics": {},
                               "error": f"its Dask task failed: {type(exc).__name__}: {exc}"[:500]}
                    else:
                        row = future.result()
                    results.append(row)
                    if not quiet:
                        say(f"seed {seed}: {row['status']}" + (f" ({row['error']})" if "error" in row else ""),
                            console=progress.console)
                    progress.update(task, advance=1)
        except KeyboardInterrupt:
            # Members running on workers get SIGTERM from their task (they end KILLED, records kept);
            # tasks not started yet see the event and start nothing.
            Event(stop_name, client=client).set()
            finished = {r["seed"] for r in results}
            for f, seed in futures.items():
                if seed not in finished:
                    try:
                        results.append(f.result(timeout=120))
                    except Exception:
                        f.cancel()
                        results.append({"seed": seed, "run_id": None, "status": "NOT_STARTED", "final_metrics": {}})
            return results, True
    return results, False


def _stop(running: list[_Member], grace: float = 30.0) -> None:
    """SIGTERM each running member (it ends KILLED with its records kept), then wait."""
    for m in running:
        if m.proc.poll() is None:
            try:
                os.killpg(m.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for m in running:
        try:
            m.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            m.proc.kill()
            m.proc.wait()
