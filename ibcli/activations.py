"""Activations on disk: Parquet files per (record, layer), the probe file, the manifest.

Layout under a train run's artifact path `activations/`:

    probe.parquet                 sample_index int64, label int64, x fixed_size_list<float32>[d_in]
    step_000000/layer1.parquet    activation fixed_size_list<float32|float16>[d_layer], epoch float64, step int64;
                                  one row per probe sample; metadata layer, epoch, step (plain strings)
    ...
    manifest.json                 written last after each record; lists the complete records

Rows of every layer file line up with probe.parquet. Readers trust only the manifest.
Format 1 (before 2026-11-30) had no epoch/step columns and JSON-quoted metadata
(`"layer2"`); ibcli reads both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ibcli.errors import UserError

PREFIX = "activations"
MANIFEST = f"{PREFIX}/manifest.json"
PROBE = f"{PREFIX}/probe.parquet"
FORMAT = "ibcli.activations/2"
#: Manifest formats this version reads: 2 added the epoch/step columns and plain metadata.
READS = ("ibcli.activations/1", FORMAT)


def _matrix_column(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """(n, d) array -> non-nullable fixed-size-list column without copying the values.

    Non-nullable (values and rows): Parquet then writes fewer definition levels (max
    level 1 instead of 3 for the list's values), which makes the 41 MB layer-1 file
    about 15-30 % cheaper to write than the nullable default.
    """
    n, d = matrix.shape
    flat = pa.array(np.ascontiguousarray(matrix).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, type=pa.list_(pa.field("element", flat.type, nullable=False), d))


def write_matrix_parquet(path, columns: dict, metadata: dict | None = None, dictionary: tuple[str, ...] = ()) -> None:
    """Write columns (1-d arrays, or 2-d arrays stored as fixed-size lists) to Parquet.

    metadata: schema metadata, each value stored as a plain string.
    No compression and no dictionary encoding (float activations never repeat enough to
    gain; writing stays off the training's critical path), except for the `dictionary`
    columns: a constant column (a record's epoch) then costs a few bytes.
    """
    arrays, fields = [], []
    for name, values in columns.items():
        values = np.asarray(values)
        array = _matrix_column(values) if values.ndim == 2 else pa.array(values)
        arrays.append(array)
        fields.append(pa.field(name, array.type, nullable=False))
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    if metadata:
        table = table.replace_schema_metadata({k: str(v) for k, v in metadata.items()})
    pq.write_table(table, path, use_dictionary=list(dictionary) or False, compression="none", write_statistics=False)


def write_layer_parquet(path, matrix: np.ndarray, layer: str, epoch: float, step: int) -> None:
    """One (record, layer) file: `activation` (n, width) as a fixed-size list, and the record's
    `epoch` (float64: fractional inside an epoch) and `step` (int64) on every row, so a file
    or a concatenation of files says where each row comes from. Metadata: layer, epoch, step."""
    n = len(matrix)
    write_matrix_parquet(
        path, {"activation": matrix, "epoch": np.full(n, float(epoch)), "step": np.full(n, int(step), dtype=np.int64)},
        metadata={"layer": layer, "epoch": repr(float(epoch)), "step": int(step)}, dictionary=("epoch", "step"))


def read_layer_metadata(path) -> dict:
    """A layer file's metadata as {"layer": str, "epoch": float, "step": int}; also reads format 1's
    JSON-quoted values."""
    raw = {k.decode(): v.decode() for k, v in (pq.read_schema(path).metadata or {}).items()}
    values = {}
    for key in ("layer", "epoch", "step"):
        text = raw.get(key)
        if text is not None and text.startswith('"') and text.endswith('"'):
            text = json.loads(text)  # format 1 stored json.dumps(value)
        values[key] = text
    return {"layer": values["layer"], "epoch": float(values["epoch"]), "step": int(float(values["step"]))}


def read_matrix(path, column: str = "activation") -> np.ndarray:
    """Read a fixed-size-list column back as an (n, d) NumPy array (dtype as stored)."""
    table = pq.read_table(path, columns=[column])
    col = table.column(column).combine_chunks()
    d = col.type.list_size
    return col.flatten().to_numpy(zero_copy_only=False).reshape(-1, d)


@dataclass
class Manifest:
    """What a train run recorded: layers, probe file and the complete records.

    records: list of {"record": "step_000469", "epoch": float, "step": int,
    "files": {layer: relative path}} in recording order.
    """

    layers: list[dict] = field(default_factory=list)  # {"name", "index", "shape": [..], "width"}
    records: list[dict] = field(default_factory=list)
    probe: dict = field(default_factory=dict)
    dtype: str = "float32"
    info: dict = field(default_factory=dict)
    # A run recorded in format 1 and resumed stays format 1: its first files have no epoch/step columns.
    format: str = FORMAT

    def to_json(self) -> str:
        return json.dumps(
            {"format": self.format, "dtype": self.dtype, "probe": self.probe, "layers": self.layers,
             "records": self.records, "info": self.info},
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        data = json.loads(text)
        if data.get("format") not in READS:
            raise UserError(f"activations manifest has format {data.get('format')!r}, this ibcli reads {', '.join(READS)}: update ibcli")
        return cls(data["layers"], data["records"], data["probe"], data.get("dtype", "float32"), data.get("info", {}),
                   data["format"])


def record_name(step: int) -> str:
    return f"step_{step:07d}"


def load_manifest(artifacts) -> Manifest:
    """The manifest of a train run's activations.

    Raises:
        UserError: the run recorded no activations.
    """
    try:
        path = artifacts.local_path(MANIFEST)
    except FileNotFoundError:
        raise UserError(f"run {artifacts.run_id} has no recorded activations (no {MANIFEST}): train with --log-epochs that records") from None
    manifest = Manifest.from_json(path.read_text())
    if not manifest.records:
        raise UserError(f"run {artifacts.run_id} has no complete activation records yet")
    return manifest


def load_probe(artifacts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sample_index (n,) int64, label (n,) int64, x (n, d_in) float32) of a train run's probe set."""
    path = artifacts.local_path(PROBE)
    table = pq.read_table(path)
    x = read_matrix(path, "x")
    return table.column("sample_index").to_numpy(), table.column("label").to_numpy(), x


def load_layer(artifacts, record: dict, layer: str) -> np.ndarray:
    """One layer's activations at one record: (n, width) float32 (float16 files are upcast)."""
    return read_matrix(artifacts.local_path(record["files"][layer])).astype(np.float32, copy=False)
