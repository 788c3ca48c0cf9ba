"""Plotly figures: the information plane, MI per epoch, training curves, gradient SNR, activation
histograms; one run, several runs compared, or a sweep's mean over seeds.

Pure functions from tables to figures; `ibcli.figure_files` writes them (HTML, PNG, SVG, PDF) and
`stages/plot.py` reads the tables. Every figure has a height that grows with its rows and no fixed
width: in a browser it fills the window; a static export is `export_size(fig)` pixels. Legends sit
at the right (a colour bar, where there is one, below the legend); information values are bits.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ibcli.estimators import registry
from ibcli.estimators.errors import EstimatorInputError

#: Width in pixels of a static export (PNG, SVG, PDF): two columns of a paper page at scale 2.
EXPORT_WIDTH = 1200
GREY = "#7f7f7f"
LAYER_COLOURS = qualitative.D3
RUN_COLOURS = qualitative.Set1
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "star")
# A colour bar shares the right margin with the legend: the legend on top, the bar below it.
COLORBAR = dict(title="epoch", len=0.45, y=0, yanchor="bottom", thickness=14)
PLANE_LEGEND = "%s<br><sup>bars: uncertainty · marker size: epoch</sup>"


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


# ---------------------------------------------------------------------------- layout helpers
def export_size(fig: go.Figure) -> tuple[int, int]:
    """(width, height) in pixels of the figure's static export."""
    meta = fig.layout.meta if isinstance(fig.layout.meta, dict) else {}
    return int(meta.get("export_width", EXPORT_WIDTH)), int(fig.layout.height or 500)


def min_width(fig: go.Figure) -> int:
    """The narrowest a figure may be drawn in a browser (a narrower window scrolls sideways):
    three quarters of its export width, where panels, axis titles and legend still fit."""
    return round(0.75 * export_size(fig)[0])


def _finish(fig: go.Figure, title: str, height: int, legend_title: str | None = None,
            export_width: int = EXPORT_WIDTH) -> go.Figure:
    """The layout every figure shares: white template, title at the top left, legend at the right,
    a fixed height and no fixed width (the browser window sets it)."""
    fig.update_layout(
        template="plotly_white", title=dict(text=title, x=0.01, xanchor="left", font=dict(size=16)),
        height=height, autosize=True, meta={"export_width": export_width},
        margin=dict(l=70, r=20, t=90, b=60),
        legend=dict(title=dict(text=legend_title) if legend_title else None, y=1, yanchor="top",
                    tracegroupgap=4, itemsizing="constant"),
        hoverlabel=dict(namelength=-1),
    )
    fig.update_annotations(font_size=13)  # the subplot titles
    return fig


def _width(cols: int) -> int:
    """Static export width of a grid with `cols` columns of panels and a legend beside them."""
    return max(EXPORT_WIDTH, 420 * cols + 340)


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    """(rows, cols) of a grid of n panels (four make two rows of two)."""
    cols = 2 if n == 4 and max_cols >= 2 else max(1, min(max_cols, n))
    return -(-n // cols), cols


def _hide_empty(fig: go.Figure, n: int, rows: int, cols: int) -> None:
    """No axes where a grid has no panel (after the n-th)."""
    for j in range(n, rows * cols):
        r, c = _panel(j, cols)
        fig.update_xaxes(visible=False, row=r, col=c)
        fig.update_yaxes(visible=False, row=r, col=c)


def _panel(j: int, cols: int) -> tuple[int, int]:
    return j // cols + 1, j % cols + 1


def _log_ticks(values) -> dict:
    """Tick values and full labels for a log axis over `values` (20 reads "20", never "2"):
    1-2-5 steps over up to three decades, decades beyond."""
    v = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if not len(v):
        return {}
    lo, hi = float(v.min()), float(v.max())
    steps = (1, 2, 5) if math.log10(hi / lo) <= 3 else (1,)
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
             for m in steps if lo / 1.6 <= m * 10.0 ** e <= hi * 1.6]
    return dict(tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])


def _legend_only(fig: go.Figure, name: str, line: dict | None = None, marker: dict | None = None,
                 group: str | None = None) -> None:
    """A legend entry without data (it explains a line style, a reference line or a marker)."""
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines" if marker is None else "markers", name=name,
                             line=line, marker=marker, legendgroup=group or name, hoverinfo="skip"))


