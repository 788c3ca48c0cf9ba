"""The `ibcli` command line: thin commands that parse options, call one stage, print.

The only module that knows Typer; nothing imports it. The stages (and torch, mlflow)
are imported inside each command, deliberately: `ibcli --help` and a mistyped option
answer at once instead of after seconds of imports.
"""

from __future__ import annotations

import inspect
import json
import shlex
import signal
import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ibcli.datasets import DATASETS
from ibcli.devices import DEVICES
from ibcli.errors import UserError
from ibcli.estimators import registry
from ibcli.estimators.errors import EstimatorInputError
from ibcli.models import ACTIVATIONS, MODEL_ALIASES, MODELS, OPTIMIZERS
from ibcli.progress import stderr


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


def _print_summary(summary: dict, json_out: bool, quiet: bool) -> None:
    if json_out:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
    elif not quiet:
        stderr.print_json(json.dumps(summary, default=str))


# ---------------------------------------------------------------------------- train
# Options of `ibcli train` that are about the command, not the run.
TRAIN_COMMAND_OPTIONS = ("resume", "run_name", "tracking_uri", "json_out", "quiet")


@app.command()
def train(
    ctx: typer.Context,
    model: Annotated[Model, typer.Option(help="Network: mlp (784-1024-20-20-20-20-10), cnn, or ib/tishby (12-10-7-5-4-3-2).")] = "mlp",
    dataset: Annotated[Dataset, typer.Option(help="mnist, fashion-mnist, cifar10, or ib12: the 12-bit task of Shwartz-Ziv & Tishby (shipped, offline).")] = "mnist",
    activation: Annotated[Activation, typer.Option(help="Hidden-layer nonlinearity.")] = "tanh",
    optimizer: Annotated[Optimizer, typer.Option(help="sgd (with --momentum) or adam.")] = "adam",
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = 0.9,
    weight_decay: Annotated[float, typer.Option(help="L2 weight decay.")] = 0.0,
    epochs: Annotated[int, typer.Option(help="Epochs to train (with --resume: the new total).")] = 20,
    batch_size: Annotated[int, typer.Option(help="Mini-batch size.")] = 128,
    device: Annotated[Device, typer.Option(help="auto = cuda when available, else cpu.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for init, shuffling and splits.")] = 0,
    data_dir: Annotated[Optional[Path], typer.Option(help="Holds the datasets in torchvision's layout, e.g. MNIST/raw/ (default: $IBCLI_DATA_DIR, else ./data).")] = None,
    train_fraction: Annotated[Optional[float], typer.Option(help="Image datasets: keep this prefix of the train set; ib12: train share of the split (default 0.85).")] = None,
    probe_split: Annotated[Optional[ProbeSplit], typer.Option(help="Where the probe set comes from (default: test; all for ib12).")] = None,
    probe_size: Annotated[Optional[int], typer.Option(help="Probe samples (default: the whole split).")] = None,
    log_epochs: Annotated[str, typer.Option(help="Epochs to record: all, every:K, log[:N] (N log-spaced, default 30), none, or 1,2,5.")] = "log:30",
    log_steps: Annotated[str, typer.Option(help="Also record at optimizer steps: none, log:N[:E] (N log-spaced steps in the first E epochs), or 1,2,5.")] = "none",
    activation_dtype: Annotated[DType, typer.Option(help="dtype of stored activations.")] = "float32",
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
    from ibcli.stages.train import run_train

    options = {k: _value(v) for k, v in ctx.params.items() if k not in TRAIN_COMMAND_OPTIONS}
    with user_errors():
        summary = run_train(options, _explicit(ctx), resume, run_name, tracking_uri, quiet)
    _print_summary(summary, json_out, quiet)
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
    method: Annotated[Method, typer.Option(help="Estimator: " + "; ".join(f"{e.name}: {e.title}" for e in registry.ESTIMATORS) + ".")] = "binning",
    layers: Annotated[Optional[list[str]], typer.Option("--layer", help="Only these layers (repeatable).")] = None,
    epochs: Annotated[Optional[list[float]], typer.Option("--epoch", help="Only these recorded epochs (repeatable); binning edges still span all epochs.")] = None,
    device: Annotated[Device, typer.Option(help="Torch device of the methods that use one (auto = cuda when available).")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of every random draw (added noise, MINE's training); each record adds its step.")] = 0,
    jobs: Annotated[Optional[int], typer.Option(help="Run the (epoch, layer) tasks in N local Dask worker processes (needs ibcli[dask]).")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="Run the tasks on the Dask cluster at this address, e.g. tcp://HOST:8786 (needs ibcli[dask]).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="BLAS/torch threads (and cores) of each --jobs worker (default: cores // jobs), or of this process without --jobs.")] = None,
    tracking_uri: TrackingUri = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
    **method_params,
):
    """Estimate I(X;T) and I(T;Y) for every recorded (epoch, layer) of a train run.

    Example: [bold]ibcli mi 3f2a --method kde --noise-var 0.1 --noise-var 0.01[/]
    """
    from ibcli.stages.mi import run_mi

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
                         seed=seed, device=_value(device), tracking_uri=tracking_uri, quiet=quiet,
                         jobs=jobs, scheduler=scheduler, threads=threads)
    if json_out:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")


# The estimators' parameters become options of `ibcli mi`: a new method adds its own.
mi.__signature__ = inspect.Signature(
    [p for p in inspect.signature(mi, eval_str=True).parameters.values() if p.kind != p.VAR_KEYWORD] + _method_options()
)
mi.__annotations__ = {p.name: p.annotation for p in mi.__signature__.parameters.values()}
app.command()(mi)


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
    from ibcli.stages.plot import run_plot

    with user_errors():
        summary = run_plot(run_id, list(mi_run or []), output, tracking_uri, band=_value(band))
    if json_out:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
    elif not quiet:
        for path in summary["files"]:
            stderr.print(f"wrote {path}")


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


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sweep(
    ctx: typer.Context,
    seeds: Annotated[str, typer.Option(help='Seeds, one train run each: a range "0-9", a list "0,1,5" or one seed "3".')] = "0-4",
    jobs: Annotated[int, typer.Option(help="Train runs at a time (parallel processes).")] = 1,
    threads: Annotated[Optional[int], typer.Option(help="Torch threads per run (default: cores // jobs).")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="Run the members on the Dask cluster at this address (tcp://HOST:8786) instead of --jobs local processes; needs ibcli[dask] and a store every worker reaches.")] = None,
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
                summary = run_sweep(parse_train_args(ctx.args), seeds, jobs, threads, run_name, tracking_uri, quiet,
                                    scheduler=scheduler)
            except SweepFailed as exc:
                if json_out:
                    sys.stdout.write(json.dumps(exc.summary, default=str) + "\n")
                raise
    except SweepInterrupted as exc:
        if json_out:
            sys.stdout.write(json.dumps(exc.args[0], default=str) + "\n")
        stderr.print("[yellow]sweep interrupted:[/] running members were stopped and keep their records", highlight=False)
        raise typer.Exit(130)
    _print_summary(summary, json_out, quiet)


# ---------------------------------------------------------------------------- reproduce
@app.command()
def reproduce(
    paper: Annotated[Paper, typer.Argument(help="tishby: Shwartz-Ziv & Tishby (2017), binning; saxe: Saxe et al. (2018), tanh vs ReLU, binning and KDE.")],
    out: Annotated[Optional[Path], typer.Option(help="Folder for the figures and summary.txt (default results/PAPER).")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Seeds (tishby 0-7, saxe 0-3).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs per run [2000].")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate [0.003].")] = None,
    optimizer: Annotated[Optional[Optimizer], typer.Option(help="Optimizer [adam].")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Mini-batch size [512].")] = None,
    records: Annotated[Optional[int], typer.Option(help="Log-spaced recorded epochs (tishby 40, saxe 30).")] = None,
    bins: Annotated[Optional[int], typer.Option(help="Binning: bins [30].")] = None,
    noise_var: Annotated[Optional[float], typer.Option(help="KDE noise variance s2 [0.001, as Saxe et al.'s code].")] = None,
    jobs: Annotated[Optional[int], typer.Option(help="Train runs at a time [2].")] = None,
    threads: Annotated[Optional[int], typer.Option(help="Torch threads per run [1].")] = None,
    band: Annotated[Optional[Band], typer.Option(help="Band around the mean over seeds [sd].")] = None,
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
    from ibcli.stages.browse import describe_run, print_run

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

    On a server store (http://HOST:PORT) the server is the UI: its address is printed.

    Example: [bold]ibcli ui --port 5001[/], then open http://127.0.0.1:5001
    """
    from ibcli.stages.browse import exec_ui, server_ui_url, ui_command

    with user_errors():
        url = server_ui_url(tracking_uri)
        if url is None:
            command = ui_command(tracking_uri, host, port)
    if url is not None:
        sys.stdout.write(url + "\n")
        stderr.print(f"this store is an MLflow server: its UI is at {url} (open it in a browser)", highlight=False)
        return
    if dry_run:
        sys.stdout.write(shlex.join(command) + "\n")
        return
    stderr.print(f"MLflow UI on http://{host}:{port} (Ctrl-C stops it)", highlight=False)
    exec_ui(command)


# ---------------------------------------------------------------------------- server
@app.command()
def server(
    backend_store_uri: Annotated[Optional[str], typer.Option(help="The runs' database: postgresql://USER:PASSWORD@HOST:PORT/DB (psycopg), or sqlite:///PATH for a trial (default: $IBCLI_SERVER_BACKEND).")] = None,
    artifacts_destination: Annotated[Optional[str], typer.Option(help="Where the server keeps artifacts: a folder, or s3://BUCKET/PREFIX on S3-compatible storage (default: $IBCLI_SERVER_ARTIFACTS, else ./server-artifacts).")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 for every interface; then see --allowed-hosts and --basic-auth).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5000,
    workers: Annotated[Optional[int], typer.Option(help="Server worker processes (MLflow's default: 4).")] = None,
    allowed_hosts: Annotated[Optional[str], typer.Option(help="Host headers to accept, comma-separated, e.g. 'mlflow.lab.example:5000,10.0.0.5:5000' (MLflow's default: localhost and private addresses).")] = None,
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
    for note in notes:
        stderr.print(f"[yellow]note:[/] {note}", highlight=False)
    stderr.print(f"MLflow server on http://{host}:{port} (Ctrl-C stops it); clients: MLFLOW_TRACKING_URI=http://{host}:{port}",
                 highlight=False)
    exec_server(command)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: usage errors become one line and exit code 2."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="ibcli")
    except typer.TyperException as exc:  # click's usage errors (bad option, bad value, missing argument)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
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
