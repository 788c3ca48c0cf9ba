"""`ibcli mi`: one estimator on every chosen (record, layer) of a train run -> an mi child run
holding `mi.parquet` (given a sweep: one such run for every finished member).

An mi run is tagged with the key of its settings (`MI_KEY_TAG`: method, the method's
parameters that change its numbers, seed, records and layers; not the device). Asking again
for the same settings reuses the finished mi run instead of computing it again (`force`
computes anyway).
"""

from __future__ import annotations

import hashlib
import json
import time

import pandas as pd
from rich.table import Table

from ibcli import activations as act
from ibcli.aggregate import run_summary
from ibcli.console import counted, fitted_table, note, say, stderr
from ibcli.devices import resolve_device
from ibcli.errors import UserError
from ibcli.estimators import registry
from ibcli.estimators.interface import Estimator
from ibcli.executor import Executor, open_executor
from ibcli.metric_names import latest, mi_metric
from ibcli.mi_table import MI_FILE, Selection, compute_mi_table, read_mi_table, select, typed_epoch
from ibcli.progress import make_progress
from ibcli.provenance import provenance_tags
from ibcli.results import is_sweep, sweep_members
from ibcli.run_names import mi_run_name
from ibcli.seeds import check_seed
from ibcli.store import STAGE_TAG, Store

MI_KEY_TAG = "ibcli.mi_key"


def mi_key(estimator: Estimator, params: dict, seed: int, selection: Selection) -> str:
    """The identity of an mi run's numbers: a hash of the method, its parameters that change the
    result (`Param.affects_result`), the seed, the steps of the selected records and the layers.
    The device and parallelism options are left out: they change how fast, not what. The
    layers' value ranges the recorder wrote go in too, so a record written again (a killed run
    resumed from an earlier checkpoint re-records its later steps) is not taken for the old one."""
    layers = sorted(selection.layers)
    ident = {"method": estimator.name, "seed": int(seed),
             "params": {p.name: params[p.name] for p in estimator.params if p.affects_result},
             "records": [int(r["step"]) for r in selection.records], "layers": layers,
             "ranges": [[r.get("range", {}).get(name) for name in layers] for r in selection.records]}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:32]


def run_mi(run_id: str, method: str, params: dict, *, layers=(), epochs=(), seed: int = 0, device: str = "auto",
           tracking_uri: str | None = None, quiet: bool = False, force: bool = False, bars: str | None = None,
           jobs: int | None = None, scheduler: str | None = None, threads: int | None = None) -> dict:
    """The `ibcli mi` stage on a train run (or every finished member of a sweep).

    params: the method's parameters by name (missing ones take their defaults).
    epochs: recorded epochs to estimate (default all), as typed (str) or numbers; matched as
        `ibcli.mi_table.select` says (to the digits typed, at least the 6 ibcli prints).
    force: compute even when a finished mi run of the train run has the same settings
        (`mi_key`); without it that run is reused (its summary has `"reused": true`).
    quiet: no notes on stderr; bars: "on", "off" or "transient" progress bars (default: off when quiet).
    jobs, scheduler, threads: run the (record, layer) tasks on Dask (`ibcli.executor.open_executor`):
        `jobs` local worker processes with `threads` threads each, or the cluster at `scheduler`;
        the table equals the serial one (same seeds; bitwise with the same threads and device).
        None of them is part of the settings key.

    Returns the summary: train_run_id, mi_run_id, method, rows, records, seconds, artifact_uri,
    notes, reused, and `layers` (per layer and noise variance: first, peak and last I(X;T) in
    bits, the peak's epoch and the compression, peak - last).

    Raises:
        UserError: bad options, unknown/ambiguous/non-train run id, run without activations,
            a layer or epoch that was not recorded (or an epoch matching several records),
            unusable or damaged activations. A run created before the error is marked FAILED.
        EstimatorInputError: a parameter value the method refuses (before anything is read).
        TaskFailed: a task failed on every try on the cluster (the message names epoch and layer).
    """
    check_seed(seed)
    estimator = registry.get(method)
    params = estimator.check_params(params)
    epochs = tuple(map(typed_epoch, epochs))  # a value that is no number: refused before the store opens
    device = resolve_device(device)  # "cuda" without a GPU: the one-line error, for every method
    device = device if estimator.uses_device else "cpu"
    store = Store(tracking_uri, must_exist=True)
    found = store.find_run(run_id)
    bars = bars or ("off" if quiet else "on")
    with open_executor(jobs, scheduler, threads) as executor:
        if is_sweep(found):
            return _mi_on_sweep(store, found, estimator, params, layers, epochs, seed, device, quiet, force, executor)
        train_run = found if found.data.tags.get(STAGE_TAG) == "train" else store.find_run(run_id, stage="train")
        return mi_on_train_run(store, train_run, estimator, params, layers, epochs, seed, device, quiet, force, bars,
                               executor)


