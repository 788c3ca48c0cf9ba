"""`ibcli plot`: a train run's figures, several runs compared, or a sweep's averages, in a plot run.

Figures are HTML (plotly.js once per folder) and, with `--format`, PNG/SVG/PDF. The plot run keeps
`figures/report.html` (every figure on one self-contained page, which MLflow's artifact viewer
shows) and the static files; `--output DIR` gets one HTML file per figure, plotly.min.js, the
report and the static files.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd

from ibcli import activations as act
from ibcli import plots
from ibcli.aggregate import average_mi
from ibcli.errors import UserError
from ibcli.figure_files import REPORT, check_static_export, parse_formats, write_html, write_report, write_static
from ibcli.histograms import activation_histograms
from ibcli.progress import make_progress
from ibcli.provenance import provenance_tags
from ibcli.results import (coverage_notes, is_sweep, latest_mi_runs, load_gradients, load_mi_tables, load_training_metrics,
                           member_gradients, member_mi_tables, member_training_metrics, probe_labels, sweep_members)
from ibcli.run_names import compare_run_name, settings_labels, train_run_name
from ibcli.store import PARENT_TAG, STAGE_TAG, Store

MI_MEAN_FILE = "mi_mean.parquet"
HISTOGRAMS_FILE = "activation_histograms.parquet"
BANDS = ("sd", "bootstrap")


def run_plot(run_ids: list[str], mi_run_ids: list[str], output: Path | None, tracking_uri: str | None,
             band: str = "sd", formats: str = "html", histograms: bool = True, quiet: bool = True) -> dict:
    """Draw the figures of one train run, of several compared, or of a sweep (averaged over its
    members), into a plot run (and `output`).

    run_ids: one train run or sweep id (or unique prefix), or several train runs to compare.
    formats: "html", or a comma-separated list of html, png, svg, pdf.
    histograms: also draw each layer's activation distribution over training (one run only).

    Raises:
        UserError: unknown run, a sweep among compared runs, --mi-run of another run, bad band or
            format, no browser for static formats, unwritable output folder.
    """
    if band not in BANDS:
        raise UserError(f"--band must be sd or bootstrap, got {band!r}")
    run_ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    formats = parse_formats(formats)
    check_static_export(formats)
    if not run_ids:
        raise UserError("give a train run id (or several to compare, or a sweep id)")
    store = Store(tracking_uri, must_exist=True)
    found = [store.find_run(r) for r in dict.fromkeys(run_ids)]
    if any(is_sweep(r) for r in found):
        if len(found) > 1:
            raise UserError("compare train runs (several ids), or plot one sweep on its own: not both")
        if mi_run_ids:
            raise UserError("--mi-run picks the mi runs of one train run; a sweep plot averages each member's latest mi run of each method")
        return _plot_sweep(store, found[0], output, band, formats)
    train_runs = [r if r.data.tags.get(STAGE_TAG) == "train" else store.find_run(r.info.run_id, stage="train") for r in found]
    chosen = _mi_runs_by_train_run(store, train_runs, mi_run_ids)
    if len(train_runs) == 1:
        return _plot_one(store, train_runs[0], chosen[train_runs[0].info.run_id], output, formats, histograms, quiet)
    return _plot_compare(store, train_runs, chosen, output, formats)


def _mi_runs_by_train_run(store: Store, train_runs: list, mi_run_ids: list[str]) -> dict[str, list[str]]:
    """{train run id: the --mi-run ids that belong to it}.

    Raises:
        UserError: an --mi-run whose train run is not among those plotted.
    """
    out = {r.info.run_id: [] for r in train_runs}
    for mi_id in mi_run_ids:
        mi_run = store.find_run(mi_id, stage="mi")
        parent = mi_run.data.tags.get(PARENT_TAG)
        if parent not in out:
            shown = ", ".join(out) if len(out) > 1 else next(iter(out))
            raise UserError(f"mi run {mi_run.info.run_id} belongs to train run {parent}, not {shown}")
        out[parent].append(mi_run.info.run_id)
    return out


def _mi_or_none(store: Store, train_run, mi_run_ids: list[str]) -> pd.DataFrame | None:
    """The run's chosen (default: latest) mi tables, or None when it has no finished mi run."""
    if not mi_run_ids and not latest_mi_runs(store, train_run):
        return None
    return load_mi_tables(store, train_run, mi_run_ids)


