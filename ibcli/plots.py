"""Plotly figures: the information plane, MI per epoch, training curves, gradient SNR.

Pure functions from tables to figures; `plot_stage` reads the tables and writes HTML.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots


def estimator_label(row) -> str:
    """"kde (s2=0.1)" for methods with added noise, else the method name."""
    nv = row["noise_var"] if "noise_var" in row else None
    return row["method"] if nv is None or pd.isna(nv) else f"{row['method']} (s2={nv:g})"


def _with_labels(mi: pd.DataFrame) -> pd.DataFrame:
    mi = mi.copy()
    mi["estimator"] = mi.apply(estimator_label, axis=1)
    return mi.sort_values(["estimator", "layer_index", "step"])


def information_plane(mi: pd.DataFrame, title: str = "Information plane") -> go.Figure:
    """One panel per estimator: each layer's trajectory in (I(X;T), I(T;Y)), bits.

    Marker colour is the epoch (shared colour bar); hover shows layer, epoch, step and both values.
    mi: the mi table (columns epoch, step, layer, layer_index, method, noise_var, i_xt_bits, i_ty_bits).
    """
    mi = _with_labels(mi)
    estimators = list(dict.fromkeys(mi["estimator"]))
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
                              "<br>I(X;T) %{x:.3f} bits<br>I(T;Y) %{y:.3f} bits<extra>" + est + "</extra>",
            ), row=1, col=col)
        fig.update_xaxes(title_text="I(X;T) [bits]", row=1, col=col)
        fig.update_yaxes(title_text="I(T;Y) [bits]" if col == 1 else None, row=1, col=col)
    fig.update_layout(title=title, height=520, width=max(560, 480 * len(estimators)))
    return fig


def mi_per_epoch(mi: pd.DataFrame, title: str = "Mutual information per epoch") -> go.Figure:
    """I(X;T) (left) and I(T;Y) (right) against epoch, one line per layer, one row per estimator."""
    mi = _with_labels(mi)
    estimators = list(dict.fromkeys(mi["estimator"]))
    titles = [f"{e}: {q}" for e in estimators for q in ("I(X;T)", "I(T;Y)")]
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
