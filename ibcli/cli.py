"""The `ibcli` command line: thin commands that parse options, call one function, print."""

from __future__ import annotations

import json
import shlex
import signal
import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer._click.exceptions import UsageError  # Typer vendors click; its errors live here

from ibcli.datasets import DATASETS
from ibcli.errors import UserError
from ibcli.progress import stderr

app = typer.Typer(
    help="Information-plane analysis of neural networks: train -> mi -> plot, each stage an MLflow run.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


class Model(str, Enum):
    mlp = "mlp"
    cnn = "cnn"
    ib = "ib"
    tishby = "tishby"


Dataset = Enum("Dataset", {name: name for name in DATASETS}, type=str)  # --dataset choices: the registry's names


class Activation(str, Enum):
    tanh = "tanh"
    relu = "relu"
    sigmoid = "sigmoid"
    elu = "elu"


class Optimizer(str, Enum):
    sgd = "sgd"
    adam = "adam"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class ProbeSplit(str, Enum):
    test = "test"
    train = "train"
    all = "all"


class Method(str, Enum):
    binning = "binning"
    kde = "kde"
    kraskov = "kraskov"
    ksg = "ksg"
    mine = "mine"


class BinningStrategy(str, Enum):
    uniform = "uniform"
    adaptive = "adaptive"


class Band(str, Enum):
    sd = "sd"
    bootstrap = "bootstrap"


class DType(str, Enum):
    float32 = "float32"
    float16 = "float16"


TrackingUri = Annotated[
    Optional[str],
    typer.Option("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./runs/mlflow.db)."),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON summary on stdout.")]


def fail(message: str) -> None:
    """One line on stderr, exit code 2."""
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def user_errors():
    """Turn errors a user can cause into one line and exit code 2."""
    from ibcli.estimators.errors import EstimatorInputError

    try:
        yield
    except (UserError, EstimatorInputError) as exc:
        fail(str(exc))


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# ---------------------------------------------------------------------------- train
@app.command()
def train(
    ctx: typer.Context,
    model: Annotated[Model, typer.Option(help="Network: mlp (784-1024-20-20-20-20-10), cnn, or ib/tishby (12-10-7-5-4-3-2).")] = Model.mlp,
    dataset: Annotated[Dataset, typer.Option(help="mnist, fashion-mnist, cifar10 (read from --data-dir, downloaded when missing), or ib12: the 12-bit task of Shwartz-Ziv & Tishby (shipped, offline).")] = Dataset("mnist"),
    activation: Annotated[Activation, typer.Option(help="Hidden-layer nonlinearity.")] = Activation.tanh,
    optimizer: Annotated[Optimizer, typer.Option(help="sgd (with --momentum) or adam.")] = Optimizer.adam,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = 0.9,
    weight_decay: Annotated[float, typer.Option(help="L2 weight decay.")] = 0.0,
    epochs: Annotated[int, typer.Option(help="Epochs to train (with --resume: the new total).")] = 20,
    batch_size: Annotated[int, typer.Option(help="Mini-batch size.")] = 128,
    device: Annotated[Device, typer.Option(help="auto = cuda when available, else cpu.")] = Device.auto,
    seed: Annotated[int, typer.Option(help="Seed for init, shuffling and splits.")] = 0,
    data_dir: Annotated[Optional[Path], typer.Option(help="Holds MNIST/raw/, FashionMNIST/raw/, cifar-10-batches-py/ (default: $IBCLI_DATA_DIR, else ./data).")] = None,
    train_fraction: Annotated[Optional[float], typer.Option(help="mnist, fashion-mnist, cifar10: keep this prefix of the train set; ib12: train share of the split (default 0.85).")] = None,
    probe_split: Annotated[Optional[ProbeSplit], typer.Option(help="Where the probe set comes from (default: test; all for ib12).")] = None,
    probe_size: Annotated[Optional[int], typer.Option(help="Probe samples (default: the whole split).")] = None,
    log_epochs: Annotated[str, typer.Option(help="Epochs to record: all, every:K, log[:N] (N log-spaced, default 30), none, or 1,2,5.")] = "log:30",
    log_steps: Annotated[str, typer.Option(help="Also record at optimizer steps: none, log:N[:E] (N log-spaced steps in the first E epochs), or 1,2,5.")] = "none",
    activation_dtype: Annotated[DType, typer.Option(help="dtype of stored activations.")] = DType.float32,
    grad_stats: Annotated[bool, typer.Option(help="Per-layer gradient mean/std norms and SNR each epoch.")] = True,
    resume: Annotated[Optional[str], typer.Option(help="Continue this killed or finished train run from its last checkpoint, in the same MLflow run (only --epochs, --device and --data-dir may change).")] = None,
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
    from ibcli.train_stage import run_train

    options = dict(
        model=model.value, dataset=dataset.value, activation=activation.value, optimizer=optimizer.value,
        lr=lr, momentum=momentum, weight_decay=weight_decay, epochs=epochs, batch_size=batch_size,
        device=device.value, seed=seed, train_fraction=train_fraction,
        probe_split=probe_split.value if probe_split else None, probe_size=probe_size,
        log_epochs=log_epochs, log_steps=log_steps, activation_dtype=activation_dtype.value,
        grad_stats=grad_stats, experiment=experiment,
        data_dir=str(data_dir) if data_dir is not None else None,
    )
    explicit = _explicit_params(ctx)
    with user_errors():
        summary = run_train(options, explicit, resume, run_name, tracking_uri, quiet)
    _print_summary(summary, json_out, quiet)
    if summary.get("status") == "KILLED":
        raise typer.Exit(130)


def _explicit_params(ctx: typer.Context) -> set[str]:
    """The options the user typed (so --resume can tell defaults from choices)."""
    return {name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"}


def _print_summary(summary: dict, json_out: bool, quiet: bool) -> None:
    if json_out:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
    elif not quiet:
        stderr.print_json(json.dumps(summary, default=str))


# ---------------------------------------------------------------------------- mi
@app.command()
def mi(
    run_id: Annotated[str, typer.Argument(help="Train run id (or unique prefix); a sweep id runs it on every member.")],
    method: Annotated[Method, typer.Option(help="Estimator: binning, kde, kraskov (alias ksg) or mine.")] = Method.binning,
    bins: Annotated[int, typer.Option(help="binning: number of bins per unit.")] = 30,
    binning: Annotated[BinningStrategy, typer.Option(help="binning: equal-width (uniform) or equal-mass (adaptive) bins.")] = BinningStrategy.uniform,
    noise_var: Annotated[Optional[list[float]], typer.Option(help="kde/kraskov/mine: variance s2 of the added Gaussian noise; repeat for a sweep.")] = None,
    k: Annotated[int, typer.Option(help="kraskov: neighbours.")] = 3,
    mine_steps: Annotated[int, typer.Option(help="mine: training steps.")] = 1000,
    mine_batch_size: Annotated[int, typer.Option(help="mine: batch size.")] = 512,
    mine_hidden: Annotated[int, typer.Option(help="mine: statistics-network width.")] = 128,
    mine_lr: Annotated[float, typer.Option(help="mine: Adam learning rate.")] = 1e-3,
    layers: Annotated[Optional[list[str]], typer.Option("--layer", help="Only these layers (repeatable).")] = None,
    epochs: Annotated[Optional[list[float]], typer.Option("--epoch", help="Only these recorded epochs (repeatable); bin edges still span all epochs.")] = None,
    device: Annotated[Device, typer.Option(help="mine: torch device.")] = Device.auto,
    seed: Annotated[int, typer.Option(help="Seed for the added noise and MINE.")] = 0,
    tracking_uri: TrackingUri = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
):
    """Estimate I(X;T) and I(T;Y) for every recorded (epoch, layer) of a train run.

    Example: [bold]ibcli mi 3f2a --method kde --noise-var 0.1 --noise-var 0.01[/]
    """
    from ibcli.analysis import MiOptions, run_mi

    options = MiOptions(
        method=method.value, bins=bins, binning=binning.value, noise_vars=tuple(noise_var or (0.1,)), k=k,
        mine_steps=mine_steps, mine_batch_size=mine_batch_size, mine_hidden=mine_hidden, mine_lr=mine_lr,
        layers=tuple(layers or ()), epochs=tuple(epochs or ()), device=device.value, seed=seed,
    )
    with user_errors():
        summary = run_mi(run_id, options, tracking_uri, quiet=quiet)
    if json_out:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")


# ---------------------------------------------------------------------------- plot
@app.command()
def plot(
    run_id: Annotated[str, typer.Argument(help="Train run id (or unique prefix); a sweep id averages over its members.")],
    mi_run: Annotated[Optional[list[str]], typer.Option(help="mi run(s) to plot (default: the latest mi run of each method).")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Also write the HTML files to this folder.")] = None,
    band: Annotated[Band, typer.Option(help="Sweeps: the band around the mean over seeds, sd (mean ± sd) or bootstrap (95% interval of the mean).")] = "sd",
    tracking_uri: TrackingUri = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
):
    """Draw the information plane, MI per epoch and training curves as plotly HTML.

    Example: [bold]ibcli plot 3f2a --output figures/[/]
    """
    from ibcli.plot_stage import run_plot

    with user_errors():
        summary = run_plot(run_id, list(mi_run or []), output, tracking_uri, band=Band(band).value)
    if json_out:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
    elif not quiet:
        for path in summary["files"]:
            stderr.print(f"wrote {path}")


# ---------------------------------------------------------------------------- sweep
@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sweep(
    ctx: typer.Context,
    seeds: Annotated[str, typer.Option(help='Seeds, one train run each: a range "0-9", a list "0,1,5" or one seed "3".')] = "0-4",
    jobs: Annotated[int, typer.Option(help="Train runs at a time (parallel processes).")] = 1,
    threads: Annotated[Optional[int], typer.Option(help="Torch threads per run (default: cores // jobs).")] = None,
    run_name: Annotated[Optional[str], typer.Option(help="MLflow run name of the sweep (members get NAME-seedS).")] = None,
    tracking_uri: TrackingUri = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
):
    """Train one run per seed, grouped under a sweep run; every other option is `ibcli train`'s.

    Then `ibcli mi SWEEP_ID` estimates MI for every member and `ibcli plot SWEEP_ID` averages over seeds.

    Example: [bold]ibcli sweep --seeds 0-9 --jobs 2 --dataset ib12 --model ib --epochs 2000 --log-epochs log:40[/]
    """
    from ibcli.sweep import run_sweep

    summary = None
    try:
        with user_errors():
            try:
                summary = run_sweep(list(ctx.args), seeds, jobs, threads, run_name, tracking_uri, quiet)
            except UserError as exc:
                summary = getattr(exc, "summary", None)
                if summary is not None and json_out:
                    sys.stdout.write(json.dumps(summary, default=str) + "\n")
                raise
    except KeyboardInterrupt as exc:
        summary = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else None
        if summary is not None and json_out:
            sys.stdout.write(json.dumps(summary, default=str) + "\n")
        stderr.print("[yellow]sweep interrupted:[/] running members were stopped and keep their records", highlight=False)
        raise typer.Exit(130)
    _print_summary(summary, json_out, quiet)


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
    from ibcli.browse import list_runs, print_runs

    with user_errors():
        rows = list_runs(tracking_uri, limit=limit)
    if json_out:
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
    else:
        print_runs(rows)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="Run id (or unique prefix) of a train, mi or plot run.")],
    tracking_uri: TrackingUri = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run as one JSON object on stdout.")] = False,
):
    """Print a run's params, metrics, artifacts and child runs.

    Example: [bold]ibcli show 3f2a --json[/]
    """
    from ibcli.browse import describe_run, print_run

    with user_errors():
        info = describe_run(run_id, tracking_uri)
    if json_out:
        sys.stdout.write(json.dumps(info, default=str) + "\n")
    else:
        print_run(info)


@app.command()
def ui(
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5000,
    tracking_uri: TrackingUri = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the mlflow command instead of running it.")] = False,
):
    """Start the MLflow UI on this project's store (runs/ by default), nesting mi and plot runs under their train run.

    Example: [bold]ibcli ui --port 5001[/], then open http://127.0.0.1:5001
    """
    from ibcli.browse import exec_ui, ui_command

    with user_errors():
        command = ui_command(tracking_uri, host, port)
    if dry_run:
        sys.stdout.write(shlex.join(command) + "\n")
        return
    stderr.print(f"MLflow UI on http://{host}:{port} (Ctrl-C stops it)", highlight=False)
    exec_ui(command)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: usage errors become one line and exit code 2."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="ibcli")
    except UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        message = exc.format_message().replace("Value error, ", "")  # Typer's prefix on a bad choice
        stderr.print(f"[bold red]error:[/] {message}{hint}", highlight=False, soft_wrap=True)
        return 2
    except typer.Abort:
        return 130
    except SystemExit as exc:  # --show-completion, --install-completion, shell completion itself
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return rv if isinstance(rv, int) else 0


def main_exit() -> None:
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