def _h_y(store: Store, train_run) -> float | None:
    """H(Y) of the run's probe labels in bits, None when it recorded no probe set."""
    labels = probe_labels(store, train_run)
    return None if labels is None else plots.label_entropy_bits(labels)


def _no_mi_note(run) -> str:
    return (f"train run {run.info.run_id[:8]} has no finished mi results: information-plane figures left out "
            f"(run `ibcli mi {run.info.run_id[:8]} --method binning` first)")


def _plot_one(store: Store, train_run, mi_run_ids: list[str], output: Path | None, formats, histograms: bool,
              quiet: bool) -> dict:
    """One train run: information planes, MI per epoch (with mi results), training curves,
    gradient SNR, activation histograms."""
    run_id = train_run.info.run_id
    name = f"{train_run.info.run_name or train_run_name(train_run.data.params)} ({run_id[:8]})"
    mi = _mi_or_none(store, train_run, mi_run_ids)
    h_y = _h_y(store, train_run)
    figures, tables, notes = {}, {}, []
    if mi is not None:
        figures["information_plane"] = plots.information_plane(mi, f"Information plane, every method: {name}", h_y)
        figures["information_plane_by_method"] = plots.information_plane_by_method(mi, f"Information plane by method: {name}", h_y)
        figures["mi_per_epoch"] = plots.mi_per_epoch(mi, f"I(X;T) and I(T;Y) per epoch: {name}", h_y)
    else:
        notes.append(_no_mi_note(train_run))
    if mi is not None and not mi_run_ids:
        notes += coverage_notes(store, train_run)  # a newer run of fewer layers hides an older full one
    metrics = load_training_metrics(store, run_id)
    if len(metrics):
        figures["training_curves"] = plots.training_curves(metrics, f"Training: {name}")
    grads = load_gradients(store, train_run)
    if grads is not None:
        figures["gradient_snr"] = plots.gradient_snr(grads, f"Gradient SNR per layer: {name}")
    if histograms:
        hist = _histograms(store, train_run, quiet, notes)
        if hist is not None:
            tables[HISTOGRAMS_FILE] = hist
            figures["activation_histograms"] = plots.activation_histograms(hist, f"Activation distributions over training: {name}")
    if not figures:
        raise UserError(f"train run {run_id} has nothing to plot yet: no training metrics and no finished mi results "
                        f"(let it train, then `ibcli mi {run_id[:8]} --method binning`)")
    methods = sorted(set(mi["method"])) if mi is not None else []
    params = {"train_run_id": run_id, "mi_run_ids": ",".join(sorted(set(mi["mi_run_id"]))) if mi is not None else "",
              "methods": ",".join(methods), "formats": ",".join(formats)}
    plot_id, files = _write(store, train_run, None, "plot-" + ("+".join(methods) or "training"), params, figures, tables,
                            output, formats, f"ibcli plot: {name}")
    return {"train_run_id": run_id, "plot_run_id": plot_id, "files": files,
            "mi_run_ids": sorted(set(mi["mi_run_id"])) if mi is not None else [], "notes": notes}


def _histograms(store: Store, train_run, quiet: bool, notes: list[str]) -> pd.DataFrame | None:
    artifacts = store.artifacts(train_run)
    try:
        manifest = act.load_manifest(artifacts)
    except act.NoActivations:  # a damaged manifest is an error, not a run without activations
        notes.append(f"train run {train_run.info.run_id[:8]} recorded no activations: no activation histograms")
        return None
    with make_progress(quiet) as progress:
        return activation_histograms(artifacts, manifest, progress=progress)


