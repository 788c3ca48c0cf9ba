"""The server-store parts that need no server: ordered uploads, the artifact cache, `ibcli server`'s
command line, and how an unreachable server is told apart from other errors."""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path

import pytest
import requests
from mlflow.exceptions import MlflowException

from conftest import run_cli

from ibcli.errors import UserError
from ibcli.store import ArtifactCache, StoreUnreachable, _is_unreachable, _Uploader


class FakeClient:
    """Records log_artifact calls; fails from the `fail_at`-th call on."""

    def __init__(self, fail_at: int | None = None, gate: threading.Event | None = None):
        self.calls, self.fail_at, self.gate = [], fail_at, gate

    def log_artifact(self, run_id, path, artifact_path=None):
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail_at is not None and len(self.calls) >= self.fail_at:
            raise StoreUnreachable("the MLflow server http://x does not answer (connection refused)")
        self.calls.append((artifact_path, Path(path).name, Path(path).read_text()))


def _staged(tmp_path: Path, name: str, text: str) -> Path:
    folder = tmp_path / f"stage-{name}-{text}"
    folder.mkdir()
    path = folder / name
    path.write_text(text)
    return path


def test_uploads_go_in_commit_order_without_waiting(tmp_path):
    gate = threading.Event()
    client = FakeClient(gate=gate)
    up = _Uploader(client, "run1")
    files = [("activations/step_0000005/layer1.parquet", "a"), ("activations/step_0000005/layer2.parquet", "b"),
             ("activations/manifest.json", "m")]
    staged = [_staged(tmp_path, Path(rel).name, text) for rel, text in files]
    for path, (rel, _) in zip(staged, files):
        up.put(path, rel)  # returns although the server has not taken anything yet
    assert client.calls == []
    gate.set()
    up.drain()
    assert client.calls == [("activations/step_0000005", "layer1.parquet", "a"),
                            ("activations/step_0000005", "layer2.parquet", "b"), ("activations", "manifest.json", "m")]
    assert not any(p.parent.exists() for p in staged)  # staging folders removed once sent


def test_after_a_failed_upload_nothing_more_is_sent(tmp_path):
    client = FakeClient(fail_at=1)
    up = _Uploader(client, "run1")
    up.put(_staged(tmp_path, "layer1.parquet", "a"), "activations/step_1/layer1.parquet")
    up.put(_staged(tmp_path, "layer2.parquet", "b"), "activations/step_1/layer2.parquet")  # fails
    # must not follow; put itself may already raise, when the failure came back first
    with contextlib.suppress(StoreUnreachable):
        up.put(_staged(tmp_path, "manifest.json", "m"), "activations/manifest.json")
    with pytest.raises(StoreUnreachable, match="does not answer"):
        up.drain()
    assert [c[1] for c in client.calls] == ["layer1.parquet"]
    with pytest.raises(UserError):
        up.put(_staged(tmp_path, "x", "x"), "x")


def _manifest(records: dict) -> str:
    return json.dumps({"format": "ibcli.activations/1", "records": [{"record": k, **v} for k, v in records.items()]})


def test_the_cache_serves_written_once_files_and_forgets_rerecorded_ones(tmp_path, monkeypatch):
    served = {"activations/manifest.json": _manifest({"step_0000005": {"range": {"l": [0, 1]}},
                                                      "step_0000010": {"range": {"l": [0, 2]}}}),
              "activations/step_0000005/l.parquet": "five", "activations/step_0000010/l.parquet": "ten",
              "checkpoints/last.pt": "ckpt-1"}
    downloads = []

    def download(self, relpath):
        if relpath not in served:
            raise FileNotFoundError(relpath)
        downloads.append(relpath)
        staging = self.dir / f".download-{len(downloads)}"
        staging.mkdir(parents=True)
        (staging / Path(relpath).name).write_text(served[relpath])
        return staging / Path(relpath).name

    monkeypatch.setattr(ArtifactCache, "_download", download)
    cache = ArtifactCache("http://x", "run1", root=tmp_path)
    cache.path("activations/manifest.json")
    for rel in ("activations/step_0000005/l.parquet", "activations/step_0000010/l.parquet", "checkpoints/last.pt"):
        assert cache.path(rel).read_text() == served[rel]
    cache.path("activations/step_0000005/l.parquet")
    served["checkpoints/last.pt"] = "ckpt-2"
    assert cache.path("checkpoints/last.pt").read_text() == "ckpt-2"  # rewritten during a run: fetched again
    assert downloads.count("activations/step_0000005/l.parquet") == 1
    # a resume re-recorded step 10 differently: its cached file goes, step 5 stays
    served["activations/manifest.json"] = _manifest({"step_0000005": {"range": {"l": [0, 1]}},
                                                     "step_0000010": {"range": {"l": [0, 3]}}})
    served["activations/step_0000010/l.parquet"] = "ten again"
    cache.path("activations/manifest.json")
    assert cache.path("activations/step_0000010/l.parquet").read_text() == "ten again"
    assert cache.path("activations/step_0000005/l.parquet").read_text() == "five"
    assert downloads.count("activations/step_0000005/l.parquet") == 1
    with pytest.raises(FileNotFoundError):
        cache.path("activations/nope.parquet")
    assert sorted(p.name for p in (tmp_path / "run1").iterdir()) == ["activations", "checkpoints"]  # no staging left


