"""`ibcli server`: a shared MLflow tracking server for a lab, on MLflow's own server.

`mlflow server` with a PostgreSQL backend store (SQLAlchemy's psycopg 3 driver) and a
proxied artifact store (`--artifacts-destination`: a folder, or s3://... on S3-compatible
storage): clients send and fetch artifacts through the server, so they need only its
address, never the database or the bucket. Bound to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

from ibcli.errors import UserError

DEFAULT_PORT = 5000
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


def backend_uri(given: str) -> str:
    """The backend store URI with PostgreSQL on psycopg 3 (`postgresql://` or `postgres://` ->
    `postgresql+psycopg://`); a `sqlite:///` URI passes through (a one-host trial).

    Raises:
        UserError: an empty URI, another scheme, or a PostgreSQL URI without the psycopg package.
    """
    uri = (given or "").strip()
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme == "sqlite":
        return uri
    if scheme not in POSTGRES_SCHEMES:
        raise UserError(f"--backend-store-uri must be postgresql://USER:PASSWORD@HOST:PORT/DB (or sqlite:///PATH for a trial), got {given!r}")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise UserError("a PostgreSQL backend needs psycopg: pip install 'ibcli[server]' (or `make server`)") from None
    return "postgresql+psycopg://" + uri.split("://", 1)[1]


def check_database(uri: str, timeout: int = 5) -> None:
    """Connect once to the backend database, so a wrong address or password is one line here
    instead of a traceback from every server worker.

    Raises:
        UserError: the database cannot be reached or refuses the login.
    """
    if not uri.startswith("postgresql+psycopg://"):
        return
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        psycopg.connect(conninfo, connect_timeout=timeout).close()
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot connect to PostgreSQL at {url.render_as_string(hide_password=True)}: {first}") from None


def artifacts_destination(given: str) -> str:
    """A folder (created, made absolute) or a remote URI (s3://, gs://, ...) passed as is.

    Raises:
        UserError: the folder cannot be created.
    """
    if "://" in given and not given.startswith("file://"):
        return given
    folder = Path(urlparse(given).path if given.startswith("file://") else given).expanduser().resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the artifact folder {folder} ({exc.strerror})") from None
    return str(folder)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_command(backend_store_uri: str | None, artifacts: str | None, host: str = "127.0.0.1",
                   port: int = DEFAULT_PORT, workers: int | None = None, allowed_hosts: str | None = None,
                   cors_allowed_origins: str | None = None, basic_auth: bool = False,
                   check: bool = True) -> tuple[list[str], list[str]]:
    """The `mlflow server` command line, and notes for the user.

    backend_store_uri: default `$IBCLI_SERVER_BACKEND`; artifacts: default `$IBCLI_SERVER_ARTIFACTS`,
    else ./server-artifacts.

    Raises:
        UserError: no or a bad backend URI, unreachable database (when `check`), bad port or workers.
    """
    backend_store_uri = backend_store_uri or os.environ.get("IBCLI_SERVER_BACKEND")
    if not backend_store_uri:
        raise UserError("pass --backend-store-uri postgresql://USER:PASSWORD@HOST:PORT/DB (or set $IBCLI_SERVER_BACKEND)")
    artifacts = artifacts or os.environ.get("IBCLI_SERVER_ARTIFACTS") or "server-artifacts"
    backend = backend_uri(backend_store_uri)
    if not 1 <= port <= 65535:
        raise UserError(f"--port must be in 1..65535, got {port}")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    if check:
        check_database(backend)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
               "--artifacts-destination", artifacts_destination(artifacts), "--serve-artifacts",
               "--host", host, "--port", str(port)]
    if workers is not None:
        command += ["--workers", str(workers)]
    if allowed_hosts:
        command += ["--allowed-hosts", allowed_hosts]
    if cors_allowed_origins:
        command += ["--cors-allowed-origins", cors_allowed_origins]
    if basic_auth:
        command += ["--app-name", "basic-auth"]
    notes = []
    if not is_loopback(host):
        if not allowed_hosts:
            notes.append(f"listening on {host}: clients that reach it by a name or a public address need "
                         f"--allowed-hosts NAME:{port},... (MLflow accepts localhost and private addresses by default)")
        if not basic_auth:
            notes.append("anyone who reaches this port can read and delete runs: add --basic-auth (README: the lab recipe)")
    return command, notes


def exec_server(command: list[str]) -> None:
    """Replace this process with the MLflow server."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)
