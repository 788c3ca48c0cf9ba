"""The MLflow store: where runs live, how they are created, found and linked.

Default store: a SQLite database `runs/mlflow.db` with artifacts under `runs/artifacts/`
(relative to the working directory). `--tracking-uri` or `MLFLOW_TRACKING_URI` points at
any MLflow server instead. mi and plot runs are children of their train run (MLflow's
`mlflow.parentRunId` tag) and every run carries an `ibcli.stage` tag.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from ibcli.errors import UserError

STAGE_TAG = "ibcli.stage"
PARENT_TAG = "mlflow.parentRunId"
FAILURE_TAG = "ibcli.failure"
# `ibcli sweep` sets this for its member processes: their train run becomes a child of the sweep run.
SWEEP_TAG = "ibcli.sweep"
SWEEP_ENV = "IBCLI_SWEEP_RUN_ID"
# Params cannot change once logged: a resume records its new target epochs here, every end the epochs done.
EPOCHS_TAG = "ibcli.epochs"
EPOCHS_DONE_TAG = "ibcli.epochs_done"
DEFAULT_EXPERIMENT = "ibcli"
DEFAULT_STORE_DIR = Path("runs")


def _quiet_mlflow() -> None:
    # MLflow and alembic log INFO lines on every new SQLite store; they are noise here.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # MLflow logs "database is locked" with a traceback before raising it; we retry those.
    db_logger = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _BusyFilter) for f in db_logger.filters):
        db_logger.addFilter(_BusyFilter())


class _BusyFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _is_busy(record.getMessage())


def resolve_tracking_uri(cli_value: str | None = None) -> str:
    """`--tracking-uri`, else `$MLFLOW_TRACKING_URI`, else `sqlite:///<cwd>/runs/mlflow.db`."""
    if cli_value:
        return cli_value
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(DEFAULT_STORE_DIR / 'mlflow.db').resolve()}"


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a SQLite store, or None for servers."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):].split("?", 1)[0])
    return None


def _local_store_dir(uri: str) -> Path | None:
    """The folder of a SQLite store (`runs/` by default), or None for servers."""
    db = _sqlite_path(uri)
    return db.parent if db is not None else None


LOCK_FILE = ".ibcli.lock"
# How long a call waits out "database is locked" from other ibcli processes on one SQLite store.
BUSY_RETRY_SECONDS = 120.0


@contextmanager
def store_lock(folder: Path | None):
    """An exclusive flock on `folder/.ibcli.lock` (no-op for servers).

    Serialises what SQLite does badly when several processes do it at once: creating
    the database (MLflow's schema migration) and creating an experiment.
    """
    if folder is None:
        yield
        return
    import fcntl

    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text or "database table is locked" in text


class _RetryingClient:
    """An MlflowClient whose calls wait out SQLite's "database is locked".

    MLflow sets a busy timeout, but SQLite answers a write that would deadlock with
    another process's transaction at once; such a call is rolled back whole, so it is
    safe to repeat.
    """

    def __init__(self, client, retry_seconds: float = BUSY_RETRY_SECONDS):
        self._client, self._retry_seconds = client, retry_seconds

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            deadline = time.monotonic() + self._retry_seconds
            delay = 0.05
            while True:
                try:
                    return attr(*args, **kwargs)
                except Exception as exc:
                    if not _is_busy(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)

        return call


class Store:
    """An MLflow tracking store, opened lazily (importing mlflow costs seconds)."""

    def __init__(self, tracking_uri: str | None = None, must_exist: bool = False):
        """Open (and for SQLite, create) the store.

        Args:
            must_exist: for commands that read runs: a missing SQLite database is a
                UserError instead of a new empty store.

        Raises:
            UserError: the store cannot be created, opened or written.
        """
        self.uri = resolve_tracking_uri(tracking_uri)
        from mlflow import MlflowClient

        _quiet_mlflow()

        local = _local_store_dir(self.uri)
        if local is not None:
            db = _sqlite_path(self.uri)
            if must_exist and not db.is_file():
                raise UserError(f"no ibcli store at {db}: run `ibcli train` first, or point --tracking-uri (or $MLFLOW_TRACKING_URI) at your store")
            try:
                local.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"cannot create the store folder {local} ({exc.strerror}): pass --tracking-uri or fix its permissions") from exc
            if not os.access(local, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
                raise UserError(f"the store folder {local} is not writable: fix its permissions or pass --tracking-uri")
        try:
            with store_lock(local):
                # The first call creates (and migrates) a new database: one process at a time.
                self.client = _RetryingClient(MlflowClient(tracking_uri=self.uri))
                self.client.search_experiments(max_results=1)
        except OSError as exc:
            raise UserError(f"cannot open the MLflow store {self.uri} ({exc.strerror or exc}): pass --tracking-uri or fix its permissions") from exc
        except Exception as exc:  # MlflowException, or SQLAlchemy's own (e.g. "file is not a database")
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". See ")[0][:300]
            if "unsupported URI" in first:
                raise UserError(f"unsupported tracking URI {self.uri!r}: pass --tracking-uri sqlite:///PATH/mlflow.db or http(s)://HOST:PORT (or fix $MLFLOW_TRACKING_URI)") from exc
            raise UserError(f"cannot open the MLflow store {self.uri} ({first}): pass a valid --tracking-uri") from exc

    # ---- experiments and runs -------------------------------------------------
    def experiment_id(self, name: str = DEFAULT_EXPERIMENT) -> str:
        """Id of experiment `name`, created if missing (artifacts under the local store)."""
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        local = _local_store_dir(self.uri)
        location = str((local / "artifacts" / name).resolve()) if local is not None else None
        with store_lock(local):
            exp = self.client.get_experiment_by_name(name)
            if exp is not None:
                return exp.experiment_id
            try:
                return self.client.create_experiment(name, artifact_location=location)
            except MlflowException:
                # Another process (without our lock, e.g. a server store) created it first.
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
                return exp.experiment_id

    def create_run(self, experiment: str, stage: str, run_name: str | None = None):
        """Start a top-level run tagged `ibcli.stage=stage` in experiment `experiment`.

        A train run started by `ibcli sweep` ($IBCLI_SWEEP_RUN_ID set) is a child of the
        sweep run and carries `ibcli.sweep=<sweep run id>`.
        """
        tags = {STAGE_TAG: stage}
        sweep = os.environ.get(SWEEP_ENV)
        if sweep and stage == "train":
            tags.update({PARENT_TAG: sweep, SWEEP_TAG: sweep})
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

    # ---- which train runs are live --------------------------------------------------
    def _run_lock_path(self, run_id: str) -> Path | None:
        local = _local_store_dir(self.uri)
        if local is None:
            return None
        try:
            (local / ".locks").mkdir(exist_ok=True)
        except OSError:  # e.g. a store shared read-only: liveness is then unknown
            return None
        return local / ".locks" / f"{run_id}.lock"

    def _try_run_lock(self, run_id: str) -> tuple["RunLock | None", bool]:
        """(lock, acquired); (None, False) where liveness cannot be told (server or read-only store)."""
        path = self._run_lock_path(run_id)
        if path is None:
            return None, False
        lock = RunLock(path)
        try:
            return lock, lock.acquire()
        except OSError:
            return None, False

    def hold_run(self, run_id: str) -> "RunLock | None":
        """Mark `run_id` as being trained by this process until `release()` (or process death).

        None for server stores, where liveness cannot be told.

        Raises:
            UserError: another process is training this run right now.
        """
        lock, acquired = self._try_run_lock(run_id)
        if lock is None:
            return None
        if not acquired:
            raise UserError(f"run {run_id} is being trained by another live process right now: wait for it, or stop it first")
        return lock

    def is_live(self, run_id: str) -> bool | None:
        """True while a process trains `run_id`, False if none does, None if unknown (server store)."""
        lock, acquired = self._try_run_lock(run_id)
        if lock is None:
            return None
        if acquired:
            lock.release()
            return False
        return True

    # ---- artifacts ---------------------------------------------------------------
    def artifacts(self, run) -> "Artifacts":
        return Artifacts(self, run.info.run_id, run.info.artifact_uri)


class RunLock:
    """A non-blocking flock on one file; the kernel drops it when the process dies (even kill -9)."""

    def __init__(self, path: Path):
        self.path, self.fd = path, None

    def acquire(self) -> bool:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


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
