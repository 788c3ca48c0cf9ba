"""The MLflow store: where runs live, how they are created, found, linked and ended.

Default store: a SQLite database `runs/mlflow.db` with artifacts under `runs/artifacts/`
(relative to the working directory). `--tracking-uri` or `MLFLOW_TRACKING_URI` points at
any MLflow server instead. mi and plot runs are children of their train run (MLflow's
`mlflow.parentRunId` tag) and every run carries an `ibcli.stage` tag. `Store.tracked`
is the one place a run is ended: FINISHED, KILLED (interrupted) or FAILED with the reason.

A local store may be copied or moved with its folder: MLflow keeps absolute artifact
locations in the database, so opening a store rewrites those that still point into the
folder it came from (`relocate_artifacts`); its runs then read and write where it is now.

A server store (`http(s)://HOST:PORT`, e.g. one `ibcli server` started): uploads go through
a background thread in commit order (`_Uploader`), reads through a local cache of the
artifacts a command needs (`ArtifactCache`), and a server that stops answering is a
`StoreUnreachable` error (one line), never a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import shutil
import signal
import sqlite3
import tempfile
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from urllib.parse import urlparse

import mlflow
from filelock import FileLock, Timeout
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException

from ibcli import run_names
from ibcli.errors import UserError
from ibcli.metric_names import mlflow_name

STAGE_TAG = "ibcli.stage"
PARENT_TAG = "mlflow.parentRunId"
FAILURE_TAG = "ibcli.failure"
# `ibcli sweep` sets this for its member processes: their train run becomes a child of the sweep run.
SWEEP_TAG = "ibcli.sweep"
SWEEP_ENV = "IBCLI_SWEEP_RUN_ID"
# Params cannot change once logged: a resume records its new target epochs here, every end the epochs done.
EPOCHS_TAG = "ibcli.epochs"
EPOCHS_DONE_TAG = "ibcli.epochs_done"
# A train run's whole configuration as JSON (what --resume rebuilds it from).
CONFIG_TAG = "ibcli.config"
DEFAULT_EXPERIMENT = "ibcli"
DEFAULT_STORE_DIR = Path("runs")
LOCK_FILE = ".ibcli.lock"
INTERRUPTED = "interrupted by SIGINT/SIGTERM"


def _quiet_mlflow() -> None:
    # MLflow and alembic log INFO lines on every new SQLite store; they are noise here.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # A server store makes MLflow print "View run ... at: URL" on stdout, where --json goes.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


class StoreUnreachable(UserError):
    """The tracking server stopped answering (connection refused, timeouts, repeated 5xx)."""


class ArtifactMissing(UserError, FileNotFoundError):
    """A run has no artifact at that path.

    A FileNotFoundError, so a reader that looks for an optional file (a checkpoint, the
    gradient table) catches it as before; and a UserError, so a file that should be there and
    is not ends in one line and exit code 2 wherever nobody expected its absence.
    """


def _is_unreachable(exc: BaseException) -> bool:
    """Whether `exc` (or what it was raised from) says the server cannot be reached.

    MLflow re-raises requests' errors as MlflowException("API request to ... failed with
    exception ..."), with the original only as implicit context, so the chain and the text
    are both read.
    """
    import requests

    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, TimeoutError)):
            return True
        text = str(exc)
        if any(s in text for s in ("Max retries exceeded", "Connection refused", "Connection aborted",
                                   "Read timed out", "failed with timeout exception", "RemoteDisconnected")):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def unreachable_error(uri: str, exc: BaseException) -> StoreUnreachable:
    """The one-line error for a server that stopped answering."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    cause = "connection refused" if "refused" in first.lower() else "timed out" if "timed out" in first.lower() else first[:200]
    return StoreUnreachable(f"the MLflow server {uri} does not answer ({cause}): start it again "
                            f"(or check --tracking-uri / $MLFLOW_TRACKING_URI)")


def resolve_tracking_uri(cli_value: str | None = None) -> str:
    """`--tracking-uri`, else `$MLFLOW_TRACKING_URI`, else `sqlite:///<cwd>/runs/mlflow.db`."""
    if cli_value:
        return cli_value
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(DEFAULT_STORE_DIR / 'mlflow.db').resolve()}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a SQLite store, or None for servers."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):].split("?", 1)[0])
    return None


