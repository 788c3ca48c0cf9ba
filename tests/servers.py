"""Real services for the tests: a PostgreSQL cluster and MLflow tracking servers on loopback.

PostgreSQL refuses to run as root (and CI runs as root), so as root the cluster runs as the
unprivileged user `nobody` in a temporary folder it owns. Each service listens on a free
port of 127.0.0.1 and is stopped (its folder removed) by `stop()`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

#: The client's HTTP behaviour in tests: a stopped server is reported in seconds, not minutes.
CLIENT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bindir() -> Path | None:
    """The folder of `initdb` and `pg_ctl`: Debian's newest /usr/lib/postgresql/N/bin, else $PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Postgres:
    """A throwaway PostgreSQL cluster (trust authentication, loopback only)."""

    def __init__(self, user: str = "ibcli"):
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (no initdb): apt-get install postgresql")
        self.bindir, self.user = bindir, user
        self.dir = Path(tempfile.mkdtemp(prefix="ibcli-pg-"))
        self.port = free_port()
        self._as = {}
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
            self._as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        data = self.dir / "data"
        self._run([self.bindir / "initdb", "-D", data, "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync"])
        self._run([self.bindir / "pg_ctl", "-D", data, "-l", self.dir / "log", "-w", "-t", "120", "start", "-o",
                   f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -F"])

    def _run(self, argv) -> None:
        done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=self.dir, **self._as)
        if done.returncode != 0:
            log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            raise RuntimeError(f"{Path(str(argv[0])).name} failed ({done.returncode}): {done.stderr.strip()[-800:]} {log[-800:]}")

    def create_database(self, name: str) -> str:
        """A new database; returns its SQLAlchemy URI (psycopg 3 driver)."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run([self.bindir / "pg_ctl", "-D", self.dir / "data", "-m", "fast", "-w", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class MlflowServer:
    """`ibcli server` (so `mlflow server` on the PostgreSQL backend, proxied artifacts) on a free
    loopback port; `stop()` kills it, `start()` brings it back on the same port, `close()` ends it
    and removes its log."""

    def __init__(self, backend_uri: str, artifacts: Path, port: int | None = None, timeout: float = 300):
        self.backend_uri, self.artifacts = backend_uri, artifacts
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.log = Path(tempfile.mkstemp(prefix="ibcli-mlflow-", suffix=".log")[1])
        self.start()

    def start(self) -> None:
        cmd = [sys.executable, "-m", "ibcli.cli", "server", "--backend-store-uri", self.backend_uri,
               "--artifacts-destination", str(self.artifacts), "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", "1"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                text = self.log.read_text()[-2000:]
                self.close()
                raise RuntimeError(f"mlflow server exited {rc}: {text}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        text = self.log.read_text()[-2000:]
        self.close()
        raise RuntimeError(f"mlflow server did not answer within {self.timeout:.0f} s: {text}")

    def stop(self) -> None:
        """Kill the server (its whole process group: the uvicorn worker too)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # also a worker whose parent already died
            except ProcessLookupError:
                pass
            self.proc.wait()
        self.proc = None

    def close(self) -> None:
        """Stop for good: the server and its log."""
        self.stop()
        self.log.unlink(missing_ok=True)
