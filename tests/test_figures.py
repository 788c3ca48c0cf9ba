"""Figures ready for a paper: reference lines, legends and axis titles on every panel, no fixed
width, full log-axis labels, runs compared, activation histograms; and the files they go to."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ibcli import plots
from ibcli.errors import UserError
from ibcli.mi_table import typed_table

LAYERS = {"layer1": 1, "layer2": 2, "layer3": 3, "layer4": 4}


def _mi(method="binning", layers=("layer1", "layer2", "layer3", "layer4"), epochs=(0, 1, 2, 5), shift=0.0, **extra):
    rows = []
    for layer in layers:
        for i, e in enumerate(epochs):
            rows.append({"epoch": float(e), "step": e * 10, "layer": layer, "layer_index": LAYERS[layer], "method": method,
                         "i_xt_bits": 1.0 + i + shift, "i_ty_bits": 0.2 * i, "ceiling_bits": math.log2(1000),
                         "n_probe": 1000, "width": 4, "seed": 0, "seconds": 0.1, **extra})
    return typed_table(rows)


def _axes(fig, kind):
    """The figure's x or y axes in panel order (xaxis, xaxis2, ...; the layout's own order varies)."""
    names = [k for k in fig.layout if k.startswith(kind + "axis")]
    return [fig.layout[k] for k in sorted(names, key=lambda k: int(k[5:] or 1))]


def _shapes(fig, kind):
    """x positions of vertical lines ("x") or y positions of horizontal ones ("y")."""
    if kind == "x":
        return {round(s.x0, 6) for s in fig.layout.shapes if s.x0 == s.x1 and s.yref.endswith("domain")}
    return {round(s.y0, 6) for s in fig.layout.shapes if s.y0 == s.y1 and s.xref.endswith("domain")}


def test_label_entropy_is_the_shannon_entropy_in_bits():
    assert plots.label_entropy_bits(np.arange(10).repeat(3)) == pytest.approx(math.log2(10), abs=1e-12)
    assert plots.label_entropy_bits([0, 0, 1, 1]) == pytest.approx(1.0, abs=1e-12)
    assert plots.label_entropy_bits([0, 0, 0, 1]) == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))


def test_information_plane_has_reference_lines_axis_titles_and_no_fixed_width():
    mi = pd.concat([_mi("binning"), _mi("kde", noise_var=0.1), _mi("kde", noise_var=0.01)], ignore_index=True)
    fig = plots.information_plane(mi, h_y_bits=math.log2(10))
    # log2 N and H(Y) in each of the four layer panels, one legend entry each
    assert _shapes(fig, "x") == {round(math.log2(1000), 6)} and _shapes(fig, "y") == {round(math.log2(10), 6)}
    assert sum(s.x0 == s.x1 for s in fig.layout.shapes) == 4
    names = [t.name for t in fig.data if t.showlegend is not False]
    assert "log2 N = 9.97 bits (ceiling of I(X;T))" in names and "H(Y) = 3.32 bits (ceiling of I(T;Y))" in names
    # an axis title on every panel, both axes from zero
    xs, ys = _axes(fig, "x"), _axes(fig, "y")
    assert len(xs) == len(ys) == 4  # four layers: two rows of two panels
    assert all(a.title.text == "I(X;T) [bits]" and a.rangemode == "tozero" for a in xs)
    assert all(a.title.text == "I(T;Y) [bits]" for a in ys)
    # the window sets the width; a static export has its own size
    assert fig.layout.width is None and fig.layout.height == 130 + 360 * 2
    assert plots.export_size(fig) == (plots.EXPORT_WIDTH, 850)
    six = plots.information_plane(pd.concat([_mi(), _mi(layers=("layer1", "layer2")).assign(
        layer=lambda d: d["layer"].map({"layer1": "layer5", "layer2": "output"}), layer_index=lambda d: d["layer_index"] + 4)]))
    assert len(_axes(six, "x")) == 6 and plots.export_size(six)[0] == 420 * 3 + 340  # three columns, wider
    # kde's two noise levels differ in line style, not only in name
    kde = {t.name: t.line.dash for t in fig.data if t.name and t.name.startswith("kde") and t.showlegend}
    assert set(kde) == {"kde (s2=0.01)", "kde (s2=0.1)"} and len(set(kde.values())) == 2


def test_by_method_keeps_legend_and_colour_bar_apart():
    fig = plots.information_plane_by_method(pd.concat([_mi("binning"), _mi("kde", noise_var=0.1)], ignore_index=True))
    bars = [t.marker.colorbar for t in fig.data if getattr(t.marker, "showscale", False)]
    assert len(bars) == 1
    # the legend hangs from the top of the right margin, the colour bar stands at its bottom, under half its height
    assert fig.layout.legend.y == 1 and fig.layout.legend.yanchor == "top"
    assert bars[0].y == 0 and bars[0].yanchor == "bottom" and bars[0].len <= 0.5


def test_log_ticks_label_every_tick_in_full():
    ticks = plots._log_ticks([1, 3, 20, 150])
    assert ticks["ticktext"] == [f"{v:g}" for v in ticks["tickvals"]]
    assert {"1", "2", "5", "10", "20", "50", "100", "200"} <= set(ticks["ticktext"])
    assert plots._log_ticks([0, -1, np.nan]) == {}
    wide = plots._log_ticks([1e-6, 1e2])  # beyond three decades: decades only
    assert wide["tickvals"] == [10.0 ** e for e in range(-6, 3)]


def _grads(layers=("layer1", "layer2", "layer3", "layer4", "layer5", "output"), epochs=range(1, 31)):
    return pd.DataFrame([{"epoch": e, "step": 10 * e, "layer": layer, "grad_mean_norm": 1.0 / e, "grad_std_norm": 0.5,
                          "snr": 2.0 / e, "weight_norm": 1.0} for layer in layers for e in epochs])


def test_gradient_snr_legend_names_layers_and_line_styles_once():
    fig = plots.gradient_snr(_grads())
    legend = [t.name for t in fig.data if t.showlegend is not False]
    assert legend == ["layer1", "layer2", "layer3", "layer4", "layer5", "output", "mean", "std", "SNR"]
    styles = {t.name: t.line.dash for t in fig.data if t.name in ("mean", "std", "SNR")}
    assert len(set(styles.values())) == 3  # mean, std and SNR never share a line style
    ys = _axes(fig, "y")
    assert [a.title.text for a in ys] == ["gradient norm", "SNR = |mean| / |std|"]
    x = _axes(fig, "x")[0]
    assert x.type == "log" and "20" in x.ticktext and "2" in x.ticktext  # 20 reads 20


def test_training_curves_have_y_titles_and_mean_over_seeds_too():
    metrics = pd.DataFrame([{"epoch": e, "key": k, "value": v} for e in range(5)
                            for k, v in (("train_loss", 1 / (e + 1)), ("test_loss", 1.1 / (e + 1)),
                                         ("train_accuracy", 0.5 + e / 10), ("test_accuracy", 0.5 + e / 11))])
    for fig in (plots.training_curves(metrics), plots.training_curves_mean(metrics.assign(seed=0))):
        assert [a.title.text for a in _axes(fig, "y")] == ["cross-entropy loss [nats]", "accuracy"]
        assert all(a.title.text == "epoch" for a in _axes(fig, "x"))
        assert fig.layout.width is None


def test_compared_runs_are_coloured_by_run_and_styled_by_method():
    a = pd.concat([_mi("binning"), _mi("kde", noise_var=0.1)], ignore_index=True).assign(run="tanh")
    b = pd.concat([_mi("binning", shift=0.5), _mi("kde", noise_var=0.1, shift=0.5)], ignore_index=True).assign(run="relu")
    fig = plots.compare_information_plane(pd.concat([a, b], ignore_index=True), ["tanh", "relu"], h_y_bits=1.0)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert len(lines) == 2 * 2 * 4  # runs x methods x layer panels
    by_name = {}
    for t in lines:
        by_name.setdefault(t.name, set()).add((t.line.color, t.line.dash))
    assert set(by_name) == {"tanh · binning", "tanh · kde (s2=0.1)", "relu · binning", "relu · kde (s2=0.1)"}
    assert all(len(v) == 1 for v in by_name.values())  # one style per (run, method) in every panel
    colour = {name: next(iter(v))[0] for name, v in by_name.items()}
    dash = {name: next(iter(v))[1] for name, v in by_name.items()}
    assert colour["tanh · binning"] == colour["tanh · kde (s2=0.1)"] != colour["relu · binning"]
    assert dash["tanh · binning"] == dash["relu · binning"] != dash["tanh · kde (s2=0.1)"]
    np.testing.assert_allclose(next(t for t in lines if t.name == "relu · binning").x, [1.5, 2.5, 3.5, 4.5])
    per_epoch = plots.compare_mi_per_epoch(pd.concat([a, b], ignore_index=True), ["tanh", "relu"])
    assert len(_axes(per_epoch, "y")) == 2 * 4 and len([t for t in per_epoch.data if t.showlegend]) == 4


def test_activation_histogram_figure_shares_and_epochs():
    rows = []
    for step, epoch in ((0, 0.0), (5, 0.5), (10, 1.0)):
        counts = [6, 2, 0, 2] if step else [0, 5, 5, 0]
        for k, c in enumerate(counts):
            rows.append({"layer": "layer1", "layer_index": 1, "epoch": epoch, "step": step, "bin_lo": -1 + 0.5 * k,
                         "bin_hi": -0.5 + 0.5 * k, "count": c, "n_values": 10, "dead_units": 0.25 if step else 0.0})
    fig = plots.activation_histograms(pd.DataFrame(rows))
    (heat,) = fig.data
    assert list(heat.x) == ["0", "0.5", "1"]
    np.testing.assert_allclose(heat.y, [-0.75, -0.25, 0.25, 0.75])
    z = np.asarray(heat.z, dtype=float)
    np.testing.assert_allclose(z[:, 0], np.log10([np.nan, 0.5, 0.5, np.nan]))  # empty bins stay blank
    np.testing.assert_allclose(z[:, 2], np.log10([0.6, 0.2, np.nan, 0.2]))
    assert heat.customdata[0][2] == "25.0%"


# ---------------------------------------------------------------------------- files
def test_parse_formats():
    from ibcli.figure_files import parse_formats

    assert parse_formats("html, PNG,.svg,png") == ("html", "png", "svg")
    for bad in ("", "html,jpg", ","):
        with pytest.raises(UserError, match="--format takes"):
            parse_formats(bad)


def test_plotly_js_once_per_folder_and_a_self_contained_report(tmp_path):
    from ibcli.figure_files import PLOTLY_JS, write_html, write_report

    figs = {"a": plots.information_plane(_mi()), "b": plots.gradient_snr(_grads())}
    paths = write_html(figs, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.html", PLOTLY_JS]
    assert (tmp_path / PLOTLY_JS).stat().st_size > 3_000_000
    for name in ("a", "b"):
        html = (tmp_path / f"{name}.html").read_text()
        assert f'src="{PLOTLY_JS}"' in html and len(html) < 200_000
        assert "max(100%, " in html  # the window's width, down to the figure's minimum
    assert write_html(figs, tmp_path) == paths  # a second write keeps one copy
    inline = write_report(figs, tmp_path / "report.html", "t", inline=True).read_text()
    assert len(inline) > 3_000_000 and f'src="{PLOTLY_JS}"' not in inline and inline.count("Plotly.newPlot") == 2
    linked = write_report(figs, tmp_path / "linked.html", "t", inline=False).read_text()
    assert f'src="{PLOTLY_JS}"' in linked and len(linked) < 300_000


def test_static_formats_without_a_browser_end_in_one_line(monkeypatch):
    from ibcli import figure_files

    figure_files.check_static_export(("html",))  # HTML needs nothing
    monkeypatch.setattr(figure_files, "find_browser", lambda: None)
    with pytest.raises(UserError) as info:
        figure_files.check_static_export(("html", "png", "pdf"))
    message = str(info.value)
    assert message.startswith("--format png,pdf needs a Chromium-family browser") and "chromium" in message
    assert "\n" not in message


@pytest.mark.skipif(__import__("ibcli.figure_files", fromlist=["x"]).find_browser() is None,
                    reason="no Chromium-family browser for plotly's static export")
def test_static_export_writes_png_svg_pdf_at_the_export_size(tmp_path):
    from PIL import Image

    from ibcli.figure_files import PNG_SCALE, write_static

    fig = plots.training_curves(pd.DataFrame({"epoch": [0, 1, 2], "key": "train_loss", "value": [2.0, 1.0, 0.5]}))
    paths = write_static({"curves": fig}, tmp_path, ("html", "png", "svg", "pdf"))
    assert [p.name for p in paths] == ["curves.png", "curves.svg", "curves.pdf"]
    width, height = plots.export_size(fig)
    assert Image.open(paths[0]).size == (width * PNG_SCALE, height * PNG_SCALE)
    assert paths[1].read_text().lstrip().startswith("<svg") and paths[2].read_bytes()[:5] == b"%PDF-"
