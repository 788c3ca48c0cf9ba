"""The combined information plane: every method of a run in one panel per layer, with its uncertainty."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ibcli import plots
from ibcli.mi_table import typed_table


def _rows(method, layer, epochs, xt, ty, **extra):
    index = {"layer1": 1, "layer2": 2}[layer]
    rows = []
    for i, (e, a, b) in enumerate(zip(epochs, xt, ty)):
        row = {"epoch": float(e), "step": int(e) * 10, "layer": layer, "layer_index": index, "method": method,
               "i_xt_bits": a, "i_ty_bits": b, "ceiling_bits": 10.0, "n_probe": 1024, "width": 4, "seed": 0,
               "seconds": 0.1}
        row.update({k: v[i] if isinstance(v, list) else v for k, v in extra.items()})
        rows.append(row)
    return rows


@pytest.fixture
def table():
    rows = []
    for layer in ("layer1", "layer2"):
        rows += _rows("sp", layer, [0, 1, 2], [1.0, 2.0, 3.0], [0.1, 0.5, 0.9], noise_var=0.1,
                      i_xt_se_bits=[0.01, 0.02, 0.03], i_ty_se_bits=0.005)
        rows += _rows("kde", layer, [0, 1, 2], [1.2, 2.3, 3.4], [0.2, 0.6, 1.0], noise_var=0.1,
                      i_xt_lower_bits=[0.9, 1.8, 2.9], i_ty_bd_bits=[0.15, 0.65, 0.9])
        rows += _rows("kraskov", layer, [0, 1, 2], [1.1, 2.1, 3.3], [0.1, 0.4, 0.8], noise_var=0.1,
                      i_xt_sd_bits=0.2, i_ty_sd_bits=0.1, flag=[None, None, "too wide"])
    return typed_table(rows)


def _traces(fig, name):
    return [t for t in fig.data if t.name == name]


def test_every_method_in_each_layer_panel_with_its_uncertainty(table):
    fig = plots.information_plane(table)
    assert [a.text for a in fig.layout.annotations] == ["layer1", "layer2"]  # one panel per layer
    sp, kde, ksg = (_traces(fig, f"{m} (s2=0.1)") for m in ("sp", "kde", "kraskov"))
    assert len(sp) == len(kde) == len(ksg) == 2  # every method in both panels
    # sp: 95 % interval, +-1.96 se
    np.testing.assert_allclose(sp[0].error_x.array, 1.96 * np.array([0.01, 0.02, 0.03]))
    np.testing.assert_allclose(sp[0].error_y.arrayminus, [1.96 * 0.005] * 3)
    assert sp[0].line.width > kde[0].line.width  # the reference stands out
    # kde: the bracket from the KL value down to the Bhattacharyya bound, nothing above it
    np.testing.assert_allclose(kde[0].error_x.arrayminus, [0.3, 0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(kde[0].error_x.array, [0, 0, 0])
    np.testing.assert_allclose(kde[0].error_y.array, [0.0, 0.05, 0.0], atol=1e-12)  # BD above KL at epoch 1
    np.testing.assert_allclose(kde[0].error_y.arrayminus, [0.05, 0.0, 0.1], atol=1e-12)
    # kraskov: +-1 sd, and the flagged epoch is not on the line but drawn apart, once in the legend
    np.testing.assert_allclose(ksg[0].error_x.array, [0.2, 0.2])
    assert list(ksg[0].x) == [1.1, 2.1]
    flagged = _traces(fig, "kraskov (s2=0.1): flagged")
    assert len(flagged) == 2 and list(flagged[0].x) == [3.3] and "x" in flagged[0].marker.symbol
    assert [t.showlegend for t in flagged] == [True, False]
    assert "too wide" in str(flagged[0].customdata[0][1])


def test_panels_share_axes_and_label_renyi_as_renyi(table):
    rows = _rows("renyi", "layer1", [0, 1], [4.0, 5.0], [1.0, 1.5], alpha=2.0)
    fig = plots.information_plane(pd.concat([table, typed_table(rows)], ignore_index=True))
    assert fig.layout.xaxis2.matches == "x" and fig.layout.yaxis2.matches == "y"
    (renyi,) = [t for t in fig.data if t.name.startswith("renyi")]
    assert "I_α(X;T)" in renyi.name and "I_α(X;T)" in renyi.hovertemplate


def test_error_bars_are_zero_without_uncertainty_columns():
    g = typed_table(_rows("binning", "layer1", [0, 1], [3.0, 4.0], [0.5, 0.7], bins=30))
    plus, minus, what = plots.error_bars(g, "xt")
    assert (plus == 0).all() and (minus == 0).all() and what == ""
    assert not plots.flagged(g).any()
