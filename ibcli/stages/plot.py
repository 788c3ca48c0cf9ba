"""`ibcli plot`: a train run's (or a sweep's averaged) figures as HTML, in a plot child run."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd

from ibcli import plots
from ibcli.aggregate import average_mi
from ibcli.errors import UserError
from ibcli.results import (is_sweep, load_gradients, load_mi_tables, load_training_metrics, member_gradients,
                           member_mi_tables, member_training_metrics, sweep_members)
from ibcli.store import STAGE_TAG, Store

MI_MEAN_FILE = "mi_mean.parquet"
BANDS = ("sd", "bootstrap")


def run_plot(run_id: str, mi_run_ids: list[str], output: Path | None, tracking_uri: str | None,
             band: str = "sd") -> dict:
    """Write the figures as self-contained HTML artifacts of a child plot run (and to `output`).

    Given a sweep run id, draws the figures averaged over its members instead (`band` is
    "sd" or "bootstrap").

    Raises:
        UserError: unknown run, no mi results, unwritable output folder, --mi-run with a sweep, bad band.
    """
    if band not in BANDS:
        raise UserError(f"--band must be sd or bootstrap, got {band!r}")
    store = Store(tracking_uri, must_exist=True)
    found = store.find_run(run_id)
    if is_sweep(found):
        if mi_run_ids:
            raise UserError("--mi-run picks the mi runs of one train run; a sweep plot averages each member's latest mi run of each method")
        return _plot_sweep(store, found, output, band)
    train_run = found if found.data.tags.get(STAGE_TAG) == "train" else store.find_run(run_id, stage="train")
    mi = load_mi_tables(store, train_run, mi_run_ids)
    _make_output(output)
    name = train_run.data.params.get("model", "?") + "/" + train_run.data.params.get("activation", "?")
    figures = {
        "information_plane.html": plots.information_plane(mi, f"Information plane, every method: {name}, run {train_run.info.run_id[:8]}"),
        "information_plane_by_method.html": plots.information_plane_by_method(mi, f"Information plane by method: {name}, run {train_run.info.run_id[:8]}"),
        "mi_per_epoch.html": plots.mi_per_epoch(mi, f"I(X;T) and I(T;Y) per epoch: {name}"),
        "training_curves.html": plots.training_curves(load_training_metrics(store, train_run.info.run_id), f"Training: {name}"),
    }
    grads = load_gradients(store, train_run)
    if grads is not None:
        figures["gradient_snr.html"] = plots.gradient_snr(grads, f"Gradient SNR per layer: {name}")
    params = {"mi_run_ids": ",".join(sorted(set(mi["mi_run_id"]))), "methods": ",".join(sorted(set(mi["method"])))}
    plot_id, files = _write(store, train_run, "plot", params, figures, {}, output)
    return {"train_run_id": train_run.info.run_id, "plot_run_id": plot_id, "files": files,
            "mi_run_ids": sorted(set(mi["mi_run_id"]))}


def _plot_sweep(store: Store, sweep_run, output: Path | None, band: str) -> dict:
    """`ibcli plot SWEEP_ID`: figures averaged over the members, as a plot run child of the sweep.

    Writes information_plane_mean.html, mi_per_epoch_mean.html, training_curves_mean.html,
    gradient_snr_mean.html (when members logged gradient statistics) and the averaged
    table mi_mean.parquet (artifacts under figures/ and the run root; files also to `output`).

    Raises:
        UserError: no finished member, no member with mi results, mixed estimator settings,
            unwritable output folder.
    """
    members, notes = sweep_members(store, sweep_run)
    mi, mi_notes = member_mi_tables(store, members)
    notes += mi_notes
    agg = average_mi(mi, band=band)
    _make_output(output)
    params = sweep_run.data.params
    name = f"{params.get('model', '?')}/{params.get('activation', '?')}, {mi['seed'].nunique()} seeds"
    band_text = "mean ± sd" if band == "sd" else "mean, 95% bootstrap interval"
    figures = {
        "information_plane_mean.html": plots.information_plane_mean(agg, f"Information plane averaged over seeds ({band_text}): {name}"),
        "mi_per_epoch_mean.html": plots.mi_per_epoch_mean(agg, f"I(X;T) and I(T;Y) per epoch ({band_text}): {name}"),
    }
    training = member_training_metrics(store, members)
    if len(training):
        figures["training_curves_mean.html"] = plots.training_curves_mean(training, f"Training, mean ± sd over seeds: {name}")
    grads = member_gradients(store, members)
    if grads is not None:
        figures["gradient_snr_mean.html"] = plots.gradient_snr_mean(grads, f"Gradient SNR per layer, mean ± sd over seeds: {name}")
    run_params = {"band": band, "seeds": ",".join(map(str, sorted(mi["seed"].unique()))),
                  "methods": ",".join(sorted(set(mi["method"]))), "mi_run_ids": ",".join(sorted(set(mi["mi_run_id"])))[:6000]}
    plot_id, files = _write(store, sweep_run, "plot-sweep", run_params, figures, {MI_MEAN_FILE: agg}, output)
    return {"sweep_id": sweep_run.info.run_id, "plot_run_id": plot_id, "files": files, "band": band,
            "seeds": sorted(int(s) for s in mi["seed"].unique()), "mi_run_ids": sorted(set(mi["mi_run_id"])),
            "notes": notes}


def _make_output(output: Path | None) -> None:
    if output is not None:
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create --output folder {output}: {exc.strerror}") from None


def _write(store: Store, parent, run_name: str, params: dict, figures: dict, tables: dict[str, pd.DataFrame],
           output: Path | None) -> tuple[str, list[str]]:
    """A plot run child of `parent` holding the tables (run root) and figures (figures/), also
    copied to `output`; returns (plot run id, the written paths)."""
    plot_run = store.create_child_run(parent, "plot", run_name=run_name)
    art = store.artifacts(plot_run)
    files = []
    staging = Path(tempfile.mkdtemp(prefix="ibcli-plot-"))
    try:
        with store.tracked(plot_run.info.run_id):
            store.log_params(plot_run.info.run_id, params)
            outputs = []
            for fname, table in tables.items():
                table.to_parquet(staging / fname, index=False)
                outputs.append((fname, staging / fname))
            for fname, fig in figures.items():
                fig.write_html(staging / fname, include_plotlyjs=True, full_html=True)
                outputs.append((f"figures/{fname}", staging / fname))
            for rel, path in outputs:
                target = art.writable_path(rel)
                shutil.copyfile(path, target)
                art.commit(target, rel)
                if output is not None:
                    shutil.copyfile(path, output / path.name)
                    files.append(str(output / path.name))
                else:
                    files.append(f"{plot_run.info.artifact_uri}/{rel}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return plot_run.info.run_id, files
