"""Finding your way in the store: `ibcli runs`, `ibcli show RUN_ID`, `ibcli ui`.

`runs` lists train runs with their mi and plot children; `show` prints one run's
params, metrics and artifacts; `ui` starts the MLflow UI on the same store.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone

from rich.console import Console
from rich.table import Table

from ibcli.errors import UserError
from ibcli.store import (EPOCHS_DONE_TAG, EPOCHS_TAG, FAILURE_TAG, PARENT_TAG, STAGE_TAG, Store, local_store_dir,
                         resolve_tracking_uri)


def _console():
    """stdout; piped output gets room for whole rows instead of 80 columns with cells cut."""
    return Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200)


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
    """The `ibcli runs` table on stdout."""
    console = _console()
    if not rows:
        console.print("no train runs in this store yet: start one with `ibcli train`")
        return
    table = Table(title="train runs (newest first)")
    for col, justify in (("id", "left"), ("model", "left"), ("activation", "left"), ("epochs", "right"),
                         ("test acc", "right"), ("mi done", "left"), ("plots", "right"), ("status", "left")):
        table.add_column(col, justify=justify, no_wrap=col in ("id", "status"))
    styles = {"FINISHED": "green", "RUNNING": "yellow", "KILLED": "magenta", "FAILED": "red"}
    for row in rows:
        done, target = row["epochs_done"], row["epochs"]
        epochs = f"{done}/{target}" if done is not None and done != target else f"{target if done is None else done}"
        acc = row["test_accuracy"]
        methods = sorted({m["method"] for m in row["mi"] if m["status"] == "FINISHED" and m["method"]})
        status = row["status"]
        table.add_row(
            row["run_id"][:8], row["model"] or "?", row["activation"] or "?", epochs,
            "" if acc is None else f"{acc:.4f}", ", ".join(methods) or "-",
            str(sum(p["status"] == "FINISHED" for p in row["plots"])),
            f"[{styles.get(status, 'white')}]{status}[/]",
        )
    console.print(table)


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
    """The `ibcli show` report on stdout."""
    console = _console()
    console.print(f"[bold]{info['stage'] or 'run'} run {info['run_id']}[/] ({info['run_name']}), status [bold]{info['status']}[/]")
    for key in ("parent_run_id", "start_time", "end_time", "failure", "artifact_uri"):
        if info.get(key):
            console.print(f"  {key.replace('_', ' ')}: {info[key]}", highlight=False, soft_wrap=True)
    for title, items in (("params", info["params"]), ("metrics (latest)", info["metrics"]), ("tags", info["tags"])):
        if not items:
            continue
        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column("key", style="cyan")
        table.add_column("value", overflow="fold")
        for k, v in items.items():
            table.add_row(k, f"{v:.6g}" if isinstance(v, float) else str(v))
        console.print(table)
    if info["artifacts"]:
        table = Table(title="artifacts", title_justify="left")
        table.add_column("path")
        table.add_column("bytes", justify="right")
        for a in info["artifacts"]:
            table.add_row(a["path"], "" if a["bytes"] is None else f"{a['bytes']:,}")
        console.print(table)
    if info["children"]:
        table = Table(title="child runs", title_justify="left")
        for col in ("id", "stage", "method", "status"):
            table.add_column(col)
        for c in info["children"]:
            table.add_row(c["run_id"][:8], c["stage"] or "", c["method"] or "", c["status"])
        console.print(table)


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


def ui_command(tracking_uri: str | None, host: str, port: int) -> list[str]:
    """The `mlflow ui` command line for this project's local store.

    Raises:
        UserError: no local store yet, or a store that is neither SQLite nor a server.
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
