"""The MLflow store: where runs live, how they are created, found and linked.

Default store: a SQLite database `runs/mlflow.db` with artifacts under `runs/artifacts/`
(relative to the working directory). `--tracking-uri` or `MLFLOW_TRACKING_URI` points at
any MLflow server instead. mi and plot runs are children of their train run (MLflow's
`mlflow.parentRunId` tag) and every run carries an `ibcli.stage` tag.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from ibcli.errors import UserError

STAGE_TAG = "ibcli.stage"
PARENT_TAG = "mlflow.parentRunId"
FAILURE_TAG = "ibcli.failure"
DEFAULT_EXPERIMENT = "ibcli"
DEFAULT_STORE_DIR = Path("runs")


def _quiet_mlflow() -> None:
    # MLflow and alembic log INFO lines on every new SQLite store; they are noise here.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def resolve_tracking_uri(cli_value: str | None = None) -> str:
    """`--tracking-uri`, else `$MLFLOW_TRACKING_URI`, else `sqlite:///<cwd>/runs/mlflow.db`."""
    if cli_value:
        return cli_value
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(DEFAULT_STORE_DIR / 'mlflow.db').resolve()}"


def _local_store_dir(uri: str) -> Path | None:
    """The folder of a SQLite store (`runs/` by default), or None for servers."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).parent
    return None


