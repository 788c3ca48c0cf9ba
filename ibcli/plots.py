"""Plotly figures: the information plane, MI per epoch, training curves, gradient SNR.

Pure functions from tables to figures; `plot_stage` reads the tables and writes HTML.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ibcli.estimators import registry
from ibcli.estimators.errors import EstimatorInputError


def estimator_label(row) -> str:
    """The method's own label of this row's setting (e.g. "kde (s2=0.1)", "renyi (α=2)")."""
    row = dict(row)
    try:
        return registry.get(row["method"]).label(row)
    except EstimatorInputError:  # a table from a method this version does not know
        return str(row["method"])


def quantity(method: str) -> tuple[str, str]:
    """The axis names of a method's plane: ("I(X;T)", "I(T;Y)"), or the Rényi ones for renyi."""
    try:
        return registry.get(method).quantity
    except EstimatorInputError:
        return ("I(X;T)", "I(T;Y)")


def _quantities(df: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """{estimator label: axis names} for the labelled table `df`."""
    return {est: quantity(m) for est, m in df.groupby("estimator", sort=False)["method"].first().items()}


def _with_labels(mi: pd.DataFrame) -> pd.DataFrame:
    mi = mi.copy()
    mi["estimator"] = mi.apply(estimator_label, axis=1)
    return mi.sort_values(["estimator", "layer_index", "step"])


def _by_method(mi: pd.DataFrame, title: str) -> go.Figure:
    """One panel per estimator: each layer's trajectory in (I(X;T), I(T;Y)), bits.

    Marker colour is the epoch (shared colour bar); hover shows layer, epoch, step and both values.
    mi: the mi table (columns epoch, step, layer, layer_index, method, noise_var, i_xt_bits, i_ty_bits).
    """
    mi = _with_labels(mi)
    estimators = list(dict.fromkeys(mi["estimator"]))
    names = _quantities(mi)
    fig = make_subplots(rows=1, cols=len(estimators), subplot_titles=estimators, horizontal_spacing=0.06)
    emax = max(float(mi["epoch"].max()), 1e-9)
    for col, est in enumerate(estimators, start=1):
        sub = mi[mi["estimator"] == est]
        for i, (layer, g) in enumerate(sub.groupby("layer_index", sort=True)):
            name = g["layer"].iloc[0]
            fig.add_trace(go.Scatter(
                x=g["i_xt_bits"], y=g["i_ty_bits"], mode="lines+markers", name=name, legendgroup=name,
                showlegend=col == 1,
                line=dict(color=qualitative.D3[i % len(qualitative.D3)], width=1),
                marker=dict(color=g["epoch"], colorscale="Viridis", cmin=0, cmax=emax, size=8,
                            showscale=col == len(estimators), colorbar=dict(title="epoch")),
                customdata=np.stack([g["epoch"], g["step"]], axis=1),
                hovertemplate=f"{name}<br>epoch %{{customdata[0]:.3g}} (step %{{customdata[1]}})"
                              f"<br>{names[est][0]} %{{x:.3f}} bits<br>{names[est][1]} %{{y:.3f}} bits<extra>" + est + "</extra>",
            ), row=1, col=col)
        fig.update_xaxes(title_text=f"{names[est][0]} [bits]", row=1, col=col)
        fig.update_yaxes(title_text=f"{names[est][1]} [bits]", row=1, col=col)
    fig.update_layout(title=title, height=520, width=max(560, 480 * len(estimators)))
    return fig


# Colour per method, the same in every figure; sp, the Monte Carlo reference, is black.
METHOD_COLOURS = {"sp": "#000000", "kde": "#1f77b4", "kraskov": "#ff7f0e", "mine": "#2ca02c", "binning": "#9467bd",
                  "renyi": "#8c564b"}


def _colour(method: str, i: int) -> str:
    return METHOD_COLOURS.get(method, qualitative.D3[(i + 6) % len(qualitative.D3)])


def _column(g: pd.DataFrame, name: str) -> np.ndarray:
    """Column `name` of `g` as float64 (all NaN when the table lacks it)."""
    return g[name].to_numpy(dtype="float64", na_value=np.nan) if name in g.columns else np.full(len(g), np.nan)


def error_bars(g: pd.DataFrame, axis: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(plus, minus, what) of the uncertainty around one axis's values (axis "xt" or "ty"), bits.

    kde: the bracket between the KL value (plotted) and the Bhattacharyya one; a method with a
    standard error (sp): ±1.96 se, a 95 % interval; a spread over repeats (kraskov's noise
    draws, mine's seeds): ±1 sd. Zeros where a point has none.
    """
    value = _column(g, f"i_{axis}_bits")
    other = _column(g, "i_xt_lower_bits" if axis == "xt" else "i_ty_bd_bits")
    se, sd = _column(g, f"i_{axis}_se_bits"), _column(g, f"i_{axis}_sd_bits")
    plus, minus = np.zeros(len(g)), np.zeros(len(g))
    if np.isfinite(other).any():
        plus, minus = np.clip(other - value, 0, None), np.clip(value - other, 0, None)
        what = "KL to Bhattacharyya bracket"
    elif np.isfinite(sd).any():
        plus = minus = sd
        what = "±1 sd over repeats"
    elif np.isfinite(se).any():
        plus = minus = 1.96 * se
        what = "95 % interval (±1.96 se)"
    else:
        what = ""
    return np.nan_to_num(plus), np.nan_to_num(minus), what


def flagged(g: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the rows whose `flag` says not to read them as plain estimates."""
    if "flag" not in g.columns:
        return np.zeros(len(g), dtype=bool)
    return g["flag"].fillna("").astype(str).str.len().to_numpy() > 0


def information_plane(mi: pd.DataFrame, title: str = "Information plane") -> go.Figure:
    """Every method of a run together: one panel per layer with shared axes, each method's
    trajectory in (I(X;T), I(T;Y)) bits over the epochs, with its uncertainty.

    sp (the Monte Carlo reference of the noisy plane) is drawn black and thick; kde as a bracket
    from its KL to its Bhattacharyya value; kraskov and mine with ±1 sd bars over their repeats;
    flagged points (`flag` column) as grey crosses outside the line, never as plain points.
    Marker size grows with the epoch; hover gives epoch, values and the flag. A Rényi method's
    values are I_α and say so in its legend entry.

    mi: the mi tables of a run (columns epoch, step, layer, layer_index, method, i_xt_bits,
    i_ty_bits and whatever uncertainty columns the methods wrote).
    """
    mi = _with_labels(mi)
    layers = list(dict.fromkeys(mi.sort_values("layer_index")["layer"]))
    cols = min(3, len(layers))
    rows = -(-len(layers) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=layers, shared_xaxes="all", shared_yaxes="all",
                        horizontal_spacing=0.05, vertical_spacing=0.08 if rows > 1 else 0.1)
    emax = max(float(mi["epoch"].max()), 1e-9)
    estimators = list(dict.fromkeys(mi.sort_values(["method", "estimator"])["estimator"]))
    line_legend: set[str] = set()  # one legend entry per method (and one for its flagged points)
    flag_legend: set[str] = set()
    for i, est in enumerate(estimators):
        sub = mi[mi["estimator"] == est]
        method = sub["method"].iloc[0]
        qx, qy = quantity(method)
        name = est if (qx, qy) == ("I(X;T)", "I(T;Y)") else f"{est}: {qx}, {qy}"
        colour, ref = _colour(method, i), method == "sp"
        for j, layer in enumerate(layers):
            g = sub[sub["layer"] == layer].sort_values("step")
            if not len(g):
                continue
            r, c = j // cols + 1, j % cols + 1
            bad = flagged(g)
            ok, off = g[~bad], g[bad]
            xp, xm, xwhat = error_bars(ok, "xt")
            yp, ym, ywhat = error_bars(ok, "ty")
            size = 5 + 7 * ok["epoch"].to_numpy(dtype=float) / emax
            fig.add_trace(go.Scatter(
                x=ok["i_xt_bits"], y=ok["i_ty_bits"], mode="lines+markers", name=name, legendgroup=est,
                showlegend=est not in line_legend and len(ok) > 0, line=dict(color=colour, width=3 if ref else 1.5),
                marker=dict(color=colour, size=size),
                error_x=dict(type="data", symmetric=False, array=xp, arrayminus=xm, color=colour, thickness=1, width=0),
                error_y=dict(type="data", symmetric=False, array=yp, arrayminus=ym, color=colour, thickness=1, width=0),
                customdata=np.stack([ok["epoch"], ok["step"]], axis=1),
                hovertemplate=f"{layer}, epoch %{{customdata[0]:.4g}} (step %{{customdata[1]}})<br>{qx} %{{x:.3f}} bits"
                              f"<br>{qy} %{{y:.3f}} bits" + (f"<br>bars: {xwhat}" if xwhat else "") + f"<extra>{est}</extra>",
            ), row=r, col=c)
            if len(ok):
                line_legend.add(est)
            if len(off):
                fig.add_trace(go.Scatter(
                    x=off["i_xt_bits"], y=off["i_ty_bits"], mode="markers", name=f"{est}: flagged",
                    legendgroup=f"{est} flagged", showlegend=est not in flag_legend,
                    marker=dict(symbol="x-thin-open", color="#7f7f7f", size=9, line=dict(width=2, color=colour)),
                    customdata=np.stack([off["epoch"], off["flag"].astype(str)], axis=1),
                    hovertemplate=f"{layer}, epoch %{{customdata[0]}}: FLAGGED %{{customdata[1]}}<br>{qx} %{{x:.3f}} bits"
                                  f"<br>{qy} %{{y:.3f}} bits<extra>{est}</extra>",
                ), row=r, col=c)
                flag_legend.add(est)
    for j in range(len(layers)):
        r, c = j // cols + 1, j % cols + 1
        fig.update_xaxes(title_text="I(X;T) [bits]" if r == rows else None, row=r, col=c)
        fig.update_yaxes(title_text="I(T;Y) [bits]" if c == 1 else None, row=r, col=c)
    fig.update_layout(title=title, height=120 + 380 * rows, width=max(640, 420 * cols + 240),
                      legend=dict(title="method (bars: uncertainty)"))
    return fig


def information_plane_by_method(mi: pd.DataFrame, title: str = "Information plane by method") -> go.Figure:
    """One panel per method: each layer's trajectory in (I(X;T), I(T;Y)) bits, marker colour = epoch."""
    return _by_method(mi, title)


def mi_per_epoch(mi: pd.DataFrame, title: str = "Mutual information per epoch") -> go.Figure:
    """I(X;T) (left) and I(T;Y) (right) against epoch, one line per layer, one row per estimator."""
    mi = _with_labels(mi)
    estimators = list(dict.fromkeys(mi["estimator"]))
    names = _quantities(mi)
    titles = [f"{e}: {q}" for e in estimators for q in names[e]]
    fig = make_subplots(rows=len(estimators), cols=2, subplot_titles=titles, vertical_spacing=0.12 / max(1, len(estimators) - 1) if len(estimators) > 1 else 0.1)
    for r, est in enumerate(estimators, start=1):
        sub = mi[mi["estimator"] == est]
        for i, (_, g) in enumerate(sub.groupby("layer_index", sort=True)):
            name = g["layer"].iloc[0]
            color = qualitative.D3[i % len(qualitative.D3)]
            for c, col in enumerate(("i_xt_bits", "i_ty_bits"), start=1):
                fig.add_trace(go.Scatter(x=g["epoch"], y=g[col], mode="lines+markers", name=name, legendgroup=name,
                                         showlegend=r == 1 and c == 1, line=dict(color=color)), row=r, col=c)
        fig.update_yaxes(title_text="bits", row=r, col=1)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=title, height=360 * len(estimators) + 80, width=1100)
    return fig


def training_curves(metrics: pd.DataFrame, title: str = "Training") -> go.Figure:
    """Loss (left) and accuracy (right) against epoch; metrics: columns epoch, key, value."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    for c, kind in enumerate(("loss", "accuracy"), start=1):
        for split, dash in (("train", "solid"), ("test", "dash")):
            g = metrics[metrics["key"] == f"{split}_{kind}"].sort_values("epoch")
            if len(g):
                fig.add_trace(go.Scatter(x=g["epoch"], y=g["value"], mode="lines+markers", name=f"{split} {kind}",
                                         line=dict(dash=dash)), row=1, col=c)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=title, height=420, width=1000)
    return fig


def gradient_snr(grads: pd.DataFrame, title: str = "Gradient signal-to-noise ratio per layer") -> go.Figure:
    """Shwartz-Ziv & Tishby (2017) Fig. 4: per layer, norm of the mean gradient, norm of its std
    over an epoch's mini-batches, and their ratio (SNR), log-log against epoch."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("mean and std of the gradient (norms)", "SNR = |mean| / |std|"))
    for i, (layer, g) in enumerate(grads.groupby("layer", sort=False)):
        g = g.sort_values("epoch")
        color = qualitative.D3[i % len(qualitative.D3)]
        fig.add_trace(go.Scatter(x=g["epoch"], y=g["grad_mean_norm"], name=f"{layer} mean", legendgroup=layer,
                                 line=dict(color=color)), row=1, col=1)
        fig.add_trace(go.Scatter(x=g["epoch"], y=g["grad_std_norm"], name=f"{layer} std", legendgroup=layer,
                                 line=dict(color=color, dash="dot")), row=1, col=1)
        fig.add_trace(go.Scatter(x=g["epoch"], y=g["snr"], name=f"{layer} SNR", legendgroup=layer,
                                 line=dict(color=color)), row=1, col=2)
    fig.update_xaxes(type="log", title_text="epoch")
    fig.update_yaxes(type="log")
    fig.update_layout(title=title, height=460, width=1150)
    return fig


# ---------------------------------------------------------------------------- averaged over seeds
def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _agg_with_labels(agg: pd.DataFrame) -> pd.DataFrame:
    agg = agg.copy()
    if "noise_var" not in agg.columns:
        agg["noise_var"] = np.nan
    agg["estimator"] = agg.apply(estimator_label, axis=1)
    return agg.sort_values(["estimator", "layer_index", "step"])


def _log_x_buttons(fig: go.Figure) -> None:
    """A linear/log toggle for every x axis (records are usually log-spaced in epochs)."""
    axes = [k for k in fig.layout if k.startswith("xaxis")] or ["xaxis"]
    fig.update_layout(updatemenus=[dict(
        type="buttons", direction="left", x=1.0, xanchor="right", y=1.08, yanchor="bottom", showactive=True,
        buttons=[dict(label=label, method="relayout", args=[{f"{a}.type": kind for a in axes}])
                 for label, kind in (("linear epochs", "linear"), ("log epochs", "log"))],
    )])


def _plane_mean_traces(fig, g: pd.DataFrame, i: int, est: str, emax: float, row: int, col: int,
                       showlegend: bool, showscale: bool) -> None:
    """One layer's mean trajectory with band error bars in both directions, into one panel."""
    name = g["layer"].iloc[0]
    color = qualitative.D3[i % len(qualitative.D3)]
    x, y = g["i_xt_bits_mean"], g["i_ty_bits_mean"]
    fig.add_trace(go.Scatter(
        x=x, y=y, mode="lines+markers", name=name, legendgroup=name, showlegend=showlegend,
        line=dict(color=color, width=1.5),
        error_x=dict(type="data", symmetric=False, array=(g["i_xt_bits_hi"] - x).fillna(0),
                     arrayminus=(x - g["i_xt_bits_lo"]).fillna(0), color=_rgba(color, 0.35), thickness=1, width=0),
        error_y=dict(type="data", symmetric=False, array=(g["i_ty_bits_hi"] - y).fillna(0),
                     arrayminus=(y - g["i_ty_bits_lo"]).fillna(0), color=_rgba(color, 0.35), thickness=1, width=0),
        marker=dict(color=g["epoch"], colorscale="Viridis", cmin=0, cmax=emax, size=7,
                    line=dict(color=color, width=1), showscale=showscale, colorbar=dict(title="epoch")),
        customdata=np.stack([g["epoch"], g["n_seeds"], g["i_xt_bits_lo"], g["i_xt_bits_hi"],
                             g["i_ty_bits_lo"], g["i_ty_bits_hi"]], axis=1),
        hovertemplate=f"{name}<br>epoch %{{customdata[0]:.4g}}, %{{customdata[1]}} seeds"
                      "<br>I(X;T) %{x:.3f} [%{customdata[2]:.3f}, %{customdata[3]:.3f}] bits"
                      "<br>I(T;Y) %{y:.3f} [%{customdata[4]:.3f}, %{customdata[5]:.3f}] bits"
                      "<extra>" + est + "</extra>",
    ), row=row, col=col)


def information_plane_mean(agg: pd.DataFrame, title: str = "Information plane, mean over seeds") -> go.Figure:
    """One panel per estimator: each layer's mean trajectory in (I(X;T), I(T;Y)), bits,
    with error bars from the band (columns *_lo, *_hi) in both directions.

    agg: `sweep.average_mi` / `aggregate.aggregate_over_seeds` output (columns method,
    [noise_var], layer, layer_index, epoch, step, n_seeds, i_xt_bits_{mean,sd,lo,hi},
    i_ty_bits_{mean,sd,lo,hi}). Marker colour is the epoch; hover shows n_seeds and the band.
    """
    return information_plane_mean_grid({"": agg}, title)


def information_plane_mean_grid(aggs: dict, title: str = "Information plane, mean over seeds") -> go.Figure:
    """Averaged information planes in a grid: one row per entry of `aggs` ({row label:
    averaged table}, e.g. tanh and relu), one column per estimator (as in
    `information_plane_mean`); axes of a column are shared so rows compare directly."""
    tables = {label: _agg_with_labels(agg) for label, agg in aggs.items()}
    estimators = list(dict.fromkeys(e for t in tables.values() for e in t["estimator"]))
    labels = list(tables)
    titles = [f"{label}: {est}" if label else est for label in labels for est in estimators]
    fig = make_subplots(rows=len(labels), cols=len(estimators), subplot_titles=titles, horizontal_spacing=0.06,
                        vertical_spacing=0.1 if len(labels) > 1 else 0.1, shared_xaxes="columns")
    emax = max(max(float(t["epoch"].max()) for t in tables.values()), 1e-9)
    for r, label in enumerate(labels, start=1):
        agg = tables[label]
        for col, est in enumerate(estimators, start=1):
            sub = agg[agg["estimator"] == est]
            for i, (_, g) in enumerate(sub.groupby("layer_index", sort=True)):
                _plane_mean_traces(fig, g, i, f"{label} {est}".strip(), emax, r, col,
                                   showlegend=r == 1 and col == 1, showscale=r == 1 and col == len(estimators))
            qx, qy = quantity(sub["method"].iloc[0]) if len(sub) else ("I(X;T)", "I(T;Y)")
            fig.update_xaxes(title_text=f"{qx} [bits]" if r == len(labels) else None, showticklabels=True, row=r, col=col)
            fig.update_yaxes(title_text=f"{qy} [bits]" if col == 1 else None, row=r, col=col)
    fig.update_layout(title=title, height=max(540, 480 * len(labels) + 60), width=max(600, 500 * len(estimators)))
    return fig


def _band_traces(fig, x, mean, lo, hi, color, name, row, col, showlegend, hover=None):
    """A mean line with a filled band between lo and hi (NaN band -> line only)."""
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.any():
        xs = np.asarray(x)[ok]
        fig.add_trace(go.Scatter(x=np.concatenate([xs, xs[::-1]]), y=np.concatenate([hi[ok], lo[ok][::-1]]),
                                 fill="toself", fillcolor=_rgba(color, 0.2), line=dict(width=0), hoverinfo="skip",
                                 legendgroup=name, showlegend=False), row=row, col=col)
    fig.add_trace(go.Scatter(x=x, y=mean, mode="lines+markers", name=name, legendgroup=name, showlegend=showlegend,
                             line=dict(color=color), marker=dict(size=4), hovertemplate=hover), row=row, col=col)


def mi_per_epoch_mean(agg: pd.DataFrame, title: str = "Mutual information per epoch, mean over seeds") -> go.Figure:
    """I(X;T) (left) and I(T;Y) (right) against epoch: per layer the mean over seeds and a
    filled band (*_lo to *_hi), one row per estimator; a button switches the epoch axis to log."""
    agg = _agg_with_labels(agg)
    estimators = list(dict.fromkeys(agg["estimator"]))
    names = _quantities(agg)
    titles = [f"{e}: {q}" for e in estimators for q in names[e]]
    fig = make_subplots(rows=len(estimators), cols=2, subplot_titles=titles,
                        vertical_spacing=0.12 / max(1, len(estimators) - 1) if len(estimators) > 1 else 0.1)
    for r, est in enumerate(estimators, start=1):
        sub = agg[agg["estimator"] == est]
        for i, (_, g) in enumerate(sub.groupby("layer_index", sort=True)):
            name = g["layer"].iloc[0]
            color = qualitative.D3[i % len(qualitative.D3)]
            for c, v in enumerate(("i_xt_bits", "i_ty_bits"), start=1):
                _band_traces(fig, g["epoch"], g[f"{v}_mean"], g[f"{v}_lo"], g[f"{v}_hi"], color, name, r, c,
                             showlegend=r == 1 and c == 1,
                             hover=f"{name}<br>epoch %{{x:.4g}}<br>%{{y:.3f}} bits (mean)<extra>{est}</extra>")
        fig.update_yaxes(title_text="bits", row=r, col=1)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=title, height=380 * len(estimators) + 100, width=1150)
    _log_x_buttons(fig)
    return fig


def _thin_epochs(epochs: np.ndarray, keep: int = 400) -> np.ndarray:
    """At most about `keep` of the given epochs, log-spaced (all of them when there are fewer)."""
    epochs = np.unique(epochs)
    if len(epochs) <= keep:
        return epochs
    positive = epochs[epochs > 0]
    targets = np.geomspace(positive.min(), positive.max(), keep)
    idx = np.unique(np.searchsorted(positive, targets).clip(0, len(positive) - 1))
    return np.union1d(positive[idx], epochs[epochs <= 0])


def training_curves_mean(metrics: pd.DataFrame, title: str = "Training, mean over seeds") -> go.Figure:
    """Loss (left) and accuracy (right) against epoch, mean ± sd over seeds.

    metrics: long table with columns epoch, key (train_loss, test_loss, train_accuracy,
    test_accuracy), value, seed.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    keep = _thin_epochs(metrics["epoch"].to_numpy()) if len(metrics) else np.array([])
    m = metrics[metrics["epoch"].isin(keep)]
    for c, kind in enumerate(("loss", "accuracy"), start=1):
        for j, split in enumerate(("train", "test")):
            g = m[m["key"] == f"{split}_{kind}"]
            if not len(g):
                continue
            s = g.groupby("epoch")["value"].agg(["mean", "std"]).reset_index()
            _band_traces(fig, s["epoch"], s["mean"], s["mean"] - s["std"], s["mean"] + s["std"],
                         qualitative.D3[j], f"{split} {kind}", 1, c, True)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=title, height=440, width=1050)
    _log_x_buttons(fig)
    return fig


def gradient_snr_mean(grads: pd.DataFrame, title: str = "Gradient signal-to-noise ratio, mean over seeds") -> go.Figure:
    """Shwartz-Ziv & Tishby (2017) Fig. 4 averaged over seeds: per layer the norms of the mean
    and std of the mini-batch gradients (left) and the SNR (right), log-log against epoch.

    The mean over seeds is geometric (of log10), the band is ± one sd of log10 (a factor).
    grads: concatenated gradient_stats.parquet tables with a seed column (columns epoch,
    layer, grad_mean_norm, grad_std_norm, snr, seed). Epochs are thinned log-spaced to ~400.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("mean (solid) and std (dotted) of the gradient, norms",
                                                        "SNR = |mean| / |std|"))
    keep = _thin_epochs(grads["epoch"].to_numpy())
    g_all = grads[grads["epoch"].isin(keep) & (grads["epoch"] > 0)].copy()
    for i, (layer, g) in enumerate(g_all.groupby("layer", sort=False)):
        color = qualitative.D3[i % len(qualitative.D3)]
        for col, key, dash, label in ((1, "grad_mean_norm", "solid", "mean"), (1, "grad_std_norm", "dot", "std"),
                                      (2, "snr", "solid", "SNR")):
            v = np.log10(g[key].where(g[key] > 0))
            s = v.groupby(g["epoch"]).agg(["mean", "std"]).reset_index()
            s = s[np.isfinite(s["mean"])]
            lo, hi = 10 ** (s["mean"] - s["std"]), 10 ** (s["mean"] + s["std"])
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                xs = s["epoch"][ok].to_numpy()
                fig.add_trace(go.Scatter(x=np.concatenate([xs, xs[::-1]]), y=np.concatenate([hi[ok], lo[ok][::-1]]),
                                         fill="toself", fillcolor=_rgba(color, 0.15), line=dict(width=0),
                                         hoverinfo="skip", legendgroup=layer, showlegend=False), row=1, col=col)
            fig.add_trace(go.Scatter(x=s["epoch"], y=10 ** s["mean"], mode="lines", name=f"{layer} {label}",
                                     legendgroup=layer, line=dict(color=color, dash=dash)), row=1, col=col)
    fig.update_xaxes(type="log", title_text="epoch")
    fig.update_yaxes(type="log")
    fig.update_layout(title=title, height=480, width=1200)
    return fig
