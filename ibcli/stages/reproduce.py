"""`ibcli reproduce`: the information-plane papers on the 12-bit task (`make reproduce-*`).

    ibcli reproduce tishby [--out results/tishby] [--seeds 0-7] [--epochs N] ...
    ibcli reproduce saxe   [--out results/saxe]   [--seeds 0-3] [--epochs N] ...

tishby: Shwartz-Ziv & Tishby (2017), Fig. 3: the 12-10-7-5-4-3-2 tanh network on the
  12-bit task, I(X;T) and I(T;Y) by binning (30 equal-width bins over each layer's
  range), averaged over seeds: the deeper layers' I(X;T) rises, then falls
  ("compression") while I(T;Y) rises; plus the gradient SNR figure (their Fig. 4).
saxe: Saxe et al. (2018), Fig. 1: the same task and network with tanh and with ReLU,
  binning and KDE (noise variance 1e-3, as in their code): ReLU shows no compression where tanh does.

Each is a sweep (`ibcli sweep`), then `ibcli mi` and `ibcli plot` on the sweep, all
tracked in the MLflow store like any other run. The figures (HTML; PNG too when
plotly can export images, i.e. kaleido is installed) and `summary.txt` /
`summary.json` land in --out. The summary gives, per layer, the epoch where the
mean I(X;T) over seeds peaks and by how many bits it falls from there to the last
epoch.

The defaults are sized to finish within about 30 minutes on a 2-core machine; the
papers trained for thousands of epochs at a small learning rate, here a larger
Adam learning rate reaches the same regime in fewer epochs (see the README).
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from ibcli import plots
from ibcli.aggregate import compression_summary
from ibcli.console import counted
from ibcli.errors import UserError
from ibcli.figure_files import check_static_export, write_html, write_static
from ibcli.stages.mi import run_mi
from ibcli.stages.plot import MI_MEAN_FILE, run_plot
from ibcli.stages.sweep import run_sweep


@dataclass
class Setup:
    """Training and estimation settings of one reproduction (every field a CLI flag)."""

    seeds: str = "0-5"
    epochs: int = 2000
    lr: float = 0.003
    optimizer: str = "adam"
    batch_size: int = 512
    records: int = 40          # log-spaced recorded epochs (plus epoch 0)
    bins: int = 30
    noise_var: float = 1e-3    # KDE s2, as in Saxe et al.'s code (ibsgd)
    jobs: int = 2
    threads: int = 1
    band: str = "sd"

    def train_options(self, activation: str) -> dict:
        return {"dataset": "ib12", "model": "ib", "activation": activation, "optimizer": self.optimizer,
                "lr": self.lr, "batch_size": self.batch_size, "epochs": self.epochs,
                "log_epochs": f"log:{self.records}", "experiment": "reproduce"}


DEFAULTS = {
    "tishby": Setup(seeds="0-7"),
    "saxe": Setup(seeds="0-3", records=30),
}


class Clock:
    """Wall-clock seconds of each phase, printed as it ends."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.phases: dict[str, float] = {}

    def run(self, name: str, fn, *args, **kwargs):
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        self.phases[name] = round(time.perf_counter() - t, 1)
        print(f"[{self.total():7.1f} s] {name}: {self.phases[name]:.1f} s", file=sys.stderr, flush=True)
        return out

    def total(self) -> float:
        return round(time.perf_counter() - self.t0, 1)


def _sweep_mi_plot(setup: Setup, activation: str, methods: list[str], out: Path, tracking_uri: str | None,
                   clock: Clock, quiet: bool) -> tuple[str, pd.DataFrame]:
    """Sweep -> mi (each method) -> averaged plot into `out`; returns (sweep id, averaged mi table)."""
    summary = clock.run(f"{activation}: train {setup.seeds} ({counted(setup.epochs, 'epoch')}, --jobs {setup.jobs})", run_sweep,
                        setup.train_options(activation), setup.seeds, setup.jobs, setup.threads,
                        f"reproduce-{activation}", tracking_uri, quiet)
    sweep_id = summary["sweep_id"]
    params = {"binning": {"bins": setup.bins}, "kde": {"noise_var": (setup.noise_var,)}}
    for method in methods:
        clock.run(f"{activation}: mi {method}", run_mi, sweep_id, method, params[method], tracking_uri=tracking_uri, quiet=quiet)
    plot = clock.run(f"{activation}: plot", run_plot, [sweep_id], [], out, tracking_uri, band=setup.band)
    for note in plot.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    return sweep_id, pd.read_parquet(out / MI_MEAN_FILE)


def _pngs(folder: Path, figures: dict) -> list[str]:
    """Also write PNGs when plotly can export images (kaleido and a browser); returns the files written."""
    try:
        check_static_export(("png",))
        return [str(p) for p in write_static(figures, folder, ("png",))]
    except UserError as exc:
        print(f"note: no PNG export ({exc}); HTML only", file=sys.stderr)
        return []


def _html_figures_to_png(folder: Path) -> list[str]:
    """PNG copies of the averaged figures in `folder` (rebuilt from mi_mean.parquet)."""
    agg = pd.read_parquet(folder / MI_MEAN_FILE)
    return _pngs(folder, {"information_plane_mean": plots.information_plane_mean(agg),
                          "mi_per_epoch_mean": plots.mi_per_epoch_mean(agg)})