def local_store_dir(uri: str) -> Path | None:
    """The folder of a SQLite store (`runs/` by default), or None for servers."""
    db = sqlite_path(uri)
    return db.parent if db is not None else None


def _local_path(location: str | None) -> Path | None:
    """The folder of a local artifact location (a plain path or a file: URI), else None."""
    if not location:
        return None
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(location)
    return None


def relocate_artifacts(db: Path, store_dir: Path) -> dict[str, str]:
    """Point a copied or moved store's artifact locations at its own folder.

    MLflow stores absolute paths: each experiment's artifact location (where new runs put
    their artifacts) and each run's artifact URI. ibcli creates an experiment's location as
    `<store folder>/artifacts/<name>`; one that names another folder's `artifacts/<name>`
    means the store was copied or moved. When `<store_dir>/artifacts/<name>` exists (the
    files came along) or the old folder is gone, the experiment's location and the URIs of
    its runs are rewritten to the new folder: old runs read, and new runs write, under
    `store_dir`, never in the folder the store came from. Locations elsewhere (a server's,
    one the user chose) are left alone. Call it holding the store's file lock.

    Returns {old location: new location} of the experiments rewritten.
    """
    base = (store_dir / "artifacts").resolve()
    moved: dict[str, str] = {}
    con = sqlite3.connect(db, timeout=60)
    try:
        with con:  # one transaction: every rewrite or none
            for exp_id, location in con.execute("SELECT experiment_id, artifact_location FROM experiments").fetchall():
                old = _local_path(location)
                if old is None or not old.is_absolute() or old.parent.name != "artifacts":
                    continue
                if old.parent == base or (old.parent.exists() and old.parent.resolve() == base):
                    continue  # already here
                new = base / old.name
                if not (new.is_dir() or not old.exists()):
                    continue  # only the database was copied: its runs' files are still in the old folder
                new_location = new.as_uri() if location.startswith("file:") else str(new)
                con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?", (new_location, exp_id))
                con.execute("UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) "
                            "WHERE experiment_id = ? AND substr(artifact_uri, 1, ?) = ?",
                            (new_location, len(location) + 1, exp_id, len(location) + 1, location + "/"))
                moved[location] = new_location
    finally:
        con.close()
    return moved


class _SerializedClient:
    """An MlflowClient whose calls on a SQLite store run one process at a time.

    SQLite answers a write that would deadlock with another process's transaction with
    "database is locked" at once (no busy timeout helps), and creating a database runs
    MLflow's schema migration, which must not run twice at once. Holding the store's file
    lock (`runs/.ibcli.lock`) around every call rules out both; calls take milliseconds.
    """

    def __init__(self, client: MlflowClient, lock: FileLock):
        self._client, self._lock = client, lock

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            with self._lock:
                return attr(*args, **kwargs)

        return call


class _ServerClient:
    """An MlflowClient of a server store whose "cannot reach the server" errors are StoreUnreachable."""

    def __init__(self, client: MlflowClient, uri: str):
        self._client, self._uri = client, uri

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                if _is_unreachable(exc):
                    raise unreachable_error(self._uri, exc) from exc
                raise

        return call