def label_entropy_bits(labels) -> float:
    """H(Y) in bits of the empirical label distribution (the most I(T;Y) can be)."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _bounds(fig: go.Figure, panels, ceiling: float | None, h_y: float | None,
            x_bound: bool = True, y_bound: bool = True) -> None:
    """Reference lines in each (row, col) panel: dotted at log2 N on x (the ceiling of I(X;T) on a
    probe set of N inputs), dash-dotted at H(Y) on y (the ceiling of I(T;Y)); one legend entry each.
    The axes reach the lines, so every panel shows how far its points are from the ceilings."""
    xline = dict(color=GREY, dash="dot", width=1.2)
    yline = dict(color=GREY, dash="dashdot", width=1.2)
    for r, c in panels:
        if x_bound and ceiling:
            fig.add_vline(x=ceiling, line=xline, row=r, col=c)
        if y_bound and h_y:
            fig.add_hline(y=h_y, line=yline, row=r, col=c)
    if x_bound and ceiling:
        _legend_only(fig, f"log2 N = {ceiling:.2f} bits (ceiling of I(X;T))", line=xline)
    if y_bound and h_y:
        _legend_only(fig, f"H(Y) = {h_y:.2f} bits (ceiling of I(T;Y))", line=yline)


def _epoch_bounds(fig: go.Figure, rows: int, ceiling: float | None, h_y: float | None) -> None:
    """The ceilings in a grid of I(X;T) (left) and I(T;Y) (right) against epoch: log2 N dotted
    across the left panels, H(Y) dash-dotted across the right ones."""
    xline, yline = dict(color=GREY, dash="dot", width=1.2), dict(color=GREY, dash="dashdot", width=1.2)
    for r in range(1, rows + 1):
        if ceiling:
            fig.add_hline(y=ceiling, line=xline, row=r, col=1)
        if h_y:
            fig.add_hline(y=h_y, line=yline, row=r, col=2)
    if ceiling:
        _legend_only(fig, f"log2 N = {ceiling:.2f} bits", line=xline)
    if h_y:
        _legend_only(fig, f"H(Y) = {h_y:.2f} bits", line=yline)


def _ceiling(mi: pd.DataFrame) -> float | None:
    if "ceiling_bits" not in mi.columns or not mi["ceiling_bits"].notna().any():
        return None
    return float(mi["ceiling_bits"].max())


# ---------------------------------------------------------------------------- one run
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


def _plane_traces(fig: go.Figure, g: pd.DataFrame, *, name: str, group: str, colour: str, where: str,
                  quantities: tuple[str, str], emax: float, row: int, col: int, legend: set,
                  width: float = 1.5, dash: str = "solid", symbol: str = "circle") -> None:
    """One trajectory in one panel: the unflagged points as a line with their uncertainty bars,
    the flagged ones apart as crosses in the method's colour; `legend` holds the groups already in the legend."""
    qx, qy = quantities
    bad = flagged(g)
    ok, off = g[~bad], g[bad]
    xp, xm, xwhat = error_bars(ok, "xt")
    yp, ym, ywhat = error_bars(ok, "ty")
    size = 5 + 7 * ok["epoch"].to_numpy(dtype=float) / emax
    fig.add_trace(go.Scatter(
        x=ok["i_xt_bits"], y=ok["i_ty_bits"], mode="lines+markers", name=name, legendgroup=group,
        showlegend=group not in legend and len(ok) > 0, line=dict(color=colour, width=width, dash=dash),
        marker=dict(color=colour, size=size, symbol=symbol),
        error_x=dict(type="data", symmetric=False, array=xp, arrayminus=xm, color=colour, thickness=1, width=0),
        error_y=dict(type="data", symmetric=False, array=yp, arrayminus=ym, color=colour, thickness=1, width=0),
        customdata=np.stack([ok["epoch"], ok["step"]], axis=1),
        hovertemplate=f"{where}, epoch %{{customdata[0]:.4g}} (step %{{customdata[1]}})<br>{qx} %{{x:.3f}} bits"
                      f"<br>{qy} %{{y:.3f}} bits" + (f"<br>bars: {xwhat}" if xwhat else "") + f"<extra>{name}</extra>",
    ), row=row, col=col)
    if len(ok):
        legend.add(group)
    if len(off):
        fig.add_trace(go.Scatter(
            x=off["i_xt_bits"], y=off["i_ty_bits"], mode="markers", name=f"{name}: flagged",
            legendgroup=f"{group} flagged", showlegend=f"{group} flagged" not in legend,
            marker=dict(symbol="x-thin-open", color=colour, size=9, opacity=0.7, line=dict(width=2, color=colour)),
            customdata=np.stack([off["epoch"], off["flag"].astype(str)], axis=1),
            hovertemplate=f"{where}, epoch %{{customdata[0]}}: FLAGGED %{{customdata[1]}}<br>{qx} %{{x:.3f}} bits"
                          f"<br>{qy} %{{y:.3f}} bits<extra>{name}</extra>",
        ), row=row, col=col)
        legend.add(f"{group} flagged")


def _plane_axes(fig: go.Figure, n: int, rows: int, cols: int, quantities: tuple[str, str] = ("I(X;T)", "I(T;Y)")) -> None:
    """Axis titles on every panel of a plane grid, both axes from zero."""
    for j in range(n):
        r, c = _panel(j, cols)
        fig.update_xaxes(title_text=f"{quantities[0]} [bits]", rangemode="tozero", showticklabels=True, row=r, col=c)
        fig.update_yaxes(title_text=f"{quantities[1]} [bits]", rangemode="tozero", showticklabels=True, row=r, col=c)
    _hide_empty(fig, n, rows, cols)


