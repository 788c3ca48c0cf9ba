"""Finding your way in the store: `ibcli runs`, `ibcli show RUN_ID`, `ibcli ui`.

`runs` lists train runs with their mi and plot children; `show` prints one run's
params, metrics and artifacts (`--summary`: a train run's results); `ui` starts the
MLflow UI on the same store. Everything prints literally (`ibcli.console`), tables fit
80 columns without cutting a cell, and paths are never wrapped.
"""

from __future__ import annotations

import os
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

from rich.text import Text

from ibcli.console import fitted_table, stdout_console
from ibcli.errors import UserError
from ibcli.store import EPOCHS_DONE_TAG, EPOCHS_TAG, FAILURE_TAG, PARENT_TAG, STAGE_TAG, Store, local_store_dir


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
            "test_accuracy": r.data.metrics.get("test_accuracy"),
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
    run's figures (the --output copies when they are still there, else the artifacts) and the
    command that opens the MLflow UI on this store.

    Raises:
        UserError: unknown run, or not a train run.
    """
    from ibcli.estimators import registry
    from ibcli.mi_table import MI_FILE, read_mi_table
    from ibcli.results import latest_mi_runs
    from ibcli.stages.mi import layer_rows

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
        for f in _artifact_files(store, plot_id, "figures"):
            copy = Path(output) / Path(f["path"]).name if output else None
            figures.append(str(copy) if copy is not None and copy.is_file() else f"{plot.info.artifact_uri}/{f['path']}")
        break
    default = tracking_uri is None and not os.environ.get("MLFLOW_TRACKING_URI")
    return {"run_id": rid, "run_name": run.info.run_name, "status": run.info.status, "epochs_done": done, "epochs": target,
            "test_accuracy": run.data.metrics.get("test_accuracy"), "mi": methods, "plot_run_id": plot_id,
            "figures": figures, "ui": "ibcli ui" if default else f"ibcli ui --tracking-uri {shlex.quote(store.uri)}"}


def print_train_summary(info: dict) -> None:
    """`train_summary` for people, on stdout."""
    from ibcli.stages.mi import summary_table

    console = stdout_console()
    acc = info["test_accuracy"]
    epochs = info["epochs_done"] if info["epochs_done"] is not None else info["epochs"]
    console.print(Text(f"train run {info['run_id']} ({info['run_name']}): {info['status']}, {epochs} epochs, "
                       f"test accuracy {'?' if acc is None else f'{acc:.4f}'}", style="bold"))
    if not info["mi"]:
        console.print(f"no finished mi run yet: ibcli mi {info['run_id'][:8]} --method binning")
    for m in info["mi"]:
        console.print(f"mi run {m['mi_run_id']}:")
        console.print(summary_table(m))
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
    for key in ("parent_run_id", "start_time", "end_time", "failure", "artifact_uri"):
        if info.get(key):
            console.print(f"  {key.replace('_', ' ')}: {info[key]}")
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


def ui_command(tracking_uri: str | None, host: str, port: int) -> list[str]:
    """The `mlflow ui` command line for this project's store.

    Raises:
        UserError: no local store yet, or the store is an MLflow server (open it in a browser).
    """
    store = Store(tracking_uri, must_exist=True)
    local = local_store_dir(store.uri)
    if local is None:
        raise UserError(f"the store {store.uri} is not a local SQLite store: open its server's UI in a browser instead")
    if not 1 <= port <= 65535:
        raise UserError(f"--port must be in 1..65535, got {port}")
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store.uri,
            "--default-artifact-root", str((local / "artifacts").resolve()), "--host", host, "--port", str(port)]


def exec_ui(command: list[str]) -> None:
    """Replace this process with the MLflow UI server."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)
