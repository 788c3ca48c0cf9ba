"""`ibcli sweep`: one train run per seed, grouped under a parent run, and the stages on it.

A sweep is an MLflow run tagged `ibcli.stage=sweep`. Its members are ordinary train
runs (`ibcli.stage=train`, so `ibcli mi MEMBER` works on each), children of the sweep
(`mlflow.parentRunId`) and tagged `ibcli.sweep=<sweep run id>`. Members run as
subprocesses of `ibcli train ... --json`, `--jobs` at a time, each with
`--threads` torch threads (OMP_NUM_THREADS), so jobs x threads stays within the cores:
a tiny network slows down badly when its threads compete for busy cores.

`ibcli mi SWEEP_ID` runs the estimator on every finished member (each mi run a child of
its member); `ibcli plot SWEEP_ID` averages the members' mi tables over seeds
(`aggregate.aggregate_over_seeds`) and writes the averaged figures as a plot run,
child of the sweep.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ibcli.errors import UserError
from ibcli.store import STAGE_TAG, SWEEP_ENV, SWEEP_TAG, Store

SWEEP_STAGE = "sweep"
MI_MEAN_FILE = "mi_mean.parquet"
# Train options the sweep sets itself for every member (and so may not be forwarded).
RESERVED = {"seed": "--seeds", "resume": "a sweep of its own", "tracking_uri": None, "json_out": None,
            "quiet": None, "run_name": None}
MAX_SEEDS = 10_000


# ---------------------------------------------------------------------------- seeds
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


# ---------------------------------------------------------------------------- train options
def parse_train_args(args: list[str]) -> dict:
    """Parse forwarded `ibcli train` options with train's own parser (so a typo fails at once).

    Returns {"params": every train option's value (enums as strings), "explicit": the names the user typed}.

    Raises:
        UserError: an option train does not know or a bad value, a reserved option
            (--seed, --resume, ...) or a positional argument.
    """
    import typer.main
    from typer._click.exceptions import UsageError

    from ibcli.cli import app

    train_cmd = typer.main.get_command(app).commands["train"]
    try:
        ctx = train_cmd.make_context("ibcli sweep", list(args), resilient_parsing=False)
    except UsageError as exc:
        raise UserError(f"{exc.format_message()} (a sweep takes `ibcli train`'s options, see `ibcli train --help`)") from None
    if ctx.args:
        raise UserError(f"unexpected argument {ctx.args[0]!r}: a sweep takes options only")
    explicit = {n for n in ctx.params if getattr(ctx.get_parameter_source(n), "name", "") == "COMMANDLINE"}
    for name, instead in RESERVED.items():
        if name in explicit:
            flag = "--" + ("json" if name == "json_out" else name.replace("_", "-"))
            why = f"use {instead}" if instead else "give it to `ibcli sweep` itself, before the train options"
            raise UserError(f"{flag} is set by the sweep for each member: {why}")
    params = {k: (v.value if hasattr(v, "value") else v) for k, v in ctx.params.items()}
    for k in ("seed", "resume", "tracking_uri", "json_out", "quiet", "run_name"):
        params.pop(k, None)
    if params.get("data_dir") is not None:
        params["data_dir"] = str(params["data_dir"])
    return {"params": params, "explicit": explicit}


def _check_config(params: dict) -> None:
    """Validate what TrainConfig validates, before any member starts (no data loaded)."""
    from ibcli.training import TrainConfig

    fields = set(vars(TrainConfig()))
    cfg = TrainConfig(**{k: v for k, v in params.items() if k in fields and v is not None})
    cfg.validate()


# ---------------------------------------------------------------------------- run a sweep
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


def run_sweep(train_args: list[str], seeds_spec: str, jobs: int, threads: int | None, run_name: str | None,
              tracking_uri: str | None, quiet: bool) -> dict:
    """The `ibcli sweep` stage: one `ibcli train` subprocess per seed, `jobs` at a time.

    The sweep run ends FINISHED when every member finished, FAILED (reason in
    `ibcli.failure`) when one did not, KILLED on SIGINT/SIGTERM (members are stopped
    and keep their completed records).

    Raises:
        UserError: bad seeds, jobs, threads or train options; a member that failed
            (after all members ran; the summary is in the exception's `summary`).
    """
    from ibcli.progress import make_progress, stderr

    seeds = parse_seeds(seeds_spec)
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    cores = available_cores()
    if threads is None:
        threads = max(1, cores // jobs)
    if threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    parsed = parse_train_args(train_args)
    params = parsed["params"]
    _check_config(params)

    store = Store(tracking_uri)
    experiment = params.get("experiment") or "ibcli"
    sweep_run = store.create_run(experiment, SWEEP_STAGE, run_name=run_name)
    sweep_id = sweep_run.info.run_id
    name = run_name or sweep_run.info.run_name or f"sweep-{sweep_id[:8]}"
    notes = []
    if jobs * threads > cores:
        notes.append(f"--jobs {jobs} x --threads {threads} > {cores} cores: members will compete for them")
    if not quiet:
        for note in notes:
            stderr.print(f"[yellow]note:[/] {note}", highlight=False)
    store.client.set_tag(sweep_id, SWEEP_TAG, sweep_id)
    store.log_params(sweep_id, {**{k: v for k, v in params.items()}, "seeds": ",".join(map(str, seeds)),
                                "seeds_spec": seeds_spec, "n_seeds": len(seeds), "jobs": jobs, "threads": threads,
                                "train_args": shlex.join(train_args)})
    env = dict(os.environ)
    env.update({SWEEP_ENV: sweep_id, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                "OPENBLAS_NUM_THREADS": str(threads)})
    base = [sys.executable, "-m", "ibcli.cli", "train", *train_args, "--tracking-uri", store.uri, "--json", "--quiet"]
    staging = Path(tempfile.mkdtemp(prefix="ibcli-sweep-"))
    pending, running, results = list(seeds), [], []
    t0 = time.perf_counter()
    status, reason = "FINISHED", None
    progress = make_progress(quiet)
    try:
        with progress:
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
                    acc = row["final_metrics"].get("test_accuracy")
                    line = f"seed {m.seed}: {row['status']} in {row['seconds']:.0f} s"
                    line += f", test accuracy {acc:.4f}" if acc is not None else ""
                    line += f" ({row['error']})" if "error" in row else ""
                    if not quiet:
                        progress.console.print(line, highlight=False)
                    progress.update(task, advance=1, info=f"{len(running)} running")
    except KeyboardInterrupt:
        status, reason = "KILLED", "interrupted by SIGINT/SIGTERM"
        _stop(running)
        for m in running:
            results.append(m.result())
        results += [{"seed": seed, "run_id": None, "status": "NOT_STARTED", "final_metrics": {}} for seed in pending]
    except BaseException as exc:
        _stop(running)
        store.finish(sweep_id, "FAILED", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        for p in staging.iterdir():
            p.unlink()
        staging.rmdir()
    results.sort(key=lambda r: seeds.index(r["seed"]))
    bad = [r for r in results if r["status"] != "FINISHED"]
    if status == "FINISHED" and bad:
        status = "FAILED"
        reason = "; ".join(f"seed {r['seed']}: {r['status']}" + (f" ({r['error']})" if r.get("error") else "") for r in bad)
    seconds = time.perf_counter() - t0
    metrics = {"sweep_seconds": seconds, "members_finished": sum(r["status"] == "FINISHED" for r in results)}
    accs = [r["final_metrics"]["test_accuracy"] for r in results if "test_accuracy" in r["final_metrics"]]
    if accs:
        metrics.update(test_accuracy_mean=float(np.mean(accs)), test_accuracy_sd=float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0)
    store.log_metrics(sweep_id, metrics, step=0)
    store.finish(sweep_id, status, reason)
    summary = {"sweep_id": sweep_id, "status": status, "seeds": seeds, "jobs": jobs, "threads": threads,
               "members": results, "seconds": round(seconds, 2), "artifact_uri": sweep_run.info.artifact_uri,
               "notes": notes}
    if status == "KILLED":
        raise KeyboardInterrupt(summary)
    if status == "FAILED":
        err = UserError(f"sweep {sweep_id} FAILED: {reason}")
        err.summary = summary
        raise err
    return summary


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


# ---------------------------------------------------------------------------- members
def is_sweep(run) -> bool:
    return run.data.tags.get(STAGE_TAG) == SWEEP_STAGE


def sweep_members(store: Store, sweep_run, finished_only: bool = True) -> tuple[list, list[str]]:
    """The sweep's train runs, ordered by seed, and notes on members left out.

    Raises:
        UserError: the sweep has no (finished) member.
    """
    sweep_id = sweep_run.info.run_id
    runs = [r for r in store.children(sweep_id, stage="train") if r.data.tags.get(SWEEP_TAG) == sweep_id]
    runs.sort(key=lambda r: (int(r.data.params.get("seed", "0")), r.info.start_time or 0))
    notes, members = [], []
    for r in runs:
        if finished_only and r.info.status != "FINISHED":
            notes.append(f"seed {r.data.params.get('seed')} (run {r.info.run_id[:8]}) is {r.info.status}: left out")
        else:
            members.append(r)
    if not members:
        if not runs:
            raise UserError(f"sweep {sweep_id} has no member train runs (it was stopped before any started)")
        states = ", ".join(f"seed {r.data.params.get('seed')} (run {r.info.run_id[:8]}) is {r.info.status}" for r in runs)
        raise UserError(f"sweep {sweep_id} has no finished member: {states}; "
                        f"finish one with `ibcli train --resume RUN_ID`")
    return members, notes


def run_mi_sweep(store: Store, sweep_run, options, quiet: bool) -> dict:
    """`ibcli mi SWEEP_ID`: the mi stage on every finished member (one mi child run each).

    Raises:
        UserError: no finished member; a member whose mi failed (after trying them all).
    """
    from ibcli.analysis import run_mi
    from ibcli.progress import stderr

    members, notes = sweep_members(store, sweep_run)
    if not quiet:
        for note in notes:
            stderr.print(f"[yellow]note:[/] {note}")
    rows, failed = [], []
    t0 = time.perf_counter()
    for i, member in enumerate(members, start=1):
        seed = member.data.params.get("seed")
        try:
            out = run_mi(member.info.run_id, options, store.uri, quiet=True)
        except UserError as exc:
            failed.append(f"seed {seed}: {exc}")
            if not quiet:
                stderr.print(f"[red]seed {seed}[/]: {exc}", highlight=False)
            continue
        rows.append({"seed": int(seed), **out})
        if not quiet:
            stderr.print(f"mi {options.method} {i}/{len(members)}: seed {seed}, run {member.info.run_id[:8]} -> "
                         f"mi run {out['mi_run_id'][:8]} ({out['seconds']:.1f} s)", highlight=False)
    seconds = time.perf_counter() - t0
    if failed:
        raise UserError(f"mi on sweep {sweep_run.info.run_id} failed for {len(failed)} member(s): {' | '.join(failed)}")
    return {"sweep_id": sweep_run.info.run_id, "method": options.method, "members": rows,
            "seconds": round(seconds, 2), "notes": notes}


# ---------------------------------------------------------------------------- averaging
def member_mi_tables(store: Store, members: list) -> tuple[pd.DataFrame, list[str]]:
    """Each member's latest finished mi run per method, concatenated with a `seed` column.

    Raises:
        UserError: no member has an mi run; or members' latest runs of one method used
            different estimator settings (they would not average).
    """
    from ibcli.plot_stage import load_mi_tables

    tables, notes = [], []
    for m in members:
        seed = int(m.data.params.get("seed", "0"))
        try:
            df = load_mi_tables(store, m, [])
        except UserError:
            notes.append(f"seed {seed} (run {m.info.run_id[:8]}) has no finished mi run: left out")
            continue
        df["seed"] = seed
        df["train_run_id"] = m.info.run_id
        tables.append(df)
    if not tables:
        raise UserError(f"no member of this sweep has finished mi results: run `ibcli mi SWEEP_ID --method binning` first")
    mi = pd.concat(tables, ignore_index=True)
    _check_same_settings(mi)
    for method, g in mi.groupby("method"):
        missing = sorted({int(m.data.params.get("seed", "0")) for m in members} - set(g["seed"]))
        if missing:
            notes.append(f"{method}: seeds {missing} have no {method} mi run; averaged over {g['seed'].nunique()} seeds")
    return mi, notes


def _check_same_settings(mi: pd.DataFrame) -> None:
    settings = [c for c in ("bins", "binning") if c in mi.columns]
    for method, g in mi.groupby("method"):
        per_seed = g.groupby("seed")[settings].first().astype(str).drop_duplicates() if settings else []
        if len(per_seed) > 1:
            desc = ", ".join(f"{c}={sorted(set(per_seed[c]))}" for c in settings)
            raise UserError(f"the members' latest {method} mi runs use different settings ({desc}): "
                            f"rerun `ibcli mi SWEEP_ID --method {method} ...` so all members share them")
        if "noise_var" in g.columns and g["noise_var"].notna().any():
            sets = g.groupby("seed")["noise_var"].apply(lambda s: tuple(sorted(s.dropna().unique())))
            if sets.nunique() > 1:
                raise UserError(f"the members' latest {method} mi runs use different --noise-var values: "
                                f"rerun `ibcli mi SWEEP_ID --method {method} ...` so all members share them")


def average_mi(mi: pd.DataFrame, band: str = "sd", n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The mi table averaged over seeds (aggregate_over_seeds), with KDE's lower bounds where present.

    Returns one row per (method, noise_var, layer, layer_index, epoch, step) with
    n_seeds and, for each of i_xt_bits, i_ty_bits (and i_xt_lower_bits, i_ty_lower_bits
    when any row has them): `_mean`, `_sd`, `_lo`, `_hi` (bits), plus `ceiling_bits`.
    """
    from ibcli.aggregate import aggregate_over_seeds

    values = ["i_xt_bits", "i_ty_bits"]
    values += [c for c in ("i_xt_lower_bits", "i_ty_lower_bits") if c in mi.columns and mi[c].notna().any()]
    table = mi.copy()
    if "noise_var" in table.columns and table["noise_var"].isna().all():
        table = table.drop(columns="noise_var")
    out = aggregate_over_seeds(table, band=band, n_boot=n_boot, seed=seed, values=values)
    if "ceiling_bits" in mi.columns:
        out["ceiling_bits"] = float(mi["ceiling_bits"].max())
    return out


def compression_summary(agg: pd.DataFrame) -> pd.DataFrame:
    """Per (method, noise_var, layer): where mean I(X;T) peaks and how far it falls after.

    Columns: method, noise_var, layer, layer_index, first_i_xt_bits (first record),
    peak_epoch, peak_i_xt_bits, rise_bits (peak - first), last_epoch, last_i_xt_bits,
    fall_bits (peak - last, >= 0), fall_sd_bits (sd over seeds at the last epoch, for
    scale), i_ty_first_bits, i_ty_last_bits (mean I(T;Y) at the first and last record),
    at_ceiling (the mean never leaves log2 N by more than 0.05 bits: every probe input
    has its own pattern at every epoch, so this layer says nothing about compression).
    """
    keys = [k for k in ("method", "noise_var", "layer", "layer_index") if k in agg.columns]
    rows = []
    for key, g in agg.groupby(keys, dropna=False, sort=True):
        g = g.sort_values("step")
        i = int(np.argmax(g["i_xt_bits_mean"].to_numpy()))
        peak, last = g.iloc[i], g.iloc[-1]
        ceiling = float(g["ceiling_bits"].max()) if "ceiling_bits" in g.columns else math.inf
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                     "first_i_xt_bits": float(g.iloc[0]["i_xt_bits_mean"]),
                     "peak_epoch": float(peak["epoch"]), "peak_i_xt_bits": float(peak["i_xt_bits_mean"]),
                     "rise_bits": float(peak["i_xt_bits_mean"] - g.iloc[0]["i_xt_bits_mean"]),
                     "last_epoch": float(last["epoch"]), "last_i_xt_bits": float(last["i_xt_bits_mean"]),
                     "fall_bits": float(peak["i_xt_bits_mean"] - last["i_xt_bits_mean"]),
                     "fall_sd_bits": float(last["i_xt_bits_sd"]) if pd.notna(last["i_xt_bits_sd"]) else math.nan,
                     "i_ty_first_bits": float(g.iloc[0]["i_ty_bits_mean"]), "i_ty_last_bits": float(last["i_ty_bits_mean"]),
                     "at_ceiling": bool(g["i_xt_bits_mean"].min() >= ceiling - 0.05)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- plots
def _training_table(store: Store, members: list) -> pd.DataFrame:
    from ibcli.plot_stage import load_training_metrics

    parts = []
    for m in members:
        df = load_training_metrics(store, m.info.run_id)
        df["seed"] = int(m.data.params.get("seed", "0"))
        parts.append(df)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["epoch", "key", "value", "seed"])


def _gradient_table(store: Store, members: list) -> pd.DataFrame | None:
    from ibcli.training import GRADIENTS

    parts = []
    for m in members:
        try:
            df = pd.read_parquet(store.artifacts(m).local_path(GRADIENTS))
        except FileNotFoundError:
            continue
        df["seed"] = int(m.data.params.get("seed", "0"))
        parts.append(df)
    return pd.concat(parts, ignore_index=True) if parts else None


def run_plot_sweep(store: Store, sweep_run, output: Path | None, band: str = "sd") -> dict:
    """`ibcli plot SWEEP_ID`: figures averaged over the members, as a plot run child of the sweep.

    Writes information_plane_mean.html, mi_per_epoch_mean.html, training_curves_mean.html,
    gradient_snr_mean.html (when members logged gradient statistics) and the averaged
    table mi_mean.parquet (artifacts under figures/ and the run root; files also to `output`).

    Raises:
        UserError: no finished member, no member with mi results, mixed estimator
            settings, unwritable output folder, bad band.
    """
    import shutil

    from ibcli import plots

    if band not in ("sd", "bootstrap"):
        raise UserError(f"--band must be sd or bootstrap, got {band!r}")
    members, notes = sweep_members(store, sweep_run)
    mi, mi_notes = member_mi_tables(store, members)
    notes += mi_notes
    agg = average_mi(mi, band=band)
    if output is not None:
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create --output folder {output}: {exc.strerror}") from None
    params = sweep_run.data.params
    n = mi["seed"].nunique()
    name = f"{params.get('model', '?')}/{params.get('activation', '?')}, {n} seeds"
    band_text = "mean ± sd" if band == "sd" else "mean, 95% bootstrap interval"
    figures = {
        "information_plane_mean.html": plots.information_plane_mean(agg, f"Information plane averaged over seeds ({band_text}): {name}"),
        "mi_per_epoch_mean.html": plots.mi_per_epoch_mean(agg, f"I(X;T) and I(T;Y) per epoch ({band_text}): {name}"),
    }
    training = _training_table(store, members)
    if len(training):
        figures["training_curves_mean.html"] = plots.training_curves_mean(training, f"Training, mean ± sd over seeds: {name}")
    grads = _gradient_table(store, members)
    if grads is not None:
        figures["gradient_snr_mean.html"] = plots.gradient_snr_mean(grads, f"Gradient SNR per layer, mean ± sd over seeds: {name}")
    plot_run = store.create_child_run(sweep_run, "plot", run_name="plot-sweep")
    art = store.artifacts(plot_run)
    files = []
    staging = Path(tempfile.mkdtemp(prefix="ibcli-plot-"))
    try:
        store.log_params(plot_run.info.run_id, {"band": band, "seeds": ",".join(map(str, sorted(mi["seed"].unique()))),
                                                "methods": ",".join(sorted(set(mi["method"]))),
                                                "mi_run_ids": ",".join(sorted(set(mi["mi_run_id"])))[:6000]})
        table_path = staging / MI_MEAN_FILE
        agg.to_parquet(table_path, index=False)
        outputs = [(MI_MEAN_FILE, table_path)]
        for fname, fig in figures.items():
            path = staging / fname
            fig.write_html(path, include_plotlyjs=True, full_html=True)
            outputs.append((f"figures/{fname}", path))
        for rel, path in outputs:
            target = art.writable_path(rel)
            shutil.copyfile(path, target)
            art.commit(target, rel)
            if output is not None:
                shutil.copyfile(path, output / path.name)
                files.append(str(output / path.name))
            else:
                files.append(f"{plot_run.info.artifact_uri}/{rel}")
    except BaseException as exc:
        store.finish(plot_run.info.run_id, "FAILED", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    store.finish(plot_run.info.run_id)
    return {"sweep_id": sweep_run.info.run_id, "plot_run_id": plot_run.info.run_id, "files": files, "band": band,
            "seeds": sorted(int(s) for s in mi["seed"].unique()), "mi_run_ids": sorted(set(mi["mi_run_id"])),
            "notes": notes}