def information_plane(mi: pd.DataFrame, title: str = "Information plane", h_y_bits: float | None = None) -> go.Figure:
    """Every method of a run together: one panel per layer with shared axes, each method's
    trajectory in (I(X;T), I(T;Y)) bits over the epochs, with its uncertainty.

    sp (the Monte Carlo reference of the noisy plane) is drawn black and thick; kde as a bracket
    from its KL to its Bhattacharyya value; kraskov and mine with ±1 sd bars over their repeats;
    flagged points (`flag` column) as crosses in the method's colour outside the line, never as plain points.
    Marker size grows with the epoch; hover gives epoch, values and the flag. A Rényi method's
    values are I_α and say so in its legend entry. Reference lines at log2 N (`ceiling_bits`)
    and at `h_y_bits` = H(Y) of the probe labels, when given.

    mi: the mi tables of a run (columns epoch, step, layer, layer_index, method, i_xt_bits,
    i_ty_bits and whatever uncertainty columns the methods wrote).
    """
    mi = _with_labels(mi)
    layers = list(dict.fromkeys(mi.sort_values("layer_index")["layer"]))
    rows, cols = _grid(len(layers))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=layers, shared_xaxes="all", shared_yaxes="all",
                        horizontal_spacing=0.09, vertical_spacing=0.16 if rows > 1 else 0.1)
    emax = max(float(mi["epoch"].max()), 1e-9)
    estimators = list(dict.fromkeys(mi.sort_values(["method", "estimator"])["estimator"]))
    legend: set[str] = set()  # one legend entry per method (and one for its flagged points)
    settings: dict[str, int] = {}  # a method's settings (kde at two s2) differ in line style
    for i, est in enumerate(estimators):
        sub = mi[mi["estimator"] == est]
        method = sub["method"].iloc[0]
        k = settings[method] = settings.get(method, -1) + 1
        qx, qy = quantity(method)
        name = est if (qx, qy) == ("I(X;T)", "I(T;Y)") else f"{est}: {qx}, {qy}"
        for j, layer in enumerate(layers):
            g = sub[sub["layer"] == layer].sort_values("step")
            if len(g):
                r, c = _panel(j, cols)
                _plane_traces(fig, g, name=name, group=est, colour=_colour(method, i), where=layer, quantities=(qx, qy),
                              emax=emax, row=r, col=c, legend=legend, width=3 if method == "sp" else 1.5,
                              dash=DASHES[k % len(DASHES)], symbol=SYMBOLS[k % len(SYMBOLS)])
    _plane_axes(fig, len(layers), rows, cols)
    _bounds(fig, [_panel(j, cols) for j in range(len(layers))], _ceiling(mi), h_y_bits)
    return _finish(fig, title, 130 + 360 * rows, legend_title=PLANE_LEGEND % "method", export_width=_width(cols))


def information_plane_by_method(mi: pd.DataFrame, title: str = "Information plane by method",
                                h_y_bits: float | None = None) -> go.Figure:
    """One panel per method: each layer's trajectory in (I(X;T), I(T;Y)) bits, marker colour =
    epoch (one colour bar), reference lines at log2 N and H(Y) (`h_y_bits`, when given).

    mi: the mi table (columns epoch, step, layer, layer_index, method, noise_var, i_xt_bits, i_ty_bits).
    """
    mi = _with_labels(mi)
    estimators = list(dict.fromkeys(mi["estimator"]))
    names = _quantities(mi)
    rows, cols = _grid(len(estimators))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=estimators, horizontal_spacing=0.09,
                        vertical_spacing=0.16 if rows > 1 else 0.1)
    emax = max(float(mi["epoch"].max()), 1e-9)
    for k, est in enumerate(estimators):
        r, c = _panel(k, cols)
        sub = mi[mi["estimator"] == est]
        for i, (_, g) in enumerate(sub.groupby("layer_index", sort=True)):
            name = g["layer"].iloc[0]
            fig.add_trace(go.Scatter(
                x=g["i_xt_bits"], y=g["i_ty_bits"], mode="lines+markers", name=name, legendgroup=name,
                showlegend=k == 0,
                line=dict(color=LAYER_COLOURS[i % len(LAYER_COLOURS)], width=1),
                marker=dict(color=g["epoch"], colorscale="Viridis", cmin=0, cmax=emax, size=8,
                            showscale=k == 0 and i == 0, colorbar=COLORBAR),
                customdata=np.stack([g["epoch"], g["step"]], axis=1),
                hovertemplate=f"{name}<br>epoch %{{customdata[0]:.3g}} (step %{{customdata[1]}})"
                              f"<br>{names[est][0]} %{{x:.3f}} bits<br>{names[est][1]} %{{y:.3f}} bits<extra>" + est + "</extra>",
            ), row=r, col=c)
        fig.update_xaxes(title_text=f"{names[est][0]} [bits]", rangemode="tozero", row=r, col=c)
        fig.update_yaxes(title_text=f"{names[est][1]} [bits]", rangemode="tozero", row=r, col=c)
    _hide_empty(fig, len(estimators), rows, cols)
    _bounds(fig, [_panel(k, cols) for k in range(len(estimators))], _ceiling(mi), h_y_bits)
    return _finish(fig, title, 130 + 380 * rows, legend_title="layer (colour: epoch)", export_width=_width(cols))