class Store:
    """An MLflow tracking store (a local SQLite one by default)."""

    def __init__(self, tracking_uri: str | None = None, must_exist: bool = False):
        """Open (and for SQLite, create) the store.

        Args:
            must_exist: for commands that read runs: a missing SQLite database is a
                UserError instead of a new empty store.

        Raises:
            UserError: the store cannot be created, opened or written.
        """
        self.uri = resolve_tracking_uri(tracking_uri)
        _quiet_mlflow()
        self.local_dir = local_store_dir(self.uri)
        self.lock = None
        if self.local_dir is not None:
            db = sqlite_path(self.uri)
            if must_exist and not db.is_file():
                raise UserError(f"no ibcli store at {db}: run `ibcli train` first, or point --tracking-uri (or $MLFLOW_TRACKING_URI) at your store")
            try:
                self.local_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"cannot create the store folder {self.local_dir} ({exc.strerror}): pass --tracking-uri or fix its permissions") from exc
            if not os.access(self.local_dir, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
                raise UserError(f"the store folder {self.local_dir} is not writable: fix its permissions or pass --tracking-uri")
            self.lock = FileLock(self.local_dir / LOCK_FILE, preserve_lock_file=True)
        self._uploaders: dict[str, list[_Uploader]] = {}
        try:
            with self.lock if self.lock is not None else nullcontext():
                # The client opens (and for a new database, creates and migrates) the store.
                client = MlflowClient(tracking_uri=self.uri)
                self.client = _SerializedClient(client, self.lock) if self.lock is not None else _ServerClient(client, self.uri)
                self.client.search_experiments(max_results=1)
                if self.local_dir is not None:
                    relocate_artifacts(sqlite_path(self.uri), self.local_dir)  # a copied or moved store
        except StoreUnreachable:
            raise
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cannot open the MLflow store {self.uri} ({getattr(exc, 'strerror', None) or exc}): pass --tracking-uri or fix its permissions") from exc
        except Exception as exc:  # MlflowException, or SQLAlchemy's own (e.g. "file is not a database")
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". See ")[0][:300]
            if "unsupported URI" in first:
                raise UserError(f"unsupported tracking URI {self.uri!r}: pass --tracking-uri sqlite:///PATH/mlflow.db or http(s)://HOST:PORT (or fix $MLFLOW_TRACKING_URI)") from exc
            raise UserError(f"cannot open the MLflow store {self.uri} ({first}): pass a valid --tracking-uri") from exc

    # ---- experiments and runs -------------------------------------------------
    def experiment_id(self, name: str = DEFAULT_EXPERIMENT) -> str:
        """Id of experiment `name`, created if missing (artifacts under the local store)."""
        with self.lock if self.lock is not None else nullcontext():
            exp = self.client.get_experiment_by_name(name)
            if exp is not None:
                return exp.experiment_id
            location = str((self.local_dir / "artifacts" / name).resolve()) if self.local_dir is not None else None
            try:
                return self.client.create_experiment(name, artifact_location=location)
            except MlflowException:
                # Another client of a server store created it first.
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
                return exp.experiment_id

    def create_run(self, experiment: str, stage: str, run_name: str | None = None, tags: dict | None = None):
        """Start a top-level run tagged `ibcli.stage=stage` (and `tags`, e.g. its provenance) in
        experiment `experiment`.

        A train run started by `ibcli sweep` ($IBCLI_SWEEP_RUN_ID set) is a child of the
        sweep run and carries `ibcli.sweep=<sweep run id>`.
        """
        tags = {**(tags or {}), STAGE_TAG: stage, **_description()}
        sweep = os.environ.get(SWEEP_ENV)
        if sweep and stage == "train":
            tags.update({PARENT_TAG: sweep, SWEEP_TAG: sweep})
        return self.client.create_run(self.experiment_id(experiment), tags=tags, run_name=run_name)

    def create_child_run(self, parent, stage: str, run_name: str | None = None, tags: dict | None = None):
        """Start a run in `parent`'s experiment, tagged as its child, `ibcli.stage=stage` and `tags`
        (the command line becomes its description)."""
        tags = {**(tags or {}), STAGE_TAG: stage, PARENT_TAG: parent.info.run_id, **_description()}
        return self.client.create_run(parent.info.experiment_id, tags=tags, run_name=run_name)

    def reopen(self, run) -> None:
        """Mark an ended run RUNNING again (a resume), without its old failure reason."""
        self.client.update_run(run.info.run_id, status="RUNNING")
        if FAILURE_TAG in run.data.tags:
            self.client.delete_tag(run.info.run_id, FAILURE_TAG)

    def finish(self, run_id: str, status: str = "FINISHED", reason: str | None = None) -> None:
        """End a run with FINISHED, FAILED or KILLED; a reason goes in the `ibcli.failure` tag."""
        if reason:
            self.client.set_tag(run_id, FAILURE_TAG, reason[:4000])
        self.client.set_terminated(run_id, status)

    @contextmanager
    def tracked(self, run_id: str, before_end=None):
        """End run `run_id` however the block ends, and re-raise what ended it.

        FINISHED when the block returns; KILLED on KeyboardInterrupt (SIGINT, or SIGTERM as
        `ibcli` maps it); FAILED otherwise, with the reason in `ibcli.failure` (a UserError's
        message, else the exception's type and message). `before_end(status)` runs first (e.g.
        to write what is queued), then the run's uploads to a server store finish; if either
        raises, the run ends FAILED with that reason too.
        SIGINT/SIGTERM are held off while the run ends, so a second Ctrl-C cannot leave it
        RUNNING half-written.
        """
        status, reason = "FINISHED", None
        try:
            yield
        except KeyboardInterrupt:
            status, reason = "KILLED", INTERRUPTED
            raise
        except UserError as exc:
            status, reason = "FAILED", str(exc)
            raise
        except BaseException as exc:
            status, reason = "FAILED", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            with _signals_held():
                try:
                    if before_end is not None:
                        before_end(status)
                    self.drain_uploads(run_id)
                except Exception as exc:
                    status = "FAILED"
                    reason = f"{reason + '; ' if reason else ''}ending the run failed: {type(exc).__name__}: {exc}"
                    raise
                finally:
                    self.finish(run_id, status, reason)

    def log_params(self, run_id: str, params: dict) -> None:
        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        self.log_metric_rows(run_id, [(step, metrics)])

    def log_metric_rows(self, run_id: str, rows: list[tuple[int, dict[str, float]]], tags: dict | None = None) -> None:
        """Log many (step, {key: value}) rows in as few requests as MLflow allows; ibcli's flat
        keys go out under their grouped MLflow names (`metric_names.mlflow_name`). `tags`
        ({name: value}) go with the first request, at no extra request."""
        now = int(time.time() * 1000)
        items = [Metric(mlflow_name(k), float(v), now, int(step)) for step, metrics in rows for k, v in metrics.items()]
        run_tags = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        for i in range(0, max(len(items), 1 if run_tags else 0), 1000):
            self.client.log_batch(run_id, metrics=items[i : i + 1000], tags=run_tags if i == 0 else [])

    def all_runs(self, filter_string: str = ""):
        """Every run of every experiment, newest first."""
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

    def descendants(self, run_id: str) -> list:
        """Every run below `run_id`: its children, theirs, ... (a sweep's members and their mi
        and plot runs), each listed once."""
        out, seen, todo = [], {run_id}, [run_id]
        while todo:
            for child in self.children(todo.pop()):
                if child.info.run_id not in seen:
                    seen.add(child.info.run_id)
                    out.append(child)
                    todo.append(child.info.run_id)
        return out

    def delete_run(self, run) -> None:
        """Delete one run for real: first its artifact files, then the run itself (MLflow's
        soft delete: it leaves every listing and search; `mlflow gc` purges the database rows).

        Raises:
            UserError: the artifact files cannot be removed (the run is then kept, so
                `ibcli rm` can be run again).
        """
        rid = run.info.run_id
        root = self.artifacts(run).local_root
        try:
            if root is not None:
                # MLflow's run folder is <experiment location>/<run id>/artifacts: remove the run folder.
                folder = root.parent if root.name == "artifacts" and root.parent.name == rid else root
                if folder.exists():
                    shutil.rmtree(folder)
            else:
                from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

                get_artifact_repository(run.info.artifact_uri).delete_artifacts()
        except Exception as exc:
            raise UserError(f"cannot delete the artifacts of run {rid} ({type(exc).__name__}: {exc}); the run is kept") from exc
        self.client.delete_run(rid)
        if self.local_dir is not None:
            (self.local_dir / ".locks" / f"{rid}.lock").unlink(missing_ok=True)

    # ---- which train runs are live --------------------------------------------------
    def _run_lock(self, run_id: str) -> FileLock | None:
        """The lock a live `ibcli train` holds on its run; None where liveness cannot be told
        (a server store, or a store whose `.locks/` cannot be written)."""
        if self.local_dir is None:
            return None
        try:
            (self.local_dir / ".locks").mkdir(exist_ok=True)
        except OSError:
            return None
        return FileLock(self.local_dir / ".locks" / f"{run_id}.lock", timeout=0, preserve_lock_file=True)

    def hold_run(self, run_id: str) -> FileLock | None:
        """Mark `run_id` as being trained by this process until `release()` (or process death:
        the kernel drops the lock even after kill -9). None where liveness cannot be told.

        Raises:
            UserError: another process is training this run right now.
        """
        lock = self._run_lock(run_id)
        if lock is None:
            return None
        try:
            lock.acquire()
        except Timeout:
            raise UserError(f"run {run_id} is being trained by another live process right now: wait for it, or stop it first") from None
        except OSError:
            return None
        return lock

    def is_live(self, run_id: str) -> bool | None:
        """True while a process trains `run_id`, False if none does, None if unknown (server store)."""
        lock = self._run_lock(run_id)
        if lock is None:
            return None
        try:
            lock.acquire()
        except Timeout:
            return True
        except OSError:
            return None
        lock.release()
        return False

    # ---- artifacts ---------------------------------------------------------------
    def artifacts(self, run) -> "Artifacts":
        return Artifacts(self, run.info.run_id, run.info.artifact_uri)

    def drain_uploads(self, run_id: str) -> None:
        """Wait until every file committed to run `run_id` is on the server (no-op for local stores).

        Raises:
            StoreUnreachable, UserError: an upload failed (the files after it were not sent).
        """
        for uploader in self._uploaders.pop(run_id, []):
            uploader.drain()