class Store:
    """An MLflow tracking store, opened lazily (importing mlflow costs seconds)."""

    def __init__(self, tracking_uri: str | None = None):
        self.uri = resolve_tracking_uri(tracking_uri)
        from mlflow import MlflowClient

        _quiet_mlflow()

        local = _local_store_dir(self.uri)
        if local is not None:
            try:
                local.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"cannot create the store folder {local} ({exc.strerror}): pass --tracking-uri or fix its permissions") from exc
            if not os.access(local, os.W_OK):
                raise UserError(f"the store folder {local} is not writable: fix its permissions or pass --tracking-uri")
        self.client = MlflowClient(tracking_uri=self.uri)

    # ---- experiments and runs -------------------------------------------------
    def experiment_id(self, name: str = DEFAULT_EXPERIMENT) -> str:
        """Id of experiment `name`, created if missing (artifacts under the local store)."""
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        local = _local_store_dir(self.uri)
        location = str((local / "artifacts" / name).resolve()) if local is not None else None
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:
            # Another process created it between our lookup and create.
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def create_run(self, experiment: str, stage: str, run_name: str | None = None):
        """Start a top-level run tagged `ibcli.stage=stage` in experiment `experiment`."""
        tags = {STAGE_TAG: stage}
        return self.client.create_run(self.experiment_id(experiment), tags=tags, run_name=run_name)

    def create_child_run(self, parent, stage: str, run_name: str | None = None):
        """Start a run in `parent`'s experiment, tagged as its child and `ibcli.stage=stage`."""
        tags = {STAGE_TAG: stage, PARENT_TAG: parent.info.run_id}
        return self.client.create_run(parent.info.experiment_id, tags=tags, run_name=run_name)

    def finish(self, run_id: str, status: str = "FINISHED", reason: str | None = None) -> None:
        """End a run with FINISHED, FAILED or KILLED; a reason goes in the `ibcli.failure` tag."""
        if reason:
            self.client.set_tag(run_id, FAILURE_TAG, reason[:4000])
        self.client.set_terminated(run_id, status)

    def log_params(self, run_id: str, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        self.log_metric_rows(run_id, [(step, metrics)])

    def log_metric_rows(self, run_id: str, rows: list[tuple[int, dict[str, float]]]) -> None:
        """Log many (step, {key: value}) rows in as few requests as MLflow allows."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step)) for step, metrics in rows for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i : i + 1000])

    def all_runs(self, filter_string: str = ""):
        """Every run of every experiment, newest first."""
        from mlflow.entities import ViewType

        exps = [e.experiment_id for e in self.client.search_experiments(view_type=ViewType.ALL)]
        if not exps:
            return []
        return self.client.search_runs(
            exps, filter_string=filter_string, run_view_type=ViewType.ACTIVE_ONLY,
            max_results=50_000, order_by=["attributes.start_time DESC"],
        )

    def find_run(self, prefix: str, stage: str | None = None):
        """The run whose id is `prefix` or starts with it.

        Raises:
            UserError: no run or several runs match; or the run's stage is not `stage`.
        """
        prefix = prefix.strip().lower()
        if not prefix:
            raise UserError("empty run id: pass a run id or a unique prefix of one (see `ibcli runs`)")
        matches = [r for r in self.all_runs() if r.info.run_id.startswith(prefix)]
        if not matches:
            raise UserError(f"no run with id {prefix!r} in the store {self.uri}: list runs with `ibcli runs`")
        if len(matches) > 1:
            ids = ", ".join(r.info.run_id[:12] for r in matches[:5])
            raise UserError(f"run id prefix {prefix!r} is ambiguous ({len(matches)} runs: {ids}...): give more characters")
        run = matches[0]
        found = run.data.tags.get(STAGE_TAG)
        if stage is not None and found != stage:
            parent = run.data.tags.get(PARENT_TAG)
            hint = f"; its train run is {parent}" if parent else ""
            raise UserError(f"run {run.info.run_id} is a {found or 'non-ibcli'} run, a {stage} run is needed here{hint}")
        return run

    def children(self, parent_id: str, stage: str | None = None):
        """Child runs of `parent_id` (newest first), optionally of one stage."""
        filt = f"tags.`{PARENT_TAG}` = '{parent_id}'"
        if stage:
            filt += f" and tags.`{STAGE_TAG}` = '{stage}'"
        return self.all_runs(filt)

    # ---- artifacts ---------------------------------------------------------------
    def artifacts(self, run) -> "Artifacts":
        return Artifacts(self, run.info.run_id, run.info.artifact_uri)


class Artifacts:
    """Read and write one run's artifacts.

    A local artifact store is used in place (files written and read where MLflow keeps
    them); any other store goes through MLflow's log/download calls, file by file.
    """

    def __init__(self, store: Store, run_id: str, artifact_uri: str):
        self.store, self.run_id, self.uri = store, run_id, artifact_uri
        parsed = urlparse(artifact_uri)
        self.local_root: Path | None = None
        if parsed.scheme in ("", "file"):
            self.local_root = Path(parsed.path if parsed.scheme == "file" else artifact_uri)

    def writable_path(self, relpath: str) -> Path:
        """Where to write `relpath` before `commit(relpath)` publishes it."""
        if self.local_root is not None:
            path = self.local_root / (relpath + ".partial")
        else:
            staging = Path(tempfile.mkdtemp(prefix="ibcli-"))
            path = staging / Path(relpath).name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def commit(self, written: Path, relpath: str) -> None:
        """Publish a file written at `writable_path(relpath)` as artifact `relpath`.

        Locally an atomic rename, so readers never see a half-written file.
        """
        if self.local_root is not None:
            os.replace(written, self.local_root / relpath)
        else:
            parent = str(Path(relpath).parent)
            self.store.client.log_artifact(self.run_id, str(written), None if parent == "." else parent)
            shutil.rmtree(written.parent, ignore_errors=True)

    def local_path(self, relpath: str) -> Path:
        """A local path to read artifact `relpath` (downloaded when the store is remote).

        Raises:
            FileNotFoundError: no such artifact.
        """
        if self.local_root is not None:
            path = self.local_root / relpath
            if not path.exists():
                raise FileNotFoundError(relpath)
            return path
        import mlflow

        try:
            return Path(mlflow.artifacts.download_artifacts(run_id=self.run_id, artifact_path=relpath, tracking_uri=self.store.uri))
        except Exception as exc:
            raise FileNotFoundError(relpath) from exc

    def list(self, relpath: str | None = None) -> list[str]:
        return [f.path for f in self.store.client.list_artifacts(self.run_id, relpath)]
