"""Finding your way in the store: `ibcli runs`, `ibcli show RUN_ID`, `ibcli ui`.

`runs` lists train runs with their mi and plot children; `show` prints one run's
params, metrics and artifacts (`--summary`: a train run's results); `ui` starts the
MLflow UI on the same store. Everything prints literally (`ibcli.console`), tables fit
80 columns without cutting a cell, and paths are never wrapped.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import webbrowser
from datetime import datetime, timezone
from pathlib import Path

from rich.text import Text

from ibcli.console import counted, fitted_table, note, stdout_console
from ibcli.errors import UserError
from ibcli.estimators import registry
from ibcli.metric_names import latest
from ibcli.mi_table import MI_FILE, read_mi_table
from ibcli.results import coverage_notes, latest_mi_runs
from ibcli.run_names import DESCRIPTION_TAG
from ibcli.stages.mi import layer_rows, summary_table
from ibcli.store import (DEFAULT_EXPERIMENT, EPOCHS_DONE_TAG, EPOCHS_TAG, FAILURE_TAG, PARENT_TAG, STAGE_TAG, Store,
                         local_store_dir, resolve_tracking_uri)


def _time(ms: int | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).astimezone().isoformat(timespec="seconds")


def _epochs(run) -> tuple[int | None, int | None]:
    """(epochs done, epochs targeted) of a train run; done is None while it is unknown."""
    tags, params = run.data.tags, run.data.params
    target = tags.get(EPOCHS_TAG, params.get("epochs"))
    done = tags.get(EPOCHS_DONE_TAG)
    return (int(done) if done is not None else None), (int(target) if target is not None else None)


STATUS_STYLES = {"FINISHED": "green", "RUNNING": "yellow", "KILLED": "magenta", "FAILED": "red"}


def list_runs(tracking_uri: str | None, limit: int = 50) -> list[dict]:
    """Train runs, newest first, each with its mi and plot children (one dict per train run)."""
    store = Store(tracking_uri, must_exist=True)
    runs = store.all_runs()
    children: dict[str, list] = {}
    for r in runs:
        parent = r.data.tags.get(PARENT_TAG)
        if parent:
            children.setdefault(parent, []).append(r)
    out = []
    for r in runs:
        if r.data.tags.get(STAGE_TAG) != "train":
            continue
        done, target = _epochs(r)
        kids = children.get(r.info.run_id, [])
        out.append({
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "experiment_id": r.info.experiment_id,
            "status": r.info.status,
            "start_time": _time(r.info.start_time),
            "model": r.data.params.get("model"),
            "activation": r.data.params.get("activation"),
            "dataset": r.data.params.get("dataset"),
            "epochs_done": done,
            "epochs": target,
            "test_accuracy": latest(r.data.metrics, "test_accuracy"),
            "failure": r.data.tags.get(FAILURE_TAG),
            "mi": [{"run_id": k.info.run_id, "method": k.data.params.get("method"), "status": k.info.status}
                   for k in kids if k.data.tags.get(STAGE_TAG) == "mi"],
            "plots": [{"run_id": k.info.run_id, "status": k.info.status}
                      for k in kids if k.data.tags.get(STAGE_TAG) == "plot"],
        })
        if len(out) >= limit:
            break
    return out


def print_runs(rows: list[dict]) -> None:
    """The `ibcli runs` table on stdout (fits 80 columns: only the mi column wraps, between methods)."""
    console = stdout_console()
    if not rows:
        console.print("no train runs in this store yet: start one with `ibcli train`")
        return
    columns = [("id", "left"), ("model", "left"), ("activation", "left"), ("epochs", "right"), ("test acc", "right"),
               ("mi done", "left"), ("plots", "right"), ("status", "left")]
    cells = []
    for row in rows:
        done, target = row["epochs_done"], row["epochs"]
        epochs = f"{done}/{target}" if done is not None and done != target else f"{target if done is None else done}"
        acc = row["test_accuracy"]
        methods = sorted({m["method"] for m in row["mi"] if m["status"] == "FINISHED" and m["method"]})
        cells.append([row["run_id"][:8], row["model"] or "?", row["activation"] or "?", epochs,
                      "" if acc is None else f"{acc:.4f}", ", ".join(methods) or "-",
                      str(sum(p["status"] == "FINISHED" for p in row["plots"])),
                      Text(row["status"], style=STATUS_STYLES.get(row["status"], ""))])
    console.print(fitted_table(columns, cells, flexible=("mi done",), title="train runs (newest first)"))


def describe_run(run_id: str, tracking_uri: str | None) -> dict:
    """One run (any stage): info, params, latest metrics, artifacts, parent and children."""
    store = Store(tracking_uri, must_exist=True)
    run = store.find_run(run_id)
    rid = run.info.run_id
    return {
        "run_id": rid,
        "run_name": run.info.run_name,
        "stage": run.data.tags.get(STAGE_TAG),
        "status": run.info.status,
        "experiment_id": run.info.experiment_id,
        "parent_run_id": run.data.tags.get(PARENT_TAG),
        "start_time": _time(run.info.start_time),
        "end_time": _time(run.info.end_time),
        "failure": run.data.tags.get(FAILURE_TAG),
        "description": run.data.tags.get(DESCRIPTION_TAG),
        "artifact_uri": run.info.artifact_uri,
        "params": dict(sorted(run.data.params.items())),
        "metrics": dict(sorted(run.data.metrics.items())),
        "tags": {k: v for k, v in sorted(run.data.tags.items()) if not k.startswith("mlflow.")},
        "artifacts": _artifact_files(store, rid),
        "children": [{"run_id": c.info.run_id, "stage": c.data.tags.get(STAGE_TAG), "status": c.info.status,
                      "method": c.data.params.get("method")} for c in store.children(rid)],
    }


def train_summary(run_id: str, tracking_uri: str | None) -> dict:
    """A train run's results (`ibcli show --summary`, the end of `make run`): test accuracy, the
    latest finished mi run of each method with its per-layer I(X;T) summary, the latest plot
    run's figures (the --output copies when they are still there, else the artifacts), the
    command that opens the MLflow UI on this store, and `notes` (`coverage_notes`: an older mi
    run of a method that covers more layers or records than the latest one).

    Raises:
        UserError: unknown run, or not a train run.
    """
    store = Store(tracking_uri, must_exist=True)
    run = store.find_run(run_id, stage="train")
    rid = run.info.run_id
    done, target = _epochs(run)
    methods = []
    order = {name: i for i, name in enumerate(registry.METHODS)}
    for mi in sorted(latest_mi_runs(store, run), key=lambda r: order.get(r.data.params.get("method"), len(order))):
        try:
            table = read_mi_table(store.artifacts(mi).local_path(MI_FILE))
        except FileNotFoundError:
            continue
        method = mi.data.params.get("method")
        methods.append({"method": method, "mi_run_id": mi.info.run_id, "quantity": list(registry.get(method).quantity),
                        "ceiling_bits": float(table["ceiling_bits"].iloc[0]) if len(table) else None,
                        "layers": layer_rows(table)})
    figures, plot_id = [], None
    for plot in store.children(rid, stage="plot"):
        if plot.info.status != "FINISHED":
            continue
        plot_id = plot.info.run_id
        output = plot.data.params.get("output")
        copies = sorted(Path(output).glob("*.html")) if output and Path(output).is_dir() else []
        if copies:  # the --output folder: one HTML file per figure (and report.html)
            figures = [str(p) for p in copies]
        else:  # the plot run's own: report.html and any static figures
            figures = [f"{plot.info.artifact_uri}/{f['path']}" for f in _artifact_files(store, plot_id, "figures")]
        break
    default = tracking_uri is None and not os.environ.get("MLFLOW_TRACKING_URI")
    return {"run_id": rid, "run_name": run.info.run_name, "status": run.info.status, "epochs_done": done, "epochs": target,
            "test_accuracy": latest(run.data.metrics, "test_accuracy"), "mi": methods, "plot_run_id": plot_id,
            "figures": figures, "ui": "ibcli ui" if default else f"ibcli ui --tracking-uri {shlex.quote(store.uri)}",
            "notes": coverage_notes(store, run, command=True)}


def print_train_summary(info: dict) -> None:
    """`train_summary` for people, on stdout."""
    console = stdout_console()
    acc = info["test_accuracy"]
    epochs = info["epochs_done"] if info["epochs_done"] is not None else info["epochs"]
    console.print(Text(f"train run {info['run_id']} ({info['run_name']}): {info['status']}, {counted(epochs, 'epoch')}, "
                       f"test accuracy {'?' if acc is None else f'{acc:.4f}'}", style="bold"))
    if not info["mi"]:
        console.print(f"no finished mi run yet: ibcli mi {info['run_id'][:8]} --method binning")
    for m in info["mi"]:
        console.print(f"mi run {m['mi_run_id']}:")
        console.print(summary_table(m))
    for text in info["notes"]:
        note(text)
    if info["figures"]:
        console.print(Text("figures:", style="bold"))
        for path in info["figures"]:
            console.print(f"  {path}")
    else:
        console.print(f"no figures yet: ibcli plot {info['run_id'][:8]} --output figures/")
    console.print(f"browse every run: {info['ui']}   (then open http://127.0.0.1:5000)")


def _artifact_files(store: Store, run_id: str, path: str | None = None) -> list[dict]:
    """Every artifact file of a run (recursively), with its size in bytes."""
    out = []
    for f in store.client.list_artifacts(run_id, path):
        if f.is_dir:
            out.extend(_artifact_files(store, run_id, f.path))
        else:
            out.append({"path": f.path, "bytes": f.file_size})
    return out


def print_run(info: dict) -> None:
    """The `ibcli show` report on stdout: `key  value` lines, each value (a path, a JSON tag) on
    one unwrapped line, so it copies whole."""
    console = stdout_console()
    console.print(Text(f"{info['stage'] or 'run'} run {info['run_id']} ({info['run_name']}), status {info['status']}",
                       style="bold"))
    for key in ("parent_run_id", "start_time", "end_time", "failure", "description", "artifact_uri"):
        if info.get(key):
            text = info[key].strip("`\n ") if key == "description" else info[key]  # the command line, without its code fence
            console.print(f"  {key.replace('_', ' ')}: {text}")
    for title, items in (("params", info["params"]), ("metrics (latest)", info["metrics"]), ("tags", info["tags"])):
        if not items:
            continue
        console.print(Text(title, style="bold"))
        width = max(map(len, items))
        for k, v in items.items():
            console.print(Text.assemble(("  " + k.ljust(width), "cyan"), "  ", f"{v:.6g}" if isinstance(v, float) else str(v)))
    if info["artifacts"]:
        console.print(Text("artifacts (bytes, path)", style="bold"))
        sizes = ["" if a["bytes"] is None else f"{a['bytes']:,}" for a in info["artifacts"]]
        width = max(map(len, sizes))
        for size, a in zip(sizes, info["artifacts"]):
            console.print(f"  {size.rjust(width)}  {a['path']}")
    if info["children"]:
        rows = [[c["run_id"][:8], c["stage"] or "", c["method"] or "", c["status"]] for c in info["children"]]
        console.print(fitted_table([("id", "left"), ("stage", "left"), ("method", "left"), ("status", "left")], rows,
                                   title="child runs"))


def server_ui_url(tracking_uri: str | None) -> str | None:
    """The UI address of a server store (the tracking server serves its own UI), else None.

    Raises:
        StoreUnreachable: the server does not answer.
    """
    uri = resolve_tracking_uri(tracking_uri)
    if not uri.startswith(("http://", "https://")):
        return None
    Store(uri)  # says so in one line when the server does not answer
    return uri.rstrip("/") + "/"


# `mlflow ui` as one person's browser needs it: one worker and no GenAI job runner (its scheduler
# and consumers), 0.8 GB resident instead of 2.1 GB with the defaults (measured with ps); no
# warnings; uvicorn quiet but for warnings and errors.
UI_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PYTHONWARNINGS": "ignore"}
# Start-up lines `mlflow ui` prints whatever its options; everything else it says goes through.
UI_NOISE = ("[MLflow] Security middleware enabled with default settings",)
UI_START_SECONDS = 180.0
POSIX = os.name == "posix"


def prepare_ui(tracking_uri: str | None, host: str, port: int, experiment: str | None = None) -> tuple[list[str], str]:
    """(`ui_command`, `runs_url`) of this project's store, opened once.

    Raises:
        UserError: as `ui_command` and `runs_url`.
    """
    store = Store(tracking_uri, must_exist=True)
    return ui_command(store, host, port), runs_url(store, host, port, experiment)


def ui_command(store: Store, host: str, port: int) -> list[str]:
    """The `mlflow ui` command line for the store (run it with `UI_ENV` added).

    Raises:
        UserError: the store is an MLflow server (open it in a browser), or a bad port.
    """
    local = local_store_dir(store.uri)
    if local is None:
        raise UserError(f"the store {store.uri} is not a local SQLite store: open its server's UI in a browser instead")
    if not 1 <= port <= 65535:
        raise UserError(f"--port must be in 1..65535, got {port}")
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store.uri, "--registry-store-uri", store.uri,
            "--default-artifact-root", str((local / "artifacts").resolve()), "--host", host, "--port", str(port),
            "--workers", "1", "--uvicorn-opts", "--log-level warning --no-access-log"]


def runs_url(store: Store, host: str, port: int, experiment: str | None = None) -> str:
    """The address of `experiment`'s runs table; without one, the ibcli experiment's (the
    experiments list while the store has no ibcli experiment, e.g. only `ibcli reproduce` runs).

    `workflowType=machine_learning` opens MLflow 3's classic view (runs, metrics, artifacts)
    instead of its GenAI one (traces); the UI remembers the choice.

    Raises:
        UserError: `experiment` is not in the store (the message lists the ones that are).
    """
    exp = store.client.get_experiment_by_name(experiment or DEFAULT_EXPERIMENT)
    if exp is None and experiment is not None:
        names = sorted(e.name for e in store.client.search_experiments())
        raise UserError(f"no experiment {experiment!r} in the store {store.uri}: pass --experiment with one of "
                        f"{', '.join(map(repr, names))}")
    where = "0.0.0.0", "::", ""
    base = f"http://{'127.0.0.1' if host in where else host}:{port}"
    page = f"experiments/{exp.experiment_id}/runs" if exp is not None else "experiments"
    return f"{base}/#/{page}?workflowType=machine_learning"


def _port_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (as servers do, past closed connections' TIME_WAIT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _can_open_browser() -> bool:
    """A graphical browser can open: macOS, Windows, or an X/Wayland session (never a text browser)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _relay(stream, sink) -> None:
    """Copy the server's output lines to `sink`, without its start-up noise (`UI_NOISE`)."""
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace")
        if not line.startswith(UI_NOISE):
            sink.write(line)
            sink.flush()


