"""Writing figures to files: HTML with plotly.js once per folder, one report page, PNG/SVG/PDF.

HTML never needs a browser. Static export (PNG, SVG, PDF) is plotly's own: kaleido, which drives
a Chromium-family browser (Debian's `chromium`, Google Chrome; `BROWSER_PATH` names another).
MLflow's artifact viewer shows an HTML file inside a sandboxed blob: frame, where a relative
<script src="plotly.min.js"> cannot load, so the copy a plot run keeps is a self-contained
report (plotly.js inline once, every figure below it).
"""

from __future__ import annotations

import html
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from ibcli.errors import UserError
from ibcli.plots import export_size, min_width

FORMATS = ("html", "png", "svg", "pdf")
PLOTLY_JS = "plotly.min.js"
REPORT = "report.html"
# Figures follow the window's width; the camera button saves an SVG at the size on screen.
HTML_CONFIG = {"responsive": True, "displaylogo": False, "toImageButtonOptions": {"format": "svg"}}
PNG_SCALE = 2  # PNG pixels per layout pixel: 2400 px wide, sharp in print


def parse_formats(text: str) -> tuple[str, ...]:
    """`--format` "html,png" -> ("html", "png"), in the order given, without repeats.

    Raises:
        UserError: an empty list or a format other than html, png, svg, pdf.
    """
    formats = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in str(text).split(",") if f.strip()))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UserError(f"--format takes a comma-separated list of {', '.join(FORMATS)}; got {text!r}")
    return formats


def find_browser() -> str | None:
    """The Chromium-family browser kaleido would drive (None when there is none)."""
    try:
        from choreographer.browsers.chromium import Chromium
    except ImportError:
        return None
    try:
        return Chromium.find_browser(skip_local=False)
    except Exception:  # a broken install reads as no browser
        return None


def check_static_export(formats) -> None:
    """Make sure PNG/SVG/PDF can be written before anything is (HTML needs nothing).

    Raises:
        UserError: kaleido is not installed, or no Chromium-family browser is found.
    """
    static = [f for f in formats if f != "html"]
    if not static:
        return
    wanted = f"--format {','.join(static)}"
    try:
        import kaleido  # noqa: F401
    except ImportError:
        raise UserError(f"{wanted} needs plotly's static export: `pip install kaleido` (HTML needs nothing)") from None
    if find_browser() is None:
        raise UserError(f"{wanted} needs a Chromium-family browser for plotly's static export (kaleido): install "
                        "Debian's `chromium` (`sudo apt-get install chromium`; `make install` does it as root) or Google "
                        "Chrome, or set BROWSER_PATH to one; HTML needs none")


def _width(fig: go.Figure) -> str:
    """CSS width of a figure's div: the window's, but never below `min_width` (then it scrolls)."""
    return f"max(100%, {min_width(fig)}px)"


def _html_div(fig: go.Figure, name: str) -> str:
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, config=HTML_CONFIG, div_id=name,
                       default_width=_width(fig))


def write_html(figures: dict[str, go.Figure], folder: Path) -> list[Path]:
    """One NAME.html per figure in `folder` and plotly.js once beside them (plotly.min.js, the
    version that wrote them). Returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    bundle = folder / PLOTLY_JS
    js = get_plotlyjs()
    if not bundle.exists() or bundle.read_text(encoding="utf-8") != js:
        bundle.write_text(js, encoding="utf-8")
    paths = [bundle]
    for name, fig in figures.items():
        path = folder / f"{name}.html"
        pio.write_html(fig, path, include_plotlyjs="directory", full_html=True, config=HTML_CONFIG, default_width=_width(fig))
        paths.append(path)
    return paths


def write_report(figures: dict[str, go.Figure], path: Path, title: str, inline: bool) -> Path:
    """One page holding every figure: plotly.js inline (`inline`, e.g. for MLflow's artifact
    viewer) or from plotly.min.js beside it."""
    script = f"<script type=\"text/javascript\">{get_plotlyjs()}</script>" if inline else f'<script src="{PLOTLY_JS}"></script>'
    links = " · ".join(f'<a href="#{html.escape(name)}">{html.escape(name)}</a>' for name in figures)
    body = "\n".join(f'<section id="{html.escape(name)}">{_html_div(fig, name + "-plot")}</section>' for name, fig in figures.items())
    page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>{script}\n"
            "<style>body{font-family:sans-serif;margin:8px 12px} h1{font-size:18px;margin:4px 0} "
            "nav{font-size:13px;margin-bottom:8px} section{margin-bottom:18px}</style></head>\n"
            f"<body><h1>{html.escape(title)}</h1><nav>{links}</nav>\n{body}\n</body></html>\n")
    path.write_text(page, encoding="utf-8")
    return path


def write_static(figures: dict[str, go.Figure], folder: Path, formats) -> list[Path]:
    """NAME.png / .svg / .pdf of every figure at `export_size` (PNG at 2x), with one browser
    session for all of them. Buttons that only work in a browser are left out.

    Raises:
        UserError: the export failed (no browser, the browser crashed); `check_static_export` first.
    """
    static = [f for f in formats if f != "html"]
    if not static:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    figs, paths, widths, heights, scales = [], [], [], [], []
    for name, fig in figures.items():
        still = go.Figure(fig).update_layout(updatemenus=[])
        width, height = export_size(fig)
        for fmt in static:
            figs.append(still)
            paths.append(folder / f"{name}.{fmt}")
            widths.append(width)
            heights.append(height)
            scales.append(PNG_SCALE if fmt == "png" else 1)
    try:
        pio.write_images(figs, paths, width=widths, height=heights, scale=scales)
    except Exception as exc:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        raise UserError(f"static export ({','.join(static)}) failed: {type(exc).__name__}: {first[:200]}; "
                        "HTML works without it (--format html)") from exc
    return paths