def summary_lines(summaries: dict[str, pd.DataFrame]) -> list[str]:
    """Plain-text table within 80 columns: per (setting, estimator, layer) the mean I(X;T) at the
    first record and at its peak, the peak's epoch, the fall after it and the sd over seeds at
    the last epoch, and I(T;Y) at the first and last record; `*` marks a layer at the log2 N
    ceiling throughout (a footnote says so)."""
    lines = [" " * 26 + f"{' I(X;T) [bits] ':-^37} {' I(T;Y) ':-^14}",
             f"{'run':<4} {'estimator':<12}  {'layer':<6} {'first':>7} {'peak':>6} {'@epoch':>7} {'fall':>6} "
             f"{'sd@last':>7} {'first':>7} {'last':>6}"]
    ceiling = False
    for label, table in summaries.items():
        for r in table.itertuples():
            est = r.method if pd.isna(getattr(r, "noise_var", float("nan"))) else f"{r.method} s2={r.noise_var:g}"
            lines.append(f"{label:<4} {est:<12}  {r.layer:<6} {r.first_i_xt_bits:>7.3f} {r.peak_i_xt_bits:>6.3f} "
                         f"{r.peak_epoch:>7g} {r.fall_bits:>6.3f} {r.fall_sd_bits:>7.3f} {r.i_ty_first_bits:>7.3f} "
                         f"{r.i_ty_last_bits:>6.3f}" + ("*" if r.at_ceiling else ""))
            ceiling = ceiling or bool(r.at_ceiling)
    if ceiling:
        lines.append("* at the log2 N ceiling throughout: says nothing about compression")
    return lines


def _write_summary(out: Path, name: str, setup: Setup, clock: Clock, sweeps: dict, summaries: dict,
                   extra: list[str]) -> None:
    lines = [f"{name}: 12-bit task (ib12), network 12-10-7-5-4-3-2, {setup.optimizer} lr {setup.lr}, "
             f"batch {setup.batch_size}, {counted(setup.epochs, 'epoch')}, seeds {setup.seeds}, {counted(setup.records, 'log-spaced record')}, "
             f"binning {setup.bins} bins" + (f", KDE s2={setup.noise_var}" if name == "saxe" else ""),
             f"mean over seeds; fall = mean I(X;T) at its peak minus at the last epoch (bits); "
             f"sd@last = sd over seeds at the last epoch", ""]
    lines = [textwrap.fill(line, 80, break_long_words=False, break_on_hyphens=False) for line in lines]
    lines += summary_lines(summaries)
    lines += ["", "sweeps: " + ", ".join(f"{k} {v}" for k, v in sweeps.items()),
              "seconds: " + ", ".join(f"{k}: {v}" for k, v in clock.phases.items()) + f"; total {clock.total()}"]
    lines += extra
    text = "\n".join(lines) + "\n"
    (out / "summary.txt").write_text(text)
    (out / "summary.json").write_text(json.dumps({
        "reproduction": name, "setup": asdict(setup), "sweeps": sweeps, "seconds": clock.phases,
        "total_seconds": clock.total(),
        "summary": {k: v.to_dict(orient="records") for k, v in summaries.items()},
    }, indent=1, default=str))
    print(text)


def reproduce_tishby(setup: Setup, out: Path, tracking_uri: str | None, quiet: bool) -> None:
    clock = Clock()
    out.mkdir(parents=True, exist_ok=True)
    sweep_id, agg = _sweep_mi_plot(setup, "tanh", ["binning"], out, tracking_uri, clock, quiet)
    pngs = _html_figures_to_png(out)
    summary = compression_summary(agg)
    extra = [f"figures: {out}/information_plane_mean.html, mi_per_epoch_mean.html, gradient_snr_mean.html, "
             f"training_curves_mean.html" + (f" (+ {len(pngs)} PNG)" if pngs else "")]
    _write_summary(out, "tishby", setup, clock, {"tanh": sweep_id}, {"tanh": summary}, extra)


def reproduce_saxe(setup: Setup, out: Path, tracking_uri: str | None, quiet: bool) -> None:
    clock = Clock()
    out.mkdir(parents=True, exist_ok=True)
    sweeps, aggs, summaries = {}, {}, {}
    for activation in ("tanh", "relu"):
        folder = out / activation
        folder.mkdir(parents=True, exist_ok=True)
        sweeps[activation], aggs[activation] = _sweep_mi_plot(setup, activation, ["binning", "kde"], folder,
                                                              tracking_uri, clock, quiet)
        summaries[activation] = compression_summary(aggs[activation])
    fig = plots.information_plane_mean_grid(
        aggs, f"Saxe et al. (2018) Fig. 1 on the 12-bit task: tanh vs ReLU, binning ({setup.bins} bins) and KDE "
              f"(s2={setup.noise_var}); mean over seeds {setup.seeds}, band ± sd")
    write_html({"tanh_vs_relu": fig}, out)  # plotly.min.js beside it
    pngs = _pngs(out, {"tanh_vs_relu": fig})
    extra = [f"figures: {out}/tanh_vs_relu.html (2x2 panel), {out}/tanh/*.html, {out}/relu/*.html"
             + (f" (+ {len(pngs)} PNG)" if pngs else "")]
    _write_summary(out, "saxe", setup, clock, sweeps, summaries, extra)


PAPERS = {"tishby": reproduce_tishby, "saxe": reproduce_saxe}


def run_reproduce(paper: str, overrides: dict, out: Path | None, tracking_uri: str | None, quiet: bool) -> Path:
    """Reproduce `paper` ("tishby" or "saxe") with its defaults (`DEFAULTS`) and the given
    `Setup` fields overridden; figures and summary.txt go to `out` (default results/PAPER),
    which is returned.

    Raises:
        UserError: bad settings (as the sweep, mi and plot stages check them).
    """
    setup = replace(DEFAULTS[paper], **{k: v for k, v in overrides.items() if v is not None})
    out = out or Path("results") / paper
    PAPERS[paper](setup, out, tracking_uri, quiet)
    return out
