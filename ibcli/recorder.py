"""Writes a train run's activation records in a background thread.

Each record's layer files are written and published first; only then is the manifest
rewritten to list the record. A record is complete exactly when the manifest lists it,
so a crash or kill at any moment leaves every listed record readable.

The same thread runs the run's other writes (metrics, gradient table, checkpoint) that the
trainer queues with `call`, in the order queued: what is queued after a record is written
after it.
"""

from __future__ import annotations

import math
import queue
import threading

import numpy as np

from ibcli import activations as act
from ibcli.errors import UserError


class NonFiniteRecord(UserError):
    """A record's activations hold NaN or inf: training diverged; the record is not written."""


class Recorder:
    """Queue records (and other writes) for the writer thread; `close()` waits for the queue to drain.

    `max_pending`: records queued or being written at most; `submit` waits for a slot.
    """

    def __init__(self, artifacts, manifest: act.Manifest, max_pending: int = 2):
        self.artifacts = artifacts
        self.manifest = manifest
        self._queue: queue.Queue = queue.Queue()
        self._slots = threading.BoundedSemaphore(max_pending)
        self._error: BaseException | None = None
        self._failed_task = "writing activations"
        self._thread = threading.Thread(target=self._work, name="ibcli-recorder", daemon=True)
        self._thread.start()

    def write_probe(self, sample_index: np.ndarray, label: np.ndarray, x: np.ndarray) -> None:
        """Write probe.parquet (synchronously: every record refers to it)."""
        path = self.artifacts.writable_path(act.PROBE)
        act.write_matrix_parquet(path, {"sample_index": sample_index, "label": label, "x": x})
        self.artifacts.commit(path, act.PROBE)
        self._write_manifest()

    def submit(self, epoch: float, step: int, layers: dict, ranges: dict | None = None, ready=None) -> None:
        """Queue one record: `layers` maps layer name -> (n_probe, width) array (NumPy, or a
        CPU tensor), or a list of such arrays holding consecutive rows; written as it is.

        Args:
            ranges: {layer: [min, max]} if the caller has them (a NaN or inf there is the
                finiteness check); else they are computed here and in the writer.
            ready: an object whose `synchronize()` returns once `layers` may be read (a CUDA
                event after non-blocking copies from the GPU), or None.

        Raises:
            NonFiniteRecord: a layer holds NaN or inf (nothing is queued: listed records stay usable).
        """
        self._raise_if_failed()
        for layer, matrix in layers.items():
            finite = (all(math.isfinite(v) for v in ranges[layer]) if ranges is not None
                      else all(np.isfinite(part).all() for part in _parts(matrix)))
            if not finite:
                raise NonFiniteRecord(
                    f"layer {layer} became NaN or inf at step {step} (epoch {epoch:g}): training diverged, lower --lr"
                )
        self._slots.acquire()
        self._queue.put(("record", (epoch, step, layers, ranges, ready)))

    def call(self, fn, *args) -> None:
        """Queue `fn(*args)` to run in the writer thread after everything queued before.

        Raises:
            RuntimeError: an earlier write failed (nothing more is written).
        """
        self._raise_if_failed()
        self._queue.put(("call", (fn, args)))

    def wait(self) -> None:
        """Block until everything queued so far is written. Re-raises a writer error."""
        self._queue.join()
        self._raise_if_failed()

    def close(self) -> None:
        """Write everything queued, then stop the thread. Re-raises a writer error."""
        self._queue.put(None)
        self._thread.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if isinstance(self._error, UserError):
            raise self._error  # e.g. the store's server stopped answering: one line, not a traceback
        if self._error is not None:
            raise RuntimeError(f"{self._failed_task} failed: {self._error}") from self._error

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                kind, args = item
                if self._error is not None:
                    continue  # drain without writing after a failure
                try:
                    if kind == "record":
                        self._write_record(*args)
                    else:
                        fn, fn_args = args
                        fn(*fn_args)
                except BaseException as exc:  # surfaced to the training thread by submit/call/wait/close
                    self._failed_task = "writing activations" if kind == "record" else f"writing ({getattr(fn, '__name__', fn)})"
                    self._error = exc
            finally:
                if item is not None and item[0] == "record":
                    self._slots.release()
                self._queue.task_done()

    def _write_record(self, epoch: float, step: int, layers: dict, given: dict | None, ready) -> None:
        if ready is not None:
            ready.synchronize()
        name = act.record_name(step)
        files, ranges = {}, {}
        for layer, matrix in layers.items():
            parts = _parts(matrix)
            matrix = np.asarray(parts[0]) if len(parts) == 1 else np.concatenate([np.asarray(p) for p in parts])
            # The layer's range at this record: `ibcli mi` builds bin edges from these without a pass.
            if given is not None:
                ranges[layer] = [float(v) for v in given[layer]]
            else:
                ranges[layer] = [float(matrix.min()), float(matrix.max())] if matrix.size else [0.0, 0.0]
            rel = f"{act.PREFIX}/{name}/{layer}.parquet"
            path = self.artifacts.writable_path(rel)
            act.write_layer_parquet(path, matrix, layer, epoch, step)
            self.artifacts.commit(path, rel)
            files[layer] = f"{act.PREFIX}/{name}/{layer}.parquet"
        self.manifest.records.append({"record": name, "epoch": epoch, "step": step, "files": files, "range": ranges})
        self._write_manifest()

    def _write_manifest(self) -> None:
        path = self.artifacts.writable_path(act.MANIFEST)
        path.write_text(self.manifest.to_json())
        self.artifacts.commit(path, act.MANIFEST)


def _parts(matrix) -> list:
    """A layer's rows as a list of arrays (one array, or the row chunks given)."""
    return list(matrix) if isinstance(matrix, (list, tuple)) else [matrix]