def test_unreachable_is_told_from_other_errors():
    refused = requests.exceptions.ConnectionError("HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded")
    try:
        try:
            raise refused
        except Exception as e:
            raise MlflowException(f"API request to http://127.0.0.1:1/api failed with exception {e}")
    except MlflowException as wrapped:
        assert _is_unreachable(wrapped)
    assert not _is_unreachable(MlflowException("RESOURCE_DOES_NOT_EXIST: Run 'abc' not found"))


def test_server_command_line(capsys, tmp_path):
    code, out, err = run_cli(["server", "--dry-run", "--backend-store-uri", "postgresql://lab:pw@db:5432/ibcli",
                              "--artifacts-destination", tmp_path / "art", "--port", "5001", "--basic-auth",
                              "--allowed-hosts", "mlflow.lab:5001"], capsys)
    assert code == 0, err
    argv = out.split()
    assert argv[1:4] == ["-m", "mlflow", "server"]
    assert argv[argv.index("--backend-store-uri") + 1] == "postgresql+psycopg://lab:pw@db:5432/ibcli"
    assert argv[argv.index("--artifacts-destination") + 1] == str(tmp_path / "art") and (tmp_path / "art").is_dir()
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--port") + 1] == "5001"
    assert argv[argv.index("--app-name") + 1] == "basic-auth" and "--serve-artifacts" in argv
    assert argv[argv.index("--allowed-hosts") + 1] == "mlflow.lab:5001"
    code, out, _ = run_cli(["server", "--dry-run", "--backend-store-uri", "postgresql://x@h/db",
                            "--artifacts-destination", "s3://bucket/ibcli"], capsys)
    assert code == 0 and "--artifacts-destination s3://bucket/ibcli" in out


@pytest.mark.parametrize("args, message", [
    ([], "pass --backend-store-uri"),
    (["--backend-store-uri", "mysql://u@h/db"], "must be postgresql://"),
    (["--backend-store-uri", "postgresql://u@h/db", "--port", "0"], "--port must be in 1..65535"),
])
def test_server_refuses_bad_options_in_one_line(args, message, capsys, monkeypatch):
    monkeypatch.delenv("IBCLI_SERVER_BACKEND", raising=False)
    code, _, err = run_cli(["server", "--dry-run", *args], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_server_says_when_the_database_does_not_answer(capsys, tmp_path):
    pytest.importorskip("psycopg")
    from servers import free_port

    code, _, err = run_cli(["server", "--backend-store-uri", f"postgresql://u:secret@127.0.0.1:{free_port()}/db",
                            "--artifacts-destination", tmp_path], capsys)
    assert code == 2 and "cannot connect to PostgreSQL at" in err and "secret" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_slow_server_holds_back_commits_beyond_the_byte_budget(tmp_path):
    gate = threading.Event()
    client = FakeClient(gate=gate)
    up = _Uploader(client, "run1", max_bytes=10)
    up.put(_staged(tmp_path, "a", "123456"), "a")  # 6 bytes: taken
    blocked = threading.Thread(target=up.put, args=(_staged(tmp_path, "b", "7890123"), "b"))  # 6 + 7 > 10: waits
    blocked.start()
    blocked.join(0.5)
    assert blocked.is_alive() and client.calls == []
    gate.set()  # the server takes "a": room for "b"
    blocked.join(10)
    assert not blocked.is_alive()
    up.drain()
    assert [c[1] for c in client.calls] == ["a", "b"]
