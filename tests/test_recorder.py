"""The recorder's writer thread: records listed only when complete, other writes in order after them."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from ibcli import activations as act
from ibcli.recorder import NonFiniteRecord, Recorder


class LocalArtifacts:
    """The part of `ibcli.store.Artifacts` the recorder uses, in a folder."""

    def __init__(self, root: Path):
        self.root = root

    def writable_path(self, rel: str) -> Path:
        path = self.root / (rel + ".partial")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def commit(self, written: Path, rel: str) -> None:
        os.replace(written, self.root / rel)


def _recorder(tmp_path, **kw) -> Recorder:
    manifest = act.Manifest(layers=[{"name": "a", "index": 1, "shape": [3], "width": 3}], records=[])
    return Recorder(LocalArtifacts(tmp_path), manifest, **kw)


def _listed(tmp_path) -> list[int]:
    return [r["step"] for r in act.Manifest.from_json((tmp_path / act.MANIFEST).read_text()).records]


def test_calls_run_after_the_records_queued_before_them(tmp_path):
    rec = _recorder(tmp_path)
    seen = []
    for step in (1, 2, 3):
        rec.submit(float(step), step, {"a": np.full((4, 3), step, dtype=np.float32)})
        rec.call(lambda s=step: seen.append((s, _listed(tmp_path))))
    rec.wait()
    assert seen == [(1, [1]), (2, [1, 2]), (3, [1, 2, 3])]  # each call saw its record listed
    rec.close()
    assert np.array_equal(act.read_matrix(tmp_path / "activations/step_0000002/a.parquet"), np.full((4, 3), 2, np.float32))


def test_given_ranges_are_written_and_checked(tmp_path):
    rec = _recorder(tmp_path)
    x = np.array([[0.0, 1.0, 2.0]], dtype=np.float32)
    rec.submit(1.0, 5, {"a": x}, ranges={"a": [-7.0, 9.0]})  # trusted as given (the trainer's device pass)
    with pytest.raises(NonFiniteRecord, match="layer a became NaN or inf at step 6"):
        rec.submit(1.0, 6, {"a": x}, ranges={"a": [float("nan"), float("nan")]})
    with pytest.raises(NonFiniteRecord):
        rec.submit(1.0, 7, {"a": np.array([[0.0, np.inf, 1.0]], dtype=np.float32)})
    rec.close()
    records = act.Manifest.from_json((tmp_path / act.MANIFEST).read_text()).records
    assert [r["step"] for r in records] == [5] and records[0]["range"] == {"a": [-7.0, 9.0]}


def test_ready_is_awaited_before_the_layers_are_read(tmp_path):
    """A record whose data is still being copied (a CUDA event in the trainer) is written
    only after `ready.synchronize()` returns."""
    rec = _recorder(tmp_path)
    buffer = np.zeros((2, 3), dtype=np.float32)
    released = threading.Event()

    class Ready:
        def synchronize(self):
            released.wait(5)

    rec.submit(1.0, 1, {"a": buffer}, ready=Ready())
    buffer[:] = 4.0  # the "copy" lands after submit, before synchronize returns
    released.set()
    rec.close()
    assert (act.read_matrix(tmp_path / "activations/step_0000001/a.parquet") == 4.0).all()
    assert _listed(tmp_path) == [1]


def test_a_failed_call_stops_later_writes_and_is_raised(tmp_path):
    rec = _recorder(tmp_path)

    def broken():
        raise OSError("disk full")

    rec.call(broken)
    with pytest.raises(RuntimeError, match=r"writing \(broken\) failed: disk full"):
        rec.wait()
    with pytest.raises(RuntimeError, match="disk full"):
        rec.submit(1.0, 1, {"a": np.zeros((1, 3), dtype=np.float32)})
    with pytest.raises(RuntimeError, match="disk full"):
        rec.close()
    assert not (tmp_path / act.MANIFEST).exists()


def test_records_in_flight_are_bounded(tmp_path):
    """max_pending records queued or being written: the next submit waits for a slot."""
    rec = _recorder(tmp_path, max_pending=1)
    gate = threading.Event()
    rec.call(gate.wait, 5)  # hold the writer
    rec.submit(1.0, 1, {"a": np.zeros((1, 3), dtype=np.float32)})
    done = threading.Event()
    threading.Thread(target=lambda: (rec.submit(2.0, 2, {"a": np.zeros((1, 3), dtype=np.float32)}), done.set())).start()
    assert not done.wait(0.3)  # blocked: one record is already pending
    gate.set()
    assert done.wait(5)
    rec.close()
    assert _listed(tmp_path) == [1, 2]


def test_row_chunks_are_joined_in_order(tmp_path):
    rec = _recorder(tmp_path)
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    rec.submit(1.0, 1, {"a": [x[:4], x[4:9], x[9:]]})
    rec.close()
    assert np.array_equal(act.read_matrix(tmp_path / "activations/step_0000001/a.parquet"), x)
    records = act.Manifest.from_json((tmp_path / act.MANIFEST).read_text()).records
    assert records[0]["range"] == {"a": [0.0, 29.0]}
