"""`ibcli plot`: read a train run's metrics and its mi tables, write HTML as a plot run."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd

from ibcli import plots
from ibcli.analysis import MI_FILE
from ibcli.errors import UserError
from ibcli.store import Store
from ibcli.training import GRADIENTS

TRAIN_KEYS = ("train_loss", "test_loss", "train_accuracy", "test_accuracy")


def load_mi_tables(store: Store, train_run, mi_run_ids: list[str]) -> pd.DataFrame:
    """The chosen mi runs' tables (default: the latest finished mi run of each method), concatenated.

    Raises:
        UserError: no finished mi run, or a chosen run that is not an mi child of this train run.
    """
    if mi_run_ids:
        runs = [store.find_run(r, stage="mi") for r in mi_run_ids]
        for r in runs:
            if r.data.tags.get("mlflow.parentRunId") != train_run.info.run_id:
                raise UserError(f"mi run {r.info.run_id} belongs to train run {r.data.tags.get('mlflow.parentRunId')}, not {train_run.info.run_id}")
    else:
        runs, seen = [], set()
        for r in store.children(train_run.info.run_id, stage="mi"):
            method = r.data.params.get("method")
            if r.info.status == "FINISHED" and method not in seen:
                seen.add(method)
                runs.append(r)
        if not runs:
            raise UserError(f"train run {train_run.info.run_id} has no finished mi results: run `ibcli mi {train_run.info.run_id[:8]} --method binning` first")
    tables = []
    for r in runs:
        try:
            df = pd.read_parquet(store.artifacts(r).local_path(MI_FILE))
        except FileNotFoundError:
            raise UserError(f"mi run {r.info.run_id} has no {MI_FILE} (it did not finish): run `ibcli mi {train_run.info.run_id[:8]}` again or pick another with --mi-run") from None
        df["mi_run_id"] = r.info.run_id
        tables.append(df)
    return pd.concat(tables, ignore_index=True)


def load_training_metrics(store: Store, run_id: str) -> pd.DataFrame:
    """Long table (epoch, key, value) of the train run's loss and accuracy.

    A resumed run may have logged an epoch twice (after its last checkpoint, before the
    kill); the value logged last wins.
    """
    rows = []
    for key in TRAIN_KEYS:
        for m in sorted(store.client.get_metric_history(run_id, key), key=lambda m: m.timestamp):
            rows.append({"epoch": m.step, "key": key, "value": m.value})
    df = pd.DataFrame(rows, columns=["epoch", "key", "value"])
    return df.drop_duplicates(["epoch", "key"], keep="last").sort_values(["key", "epoch"], ignore_index=True)


def run_plot(run_id: str, mi_run_ids: list[str], output: Path | None, tracking_uri: str | None,
             band: str = "sd") -> dict:
    """Write the figures as self-contained HTML artifacts of a child plot run (and to `output`).

    Given a sweep run id, draws the figures averaged over its members instead
    (`ibcli.sweep.run_plot_sweep`; `band` is "sd" or "bootstrap").

    Raises:
        UserError: unknown run, no mi results, unwritable output folder.
    """
    store = Store(tracking_uri, must_exist=True)
    found = store.find_run(run_id)
    if found.data.tags.get("ibcli.stage") == "sweep":
        if mi_run_ids:
            raise UserError("--mi-run picks the mi runs of one train run; a sweep plot averages each member's latest mi run of each method")
        from ibcli.sweep import run_plot_sweep

        return run_plot_sweep(store, found, output, band)
    train_run = found if found.data.tags.get("ibcli.stage") == "train" else store.find_run(run_id, stage="train")
    mi = load_mi_tables(store, train_run, mi_run_ids)
    if output is not None:
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create --output folder {output}: {exc.strerror}") from None
    name = train_run.data.params.get("model", "?") + "/" + train_run.data.params.get("activation", "?")
    figures = {
        "information_plane.html": plots.information_plane(mi, f"Information plane: {name}, run {train_run.info.run_id[:8]}"),
        "mi_per_epoch.html": plots.mi_per_epoch(mi, f"I(X;T) and I(T;Y) per epoch: {name}"),
        "training_curves.html": plots.training_curves(load_training_metrics(store, train_run.info.run_id), f"Training: {name}"),
    }
    try:
        grads = pd.read_parquet(store.artifacts(train_run).local_path(GRADIENTS))
        figures["gradient_snr.html"] = plots.gradient_snr(grads, f"Gradient SNR per layer: {name}")
    except FileNotFoundError:
        pass
    plot_run = store.create_child_run(train_run, "plot", run_name="plot")
    art = store.artifacts(plot_run)
    files = []
    try:
        store.log_params(plot_run.info.run_id, {"mi_run_ids": ",".join(sorted(set(mi["mi_run_id"]))),
                                                "methods": ",".join(sorted(set(mi["method"])))})
        staging = Path(tempfile.mkdtemp(prefix="ibcli-plot-"))
        for fname, fig in figures.items():
            path = staging / fname
            fig.write_html(path, include_plotlyjs=True, full_html=True)
            target = art.writable_path(f"figures/{fname}")
            shutil.copyfile(path, target)
            art.commit(target, f"figures/{fname}")
            if output is not None:
                shutil.copyfile(path, output / fname)
                files.append(str(output / fname))
            else:
                files.append(f"{plot_run.info.artifact_uri}/figures/{fname}")
        shutil.rmtree(staging, ignore_errors=True)
    except BaseException as exc:
        store.finish(plot_run.info.run_id, "FAILED", f"{type(exc).__name__}: {exc}")
        raise
    store.finish(plot_run.info.run_id)
    return {"train_run_id": train_run.info.run_id, "plot_run_id": plot_run.info.run_id, "files": files,
            "mi_run_ids": sorted(set(mi["mi_run_id"]))}
