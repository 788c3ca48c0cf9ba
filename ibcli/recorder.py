"""Writes a train run's activation records in a background thread.

Each record's layer files are written and published first; only then is the manifest
rewritten to list the record. A record is complete exactly when the manifest lists it,
so a crash or kill at any moment leaves every listed record readable.
"""

from __future__ import annotations

import queue
import threading

import numpy as np

from ibcli import activations as act
from ibcli.errors import UserError


class NonFiniteRecord(UserError):
    """A record's activations hold NaN or inf: training diverged; the record is not written."""


class Recorder:
    """Queue (record, layer arrays) for writing; `close()` waits for the queue to drain."""

    def __init__(self, artifacts, manifest: act.Manifest, max_pending: int = 2):
        self.artifacts = artifacts
        self.manifest = manifest
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="ibcli-recorder", daemon=True)
        self._thread.start()

    def write_probe(self, sample_index: np.ndarray, label: np.ndarray, x: np.ndarray) -> None:
        """Write probe.parquet (synchronously: every record refers to it)."""
        path = self.artifacts.writable_path(act.PROBE)
        act.write_matrix_parquet(path, {"sample_index": sample_index, "label": label, "x": x})
        self.artifacts.commit(path, act.PROBE)
        self._write_manifest()

    def submit(self, epoch: float, step: int, layers: dict[str, np.ndarray]) -> None:
        """Queue one record: `layers` maps layer name -> (n_probe, width) array.

        Raises:
            NonFiniteRecord: a layer holds NaN or inf (nothing is queued: listed records stay usable).
        """
        self._raise_if_failed()
        for layer, matrix in layers.items():
            if not np.isfinite(matrix).all():
                raise NonFiniteRecord(
                    f"layer {layer} became NaN or inf at step {step} (epoch {epoch:g}): training diverged, lower --lr"
                )
        self._queue.put((epoch, step, layers))

    def close(self) -> None:
        """Write everything queued, then stop the thread. Re-raises a writer error."""
        self._queue.put(None)
        self._thread.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if isinstance(self._error, UserError):
            raise self._error  # e.g. the store's server stopped answering: one line, not a traceback
        if self._error is not None:
            raise RuntimeError(f"writing activations failed: {self._error}") from self._error

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain without writing after a failure
            try:
                self._write_record(*item)
            except BaseException as exc:  # surfaced to the training thread by submit/close
                self._error = exc

    def _write_record(self, epoch: float, step: int, layers: dict[str, np.ndarray]) -> None:
        name = act.record_name(step)
        files, ranges = {}, {}
        for layer, matrix in layers.items():
            # The layer's range at this record: `ibcli mi` builds bin edges from these without a pass.
            ranges[layer] = [float(matrix.min()), float(matrix.max())] if matrix.size else [0.0, 0.0]
            rel = f"{act.PREFIX}/{name}/{layer}.parquet"
            path = self.artifacts.writable_path(rel)
            act.write_matrix_parquet(path, {"activation": matrix}, metadata={"layer": layer, "epoch": epoch, "step": step})
            self.artifacts.commit(path, rel)
            files[layer] = f"{act.PREFIX}/{name}/{layer}.parquet"
        self.manifest.records.append({"record": name, "epoch": epoch, "step": step, "files": files, "range": ranges})
        self._write_manifest()

    def _write_manifest(self) -> None:
        path = self.artifacts.writable_path(act.MANIFEST)
        path.write_text(self.manifest.to_json())
        self.artifacts.commit(path, act.MANIFEST)