def mi_per_epoch(mi: pd.DataFrame, title: str = "Mutual information per epoch", h_y_bits: float | None = None) -> go.Figure:
    """I(X;T) (left) and I(T;Y) (right) against epoch, one line per layer, one row per estimator;
    reference lines at log2 N (left) and H(Y) (`h_y_bits`, right)."""
    mi = _with_labels(mi)
    estimators = list(dict.fromkeys(mi["estimator"]))
    names = _quantities(mi)
    titles = [f"{e}: {q}" for e in estimators for q in names[e]]
    n = len(estimators)
    fig = make_subplots(rows=n, cols=2, subplot_titles=titles, horizontal_spacing=0.08,
                        vertical_spacing=min(0.12, 0.5 / n) if n > 1 else 0.1)
    for r, est in enumerate(estimators, start=1):
        sub = mi[mi["estimator"] == est]
        for i, (_, g) in enumerate(sub.groupby("layer_index", sort=True)):
            name = g["layer"].iloc[0]
            color = LAYER_COLOURS[i % len(LAYER_COLOURS)]
            for c, col in enumerate(("i_xt_bits", "i_ty_bits"), start=1):
                fig.add_trace(go.Scatter(x=g["epoch"], y=g[col], mode="lines+markers", name=name, legendgroup=name,
                                         showlegend=r == 1 and c == 1, line=dict(color=color), marker=dict(size=5),
                                         hovertemplate=f"{name}, epoch %{{x:.4g}}<br>%{{y:.3f}} bits<extra>{est}</extra>"),
                              row=r, col=c)
            for c, q in enumerate(names[est], start=1):
                fig.update_yaxes(title_text=f"{q} [bits]", rangemode="tozero", row=r, col=c)
    fig.update_xaxes(title_text="epoch")
    _epoch_bounds(fig, n, _ceiling(mi), h_y_bits)
    _finish(fig, title, 110 + 330 * n, legend_title="layer")
    _log_x_buttons(fig)
    return fig


