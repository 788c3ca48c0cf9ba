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
import re
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
    JSON-quoted values.

    Raises:
        pyarrow.ArrowException, OSError, ValueError, KeyError, TypeError: not a layer file
            (`UNREADABLE`; the artifact readers below turn them into a UserError).
    """
    raw = {k.decode(): v.decode() for k, v in (pq.read_schema(path).metadata or {}).items()}
    values = {}
    for key in ("layer", "epoch", "step"):
        text = raw.get(key)
        if text is not None and text.startswith('"') and text.endswith('"'):
            text = json.loads(text)  # format 1 stored json.dumps(value)
        values[key] = text
    return {"layer": values["layer"], "epoch": float(values["epoch"]), "step": int(float(values["step"]))}


def read_matrix(path, column: str = "activation") -> np.ndarray:
    """Read a fixed-size-list column back as an (n, d) NumPy array (dtype as stored).

    Raises:
        pyarrow.ArrowException, OSError, ValueError: not a Parquet file, or no such
            fixed-size-list column (`UNREADABLE`).
    """
    table = pq.read_table(path, columns=[column])
    col = table.column(column).combine_chunks()
    if not pa.types.is_fixed_size_list(col.type):
        raise ValueError(f"column {column!r} is {col.type}, not a fixed-size list")
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
        """Parse a manifest.

        Raises:
            UserError: a format this ibcli does not read.
            ValueError, KeyError, TypeError: not a manifest (cut short, or lacking what every
                manifest holds); `load_manifest` reports them as a damaged file.
        """
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
        if data.get("format") not in READS:
            raise UserError(f"activations manifest has format {data.get('format')!r}, this ibcli reads {', '.join(READS)}: update ibcli")
        for rec in data["records"]:  # what every reader takes for granted in a record
            float(rec["epoch"]), int(rec["step"]), dict(rec["files"])
        return cls(data["layers"], data["records"], data["probe"], data.get("dtype", "float32"), data.get("info", {}),
                   data["format"])


class NoActivations(UserError):
    """A train run without activation records (not a damaged one): no manifest, or one that
    lists no complete record yet."""


def record_name(step: int) -> str:
    return f"step_{step:07d}"


#: What reading a damaged file raises: pyarrow's errors (ArrowInvalid "Parquet magic bytes not
#: found" for a truncated file; ArrowIOError is an OSError), json's (JSONDecodeError is a
#: ValueError), and KeyError/TypeError for a file that parses but lacks what it must hold.
UNREADABLE = (pa.ArrowException, OSError, ValueError, KeyError, TypeError)


def damaged(artifacts, relpath: str, problem: str) -> UserError:
    """The one-line error for a file of a run that is missing or cannot be read."""
    return UserError(f"run {artifacts.run_id}: {relpath} is {problem}: the run's files are damaged")


def read_artifact(artifacts, relpath: str, read, optional: bool = False):
    """`read(local path)` of artifact `relpath` of a run (one whose manifest lists it, unless
    `optional`: then a missing file gives None, for the caller to say what that means).

    Raises:
        UserError: the file is missing (not `optional`), or `read` fails on it (`UNREADABLE`):
            the message names the run, the file and the error, e.g. "run ID:
            activations/step_0000000/layer3.parquet is unreadable (ArrowInvalid: ...): the
            run's files are damaged".
    """
    try:
        path = artifacts.local_path(relpath)
    except FileNotFoundError:
        if optional:
            return None
        raise damaged(artifacts, relpath, "missing") from None
    try:
        return read(path)
    except UserError:
        raise
    except UNREADABLE as exc:
        raise damaged(artifacts, relpath, f"unreadable ({_why(exc)})") from None


def _why(exc: BaseException) -> str:
    """An exception as one short line: its type and its message's first sentence, without the
    local path pyarrow puts in front (the message names the file already)."""
    text = re.sub(r"^Could not open Parquet input source '.*?': ", "", str(exc).strip())
    text = re.split(r"(?<=[^.])\.(\s|$)|\n", text, maxsplit=1)[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_manifest(artifacts) -> Manifest:
    """The manifest of a train run's activations.

    Raises:
        NoActivations (a UserError): the run recorded no activations (yet).
        UserError: the manifest is cut short or otherwise unreadable, or has a format this
            ibcli does not read.
    """
    manifest = read_artifact(artifacts, MANIFEST, lambda p: Manifest.from_json(p.read_text()), optional=True)
    if manifest is None:
        raise NoActivations(f"run {artifacts.run_id} has no recorded activations (no {MANIFEST}): train with --log-epochs that records")
    if not manifest.records:
        raise NoActivations(f"run {artifacts.run_id} has no complete activation records yet")
    return manifest


def load_probe(artifacts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sample_index (n,) int64, label (n,) int64, x (n, d_in) float32) of a train run's probe set.

    Raises:
        UserError: probe.parquet is missing or unreadable.
    """
    def read(path):
        table = pq.read_table(path, columns=["sample_index", "label"])
        return table.column("sample_index").to_numpy(), table.column("label").to_numpy(), read_matrix(path, "x")

    return read_artifact(artifacts, PROBE, read)


def load_layer(artifacts, record: dict, layer: str) -> np.ndarray:
    """One layer's activations at one record: (n, width) float32 (float16 files are upcast).

    Raises:
        UserError: the file the manifest lists is missing or unreadable.
    """
    relpath = record["files"].get(layer)
    if relpath is None:
        raise damaged(artifacts, MANIFEST, f"incomplete (no file of layer {layer!r} at epoch {record['epoch']:g})")
    return read_artifact(artifacts, relpath, read_matrix).astype(np.float32, copy=False)