def _description() -> dict[str, str]:
    """The description tag of a new run: the `ibcli` command line that made it (when known)."""
    text = run_names.description()
    return {run_names.DESCRIPTION_TAG: text} if text else {}


@contextmanager
def _signals_held():
    """Ignore SIGINT/SIGTERM inside the block (main thread only: signals go to it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)


def cache_root() -> Path:
    """Where artifacts read from a server store are cached: `$IBCLI_CACHE_DIR`, else
    `$XDG_CACHE_HOME/ibcli/artifacts`, else `~/.cache/ibcli/artifacts`."""
    given = os.environ.get("IBCLI_CACHE_DIR")
    if given:
        return Path(given).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ibcli" / "artifacts"


class ArtifactCache:
    """A server store's artifacts on local disk, one folder per run: `cache_root()/<run id>/<path>`.

    Files a run rewrites while it goes on (`MUTABLE`) are downloaded on every read; the rest
    are written once (activation records, the probe, mi tables, figures) and served from the
    cache. A resumed run may re-record a step it had listed before it was killed: when a newly
    downloaded manifest lists a record differently from the cached one, that record's cached
    files are dropped. Downloads land in a temporary file and are renamed into place, so
    several processes (e.g. Dask workers on one machine) may share the cache.
    """

    #: Rewritten during a run (manifest after each record; checkpoint and gradient table each epoch).
    MUTABLE = ("activations/manifest.json", "checkpoints/", "gradients/")
    MANIFEST = "activations/manifest.json"

    def __init__(self, tracking_uri: str, run_id: str, root: Path | None = None):
        self.tracking_uri, self.run_id = tracking_uri, run_id
        self.dir = (root or cache_root()) / run_id

    def path(self, relpath: str) -> Path:
        """A local copy of artifact `relpath` (downloaded unless cached and immutable).

        Raises:
            ArtifactMissing (a FileNotFoundError and a UserError): no such artifact.
            StoreUnreachable: the server does not answer.
        """
        target = self.dir / relpath
        mutable = relpath.startswith(self.MUTABLE)
        if target.is_file() and not mutable:
            return target
        fetched = self._download(relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        if relpath == self.MANIFEST:
            self._forget_changed_records(target, fetched)
        os.replace(fetched, target)
        shutil.rmtree(fetched.parent, ignore_errors=True)
        return target

    def _download(self, relpath: str) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=self.dir))
        try:
            return Path(mlflow.artifacts.download_artifacts(run_id=self.run_id, artifact_path=relpath, dst_path=str(staging),
                                                            tracking_uri=self.tracking_uri))
        except Exception as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if _is_unreachable(exc):
                raise unreachable_error(self.tracking_uri, exc) from exc
            raise ArtifactMissing(f"run {self.run_id} has no artifact {relpath}") from exc

    def _forget_changed_records(self, cached: Path, fetched: Path) -> None:
        """Drop the cached files of records the new manifest lists differently (or not at all)."""
        if not cached.is_file():
            return
        try:
            old = {r["record"]: r for r in json.loads(cached.read_text()).get("records", [])}
            new = {r["record"]: r for r in json.loads(fetched.read_text()).get("records", [])}
        except (ValueError, KeyError, TypeError):
            shutil.rmtree(self.dir / "activations", ignore_errors=True)
            return
        for name, entry in old.items():
            if new.get(name) != entry:
                shutil.rmtree(self.dir / "activations" / name, ignore_errors=True)


class _Uploader:
    """Sends committed files to a server store from a background thread, in commit order.

    Order is what keeps the manifest-last guarantee: a record's layer files are committed
    before the manifest that lists them, so they reach the server first. After a failed
    upload nothing more is sent (a later manifest must not list a file that is missing),
    and the next `put` or `drain` raises the error. At most `max_bytes` of staged files wait
    (one file always may): beyond that `put` waits, so a server slower than training slows
    training down instead of filling the disk.
    """

    def __init__(self, client, run_id: str, max_bytes: int = 1 << 30):
        self.client, self.run_id, self.max_bytes = client, run_id, max_bytes
        self._queue: queue.Queue = queue.Queue()
        self._pending = 0  # bytes queued and not yet sent
        self._room = threading.Condition()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=f"ibcli-upload-{run_id[:8]}", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def put(self, path: Path, relpath: str) -> None:
        """Queue `path` (in its own staging folder, removed once sent) as artifact `relpath`.

        Raises:
            UserError: an earlier upload failed.
        """
        self._raise_if_failed()
        size = path.stat().st_size
        with self._room:
            while self._pending and self._pending + size > self.max_bytes and self._error is None:
                self._room.wait()
            self._pending += size
        self._queue.put((path, relpath, size))

    def drain(self) -> None:
        """Send everything queued, stop the thread; raise the first upload error."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            if isinstance(self._error, UserError):
                raise self._error
            raise UserError(f"uploading artifacts to the server failed: {type(self._error).__name__}: {self._error}")

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            path, relpath, size = item
            try:
                if self._error is None:
                    parent = str(Path(relpath).parent)
                    self.client.log_artifact(self.run_id, str(path), None if parent == "." else parent)
            except BaseException as exc:
                self._error = exc
            finally:
                shutil.rmtree(path.parent, ignore_errors=True)
                with self._room:
                    self._pending -= size
                    self._room.notify_all()