def training_curves(metrics: pd.DataFrame, title: str = "Training") -> go.Figure:
    """Loss (left) and accuracy (right) against epoch; metrics: columns epoch, key, value
    (keys train_loss, test_loss, train_accuracy, test_accuracy)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"), horizontal_spacing=0.1)
    for j, (split, text) in enumerate((("train", "train (epoch mean)"), ("test", "test"))):
        for c, kind in enumerate(("loss", "accuracy"), start=1):
            g = metrics[metrics["key"] == f"{split}_{kind}"].sort_values("epoch")
            if len(g):
                fig.add_trace(go.Scatter(x=g["epoch"], y=g["value"], mode="lines+markers" if len(g) <= 60 else "lines",
                                         name=text, legendgroup=split,
                                         showlegend=c == 1 or not (metrics["key"] == f"{split}_loss").any(),
                                         line=dict(color=LAYER_COLOURS[j], dash="solid" if split == "train" else "dash"),
                                         marker=dict(size=4)), row=1, col=c)
    _training_axes(fig)
    _finish(fig, title, 460, legend_title="split")
    _log_x_buttons(fig)
    return fig


def _training_axes(fig: go.Figure, cols: int = 1, row: int = 1) -> None:
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="cross-entropy loss [nats]", row=row, col=1)
    fig.update_yaxes(title_text="accuracy", tickformat=".0%", hoverformat=".2%", row=row, col=2)


def _norm_axes(fig: go.Figure, grads: pd.DataFrame, epochs, snr_col: int = 2) -> None:
    """Log axes with full tick labels: epoch (x), gradient norms (left) and SNR (right)."""
    fig.update_xaxes(type="log", title_text="epoch", **_log_ticks(epochs))
    norms = pd.concat([grads["grad_mean_norm"], grads["grad_std_norm"]]) if len(grads) else []
    fig.update_yaxes(type="log", title_text="gradient norm", exponentformat="power", row=1, col=1, **_log_ticks(norms))
    fig.update_yaxes(type="log", title_text="SNR = |mean| / |std|", row=1, col=snr_col,
                     **_log_ticks(grads["snr"] if len(grads) else []))


GRAD_STYLES = (("grad_mean_norm", 1, "solid", "mean"), ("grad_std_norm", 1, "dot", "std"), ("snr", 2, "dash", "SNR"))


def gradient_snr(grads: pd.DataFrame, title: str = "Gradient signal-to-noise ratio per layer") -> go.Figure:
    """Shwartz-Ziv & Tishby (2017) Fig. 4: per layer, norm of the mean gradient (solid), norm of
    its std over an epoch's mini-batches (dotted), and their ratio SNR (dashed), log-log against
    epoch. Colour = layer; the legend names each layer once and each line style once.

    grads: gradient_stats.parquet (columns epoch, layer, grad_mean_norm, grad_std_norm, snr).
    """
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("mean (solid) and std (dotted) of the mini-batch gradients", "signal-to-noise ratio (dashed)"))
    grads = grads[grads["epoch"] > 0]
    for i, (layer, g) in enumerate(grads.groupby("layer", sort=False)):
        g = g.sort_values("epoch")
        color = LAYER_COLOURS[i % len(LAYER_COLOURS)]
        for k, (key, col, dash, what) in enumerate(GRAD_STYLES):
            fig.add_trace(go.Scatter(x=g["epoch"], y=g[key].where(g[key] > 0), mode="lines", name=layer, legendgroup=layer,
                                     showlegend=k == 0, line=dict(color=color, dash=dash),
                                     hovertemplate=f"{layer}, epoch %{{x:g}}<br>{what} %{{y:.3g}}<extra></extra>"), row=1, col=col)
    for _, _, dash, what in GRAD_STYLES:
        _legend_only(fig, what, line=dict(color=GREY, dash=dash), group=f"style {what}")
    _norm_axes(fig, grads, grads["epoch"])
    return _finish(fig, title, 480, legend_title="layer (colour), line")


# ---------------------------------------------------------------------------- activation histograms
def activation_histograms(hist: pd.DataFrame, title: str = "Activation distributions over training") -> go.Figure:
    """One panel per layer: the distribution of its activation values (every unit on the probe
    samples) at each recorded epoch, as a heat map (x = record, y = value, colour = log10 share
    of the values in the bin). Saturation shows as mass piling in the end bins, dead units as
    mass at zero; hover gives the share of dead units (constant on every probe sample).

    hist: `histograms.activation_histograms` output (columns layer, layer_index, epoch, step,
    bin_lo, bin_hi, count, n_values, dead_units).
    """
    layers = list(dict.fromkeys(hist.sort_values("layer_index")["layer"]))
    rows, cols = _grid(len(layers))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=layers, horizontal_spacing=0.09,
                        vertical_spacing=0.22 if rows > 1 else 0.1)
    for j, layer in enumerate(layers):
        r, c = _panel(j, cols)
        g = hist[hist["layer"] == layer]
        steps = sorted(g["step"].unique())
        epoch_of = g.groupby("step")["epoch"].first()
        dead = g.groupby("step")["dead_units"].first()
        bins = g.groupby("bin_lo")["bin_hi"].first().sort_index()
        share = g.pivot_table(index="bin_lo", columns="step", values="count", aggfunc="sum").reindex(index=bins.index, columns=steps)
        share = share / g.groupby("step")["n_values"].first().reindex(steps).to_numpy()
        z = np.log10(share.where(share > 0).to_numpy(dtype=float))
        centres = (bins.index.to_numpy() + bins.to_numpy()) / 2
        labels = [f"{epoch_of[s]:.3g}" for s in steps]
        fig.add_trace(go.Heatmap(
            x=labels, y=centres, z=z, coloraxis="coloraxis",
            customdata=np.broadcast_to(np.array([f"{dead[s]:.1%}" for s in steps]), z.shape),
            hovertemplate=f"{layer}, epoch %{{x}}<br>value %{{y:.3g}}<br>share 10^%{{z:.2f}}"
                          "<br>dead units %{customdata}<extra></extra>",
        ), row=r, col=c)
        fig.update_xaxes(title_text="epoch (recorded)", type="category", tickangle=-60, row=r, col=c)
        fig.update_yaxes(title_text="activation", row=r, col=c)
    _hide_empty(fig, len(layers), rows, cols)
    fig.update_layout(coloraxis=dict(colorscale="Viridis", colorbar=dict(title="log10 share", thickness=14)))
    return _finish(fig, title, 150 + 380 * rows, export_width=_width(cols))


# ---------------------------------------------------------------------------- several runs compared
def _run_styles(runs: list[str]) -> dict[str, str]:
    return {run: RUN_COLOURS[i % len(RUN_COLOURS)] for i, run in enumerate(runs)}


def _layers_in_order(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df.sort_values(["layer_index", "layer"])["layer"]))


def compare_information_plane(mi: pd.DataFrame, runs: list[str], title: str = "Information plane, runs compared",
                              h_y_bits: float | None = None) -> go.Figure:
    """Several runs' information planes overlaid: one panel per layer (shared axes), colour = run,
    line style and marker = method, uncertainty bars and flagged points as in `information_plane`;
    reference lines at log2 N and H(Y) (`h_y_bits`, the largest of the runs').

    mi: the runs' mi tables concatenated with a `run` column holding each run's label; runs:
    the labels in legend order.
    """
    mi = _with_labels(mi)
    layers = _layers_in_order(mi)
    rows, cols = _grid(len(layers))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=layers, shared_xaxes="all", shared_yaxes="all",
                        horizontal_spacing=0.09, vertical_spacing=0.16 if rows > 1 else 0.1)
    emax = max(float(mi["epoch"].max()), 1e-9)
    colours = _run_styles(runs)
    estimators = list(dict.fromkeys(mi.sort_values(["method", "estimator"])["estimator"]))
    legend: set[str] = set()
    for run in runs:
        for k, est in enumerate(estimators):
            sub = mi[(mi["run"] == run) & (mi["estimator"] == est)]
            if not len(sub):
                continue
            qx, qy = quantity(sub["method"].iloc[0])
            name = f"{run} · {est}" if (qx, qy) == ("I(X;T)", "I(T;Y)") else f"{run} · {est}: {qx}, {qy}"
            for j, layer in enumerate(layers):
                g = sub[sub["layer"] == layer].sort_values("step")
                if len(g):
                    r, c = _panel(j, cols)
                    _plane_traces(fig, g, name=name, group=name, colour=colours[run], where=f"{run}, {layer}",
                                  quantities=(qx, qy), emax=emax, row=r, col=c, legend=legend,
                                  dash=DASHES[k % len(DASHES)], symbol=SYMBOLS[k % len(SYMBOLS)])
    _plane_axes(fig, len(layers), rows, cols)
    _bounds(fig, [_panel(j, cols) for j in range(len(layers))], _ceiling(mi), h_y_bits)
    return _finish(fig, title, 130 + 360 * rows, legend_title=PLANE_LEGEND % "run · method", export_width=_width(cols))


def compare_mi_per_epoch(mi: pd.DataFrame, runs: list[str], title: str = "Mutual information per epoch, runs compared",
                         h_y_bits: float | None = None) -> go.Figure:
    """I(X;T) (left) and I(T;Y) (right) against epoch, one row per layer; colour = run, line style =
    method; reference lines at log2 N (left) and H(Y) (`h_y_bits`, right).

    mi: as `compare_information_plane`.
    """
    mi = _with_labels(mi)
    layers = _layers_in_order(mi)
    n = len(layers)
    titles = [f"{layer}: {q}" for layer in layers for q in ("I(X;T)", "I(T;Y)")]
    fig = make_subplots(rows=n, cols=2, subplot_titles=titles, horizontal_spacing=0.08,
                        vertical_spacing=min(0.12, 0.5 / n) if n > 1 else 0.1)
    colours = _run_styles(runs)
    estimators = list(dict.fromkeys(mi.sort_values(["method", "estimator"])["estimator"]))
    shown: set[str] = set()
    for run in runs:
        for k, est in enumerate(estimators):
            sub = mi[(mi["run"] == run) & (mi["estimator"] == est)]
            name = f"{run} · {est}"
            for r, layer in enumerate(layers, start=1):
                g = sub[sub["layer"] == layer].sort_values("step")
                for c, col in enumerate(("i_xt_bits", "i_ty_bits"), start=1):
                    if len(g):
                        fig.add_trace(go.Scatter(x=g["epoch"], y=g[col], mode="lines+markers", name=name, legendgroup=name,
                                                 showlegend=name not in shown, marker=dict(size=4, symbol=SYMBOLS[k % len(SYMBOLS)]),
                                                 line=dict(color=colours[run], dash=DASHES[k % len(DASHES)]),
                                                 hovertemplate=f"{layer}, epoch %{{x:.4g}}<br>%{{y:.3f}} bits<extra>{name}</extra>"),
                                      row=r, col=c)
                        shown.add(name)
    for r in range(1, n + 1):
        fig.update_yaxes(title_text="I(X;T) [bits]", rangemode="tozero", row=r, col=1)
        fig.update_yaxes(title_text="I(T;Y) [bits]", rangemode="tozero", row=r, col=2)
    fig.update_xaxes(title_text="epoch")
    _epoch_bounds(fig, n, _ceiling(mi), h_y_bits)
    _finish(fig, title, 110 + 300 * n, legend_title="run · method")
    _log_x_buttons(fig)
    return fig


def compare_training_curves(metrics: pd.DataFrame, runs: list[str], title: str = "Training, runs compared") -> go.Figure:
    """Loss (left) and accuracy (right) against epoch; colour = run, solid = train, dashed = test.

    metrics: `load_training_metrics` tables concatenated with a `run` column; runs: legend order.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"), horizontal_spacing=0.1)
    colours = _run_styles(runs)
    for run in runs:
        m = metrics[metrics["run"] == run]
        for split, dash in (("train", "solid"), ("test", "dash")):
            for c, kind in enumerate(("loss", "accuracy"), start=1):
                g = m[m["key"] == f"{split}_{kind}"].sort_values("epoch")
                if len(g):
                    fig.add_trace(go.Scatter(x=g["epoch"], y=g["value"], mode="lines", name=run, legendgroup=run,
                                             showlegend=split == "train" and c == 1, line=dict(color=colours[run], dash=dash),
                                             hovertemplate=f"{split} {kind}, epoch %{{x:g}}: %{{y:.4g}}<extra>{run}</extra>"),
                                  row=1, col=c)
    _legend_only(fig, "train (solid)", line=dict(color=GREY, dash="solid"), group="style train")
    _legend_only(fig, "test (dashed)", line=dict(color=GREY, dash="dash"), group="style test")
    _training_axes(fig)
    _finish(fig, title, 460, legend_title="run (colour), split")
    _log_x_buttons(fig)
    return fig


def compare_gradient_snr(grads: pd.DataFrame, runs: list[str], title: str = "Gradient SNR per layer, runs compared") -> go.Figure:
    """One panel per layer: the gradient SNR against epoch (log-log), colour = run.

    grads: gradient_stats.parquet tables concatenated with a `run` column; runs: legend order.
    """
    grads = grads[grads["epoch"] > 0]
    layers = list(dict.fromkeys(grads["layer"]))
    rows, cols = _grid(len(layers))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=layers, horizontal_spacing=0.09,
                        vertical_spacing=0.16 if rows > 1 else 0.1)
    colours = _run_styles(runs)
    for run in runs:
        for j, layer in enumerate(layers):
            g = grads[(grads["run"] == run) & (grads["layer"] == layer)].sort_values("epoch")
            if len(g):
                r, c = _panel(j, cols)
                fig.add_trace(go.Scatter(x=g["epoch"], y=g["snr"].where(g["snr"] > 0), mode="lines", name=run, legendgroup=run,
                                         showlegend=j == 0, line=dict(color=colours[run]),
                                         hovertemplate=f"{layer}, epoch %{{x:g}}<br>SNR %{{y:.3g}}<extra>{run}</extra>"),
                              row=r, col=c)
    fig.update_xaxes(type="log", title_text="epoch", **_log_ticks(grads["epoch"]))
    fig.update_yaxes(type="log", title_text="SNR = |mean| / |std|", **_log_ticks(grads["snr"]))
    _hide_empty(fig, len(layers), rows, cols)
    return _finish(fig, title, 130 + 340 * rows, legend_title="run", export_width=_width(cols))


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
    margin = fig.layout.margin
    plot_height = (fig.layout.height or 500) - (margin.t or 90) - (margin.b or 60)
    fig.update_layout(updatemenus=[dict(  # in the top margin, above the subplot titles, whatever the height
        type="buttons", direction="left", x=1.0, xanchor="right", y=1 + 28 / plot_height, yanchor="bottom", showactive=True,
        font=dict(size=11), pad=dict(t=0, b=0),
        buttons=[dict(label=label, method="relayout", args=[{f"{a}.type": kind for a in axes}])
                 for label, kind in (("linear epochs", "linear"), ("log epochs", "log"))],
    )])