def _finished_mi_run(store: Store, train_run, key: str):
    """The newest finished mi child of `train_run` with settings key `key` and its table, else (None, None)."""
    for run in store.children(train_run.info.run_id, stage="mi"):
        if run.info.status == "FINISHED" and run.data.tags.get(MI_KEY_TAG) == key:
            try:
                return run, act.read_artifact(store.artifacts(run), MI_FILE, read_mi_table)
            except UserError:  # its table is missing or damaged: compute anew
                continue
    return None, None


def mi_on_train_run(store: Store, train_run, estimator: Estimator, params: dict, layers, epochs, seed: int,
                    device: str, quiet: bool, force: bool = False, bars: str = "off",
                    executor: Executor | None = None) -> dict:
    """One mi child run of `train_run` (or the finished one with the same settings); returns its
    summary (see `run_mi`)."""
    executor = executor or Executor()
    artifacts = store.artifacts(train_run)
    manifest = act.load_manifest(artifacts)
    selection = select(manifest, layers, epochs)  # a wrong --layer/--epoch creates no run
    if manifest.probe.get("size") is not None:  # nor a parameter too large for the probe set (--k)
        widths = {layer["name"]: layer.get("width") for layer in manifest.layers if layer["name"] in selection.layers}
        estimator.check_sizes(params, int(manifest.probe["size"]), widths)
    key = mi_key(estimator, params, seed, selection)
    notes = _status_notes(store, train_run, len(manifest.records))
    if not force:
        done, table = _finished_mi_run(store, train_run, key)
        if done is not None:
            notes.append(f"reusing finished mi run {done.info.run_id}: same method, parameters, seed, records "
                         f"and layers (--force computes again)")
            if not quiet:
                note(notes[-1])
            return _summary(train_run, done, estimator, table, selection, latest(done.data.metrics, "mi_seconds"),
                            notes, reused=True, executor=done.data.params.get("executor"))
    if not quiet:
        for text in notes:
            note(text)
    mi_run = store.create_child_run(train_run, "mi", run_name=mi_run_name(estimator, params),
                                    tags={**provenance_tags(device), MI_KEY_TAG: key})
    mi_id = mi_run.info.run_id
    with store.tracked(mi_id):
        store.log_params(mi_id, {"method": estimator.name, "seed": seed, "device": device,
                                 **{k: ",".join(map(str, v)) if isinstance(v, tuple) else v for k, v in params.items()},
                                 "train_run_id": train_run.info.run_id, "records": len(selection.records),
                                 "layers": ",".join(selection.layers), "n_probe": manifest.probe.get("size"),
                                 "executor": executor.description})
        t0 = time.perf_counter()
        with make_progress(bars == "off", transient=bars == "transient") as progress:
            table = compute_mi_table(artifacts, manifest, estimator, params, selection, seed, device, progress, executor)
        seconds = time.perf_counter() - t0
        _log_results(store, mi_id, table, seconds)
        out = store.artifacts(mi_run)
        path = out.writable_path(MI_FILE)
        table.to_parquet(path, index=False)
        out.commit(path, MI_FILE)
    return _summary(train_run, mi_run, estimator, table, selection, seconds, notes, reused=False,
                    executor=executor.description)