def _plot_compare(store: Store, train_runs: list, chosen: dict[str, list[str]], output: Path | None, formats) -> dict:
    """Several train runs overlaid, labelled by the settings that differ between them."""
    ids = [r.info.run_id for r in train_runs]
    labels = settings_labels([r.data.params for r in train_runs], ids)
    mi_parts, metric_parts, grad_parts, notes, h_ys = [], [], [], [], []
    for run, label in zip(train_runs, labels):
        mi = _mi_or_none(store, run, chosen[run.info.run_id])
        if mi is None:
            notes.append(_no_mi_note(run))
        else:
            mi_parts.append(mi.assign(run=label))
            if not chosen[run.info.run_id]:
                notes += [f"{label}: {text}" for text in coverage_notes(store, run)]
        metric_parts.append(load_training_metrics(store, run.info.run_id).assign(run=label))
        grads = load_gradients(store, run)
        if grads is not None:
            grad_parts.append(grads.assign(run=label))
        h_ys.append(_h_y(store, run))
    title = " vs ".join(labels)
    figures = {}
    if mi_parts:
        mi = pd.concat(mi_parts, ignore_index=True)
        h_y = max((h for h in h_ys if h is not None), default=None)
        figures["information_plane"] = plots.compare_information_plane(mi, labels, f"Information plane: {title}", h_y)
        figures["mi_per_epoch"] = plots.compare_mi_per_epoch(mi, labels, f"I(X;T) and I(T;Y) per epoch: {title}", h_y)
    metrics = pd.concat(metric_parts, ignore_index=True)
    if len(metrics):
        figures["training_curves"] = plots.compare_training_curves(metrics, labels, f"Training: {title}")
    if grad_parts:
        figures["gradient_snr"] = plots.compare_gradient_snr(pd.concat(grad_parts, ignore_index=True), labels,
                                                             f"Gradient SNR per layer: {title}")
    if not figures:
        raise UserError("none of these runs has metrics or mi results to plot yet")
    mi_ids = sorted(set(pd.concat(mi_parts)["mi_run_id"])) if mi_parts else []
    params = {"train_run_ids": ",".join(ids), "labels": " | ".join(labels), "mi_run_ids": ",".join(mi_ids)[:6000],
              "formats": ",".join(formats)}
    experiment = store.client.get_experiment(train_runs[0].info.experiment_id).name
    plot_id, files = _write(store, None, experiment, compare_run_name(labels), params, figures, {}, output, formats,
                            f"ibcli plot: {title}")
    return {"train_run_ids": ids, "labels": labels, "plot_run_id": plot_id, "files": files, "mi_run_ids": mi_ids,
            "notes": notes}