def _plane_mean_traces(fig, g: pd.DataFrame, i: int, est: str, emax: float, row: int, col: int,
                       showlegend: bool, showscale: bool) -> None:
    """One layer's mean trajectory with band error bars in both directions, into one panel."""
    name = g["layer"].iloc[0]
    color = LAYER_COLOURS[i % len(LAYER_COLOURS)]
    x, y = g["i_xt_bits_mean"], g["i_ty_bits_mean"]
    fig.add_trace(go.Scatter(
        x=x, y=y, mode="lines+markers", name=name, legendgroup=name, showlegend=showlegend,
        line=dict(color=color, width=1.5),
        error_x=dict(type="data", symmetric=False, array=(g["i_xt_bits_hi"] - x).fillna(0),
                     arrayminus=(x - g["i_xt_bits_lo"]).fillna(0), color=_rgba(color, 0.35), thickness=1, width=0),
        error_y=dict(type="data", symmetric=False, array=(g["i_ty_bits_hi"] - y).fillna(0),
                     arrayminus=(y - g["i_ty_bits_lo"]).fillna(0), color=_rgba(color, 0.35), thickness=1, width=0),
        marker=dict(color=g["epoch"], colorscale="Viridis", cmin=0, cmax=emax, size=7,
                    line=dict(color=color, width=1), showscale=showscale, colorbar=COLORBAR),
        customdata=np.stack([g["epoch"], g["n_seeds"], g["i_xt_bits_lo"], g["i_xt_bits_hi"],
                             g["i_ty_bits_lo"], g["i_ty_bits_hi"]], axis=1),
        hovertemplate=f"{name}<br>epoch %{{customdata[0]:.4g}}, %{{customdata[1]}} seeds"
                      "<br>I(X;T) %{x:.3f} [%{customdata[2]:.3f}, %{customdata[3]:.3f}] bits"
                      "<br>I(T;Y) %{y:.3f} [%{customdata[4]:.3f}, %{customdata[5]:.3f}] bits"
                      "<extra>" + est + "</extra>",
    ), row=row, col=col)