def layer_rows(table: pd.DataFrame) -> list[dict]:
    """Per layer (and noise variance) of an mi table: layer, noise_var, first_i_xt_bits,
    peak_i_xt_bits, peak_epoch, last_i_xt_bits, compression_bits (peak - last), JSON-ready."""
    keep = ["layer", "noise_var", "first_i_xt_bits", "peak_i_xt_bits", "peak_epoch", "last_i_xt_bits", "compression_bits"]
    return [{k: (None if pd.isna(r[k]) else r[k]) for k in keep if k in r} for r in run_summary(table).to_dict("records")]


def _summary(train_run, mi_run, estimator: Estimator, table: pd.DataFrame, selection: Selection, seconds,
             notes: list[str], reused: bool, executor: str | None) -> dict:
    rows = layer_rows(table)
    return {"train_run_id": train_run.info.run_id, "mi_run_id": mi_run.info.run_id, "method": estimator.name,
            "quantity": list(estimator.quantity), "rows": len(table), "records": len(selection.records),
            "layer_count": len(selection.layers), "seconds": None if seconds is None else round(float(seconds), 2),
            "ceiling_bits": float(table["ceiling_bits"].iloc[0]) if len(table) else None,
            "artifact_uri": mi_run.info.artifact_uri, "reused": reused, "executor": executor, "notes": notes,
            "layers": rows}


def _status_notes(store: Store, train_run, n: int) -> list[str]:
    """What the user should know about a train run that did not simply finish."""
    status = train_run.info.status
    records = counted(n, "complete record")
    if status == "RUNNING":
        live = store.is_live(train_run.info.run_id)
        if live:
            return [f"train run is still training (live): using the {records} so far"]
        if live is None:
            return [f"train run is still RUNNING (live, or killed without cleanup): using its {records}"]
        return [f"train run is RUNNING in MLflow but no process trains it (killed without cleanup, e.g. kill -9): "
                f"using its {records}; `ibcli train --resume {train_run.info.run_id[:8]}` continues it"]
    if status != "FINISHED":
        return [f"train run ended {status}: using its {records}"]
    return []


def _mi_on_sweep(store: Store, sweep_run, estimator: Estimator, params: dict, layers, epochs, seed: int,
                 device: str, quiet: bool, force: bool = False, executor: Executor | None = None) -> dict:
    """`ibcli mi SWEEP_ID`: the mi stage on every finished member (one mi child run each).

    Raises:
        UserError: no finished member; a member whose mi failed (after trying them all).
    """
    members, notes = sweep_members(store, sweep_run)
    if not quiet:
        for text in notes:
            note(text)
    rows, failed = [], []
    t0 = time.perf_counter()
    for i, member in enumerate(members, start=1):
        member_seed = member.data.params.get("seed")
        try:
            out = mi_on_train_run(store, member, estimator, params, layers, epochs, seed, device, quiet=True, force=force,
                                  executor=executor)
        except UserError as exc:
            failed.append(f"seed {member_seed}: {exc}")
            if not quiet:
                say(f"seed {member_seed}: {exc}", style="red")
            continue
        rows.append({"seed": int(member_seed), **out})
        if not quiet:
            done = "reused" if out["reused"] else f"{out['seconds']:.1f} s"
            say(f"mi {estimator.name} {i}/{len(members)}: seed {member_seed}, run {member.info.run_id[:8]} -> "
                f"mi run {out['mi_run_id']} ({done})")
    if failed:
        raise UserError(f"mi on sweep {sweep_run.info.run_id} failed for {len(failed)} member(s): {' | '.join(failed)}")
    return {"sweep_id": sweep_run.info.run_id, "method": estimator.name, "members": rows,
            "seconds": round(time.perf_counter() - t0, 2), "notes": notes}


