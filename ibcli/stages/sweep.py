"""`ibcli sweep`: one train run per seed, grouped under a parent run.

A sweep is an MLflow run tagged `ibcli.stage=sweep`. Its members are ordinary train
runs (`ibcli.stage=train`, so `ibcli mi MEMBER` works on each), children of the sweep
(`mlflow.parentRunId`) and tagged `ibcli.sweep=<sweep run id>`. Members run as
subprocesses of `ibcli train ... --json`, `--jobs` at a time, each with `--threads`
torch threads (OMP_NUM_THREADS), so jobs x threads stays within the cores: a tiny
network slows down badly when its threads compete for busy cores. `ibcli mi` and
`ibcli plot` on a sweep id work on every finished member (stages/mi.py, stages/plot.py).
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
from ibcli.progress import make_progress, stderr
from ibcli.results import SWEEP_STAGE
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
        UserError: empty spec, a part that is not a non-negative integer or a range a-b
            with a <= b, or more than 10 000 seeds.
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
        if min(values) < 0:
            raise UserError(f"bad --seeds {spec!r}: seeds must be >= 0")
        if len(values) + len(seeds) > MAX_SEEDS:
            raise UserError(f"bad --seeds {spec!r}: more than {MAX_SEEDS} seeds")
        seeds.extend(values)
    return list(dict.fromkeys(seeds))


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask, else os.cpu_count())."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


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
        rc = self.proc.returncode
        out = self.out_path.read_text(errors="replace").strip().splitlines()
        err = self.err_path.read_text(errors="replace").strip().splitlines()
        summary = {}
        if out:
            try:
                summary = json.loads(out[-1])
            except json.JSONDecodeError:
                summary = {}
        status = summary.get("status") or ("FINISHED" if rc == 0 else "KILLED" if rc in (130, -2, -15) else "FAILED")
        row = {"seed": self.seed, "run_id": summary.get("run_id"), "status": status, "exit_code": rc,
               "seconds": round(time.perf_counter() - self.t0, 2),
               "final_metrics": summary.get("final_metrics", {})}
        if status == "FAILED":
            row["error"] = _last_error_line(err) or f"exit code {rc}"
        return row


def _last_error_line(lines: list[str]) -> str:
    for line in reversed(lines):
        line = line.strip()
        if line:
            return line.removeprefix("error: ")
    return ""


def run_sweep(train_options: dict, seeds_spec: str, jobs: int, threads: int | None, run_name: str | None,
              tracking_uri: str | None, quiet: bool) -> dict:
    """The `ibcli sweep` stage: one `ibcli train` subprocess per seed, `jobs` at a time.

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
    threads = max(1, cores // jobs) if threads is None else threads
    if threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    config = check_train_options(train_options)
    store = Store(tracking_uri)
    sweep_run = store.create_run(train_options.get("experiment") or "ibcli", SWEEP_STAGE, run_name=run_name)
    sweep_id = sweep_run.info.run_id
    with store.tracked(sweep_id):
        name = run_name or sweep_run.info.run_name or f"sweep-{sweep_id[:8]}"
        notes = []
        if jobs * threads > cores:
            notes.append(f"--jobs {jobs} x --threads {threads} > {cores} cores: members will compete for them")
        if not quiet:
            for note in notes:
                stderr.print(f"[yellow]note:[/] {note}", highlight=False)
        args = train_argv(train_options)
        store.client.set_tag(sweep_id, SWEEP_TAG, sweep_id)
        # What each member runs with; options a member resolves itself (data dir, probe split) stay None.
        shared = {k: (v if k in train_options or k not in ("data_dir", "probe_split") else None)
                  for k, v in asdict(config).items() if k != "seed"}
        store.log_params(sweep_id, {**shared, "seeds": ",".join(map(str, seeds)), "seeds_spec": seeds_spec,
                                    "n_seeds": len(seeds), "jobs": jobs, "threads": threads, "train_args": " ".join(args)})
        t0 = time.perf_counter()
        results, interrupted = _run_members(store, sweep_id, name, args, seeds, jobs, threads, quiet)
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


def _run_members(store: Store, sweep_id: str, name: str, args: list[str], seeds: list[int], jobs: int,
                 threads: int, quiet: bool) -> tuple[list[dict], bool]:
    """Run the members `jobs` at a time; (their results, whether SIGINT/SIGTERM stopped them)."""
    env = dict(os.environ)
    env.update({SWEEP_ENV: sweep_id, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                "OPENBLAS_NUM_THREADS": str(threads)})
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
                        proc = subprocess.Popen([*base, "--seed", str(seed), "--run-name", f"{name}-seed{seed}"],
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
                        progress.console.print(line, highlight=False)
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