def _wait_until_up(proc: subprocess.Popen, url: str, seconds: float) -> bool:
    """Poll the server's /health until it answers (True) or the process ends or time runs out."""
    health = url.split("/#/")[0] + "/health"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def serve_ui(command: list[str], url: str, host: str, port: int, open_browser: bool, say=print) -> int:
    """Run the MLflow UI server until it ends or Ctrl-C; print `url` once it answers and open it
    in a browser when asked and possible. Returns the server's exit code (0 after Ctrl-C).

    Raises:
        UserError: the port is taken, or the server ended before it answered.
    """
    if not _port_free(host, port):
        raise UserError(f"port {port} on {host} is in use (another `ibcli ui`?): pass --port N")
    # Its own process group, so that stopping it stops mlflow's uvicorn worker too.
    proc = subprocess.Popen(command, env={**os.environ, **UI_ENV}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=POSIX)
    relay = threading.Thread(target=_relay, args=(proc.stdout, sys.stderr), daemon=True)
    relay.start()
    try:
        if not _wait_until_up(proc, url, UI_START_SECONDS):
            _stop(proc)
            relay.join(timeout=5)
            raise UserError(f"the MLflow UI did not start (exit code {proc.returncode}; its messages are above)")
        say(f"MLflow UI: {url}  (Ctrl-C stops it)")
        if open_browser and _can_open_browser():
            webbrowser.open(url)
        return proc.wait()
    except KeyboardInterrupt:
        _stop(proc)
        return 0
    finally:
        if proc.poll() is None:
            _stop(proc)


def _stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the server's process group (mlflow and its worker), SIGKILL after `grace` seconds."""
    _signal(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal(proc, signal.SIGKILL if POSIX else signal.SIGTERM)
        proc.wait()


def _signal(proc: subprocess.Popen, sig) -> None:
    try:
        if POSIX:
            os.killpg(proc.pid, sig)
        elif proc.poll() is None:
            proc.terminate()
    except ProcessLookupError:
        pass
