"""The `ibcli` command line: thin commands that parse options, call one stage, print.

The only module that knows Typer; nothing imports it. The stages (and torch, mlflow)
are imported inside each command, deliberately: `ibcli --help` and a mistyped option
answer at once instead of after seconds of imports.

Output rules: every message goes through `ibcli.console`, which prints text literally (a
run name `tanh[/lr=0.1]` is printed as typed). stdout holds only what a command is asked
for: `--json` summaries (and nothing else), `ibcli runs`/`show` listings; messages,
notes, progress bars and human summaries go to stderr. With `--json`, stderr gets only
errors and, on a terminal, progress bars that erase themselves; `--quiet` drops the bars too.
"""

from __future__ import annotations

import atexit
import inspect
import json
import os
import shlex
import signal
import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional
from urllib.parse import urlsplit

import typer
from rich.markup import escape

from ibcli import run_names
from ibcli.console import counted, error, note, say, stderr
from ibcli.datasets import DATASETS
from ibcli.devices import DEVICES
from ibcli.errors import UserError
from ibcli.estimators import registry
from ibcli.estimators.errors import EstimatorInputError
from ibcli.models import ACTIVATIONS, MODEL_ALIASES, MODELS, OPTIMIZERS


app = typer.Typer(
    help="Information-plane analysis of neural networks: train -> mi -> plot, each stage an MLflow run.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _choices(name: str, values) -> type[Enum]:
    """A str Enum of `values` (how Typer shows and checks choices)."""
    return Enum(name, {v: v for v in values}, type=str)


Model = _choices("Model", (*MODELS, *MODEL_ALIASES))
Dataset = _choices("Dataset", DATASETS)
Activation = _choices("Activation", ACTIVATIONS)
Optimizer = _choices("Optimizer", OPTIMIZERS)
Device = _choices("Device", DEVICES)
ProbeSplit = _choices("ProbeSplit", ("test", "train", "all"))
DType = _choices("DType", ("float32", "float16"))
Method = _choices("Method", (*registry.METHODS, *registry.ALIASES))
Band = _choices("Band", ("sd", "bootstrap"))
Paper = _choices("Paper", ("tishby", "saxe"))
#: The metavar of a choice option whose help lists the choices: Typer's own `<a|b|c|...>` makes
#: the type column so wide that at 80 columns rich cuts option names (`--activation-dty…`).
NAME = "<name>"

SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def file_path_uri_hint(value: str | None, source: str) -> str | None:
    """The one-line error for a tracking URI that is a plain path to a SQLite file, else None.

    MLflow reads a URI without a scheme as a file store folder (and answers a database file
    with a long message about its file store); a value without a scheme that names an
    existing file, or ends in .db/.sqlite, means the SQLite store at that path.
    source: how the user gave it ("--tracking-uri" or "$MLFLOW_TRACKING_URI").
    """
    if not value or len(urlsplit(value).scheme) > 1:  # a scheme (a one-letter one is a Windows drive)
        return None
    path = Path(value).expanduser()
    if not (path.is_file() or path.suffix.lower() in SQLITE_SUFFIXES):
        return None
    shown = f"{source} {value}" if source.startswith("--") else f"{source}={value}"
    return f"{shown} is a file path: use sqlite:///{path}"


def _check_tracking_uri(value: str | None) -> str | None:
    """--tracking-uri (or, without it, $MLFLOW_TRACKING_URI) checked before the command runs."""
    source, uri = ("--tracking-uri", value) if value else ("$MLFLOW_TRACKING_URI", os.environ.get("MLFLOW_TRACKING_URI"))
    hint = file_path_uri_hint(uri, source)
    if hint:
        fail(hint)
    return value


def _given(text: str, what: str = "a value") -> str:
    """An option value that names something (a store, an address, a run): an empty one is refused,
    for it would quietly mean the default (`--tracking-uri ""`: the default store), e.g. when a
    shell variable was unset."""
    if not text.strip():
        raise typer.BadParameter(f"it is empty: give {what}, or leave the option out for its default")
    return text


def _path(text: str) -> Path:
    """A path option's value, not empty: Path("") is the current folder, so `--output ""` wrote
    the figures there."""
    return Path(_given(text, "a folder (. for the current one)"))


TrackingUri = Annotated[
    Optional[str],
    typer.Option("--tracking-uri", parser=_given, callback=_check_tracking_uri,
                 help="MLflow tracking URI, sqlite:///PATH or http(s)://HOST:PORT (default: $MLFLOW_TRACKING_URI, "
                      "else the SQLite store ./runs/mlflow.db)."),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, tables or notes (errors only).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON summary on stdout and nothing else (stderr: errors, and progress bars on a terminal).")]


def _print_version(value: bool) -> None:
    if value:
        from ibcli.provenance import version_line

        sys.stdout.write(version_line() + "\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print ibcli's version (and git commit in a checkout) and exit.")] = False,
):
    """Information-plane analysis of neural networks: train -> mi -> plot, each stage an MLflow run."""


