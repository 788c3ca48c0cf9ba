"""Reading results back from the store: a train run's mi tables, training metrics and
gradient statistics, and a sweep's member runs (what plot and the sweep stages read)."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq

from ibcli import activations as act
from ibcli.console import counted
from ibcli.errors import UserError
from ibcli.metric_names import read_keys
from ibcli.mi_table import MI_FILE, read_mi_table
from ibcli.store import PARENT_TAG, STAGE_TAG, SWEEP_TAG, Store
from ibcli.training import GRADIENTS

TRAIN_KEYS = ("train_loss", "test_loss", "train_accuracy", "test_accuracy")
SWEEP_STAGE = "sweep"


def latest_mi_runs(store: Store, train_run) -> list:
    """The latest finished mi run of each method of `train_run` (newest first)."""
    return _latest_per_method(store.children(train_run.info.run_id, stage="mi"))


def _latest_per_method(mi_runs: list) -> list:
    """The first finished run of each method in `mi_runs` (newest first)."""
    runs, seen = [], set()
    for r in mi_runs:
        method = r.data.params.get("method")
        if r.info.status == "FINISHED" and method not in seen:
            seen.add(method)
            runs.append(r)
    return runs


def _coverage(run) -> tuple[int, int] | None:
    """(layers, records) an mi run estimated, from its params; None when it logged neither."""
    try:
        return len([x for x in run.data.params["layers"].split(",") if x]), int(run.data.params["records"])
    except (KeyError, ValueError):
        return None


def coverage_notes(store: Store, train_run, command: bool = False) -> list[str]:
    """Notes on the default choice of mi runs (`latest_mi_runs`): one for each method whose
    latest finished mi run covers fewer layers or fewer records than an older finished mi run
    of the same method (e.g. a later `ibcli mi --layer output` after a run on every layer). The
    note names the older run that covers the most and the --mi-run options that pick it with
    the other methods' latest runs (command: as a whole `ibcli plot` command line, for output
    that is not itself a plot). Runs that logged no layers/records params are not compared.
    """
    children = [r for r in store.children(train_run.info.run_id, stage="mi") if r.info.status == "FINISHED"]
    latest = _latest_per_method(children)
    notes = []
    for chosen in latest:
        method, mine = chosen.data.params.get("method"), _coverage(chosen)
        if mine is None:
            continue
        wider = [(c[0] * c[1], -i, r, c) for i, r in enumerate(children)
                 if r is not chosen and r.data.params.get("method") == method
                 and (c := _coverage(r)) is not None and (c[0] > mine[0] or c[1] > mine[1])]
        if not wider:
            continue
        _, _, best, theirs = max(wider, key=lambda w: w[:2])  # the most (layer, record) pairs; newest on a tie
        picks = " ".join(f"--mi-run {(best if r is chosen else r).info.run_id[:8]}" for r in latest)
        notes.append(f"{method}: the latest mi run {chosen.info.run_id[:8]} covers {counted(mine[0], 'layer')} and "
                     f"{counted(mine[1], 'record')}, the older mi run {best.info.run_id[:8]} covers "
                     f"{counted(theirs[0], 'layer')} and {counted(theirs[1], 'record')}: "
                     + (f"plot it with `ibcli plot {train_run.info.run_id[:8]} {picks}`" if command
                        else f"pick it with {picks}"))
    return notes


def load_mi_tables(store: Store, train_run, mi_run_ids: list[str]) -> pd.DataFrame:
    """The chosen mi runs' tables (default: the latest finished mi run of each method),
    concatenated, with an `mi_run_id` column.

    Raises:
        UserError: no finished mi run, a chosen run that is not an mi child of this train run,
            or an mi.parquet that is missing or unreadable.
    """
    if mi_run_ids:
        runs = [store.find_run(r, stage="mi") for r in mi_run_ids]
        for r in runs:
            if r.data.tags.get(PARENT_TAG) != train_run.info.run_id:
                raise UserError(f"mi run {r.info.run_id} belongs to train run {r.data.tags.get(PARENT_TAG)}, not {train_run.info.run_id}")
    else:
        runs = latest_mi_runs(store, train_run)
        if not runs:
            raise UserError(f"train run {train_run.info.run_id} has no finished mi results: run `ibcli mi {train_run.info.run_id[:8]} --method binning` first")
    tables = []
    for r in runs:
        df = act.read_artifact(store.artifacts(r), MI_FILE, read_mi_table, optional=True)
        if df is None:
            raise UserError(f"mi run {r.info.run_id} has no {MI_FILE} (it did not finish): run `ibcli mi {train_run.info.run_id[:8]}` again or pick another with --mi-run")
        df["mi_run_id"] = r.info.run_id
        tables.append(df)
    return pd.concat(tables, ignore_index=True)


def load_training_metrics(store: Store, run_id: str) -> pd.DataFrame:
    """Long table (epoch, key, value) of the train run's loss and accuracy; key is ibcli's flat
    name (train_loss, test_loss, train_accuracy, test_accuracy) whether the run logged it under
    its grouped MLflow name (train/loss_train, ...) or, before 2026-11-30, the flat one.

    A resumed run may have logged an epoch twice (after its last checkpoint, before the
    kill); the value logged last wins.
    """
    rows = []
    for key in TRAIN_KEYS:
        for name in read_keys(key):
            history = store.client.get_metric_history(run_id, name)
            if history:
                break
        for m in sorted(history, key=lambda m: m.timestamp):
            rows.append({"epoch": m.step, "key": key, "value": m.value})
    df = pd.DataFrame(rows, columns=["epoch", "key", "value"])
    return df.drop_duplicates(["epoch", "key"], keep="last").sort_values(["key", "epoch"], ignore_index=True)


def load_gradients(store: Store, train_run) -> pd.DataFrame | None:
    """The train run's gradient_stats.parquet (epoch float64, also for files written with int64
    epochs before 2026-11-30), or None when it logged none.

    Raises:
        UserError: the table is there but cannot be read.
    """
    df = act.read_artifact(store.artifacts(train_run), GRADIENTS, pd.read_parquet, optional=True)
    if df is None:
        return None
    return df.astype({"epoch": "float64"}) if "epoch" in df.columns else df


def probe_labels(store: Store, train_run):
    """The labels (n,) int64 of the run's probe set, or None when it recorded none.

    Raises:
        UserError: the probe file is there but cannot be read.
    """
    return act.read_artifact(store.artifacts(train_run), act.PROBE,
                             lambda p: pq.read_table(p, columns=["label"]).column("label").to_numpy(), optional=True)


def seed_of(run) -> int:
    return int(run.data.params.get("seed", "0"))


def sweep_members(store: Store, sweep_run, finished_only: bool = True) -> tuple[list, list[str]]:
    """The sweep's train runs, ordered by seed, and notes on members left out.

    Raises:
        UserError: the sweep has no (finished) member.
    """
    sweep_id = sweep_run.info.run_id
    runs = [r for r in store.children(sweep_id, stage="train") if r.data.tags.get(SWEEP_TAG) == sweep_id]
    runs.sort(key=lambda r: (seed_of(r), r.info.start_time or 0))
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
        raise UserError(f"sweep {sweep_id} has no finished member: {states}; finish one with `ibcli train --resume RUN_ID`")
    return members, notes


def member_mi_tables(store: Store, members: list) -> tuple[pd.DataFrame, list[str]]:
    """Each member's latest finished mi run per method, concatenated with `seed` and `train_run_id`.

    Raises:
        UserError: no member has an mi run.
    """
    tables, notes = [], []
    for m in members:
        try:
            df = load_mi_tables(store, m, [])
        except UserError:
            notes.append(f"seed {seed_of(m)} (run {m.info.run_id[:8]}) has no finished mi run: left out")
            continue
        df["seed"] = seed_of(m)
        df["train_run_id"] = m.info.run_id
        tables.append(df)
    if not tables:
        raise UserError("no member of this sweep has finished mi results: run `ibcli mi SWEEP_ID --method binning` first")
    mi = pd.concat(tables, ignore_index=True)
    for method, g in mi.groupby("method"):
        missing = sorted({seed_of(m) for m in members} - set(g["seed"]))
        if missing:
            notes.append(f"{method}: seeds {missing} have no {method} mi run; averaged over {counted(g['seed'].nunique(), 'seed')}")
    return mi, notes


def member_training_metrics(store: Store, members: list) -> pd.DataFrame:
    """Every member's training metrics (load_training_metrics) with a `seed` column."""
    parts = []
    for m in members:
        df = load_training_metrics(store, m.info.run_id)
        df["seed"] = seed_of(m)
        parts.append(df)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["epoch", "key", "value", "seed"])


def member_gradients(store: Store, members: list) -> pd.DataFrame | None:
    """Every member's gradient table with a `seed` column; None when none logged one."""
    parts = []
    for m in members:
        df = load_gradients(store, m)
        if df is not None:
            df["seed"] = seed_of(m)
            parts.append(df)
    return pd.concat(parts, ignore_index=True) if parts else None


def is_sweep(run) -> bool:
    return run.data.tags.get(STAGE_TAG) == SWEEP_STAGE