def information_plane_mean(agg: pd.DataFrame, title: str = "Information plane, mean over seeds",
                           h_y_bits: float | None = None) -> go.Figure:
    """One panel per estimator: each layer's mean trajectory in (I(X;T), I(T;Y)), bits,
    with error bars from the band (columns *_lo, *_hi) in both directions.

    agg: `sweep.average_mi` / `aggregate.aggregate_over_seeds` output (columns method,
    [noise_var], layer, layer_index, epoch, step, n_seeds, i_xt_bits_{mean,sd,lo,hi},
    i_ty_bits_{mean,sd,lo,hi}). Marker colour is the epoch; hover shows n_seeds and the band;
    reference lines at log2 N (`ceiling_bits`) and H(Y) (`h_y_bits`, when given).
    """
    return information_plane_mean_grid({"": agg}, title, h_y_bits)


def information_plane_mean_grid(aggs: dict, title: str = "Information plane, mean over seeds",
                                h_y_bits: float | None = None) -> go.Figure:
    """Averaged information planes in a grid: one row per entry of `aggs` ({row label:
    averaged table}, e.g. tanh and relu), one column per estimator (as in
    `information_plane_mean`); axes of a column are shared so rows compare directly."""
    tables = {label: _agg_with_labels(agg) for label, agg in aggs.items()}
    estimators = list(dict.fromkeys(e for t in tables.values() for e in t["estimator"]))
    labels = list(tables)
    titles = [f"{label}: {est}" if label else est for label in labels for est in estimators]
    fig = make_subplots(rows=len(labels), cols=len(estimators), subplot_titles=titles, horizontal_spacing=0.09,
                        vertical_spacing=0.16 if len(labels) > 1 else 0.1, shared_xaxes="columns")
    emax = max(max(float(t["epoch"].max()) for t in tables.values()), 1e-9)
    for r, label in enumerate(labels, start=1):
        agg = tables[label]
        for col, est in enumerate(estimators, start=1):
            sub = agg[agg["estimator"] == est]
            for i, (_, g) in enumerate(sub.groupby("layer_index", sort=True)):
                _plane_mean_traces(fig, g, i, f"{label} {est}".strip(), emax, r, col,
                                   showlegend=r == 1 and col == 1, showscale=r == 1 and col == len(estimators))
            qx, qy = quantity(sub["method"].iloc[0]) if len(sub) else ("I(X;T)", "I(T;Y)")
            fig.update_xaxes(title_text=f"{qx} [bits]", rangemode="tozero", showticklabels=True, row=r, col=col)
            fig.update_yaxes(title_text=f"{qy} [bits]", rangemode="tozero", row=r, col=col)
    ceiling = max((c for c in (_ceiling(t) for t in tables.values()) if c), default=None)
    panels = [(r, c) for r in range(1, len(labels) + 1) for c in range(1, len(estimators) + 1)]
    _bounds(fig, panels, ceiling, h_y_bits)
    return _finish(fig, title, 130 + 400 * len(labels), legend_title="layer (colour: epoch)")


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
    filled band (*_lo to *_hi), one row per estimator; a button switches the epoch axis to log;
    a dotted line at log2 N in the I(X;T) panels."""
    agg = _agg_with_labels(agg)
    estimators = list(dict.fromkeys(agg["estimator"]))
    names = _quantities(agg)
    titles = [f"{e}: {q}" for e in estimators for q in names[e]]
    n = len(estimators)
    fig = make_subplots(rows=n, cols=2, subplot_titles=titles, horizontal_spacing=0.08,
                        vertical_spacing=min(0.12, 0.5 / n) if n > 1 else 0.1)
    ceiling = _ceiling(agg)
    line = dict(color=GREY, dash="dot", width=1.2)
    for r, est in enumerate(estimators, start=1):
        sub = agg[agg["estimator"] == est]
        if ceiling:
            fig.add_hline(y=ceiling, line=line, row=r, col=1)
        for i, (_, g) in enumerate(sub.groupby("layer_index", sort=True)):
            name = g["layer"].iloc[0]
            color = LAYER_COLOURS[i % len(LAYER_COLOURS)]
            for c, v in enumerate(("i_xt_bits", "i_ty_bits"), start=1):
                _band_traces(fig, g["epoch"], g[f"{v}_mean"], g[f"{v}_lo"], g[f"{v}_hi"], color, name, r, c,
                             showlegend=r == 1 and c == 1,
                             hover=f"{name}<br>epoch %{{x:.4g}}<br>%{{y:.3f}} bits (mean)<extra>{est}</extra>")
        for c, q in enumerate(names[est], start=1):
            fig.update_yaxes(title_text=f"{q} [bits]", rangemode="tozero", row=r, col=c)
    fig.update_xaxes(title_text="epoch")
    if ceiling:
        _legend_only(fig, f"log2 N = {ceiling:.2f} bits", line=line)
    _finish(fig, title, 110 + 330 * n, legend_title="layer (band: over seeds)")
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
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"), horizontal_spacing=0.1)
    keep = _thin_epochs(metrics["epoch"].to_numpy()) if len(metrics) else np.array([])
    m = metrics[metrics["epoch"].isin(keep)]
    for c, kind in enumerate(("loss", "accuracy"), start=1):
        for j, split in enumerate(("train", "test")):
            g = m[m["key"] == f"{split}_{kind}"]
            if not len(g):
                continue
            s = g.groupby("epoch")["value"].agg(["mean", "std"]).reset_index()
            _band_traces(fig, s["epoch"], s["mean"], s["mean"] - s["std"], s["mean"] + s["std"],
                         LAYER_COLOURS[j], split, 1, c, c == 1)
    _training_axes(fig)
    _finish(fig, title, 460, legend_title="split (band: ± sd over seeds)")
    _log_x_buttons(fig)
    return fig


def gradient_snr_mean(grads: pd.DataFrame, title: str = "Gradient signal-to-noise ratio, mean over seeds") -> go.Figure:
    """Shwartz-Ziv & Tishby (2017) Fig. 4 averaged over seeds: per layer the norms of the mean
    and std of the mini-batch gradients (left) and the SNR (right), log-log against epoch.

    The mean over seeds is geometric (of log10), the band is ± one sd of log10 (a factor).
    grads: concatenated gradient_stats.parquet tables with a seed column (columns epoch,
    layer, grad_mean_norm, grad_std_norm, snr, seed). Epochs are thinned log-spaced to ~400.
    """
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("mean (solid) and std (dotted) of the mini-batch gradients", "signal-to-noise ratio (dashed)"))
    keep = _thin_epochs(grads["epoch"].to_numpy())
    g_all = grads[grads["epoch"].isin(keep) & (grads["epoch"] > 0)].copy()
    for i, (layer, g) in enumerate(g_all.groupby("layer", sort=False)):
        color = LAYER_COLOURS[i % len(LAYER_COLOURS)]
        for k, (key, col, dash, label) in enumerate(GRAD_STYLES):
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
            fig.add_trace(go.Scatter(x=s["epoch"], y=10 ** s["mean"], mode="lines", name=layer, showlegend=k == 0,
                                     legendgroup=layer, line=dict(color=color, dash=dash),
                                     hovertemplate=f"{layer}, epoch %{{x:g}}<br>{label} %{{y:.3g}} (geometric mean)<extra></extra>"),
                          row=1, col=col)
    for _, _, dash, what in GRAD_STYLES:
        _legend_only(fig, what, line=dict(color=GREY, dash=dash), group=f"style {what}")
    _norm_axes(fig, g_all, g_all["epoch"])
    return _finish(fig, title, 480, legend_title="layer (colour), line; band ± sd")