def _log_results(store: Store, mi_id: str, table: pd.DataFrame, seconds: float) -> None:
    """The table's values as MLflow metrics: whole epochs under mi/ with step = epoch, records
    inside an epoch under mi_steps/ with step = optimizer step (`metric_names.mi_metric`)."""
    rows: dict[int, dict[str, float]] = {}
    for row in table.itertuples():
        noise_var = None if pd.isna(row.noise_var) else float(row.noise_var)
        for quantity in ("i_xt_bits", "i_ty_bits"):
            name, whole = mi_metric(quantity, row.layer, noise_var, row.epoch)
            rows.setdefault(int(row.epoch) if whole else int(row.step), {})[name] = getattr(row, quantity)
    store.log_metric_rows(mi_id, [*rows.items(), (0, {"mi_seconds": seconds})])


def print_summary(summary: dict) -> None:
    """What `ibcli mi` prints (stderr): the mi run's id, then per layer (and noise variance) the
    first, peak and last I(X;T) and the compression (peak - last), in bits."""
    where = f"{counted(summary['records'], 'record')} x {counted(summary['layer_count'], 'layer')}"
    took = "reused" if summary["reused"] else f"{summary['seconds']:.1f} s"
    say(f"mi run {summary['mi_run_id']} ({summary['method']} on train run {summary['train_run_id'][:8]}, {where}, {took})",
        style="bold")
    stderr.print(summary_table(summary))
    say(f"full table: add --table, or read {summary['artifact_uri']}/{MI_FILE}; figures: ibcli plot {summary['train_run_id'][:8]}")


def summary_table(summary: dict) -> Table:
    """The per-layer summary rows of an mi summary as a table that fits 80 columns."""
    x_name = summary.get("quantity", ["I(X;T)"])[0]
    has_noise = any(r.get("noise_var") is not None for r in summary["layers"])
    columns = [("layer", "left")] + ([("s2", "right")] if has_noise else []) + [
        ("first", "right"), ("peak", "right"), ("at epoch", "right"), ("last", "right"), ("compression", "right")]
    rows = []
    for r in summary["layers"]:
        rows.append([r["layer"], *([f"{r['noise_var']:g}"] if has_noise else []), f"{r['first_i_xt_bits']:.3f}",
                     f"{r['peak_i_xt_bits']:.3f}", f"{r['peak_epoch']:g}", f"{r['last_i_xt_bits']:.3f}",
                     f"{r['compression_bits']:.3f}"])
    ceiling = summary.get("ceiling_bits")
    title = f"{summary['method']}: {x_name} in bits" + (f" (ceiling log2 N = {ceiling:.2f})" if ceiling else "")
    return fitted_table(columns, rows, title=title)


def print_table(table: pd.DataFrame, estimator: Estimator) -> None:
    """Every row of an mi table (bits) on stderr (`ibcli mi --table`)."""
    has_lower = table["i_xt_lower_bits"].notna().any()
    has_noise = table["noise_var"].notna().any()
    x_name, y_name = estimator.quantity
    columns = [(c, "left" if c == "layer" else "right") for c in
               ["epoch", "layer", "s2" if has_noise else None, x_name, y_name,
                f"{x_name} lower" if has_lower else None, f"{y_name} BD" if has_lower else None] if c]
    rows = []
    for row in table.itertuples():
        cells = [f"{row.epoch:g}", row.layer]
        if has_noise:
            cells.append(f"{row.noise_var:g}")
        cells += [f"{row.i_xt_bits:.3f}", f"{row.i_ty_bits:.3f}"]
        if has_lower:
            cells += [f"{row.i_xt_lower_bits:.3f}", f"{row.i_ty_bd_bits:.3f}"]
        rows.append(cells)
    title = f"{estimator.name}: {x_name} and {y_name} in bits (ceiling log2 N = {table['ceiling_bits'].iloc[0]:.2f})"
    stderr.print(fitted_table(columns, rows, title=title))


def load_table(summary: dict, tracking_uri: str | None) -> pd.DataFrame:
    """The mi.parquet table of the mi run a summary names."""
    store = Store(tracking_uri, must_exist=True)
    return read_mi_table(store.artifacts(store.find_run(summary["mi_run_id"], stage="mi")).local_path(MI_FILE))