class Artifacts:
    """Read and write one run's artifacts.

    A local artifact store is used in place (files written and read where MLflow keeps
    them). A server store gets uploads from a background thread in commit order
    (`Store.drain_uploads` waits for them; `Store.tracked` does so before a run ends) and
    is read through the local `ArtifactCache`. Picklable (what a Dask worker gets to read
    activations): the copy reopens the store by its URI when it needs to write.
    """

    def __init__(self, store: Store, run_id: str, artifact_uri: str):
        self.store, self.run_id, self.uri = store, run_id, artifact_uri
        self.tracking_uri = store.uri
        parsed = urlparse(artifact_uri)
        self.local_root: Path | None = None
        if parsed.scheme in ("", "file"):
            self.local_root = Path(parsed.path if parsed.scheme == "file" else artifact_uri)
        self._uploader: _Uploader | None = None

    def __getstate__(self) -> dict:
        return {"run_id": self.run_id, "uri": self.uri, "tracking_uri": self.tracking_uri, "local_root": self.local_root}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.store, self._uploader = None, None

    def _store(self) -> Store:
        if self.store is None:
            self.store = Store(self.tracking_uri, must_exist=True)
        return self.store

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

        Locally an atomic rename, so readers never see a half-written file. On a server the
        file is queued for upload and this returns at once (training does not wait on the
        network); commits reach the server in order.

        Raises:
            UserError (StoreUnreachable): an earlier upload of this run failed.
        """
        if self.local_root is not None:
            os.replace(written, self.local_root / relpath)
            return
        if self._uploader is None or not self._uploader.alive:
            store = self._store()
            self._uploader = _Uploader(store.client, self.run_id)
            store._uploaders.setdefault(self.run_id, []).append(self._uploader)
        self._uploader.put(written, relpath)

    def local_path(self, relpath: str) -> Path:
        """A local path to read artifact `relpath` (from the cache when the store is a server).

        Raises:
            ArtifactMissing (a FileNotFoundError and a UserError): no such artifact.
            StoreUnreachable: the server does not answer.
        """
        if self.local_root is not None:
            path = self.local_root / relpath
            if not path.exists():
                raise ArtifactMissing(f"run {self.run_id} has no artifact {relpath}")
            return path
        return ArtifactCache(self.tracking_uri, self.run_id).path(relpath)
