"""`ibcli mi`: one estimator on every chosen (record, layer) of a train run -> an mi child run
holding `mi.parquet` (given a sweep: one such run for every finished member)."""

from __future__ import annotations

import time

import pandas as pd
from rich.table import Table

from ibcli import activations as act
from ibcli.devices import resolve_device
from ibcli.errors import UserError
from ibcli.estimators import registry
from ibcli.estimators.interface import Estimator
from ibcli.executor import Executor, open_executor
from ibcli.mi_table import MI_FILE, compute_mi_table, select
from ibcli.progress import make_progress, stderr
from ibcli.results import is_sweep, sweep_members
from ibcli.store import STAGE_TAG, Store


def run_mi(run_id: str, method: str, params: dict, *, layers=(), epochs=(), seed: int = 0, device: str = "auto",
           tracking_uri: str | None = None, quiet: bool = False, jobs: int | None = None,
           scheduler: str | None = None, threads: int | None = None) -> dict:
    """The `ibcli mi` stage on a train run (or every finished member of a sweep).

    params: the method's parameters by name (missing ones take their defaults).
    jobs, scheduler, threads: run the (record, layer) tasks on Dask (`ibcli.executor.open_executor`):
        `jobs` local worker processes with `threads` threads each, or the cluster at `scheduler`;
        the table equals the serial one (same seeds; bitwise with the same threads and device).

    Raises:
        UserError: bad options, unknown/ambiguous/non-train run id, run without activations,
            a layer or epoch that was not recorded, unusable activations. A run created
            before the error is marked FAILED.
        EstimatorInputError: a parameter value the method refuses (before anything is read).
        TaskFailed: a task failed on every try on the cluster (the message names epoch and layer).
    """
    estimator = registry.get(method)
    params = estimator.check_params(params)
    device = resolve_device(device) if estimator.uses_device else "cpu"
    store = Store(tracking_uri, must_exist=True)
    found = store.find_run(run_id)
    with open_executor(jobs, scheduler, threads) as executor:
        if is_sweep(found):
            return _mi_on_sweep(store, found, estimator, params, layers, epochs, seed, device, quiet, executor)
        train_run = found if found.data.tags.get(STAGE_TAG) == "train" else store.find_run(run_id, stage="train")
        return mi_on_train_run(store, train_run, estimator, params, layers, epochs, seed, device, quiet, executor)


def mi_on_train_run(store: Store, train_run, estimator: Estimator, params: dict, layers, epochs, seed: int,
                    device: str, quiet: bool, executor: Executor | None = None) -> dict:
    """One mi child run of `train_run`; returns its summary (see `run_mi`)."""
    executor = executor or Executor()
    artifacts = store.artifacts(train_run)
    manifest = act.load_manifest(artifacts)
    selection = select(manifest, layers, epochs)  # a wrong --layer/--epoch creates no run
    notes = _status_notes(store, train_run, len(manifest.records))
    if not quiet:
        for note in notes:
            stderr.print(f"[yellow]note:[/] {note}")
    mi_run = store.create_child_run(train_run, "mi", run_name=f"mi-{estimator.name}")
    mi_id = mi_run.info.run_id
    with store.tracked(mi_id):
        store.log_params(mi_id, {"method": estimator.name, "seed": seed, "device": device,
                                 **{k: ",".join(map(str, v)) if isinstance(v, tuple) else v for k, v in params.items()},
                                 "train_run_id": train_run.info.run_id, "records": len(selection.records),
                                 "layers": ",".join(selection.layers), "n_probe": manifest.probe.get("size"),
                                 "executor": executor.description})
        t0 = time.perf_counter()
        with make_progress(quiet) as progress:
            table = compute_mi_table(artifacts, manifest, estimator, params, selection, seed, device, progress, executor)
        seconds = time.perf_counter() - t0
        _log_results(store, mi_id, table, seconds)
        out = store.artifacts(mi_run)
        path = out.writable_path(MI_FILE)
        table.to_parquet(path, index=False)
        out.commit(path, MI_FILE)
    if not quiet:
        print_table(table, estimator)
    return {"train_run_id": train_run.info.run_id, "mi_run_id": mi_id, "method": estimator.name,
            "rows": len(table), "records": len(selection.records), "seconds": round(seconds, 2),
            "executor": executor.description,
            "artifact_uri": mi_run.info.artifact_uri, "notes": notes}