def fail(message: str) -> None:
    """One literal line on stderr, exit code 2."""
    error(message)
    raise typer.Exit(2)


def _bars(quiet: bool, json_out: bool) -> str:
    """Progress bars: none with --quiet; with --json only on a terminal, erased when done."""
    if quiet:
        return "off"
    if json_out:
        return "transient" if stderr.is_terminal else "off"
    return "on"


@contextmanager
def user_errors():
    """Turn errors a user can cause into one line and exit code 2."""
    try:
        yield
    except (UserError, EstimatorInputError) as exc:
        fail(str(exc))


def _value(v):
    """An option's value as the stages take it (enum members as their strings, paths as str)."""
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, Path):
        return str(v)
    return v


def _explicit(ctx: typer.Context) -> set[str]:
    """The options the user typed (so --resume and sweeps can tell defaults from choices)."""
    return {name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"}


def _write_json(data) -> None:
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def _print_train(summary: dict) -> None:
    """A finished or killed train run in two lines: the outcome, then the next command."""
    rid, acc = summary["run_id"], summary.get("final_metrics", {}).get("test_accuracy")
    accuracy = f", test accuracy {acc:.4f}" if acc is not None else ""
    if summary["status"] == "KILLED":
        kept = "its complete record is" if summary["records"] == 1 else f"its {summary['records']} complete records are"
        say(f"train run {rid}: KILLED after {summary['epochs']} of {counted(summary['epochs_target'], 'epoch')}{accuracy}; "
            f"{kept} kept", style="yellow")
        say(f"continue it with: {summary['resume']}")
        return
    say(f"train run {rid}: {summary['status']}, {counted(summary['epochs'], 'epoch')} in {summary['seconds']:.1f} s{accuracy}, "
        f"{counted(summary['records'], 'record')}", style="bold")
    say(f"next: ibcli mi {rid[:8]} --method binning")


# ---------------------------------------------------------------------------- train
# Options of `ibcli train` that are about the command, not the run.
TRAIN_COMMAND_OPTIONS = ("resume", "run_name", "tracking_uri", "json_out", "quiet")


@app.command()
def train(
    ctx: typer.Context,
    model: Annotated[Model, typer.Option(metavar=NAME, help="Network: mlp 784-1024-20-20-20-20-10, cnn, or ib/tishby 12-10-7-5-4-3-2.")] = "mlp",
    dataset: Annotated[Dataset, typer.Option(metavar=NAME, help="mnist, fashion-mnist, cifar10, or ib12: the 12-bit task of Shwartz-Ziv & Tishby (shipped, offline).")] = "mnist",
    activation: Annotated[Activation, typer.Option(metavar=NAME, help=f"Hidden-layer nonlinearity: {', '.join(ACTIVATIONS[:-1])} or {ACTIVATIONS[-1]}.")] = "tanh",
    optimizer: Annotated[Optimizer, typer.Option(metavar=NAME, help="sgd (with --momentum) or adam.")] = "adam",
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = 0.9,
    weight_decay: Annotated[float, typer.Option(help="L2 weight decay.")] = 0.0,
    epochs: Annotated[int, typer.Option(help="Epochs to train (with --resume: the new total).")] = 20,
    batch_size: Annotated[int, typer.Option(help="Mini-batch size.")] = 128,
    device: Annotated[Device, typer.Option(metavar=NAME, help="auto, cpu or cuda (auto = cuda when available, else cpu).")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for init, shuffling and splits.")] = 0,
    data_dir: Annotated[Optional[Path], typer.Option(parser=_path, help="Holds the datasets in torchvision's layout, e.g. MNIST/raw/ (default: $IBCLI_DATA_DIR, else ./data).")] = None,
    train_fraction: Annotated[Optional[float], typer.Option(help="Image datasets: keep this prefix of the train set; ib12: train share of the split (default 0.85).")] = None,
    probe_split: Annotated[Optional[ProbeSplit], typer.Option(metavar=NAME, help="Where the probe set comes from: test, train or all (default: test; all for ib12).")] = None,
    probe_size: Annotated[Optional[int], typer.Option(help="Probe samples (default: the whole split).")] = None,
    log_epochs: Annotated[str, typer.Option(help="Epochs to record: all, every:K, log[:N] (N log-spaced, default 30), none, or 1,2,5.")] = "log:30",
    log_steps: Annotated[str, typer.Option(help="Also record at optimizer steps: none, log:N[:E] (N log-spaced steps in the first E epochs), or 1,2,5.")] = "none",
    activation_dtype: Annotated[DType, typer.Option(metavar=NAME, help="dtype of stored activations: float32 or float16.")] = "float32",
    grad_stats: Annotated[bool, typer.Option(help="Per-layer gradient mean/std norms and SNR each epoch.")] = True,
    eager: Annotated[bool, typer.Option(help="The plain loop: PyTorch's default optimizer implementation instead of its fused kernel, and on a GPU no CUDA graphs (instead of the captured step).")] = False,
    resume: Annotated[Optional[str], typer.Option(parser=_given, help="Continue this killed or finished train run from its last checkpoint, in the same MLflow run (only --epochs, --device and --data-dir may change).")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "ibcli",
    run_name: Annotated[Optional[str], typer.Option(help="MLflow run name.")] = None,
    tracking_uri: TrackingUri = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
):
    """Train a network and record every layer's activations on the probe set.

    Example: [bold]ibcli train --model mlp --data-dir ../shared/data --epochs 20[/]
    (continue it later with [bold]ibcli train --resume 3f2a --epochs 40[/])
    """
    from ibcli.stages.train import run_train

    options = {k: _value(v) for k, v in ctx.params.items() if k not in TRAIN_COMMAND_OPTIONS}
    with user_errors():
        summary = run_train(options, _explicit(ctx), resume, run_name, tracking_uri, quiet or json_out,
                            bars=_bars(quiet, json_out))
    if json_out:
        _write_json(summary)
    elif not quiet or summary.get("status") == "KILLED":
        _print_train(summary)
    if summary.get("status") == "KILLED":
        raise typer.Exit(130)


# ---------------------------------------------------------------------------- mi
def _method_options() -> list[inspect.Parameter]:
    """One option per estimator parameter of the registry (shared ones once), default None:
    the stage fills in the method's own default, and an option the method does not take is an error."""
    out = []
    for name, (p, methods) in registry.all_params().items():
        shown = ", ".join(map(str, p.default)) if isinstance(p.default, tuple) else p.default
        text = escape(f"{'/'.join(methods)}: {p.help}" + ("" if p.default is None else f" [default: {shown}]"))
        if p.choices:
            kind = _choices(name.title().replace("_", ""), p.choices)
        else:
            kind = p.type
        decls = (f"{p.flag}/--no-{p.flag[2:]}",) if p.type is bool else (p.flag,)
        annotation = Optional[list[kind]] if p.multiple else Optional[kind]
        out.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                     annotation=Annotated[annotation, typer.Option(*decls, help=text, show_default=False)]))
    return out


def mi(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Train run id (or unique prefix); a sweep id runs it on every member.")],
    method: Annotated[Method, typer.Option(metavar=NAME, help="Estimator: " + "; ".join(f"{e.name}: {e.title}" for e in registry.ESTIMATORS)
                                           + "".join(f" ({a} = {m})" for a, m in registry.ALIASES.items()) + ".")] = "binning",
    layers: Annotated[Optional[list[str]], typer.Option("--layer", help="Only these layers (repeatable).")] = None,
    epochs: Annotated[Optional[list[str]], typer.Option("--epoch", help="Only these recorded epochs (repeatable), as ibcli lists them: a value picks the record it equals to the significant digits typed, at least 6 (0.0212766 picks 0.02127659574468085). Binning edges still span all epochs.")] = None,
    device: Annotated[Device, typer.Option(help="Torch device of kde, kraskov, sp and mine (auto = cuda when available; binning and renyi run on the CPU). The same numbers on either device, to float rounding.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of every random draw (added noise, MINE's training); each record adds its step.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Compute even if a finished mi run of this train run has the same method, parameters, seed, records and layers (without it, that run is reused).")] = False,
    table: Annotated[bool, typer.Option("--table", help="Also print every (epoch, layer) row, before the per-layer summary.")] = False,
    jobs: Annotated[Optional[int], typer.Option(help="Run the (epoch, layer) tasks in N local Dask worker processes (needs ibcli\\[dask]).")] = None,
    scheduler: Annotated[Optional[str], typer.Option(parser=_given, help="Run the tasks on the Dask cluster at this address, e.g. tcp://HOST:8786 (needs ibcli\\[dask]).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="BLAS/torch threads (and cores) of each --jobs worker (default: cores // jobs), or of this process without --jobs.")] = None,
    tracking_uri: TrackingUri = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
    **method_params,
):
    """Estimate I(X;T) and I(T;Y) for every recorded (epoch, layer) of a train run.

    Prints the mi run's id and, per layer, the first, peak and last I(X;T) and the compression
    (peak - last) in bits. Asking again with the same settings reuses the finished mi run.

    Example: [bold]ibcli mi 3f2a --method kde --noise-var 0.1 --noise-var 0.01[/]
    """
    from ibcli.stages.mi import load_table, print_summary, print_table, run_mi

    with user_errors():
        estimator = registry.get(_value(method))
        own = {p.name for p in estimator.params}
        given = {k: _value(v) for k, v in method_params.items() if v is not None and v != []}
        stray = sorted(set(given) - own)
        if stray:
            users = registry.all_params()[stray[0]][1]
            raise UserError(f"--{stray[0].replace('_', '-')} is an option of {'/'.join(users)}, not of --method {estimator.name}")
        given = {k: tuple(map(_value, v)) if isinstance(v, list) else v for k, v in given.items()}
        summary = run_mi(run_id, estimator.name, given, layers=tuple(layers or ()), epochs=tuple(epochs or ()),
                         seed=seed, device=_value(device), tracking_uri=tracking_uri, quiet=quiet or json_out,
                         force=force, bars=_bars(quiet, json_out), jobs=jobs, scheduler=scheduler, threads=threads)
        if json_out:
            _write_json(summary)
        elif not quiet and "members" in summary:  # a sweep: the stage printed a line per member
            for one in summary["members"] if table else ():
                print_table(load_table(one, tracking_uri), estimator)
            say(f"{counted(len(summary['members']), 'mi run')}; figures averaged over seeds: ibcli plot {summary['sweep_id'][:8]}")
        elif not quiet:
            if table:
                print_table(load_table(summary, tracking_uri), estimator)
            print_summary(summary)


# The estimators' parameters become options of `ibcli mi`: a new method adds its own.
mi.__signature__ = inspect.Signature(
    [p for p in inspect.signature(mi, eval_str=True).parameters.values() if p.kind != p.VAR_KEYWORD] + _method_options()
)
mi.__annotations__ = {p.name: p.annotation for p in mi.__signature__.parameters.values()}
app.command()(mi)


# ---------------------------------------------------------------------------- plot
@app.command()
def plot(
    run_ids: Annotated[list[str], typer.Argument(help="Train run id (or unique prefix); several to compare them in one set of figures; or one sweep id to average over its members.", metavar="RUN_ID")],
    mi_run: Annotated[Optional[list[str]], typer.Option(help="mi run(s) to plot (default: the latest mi run of each method of each train run; a note says when an older one covers more layers or records).")] = None,
    output: Annotated[Optional[Path], typer.Option(parser=_path, help="Also write the figures to this folder (plotly.min.js once beside the HTML files).")] = None,
    formats: Annotated[str, typer.Option("--format", help="Comma-separated: html, png, svg, pdf (the static ones need a Chromium-family browser, e.g. Debian's chromium).")] = "html",
    histograms: Annotated[bool, typer.Option(help="One run: each layer's activation distribution per recorded epoch (read from the run's records).")] = True,
    band: Annotated[Band, typer.Option(help="Sweeps: the band around the mean over seeds, sd (mean ± sd) or bootstrap (95% interval of the mean).")] = "sd",
    tracking_uri: TrackingUri = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
):
    """Draw the information plane, MI per epoch, training curves, gradient SNR and activation histograms.

    Example: [bold]ibcli plot 3f2a --output figures/ --format html,png[/]
    (compare runs: [bold]ibcli plot 3f2a 91bc[/]; a run without mi results gets its training figures)
    """
    from ibcli.stages.plot import run_plot

    with user_errors():
        summary = run_plot(list(run_ids), list(mi_run or []), output, tracking_uri, band=_value(band), formats=formats,
                           histograms=histograms, quiet=quiet or json_out)
    if json_out:
        _write_json(summary)
    elif not quiet:
        for text in summary.get("notes", []):
            note(text)
        for path in summary["files"]:
            say(f"wrote {path}")
        say(f"plot run {summary['plot_run_id']}; browse every run with: ibcli ui")


# ---------------------------------------------------------------------------- sweep
def parse_train_args(args: list[str]) -> dict:
    """Forwarded `ibcli train` options, parsed by train's own parser (so a typo fails at once).

    Returns {option name: value} of the options given (enums as strings, paths as str).

    Raises:
        UserError: an option train does not know or a bad value, an option that belongs to
            the sweep itself (--seed, --resume, --run-name, ...), or a positional argument.
    """
    train_cmd = typer.main.get_command(app).commands["train"]
    try:
        ctx = train_cmd.make_context("ibcli sweep", list(args), resilient_parsing=False)
    except typer.TyperException as exc:
        raise UserError(f"{exc.format_message()} (a sweep takes `ibcli train`'s options, see `ibcli train --help`)") from None
    if ctx.args:
        raise UserError(f"unexpected argument {ctx.args[0]!r}: a sweep takes options only")
    explicit = _explicit(ctx)
    for name in ("seed", "resume", *TRAIN_COMMAND_OPTIONS):
        if name in explicit:
            flag = "--" + ("json" if name == "json_out" else name.replace("_", "-"))
            why = {"seed": "use --seeds", "resume": "use a sweep of its own"}.get(
                name, "give it to `ibcli sweep` itself, before the train options")
            raise UserError(f"{flag} is set by the sweep for each member: {why}")
    return {k: _value(v) for k, v in ctx.params.items() if k in explicit}


def _train_flags() -> str:
    """The `ibcli train` options a sweep passes to its members, as typed (for `ibcli sweep --help`)."""
    flags = []
    for name, p in inspect.signature(train).parameters.items():
        if name == "ctx" or name in ("seed", "resume", *TRAIN_COMMAND_OPTIONS):
            continue
        flag = "--" + name.replace("_", "-")
        flags.append(f"{flag}/--no-{flag[2:]}" if isinstance(p.default, bool) else flag)
    return ", ".join(flags)


def _print_sweep(summary: dict) -> None:
    accs = [m["final_metrics"]["test_accuracy"] for m in summary["members"] if "test_accuracy" in m.get("final_metrics", {})]
    acc = f", mean test accuracy {sum(accs) / len(accs):.4f}" if accs else ""
    say(f"sweep run {summary['sweep_id']}: {summary['status']}, {counted(len(summary['members']), 'member')} in "
        f"{summary['seconds']:.0f} s{acc}", style="bold")
    say(f"next: ibcli mi {summary['sweep_id'][:8]} --method binning, then ibcli plot {summary['sweep_id'][:8]}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             epilog="Train options a sweep passes to every member (see `ibcli train --help`): " + _train_flags()
             + ". --seed and --resume belong to the sweep; --run-name, --tracking-uri, --json and --quiet are the sweep's own.")
def sweep(
    ctx: typer.Context,
    seeds: Annotated[str, typer.Option(help='Seeds, one train run each: a range "0-9", a list "0,1,5" or one seed "3".')] = "0-4",
    jobs: Annotated[int, typer.Option(help="Train runs at a time (parallel processes).")] = 1,
    threads: Annotated[Optional[int], typer.Option(help="Torch threads per run (default: cores // jobs).")] = None,
    scheduler: Annotated[Optional[str], typer.Option(parser=_given, help="Run the members on the Dask cluster at this address (tcp://HOST:8786) instead of --jobs local processes; needs ibcli\\[dask] and a store every worker reaches.")] = None,
    run_name: Annotated[Optional[str], typer.Option(help="MLflow run name of the sweep (members get NAME-seedS).")] = None,
    tracking_uri: TrackingUri = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
):
    """Train one run per seed, grouped under a sweep run; every other option is `ibcli train`'s.

    Then `ibcli mi SWEEP_ID` estimates MI for every member and `ibcli plot SWEEP_ID` averages over seeds.

    Example: [bold]ibcli sweep --seeds 0-9 --jobs 2 --dataset ib12 --model ib --epochs 2000 --log-epochs log:40[/]
    """
    from ibcli.stages.sweep import SweepFailed, SweepInterrupted, run_sweep

    try:
        with user_errors():
            try:
                summary = run_sweep(parse_train_args(ctx.args), seeds, jobs, threads, run_name, tracking_uri,
                                    quiet or json_out, scheduler=scheduler)
            except SweepFailed as exc:
                if json_out:
                    _write_json(exc.summary)
                raise
    except SweepInterrupted as exc:
        if json_out:
            _write_json(exc.args[0])
        say("sweep interrupted: running members were stopped and keep their records", style="yellow")
        raise typer.Exit(130)
    if json_out:
        _write_json(summary)
    elif not quiet:
        _print_sweep(summary)


# ---------------------------------------------------------------------------- reproduce
@app.command()
def reproduce(
    paper: Annotated[Paper, typer.Argument(help="tishby: Shwartz-Ziv & Tishby (2017), binning; saxe: Saxe et al. (2018), tanh vs ReLU, binning and KDE.")],
    out: Annotated[Optional[Path], typer.Option(parser=_path, help=r"Folder for the figures, summary.txt and summary.json. \[default: results/PAPER]")] = None,
    seeds: Annotated[Optional[str], typer.Option(help=r'Seeds, one train run each: a range "0-7", a list "0,1,5" or one seed "3". \[default: tishby 0-7, saxe 0-3]')] = None,
    epochs: Annotated[Optional[int], typer.Option(help=r"Epochs per train run. \[default: 2000]")] = None,
    lr: Annotated[Optional[float], typer.Option(help=r"Learning rate. \[default: 0.003]")] = None,
    optimizer: Annotated[Optional[Optimizer], typer.Option(help=r"Optimizer of every train run: sgd (momentum 0.9) or adam. \[default: adam]")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help=r"Mini-batch size. \[default: 512]")] = None,
    records: Annotated[Optional[int], typer.Option(help=r"Recorded epochs, log-spaced (plus epoch 0). \[default: tishby 40, saxe 30]")] = None,
    bins: Annotated[Optional[int], typer.Option(help=r"Bins of the binning estimator. \[default: 30]")] = None,
    noise_var: Annotated[Optional[float], typer.Option(help=r"Noise variance s2 of the KDE estimator (saxe). \[default: 0.001, as in Saxe et al.'s code]")] = None,
    jobs: Annotated[Optional[int], typer.Option(help=r"Train runs at a time. \[default: 2]")] = None,
    threads: Annotated[Optional[int], typer.Option(help=r"Torch threads per train run. \[default: 1]")] = None,
    band: Annotated[Optional[Band], typer.Option(help=r"The band around the mean over seeds in the figures: sd (mean ± sd) or bootstrap (95% interval of the mean). \[default: sd]")] = None,
    tracking_uri: TrackingUri = None,
    quiet: Quiet = False,
):
    """Reproduce an information-plane paper on the 12-bit task: a sweep, mi and averaged figures.

    Example: [bold]ibcli reproduce tishby --seeds 0-9 --epochs 4000[/]
    """
    from ibcli.stages.reproduce import run_reproduce

    overrides = dict(seeds=seeds, epochs=epochs, lr=lr, optimizer=_value(optimizer), batch_size=batch_size,
                     records=records, bins=bins, noise_var=noise_var, jobs=jobs, threads=threads, band=_value(band))
    with user_errors():
        run_reproduce(_value(paper), overrides, out, tracking_uri, quiet)


# ---------------------------------------------------------------------------- browse
@app.command()
def runs(
    limit: Annotated[int, typer.Option(help="Show at most this many train runs (newest first).")] = 50,
    tracking_uri: TrackingUri = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the runs as one JSON list on stdout.")] = False,
):
    """List train runs with their mi and plot runs: id, model, epochs, test accuracy, MI methods done, status.

    Example: [bold]ibcli runs --limit 10[/]
    """
    from ibcli.stages.browse import list_runs, print_runs

    with user_errors():
        rows = list_runs(tracking_uri, limit=limit)
    if json_out:
        _write_json(rows)
    else:
        print_runs(rows)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="Run id (or unique prefix) of a train, mi or plot run.")],
    summary: Annotated[bool, typer.Option("--summary", help="Train runs: only the results: test accuracy, each method's per-layer I(X;T) summary, the figures and how to browse them.")] = False,
    tracking_uri: TrackingUri = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run (or its --summary) as one JSON object on stdout.")] = False,
):
    """Print a run's params, metrics, artifacts and child runs (or a train run's results, --summary).

    Example: [bold]ibcli show 3f2a --json[/]  or  [bold]ibcli show 3f2a --summary[/]
    """
    from ibcli.stages.browse import describe_run, print_run, print_train_summary, train_summary

    with user_errors():
        info = train_summary(run_id, tracking_uri) if summary else describe_run(run_id, tracking_uri)
    if json_out:
        _write_json(info)
    elif summary:
        print_train_summary(info)
    else:
        print_run(info)


