"""`ibcli rm`: delete runs for real, each with every run below it and all their artifact files.

A train run takes its mi and plot runs along, a sweep its members and theirs: nothing is left
pointing at a run that is gone. The runs leave every listing (MLflow's soft delete, which
`mlflow gc` can purge from the database); their artifact files are removed at once, which
is where the space is. `--dry-run` lists the same runs and deletes nothing.
"""

from __future__ import annotations

from pathlib import Path

from ibcli.console import fitted_table, say, stderr
from ibcli.errors import UserError
from ibcli.store import STAGE_TAG, Store

STATUSES = ("FAILED", "KILLED", "RUNNING", "FINISHED")


def _bytes(store: Store, run) -> int | None:
    """Bytes of a run's local artifact files (None for a remote artifact store)."""
    root = store.artifacts(run).local_root
    if root is None:
        return None
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file()) if root.exists() else 0


def run_rm(run_ids: list[str], statuses: list[str], dry_run: bool, tracking_uri: str | None) -> dict:
    """Delete the runs named by id or prefix, and every run in one of `statuses`, each with all
    runs below it; with `dry_run` only say which.

    Returns {"dry_run", "runs": [{run_id, stage, status, run_name, parent_run_id, bytes}], "bytes"}:
    parents before their children, bytes None where artifacts are remote.

    Raises:
        UserError: nothing named, an unknown or ambiguous id, an unknown status, a run that a
            live process is training (nothing is deleted then), artifacts that cannot be removed.
    """
    if not run_ids and not statuses:
        raise UserError("name the runs to delete: `ibcli rm RUN_ID...`, or `ibcli rm --status FAILED --dry-run` to see every FAILED run first")
    wanted = [s.strip().upper() for s in statuses]
    bad = [s for s in wanted if s not in STATUSES]
    if bad:
        raise UserError(f"unknown --status {bad[0]!r}: choose from {', '.join(STATUSES)}")
    store = Store(tracking_uri, must_exist=True)
    tops = [store.find_run(r) for r in run_ids]
    if wanted:
        tops += [r for r in store.all_runs() if r.info.status in wanted]
    chosen: dict[str, object] = {}
    for top in tops:
        for run in (top, *store.descendants(top.info.run_id)):
            chosen.setdefault(run.info.run_id, run)
    for rid, run in chosen.items():
        if run.data.tags.get(STAGE_TAG) == "train" and run.info.status == "RUNNING" and store.is_live(rid):
            raise UserError(f"run {rid} is being trained right now: stop it first (Ctrl-C, or kill its process); nothing was deleted")
    rows = [{"run_id": rid, "stage": run.data.tags.get(STAGE_TAG), "status": run.info.status, "run_name": run.info.run_name,
             "parent_run_id": run.data.tags.get("mlflow.parentRunId"), "bytes": _bytes(store, run)}
            for rid, run in chosen.items()]
    if not dry_run:
        for rid in reversed(list(chosen)):  # children first: an interrupted rm never leaves an orphan
            store.delete_run(chosen[rid])
    sizes = [r["bytes"] for r in rows if r["bytes"] is not None]
    return {"dry_run": dry_run, "runs": rows, "bytes": sum(sizes) if sizes else None}


def print_removal(result: dict) -> None:
    """What `ibcli rm` deleted (or would delete), on stderr."""
    rows = result["runs"]
    if not rows:
        say("no run matched: nothing to delete")
        return
    cells = [[r["run_id"][:8], r["stage"] or "?", r["status"], r["run_name"] or "",
              "" if r["bytes"] is None else _size(r["bytes"])] for r in rows]
    stderr.print(fitted_table([("id", "left"), ("stage", "left"), ("status", "left"), ("name", "left"), ("size", "right")],
                              cells, flexible=("name",)))
    total = "" if result["bytes"] is None else f" ({_size(result['bytes'])} of artifacts)"
    if result["dry_run"]:
        say(f"would delete {len(rows)} run(s){total}: run the same command without --dry-run to delete them", style="yellow")
    else:
        say(f"deleted {len(rows)} run(s){total}", style="bold")


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