def _status_notes(store: Store, train_run, n: int) -> list[str]:
    """What the user should know about a train run that did not simply finish."""
    status = train_run.info.status
    if status == "RUNNING":
        live = store.is_live(train_run.info.run_id)
        if live:
            return [f"train run is still training (live): using the {n} complete records so far"]
        if live is None:
            return [f"train run is still RUNNING (live, or killed without cleanup): using its {n} complete records"]
        return [f"train run is RUNNING in MLflow but no process trains it (killed without cleanup, e.g. kill -9): "
                f"using its {n} complete records; `ibcli train --resume {train_run.info.run_id[:8]}` continues it"]
    if status != "FINISHED":
        return [f"train run ended {status}: using its {n} complete records"]
    return []


def _mi_on_sweep(store: Store, sweep_run, estimator: Estimator, params: dict, layers, epochs, seed: int,
                 device: str, quiet: bool, executor: Executor) -> dict:
    """`ibcli mi SWEEP_ID`: the mi stage on every finished member (one mi child run each).

    Raises:
        UserError: no finished member; a member whose mi failed (after trying them all).
    """
    members, notes = sweep_members(store, sweep_run)
    if not quiet:
        for note in notes:
            stderr.print(f"[yellow]note:[/] {note}")
    rows, failed = [], []
    t0 = time.perf_counter()
    for i, member in enumerate(members, start=1):
        member_seed = member.data.params.get("seed")
        try:
            out = mi_on_train_run(store, member, estimator, params, layers, epochs, seed, device, quiet=True, executor=executor)
        except UserError as exc:
            failed.append(f"seed {member_seed}: {exc}")
            if not quiet:
                stderr.print(f"[red]seed {member_seed}[/]: {exc}", highlight=False)
            continue
        rows.append({"seed": int(member_seed), **out})
        if not quiet:
            stderr.print(f"mi {estimator.name} {i}/{len(members)}: seed {member_seed}, run {member.info.run_id[:8]} -> "
                         f"mi run {out['mi_run_id'][:8]} ({out['seconds']:.1f} s)", highlight=False)
    if failed:
        raise UserError(f"mi on sweep {sweep_run.info.run_id} failed for {len(failed)} member(s): {' | '.join(failed)}")
    return {"sweep_id": sweep_run.info.run_id, "method": estimator.name, "members": rows,
            "seconds": round(time.perf_counter() - t0, 2), "notes": notes}


def _log_results(store: Store, mi_id: str, table: pd.DataFrame, seconds: float) -> None:
    metrics_by_step: dict[int, dict[str, float]] = {}
    for row in table.itertuples():
        suffix = f"{row.layer}" if pd.isna(row.noise_var) else f"{row.layer}.s2_{row.noise_var:g}"
        m = metrics_by_step.setdefault(int(row.step), {})
        m[f"i_xt_bits.{suffix}"] = row.i_xt_bits
        m[f"i_ty_bits.{suffix}"] = row.i_ty_bits
    for step, metrics in metrics_by_step.items():
        store.log_metrics(mi_id, metrics, step=step)
    store.log_metrics(mi_id, {"mi_seconds": seconds}, step=0)


def print_table(table: pd.DataFrame, estimator: Estimator) -> None:
    """A rich table of the mi rows (bits) on stderr."""
    has_lower = table["i_xt_lower_bits"].notna().any()
    has_noise = table["noise_var"].notna().any()
    x_name, y_name = estimator.quantity
    t = Table(title=f"{estimator.name}: {x_name} and {y_name} in bits (ceiling log2 N = {table['ceiling_bits'].iloc[0]:.2f})")
    for col in ["epoch", "layer", "s2" if has_noise else None, x_name, y_name,
                f"{x_name} lower" if has_lower else None, f"{y_name} BD" if has_lower else None]:
        if col:
            t.add_column(col, justify="right")
    for row in table.itertuples():
        cells = [f"{row.epoch:g}", row.layer]
        if has_noise:
            cells.append(f"{row.noise_var:g}")
        cells += [f"{row.i_xt_bits:.3f}", f"{row.i_ty_bits:.3f}"]
        if has_lower:
            cells += [f"{row.i_xt_lower_bits:.3f}", f"{row.i_ty_bd_bits:.3f}"]
        t.add_row(*cells)
    stderr.print(t)