@app.command()
def rm(
    run_ids: Annotated[Optional[list[str]], typer.Argument(help="Run ids (or unique prefixes) to delete, with every run below them.", show_default=False)] = None,
    status: Annotated[Optional[list[str]], typer.Option("--status", help="Also every run in this state: FAILED, KILLED, RUNNING or FINISHED (repeatable).", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be deleted and delete nothing.")] = False,
    tracking_uri: TrackingUri = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print what was (or would be) deleted as one JSON object on stdout.")] = False,
    quiet: Quiet = False,
):
    """Delete runs for real: each with its mi and plot runs (a sweep: its members too) and all their artifact files.

    A run being trained right now is refused. The runs leave every listing (MLflow's soft
    delete; `mlflow gc` purges the database rows); their files are removed at once.

    Example: [bold]ibcli rm --status FAILED --dry-run[/]  then  [bold]ibcli rm 3f2a 91bc[/]
    """
    from ibcli.stages.rm import print_removal, run_rm

    with user_errors():
        result = run_rm(list(run_ids or []), list(status or []), dry_run, tracking_uri)
    if json_out:
        _write_json(result)
    elif not quiet:
        print_removal(result)


@app.command()
def ui(
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5000,
    experiment: Annotated[Optional[str], typer.Option(help="The experiment whose runs table opens (default: ibcli, or the experiments list while the store has no ibcli experiment).")] = None,
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open the runs table in a browser (where there is a display).")] = True,
    tracking_uri: TrackingUri = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the server's command line and the runs table's address instead of starting it.")] = False,
):
    """Start the MLflow UI on this project's store (runs/ by default), opening on the experiment's runs table.

    On a server store (http://HOST:PORT) the server is the UI: its address is printed.

    Example: [bold]ibcli ui --port 5001[/] (one worker; Ctrl-C stops it)
    """
    from ibcli.stages.browse import UI_ENV, prepare_ui, serve_ui, server_ui_url

    with user_errors():
        served = server_ui_url(tracking_uri)
        if served is not None:
            sys.stdout.write(served + "\n")
            say(f"this store is an MLflow server: its UI is at {served} (open it in a browser)")
            return
        command, url = prepare_ui(tracking_uri, host, port, experiment)
        if dry_run:
            env = " ".join(f"{k}={shlex.quote(v)}" for k, v in UI_ENV.items())
            sys.stdout.write(f"{env} {shlex.join(command)}\n{url}\n")
            return
        say(f"starting the MLflow UI on {url.split('/#/')[0]} ...")
        code = serve_ui(command, url, host, port, open_browser, say=say)
    if code:
        raise typer.Exit(code)


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
INTERRUPTED_EXIT = 130


# ---------------------------------------------------------------------------- server
@app.command()
def server(
    backend_store_uri: Annotated[Optional[str], typer.Option(parser=_given, help="The runs' database: postgresql://USER:PASS@HOST:PORT/DB (psycopg), or sqlite:///PATH for a trial (default: $IBCLI_SERVER_BACKEND).")] = None,
    artifacts_destination: Annotated[Optional[str], typer.Option(parser=_given, help="Where the server keeps artifacts: a folder, or s3://BUCKET/PREFIX on S3-compatible storage (default: $IBCLI_SERVER_ARTIFACTS, else ./server-artifacts).")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 for every interface; then see --allowed-hosts and --basic-auth).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5000,
    workers: Annotated[Optional[int], typer.Option(help="Server worker processes (MLflow's default: 4).")] = None,
    allowed_hosts: Annotated[Optional[str], typer.Option(help="Host headers to accept, comma-separated, e.g. mlflow.lab:5000,10.0.0.5:5000 (MLflow's default: localhost and private addresses).")] = None,
    cors_allowed_origins: Annotated[Optional[str], typer.Option(help="Browser origins allowed to call the API, comma-separated (MLflow's default: localhost).")] = None,
    basic_auth: Annotated[bool, typer.Option("--basic-auth", help="MLflow's basic authentication (users and permissions; config in $MLFLOW_AUTH_CONFIG_PATH).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the mlflow command instead of running it.")] = False,
):
    """Start a shared MLflow tracking server: PostgreSQL for runs, proxied artifacts, the UI.

    Then point every machine at it: [bold]export MLFLOW_TRACKING_URI=http://HOST:5000[/] (or --tracking-uri).

    Example: [bold]ibcli server --backend-store-uri postgresql://ibcli:secret@db.lab:5432/ibcli --artifacts-destination /srv/ibcli/artifacts[/]
    """
    from ibcli.stages.server import exec_server, server_command

    with user_errors():
        command, notes = server_command(backend_store_uri, artifacts_destination, host, port, workers, allowed_hosts,
                                        cors_allowed_origins, basic_auth, check=not dry_run)
    if dry_run:
        sys.stdout.write(shlex.join(command) + "\n")
        return
    for text in notes:
        note(text)
    say(f"MLflow server on http://{host}:{port} (Ctrl-C stops it); clients: MLFLOW_TRACKING_URI=http://{host}:{port}")
    exec_server(command)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Run one command; usage errors become one line and exit code 2, SIGINT/SIGTERM exit code 130."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    run_names.set_command(sys.argv[1:] if argv is None else argv)
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="ibcli")
    except typer.TyperException as exc:  # click's usage errors (bad option, bad value, missing argument)
        if type(exc).__name__ == "NoArgsIsHelpError":  # (as Typer tells it: click is vendored)
            return 0  # bare `ibcli`: Typer has printed the help, which is what was asked for
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        message = exc.format_message().replace("Value error, ", "")  # Typer's prefix on a bad choice
        error(f"{message}{hint}")
        return 2
    except typer.Abort:
        return INTERRUPTED_EXIT
    except KeyboardInterrupt:  # a signal after the command returned, before main did
        return INTERRUPTED_EXIT
    except SystemExit as exc:  # --show-completion, --install-completion, shell completion itself
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return rv if isinstance(rv, int) else 0


_late_signals: list[int] = []


def _remember_signal(signum, frame) -> None:
    _late_signals.append(signum)


def _exit_on_late_signal() -> None:
    """atexit, last: a SIGINT/SIGTERM that came while Python shut down still means "interrupted"."""
    for sig in STOP_SIGNALS:  # the rest of the teardown ignores them (Python keeps SIG_IGN to the end)
        signal.signal(sig, signal.SIG_IGN)
    if _late_signals:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(INTERRUPTED_EXIT)


def main_exit() -> None:
    """The `ibcli` console script: `main`, then an exit that a late signal cannot turn into a crash.

    Once the command has returned, SIGINT/SIGTERM are only remembered: one that lands while
    the interpreter shuts down (threads, atexit, module teardown, where Python puts back the
    default handlers) would otherwise kill the process with 143 or print a traceback. A
    remembered one makes the exit code 130, as any interrupt does.
    """
    atexit.register(_exit_on_late_signal)  # registered first, so it runs after every library's atexit
    try:
        rc = main()
    except KeyboardInterrupt:  # a signal between the command's return and main's
        rc = INTERRUPTED_EXIT
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, _remember_signal)
    sys.exit(INTERRUPTED_EXIT if _late_signals else rc)


if __name__ == "__main__":
    main_exit()