def _plot_sweep(store: Store, sweep_run, output: Path | None, band: str, formats) -> dict:
    """`ibcli plot SWEEP_ID`: figures averaged over the members, as a plot run child of the sweep.

    Writes information_plane_mean, mi_per_epoch_mean, training_curves_mean, gradient_snr_mean
    (when members logged gradient statistics) and the averaged table mi_mean.parquet.

    Raises:
        UserError: no finished member, no member with mi results, mixed estimator settings,
            unwritable output folder.
    """
    members, notes = sweep_members(store, sweep_run)
    mi, mi_notes = member_mi_tables(store, members)
    notes += mi_notes
    agg = average_mi(mi, band=band)
    params = sweep_run.data.params
    name = f"{params.get('model', '?')}/{params.get('activation', '?')}, {mi['seed'].nunique()} seeds"
    band_text = "mean ± sd" if band == "sd" else "mean, 95% bootstrap interval"
    h_y = _h_y(store, members[0])
    figures = {
        "information_plane_mean": plots.information_plane_mean(agg, f"Information plane averaged over seeds ({band_text}): {name}", h_y),
        "mi_per_epoch_mean": plots.mi_per_epoch_mean(agg, f"I(X;T) and I(T;Y) per epoch ({band_text}): {name}"),
    }
    training = member_training_metrics(store, members)
    if len(training):
        figures["training_curves_mean"] = plots.training_curves_mean(training, f"Training, mean ± sd over seeds: {name}")
    grads = member_gradients(store, members)
    if grads is not None:
        figures["gradient_snr_mean"] = plots.gradient_snr_mean(grads, f"Gradient SNR per layer, mean ± sd over seeds: {name}")
    run_params = {"band": band, "seeds": ",".join(map(str, sorted(mi["seed"].unique()))),
                  "methods": ",".join(sorted(set(mi["method"]))), "mi_run_ids": ",".join(sorted(set(mi["mi_run_id"])))[:6000],
                  "formats": ",".join(formats)}
    plot_id, files = _write(store, sweep_run, None, "plot-sweep", run_params, figures, {MI_MEAN_FILE: agg}, output, formats,
                            f"ibcli plot: sweep {sweep_run.info.run_name or sweep_run.info.run_id[:8]}, {name}")
    return {"sweep_id": sweep_run.info.run_id, "plot_run_id": plot_id, "files": files, "band": band,
            "seeds": sorted(int(s) for s in mi["seed"].unique()), "mi_run_ids": sorted(set(mi["mi_run_id"])),
            "notes": notes}


def _make_output(output: Path | None) -> None:
    if output is not None:
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create --output folder {output}: {exc.strerror}") from None


def _write(store: Store, parent, experiment: str | None, run_name: str, params: dict, figures: dict,
           tables: dict[str, pd.DataFrame], output: Path | None, formats, title: str) -> tuple[str, list[str]]:
    """A plot run (child of `parent`, else top-level in `experiment`) holding the tables (run
    root), figures/report.html and the static figures; `output` gets the tables, one HTML file per
    figure (with "html" in formats), plotly.min.js, report.html and the static figures.
    Returns (plot run id, the written paths: in `output`, else the artifacts' URIs)."""
    _make_output(output)
    tags = provenance_tags("cpu")
    if parent is not None:
        plot_run = store.create_child_run(parent, "plot", run_name=run_name, tags=tags)
    else:
        plot_run = store.create_run(experiment, "plot", run_name=run_name, tags=tags)
    if output is not None:
        params = {**params, "output": str(output.resolve())}
    art = store.artifacts(plot_run)
    staging = Path(tempfile.mkdtemp(prefix="ibcli-plot-"))
    files: list[str] = []
    try:
        with store.tracked(plot_run.info.run_id):
            store.log_params(plot_run.info.run_id, params)
            folder = staging / "figures"
            folder.mkdir()
            for fname, table in tables.items():
                table.to_parquet(staging / fname, index=False)
            local = []
            if "html" in formats:  # one file per figure and the report, plotly.js once beside them
                local = [*write_html(figures, folder), write_report(figures, folder / REPORT, title, inline=False)]
            static = write_static(figures, folder, formats)
            kept = write_report(figures, staging / REPORT, title, inline=True)
            artifacts = [(fname, staging / fname) for fname in tables] + [(f"figures/{REPORT}", kept)]
            artifacts += [(f"figures/{p.name}", p) for p in static]
            for rel, path in artifacts:
                target = art.writable_path(rel)
                shutil.copyfile(path, target)
                art.commit(target, rel)
            if output is not None:
                for path in [*(staging / fname for fname in tables), *local, *static]:
                    shutil.copyfile(path, output / path.name)
                    files.append(str(output / path.name))
            else:
                files = [f"{plot_run.info.artifact_uri}/{rel}" for rel, _ in artifacts]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return plot_run.info.run_id, files
