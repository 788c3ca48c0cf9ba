"""A train run's recorded (epoch, layer) activations -> one mi table (bits), by one estimator.

The table is what `ibcli mi` stores as `mi.parquet`: one row per record x layer x
point (e.g. per noise variance), with the columns of `columns()` — the fixed ones below,
then every parameter and result column the registered estimators declare. Estimators
return nats; this is where information becomes bits (`units.nats_to_bits`).

Three steps, so the same work runs in this process or on Dask workers: `plan_mi` (the
tasks, and the estimator's `prepare` context computed once on the driver), `estimate_task`
(one (record, layer): read its activations, estimate, rows in bits) and `assemble` (the rows
in the plan's order, typed). `compute_mi_table` chains them on an `ibcli.executor.Executor`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd

from ibcli import activations as act
from ibcli.errors import UserError
from ibcli.estimators import registry
from ibcli.estimators.errors import EstimatorInputError
from ibcli.estimators.interface import Estimator
from ibcli.estimators.units import nats_to_bits
from ibcli.executor import Executor

MI_FILE = "mi.parquet"
#: The columns every mi table has, before the estimators' own (README: "mi.parquet").
BASE_COLUMNS = {
    "epoch": "float64", "step": "int64", "layer": "string", "layer_index": "int64", "method": "string",
    "i_xt_bits": "float64", "i_ty_bits": "float64", "ceiling_bits": "float64",
    "n_probe": "int64", "width": "int64", "seed": "int64", "seconds": "float64",
}
#: Columns renamed since tables were first written: readers accept the old name.
RENAMED = {"i_ty_lower_bits": "i_ty_bd_bits"}


def columns() -> dict[str, str]:
    """Every mi.parquet column and its pandas dtype, in order."""
    return {**BASE_COLUMNS, **registry.result_columns()}


@dataclass(frozen=True)
class Selection:
    """The records and layers of a train run one mi run estimates."""

    records: list
    layers: list[str]


#: Significant digits ibcli prints a recorded epoch with (`f"{epoch:g}"`, e.g. 0.0212766 for step
#: 1 of 47): an epoch typed as printed selects its record (`typed_epoch`).
PRINTED_DIGITS = 6


@dataclass(frozen=True)
class TypedEpoch:
    """An --epoch value: the text as typed, its value, and how many significant digits of a
    recorded epoch it pins down (`digits`: those typed, at least `PRINTED_DIGITS`)."""

    text: str
    value: float
    digits: int

    def matches(self, recorded: float) -> bool:
        """Whether `recorded` rounds to this value at `digits` significant digits."""
        return _rounded(recorded, self.digits) == _rounded(self.value, self.digits)


def _rounded(x: float, digits: int) -> float:
    return float(f"{x:.{digits - 1}e}")


def typed_epoch(given) -> TypedEpoch:
    """An --epoch value (str as typed, or a number) as a `TypedEpoch`.

    A number given as a float counts all the digits of its repr (0.02127659574468085: 16).

    Raises:
        UserError: not a finite number.
    """
    if isinstance(given, TypedEpoch):
        return given
    text = given.strip() if isinstance(given, str) else repr(float(given))
    try:
        exact = Decimal(text)
        value = float(text)
    except (InvalidOperation, ValueError):
        raise UserError(f"--epoch takes a number, got {given!r}") from None
    if not math.isfinite(value):
        raise UserError(f"--epoch takes a finite number, got {given!r}")
    # Beyond 17 significant digits a float holds no more: compare exactly.
    return TypedEpoch(text, value, min(17, max(PRINTED_DIGITS, len(exact.as_tuple().digits))))


def select(manifest: act.Manifest, layers=(), epochs=()) -> Selection:
    """The chosen layers (default all) and recorded epochs (default all), checked against the manifest.

    epochs: values as typed (str) or numbers (`typed_epoch`). One selects the record whose epoch
        equals it exactly, else the record whose epoch equals it when both are rounded to the
        significant digits typed, at least the 6 ibcli prints: "0.0212766" (as listed) or
        "0.021276596" picks the record at 0.02127659574468085; "0.0213" picks none.

    Raises:
        UserError: a layer that was not recorded, an epoch that matches no record, or one that
            matches several (type more digits); the message shows the epoch as typed.
    """
    known = [layer["name"] for layer in manifest.layers]
    chosen = list(dict.fromkeys(layers)) or known
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise UserError(f"unknown layer {unknown[0]!r}: this run recorded {', '.join(known)}")
    records = manifest.records
    if epochs:
        recorded = [float(r["epoch"]) for r in records]
        wanted = set()
        for typed in map(typed_epoch, epochs):
            hits = [i for i, e in enumerate(recorded) if e == typed.value] or \
                   [i for i, e in enumerate(recorded) if typed.matches(e)]
            if not hits:
                shown = ", ".join(f"{e:g}" for e in sorted(set(recorded)))
                raise UserError(f"epoch {typed.text} was not recorded: this run recorded epochs {shown}")
            if len(hits) > 1:
                shown = ", ".join(repr(recorded[i]) for i in hits)
                raise UserError(f"epoch {typed.text} matches {len(hits)} recorded epochs ({shown}): type more digits")
            wanted.update(hits)
        records = [r for i, r in enumerate(records) if i in wanted]
    return Selection(records, chosen)


class RecordedLayers:
    """One train run's layers across ALL its complete records (what `Estimator.prepare` reads)."""

    def __init__(self, artifacts, manifest: act.Manifest):
        self.artifacts, self.manifest = artifacts, manifest

    def value_range(self, layer: str) -> tuple[float, float]:
        """(min, max) over every record: from the ranges the recorder wrote, else a pass over the files."""
        lo, hi = math.inf, -math.inf
        for rec in self.manifest.records:
            r = rec.get("range", {}).get(layer)
            if r is None:
                values = act.load_layer(self.artifacts, rec, layer)
                r = (float(values.min()), float(values.max()))
            lo, hi = min(lo, r[0]), max(hi, r[1])
        return lo, hi

    def sample(self, layer: str, per_record: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        parts = []
        for rec in self.manifest.records:
            flat = act.load_layer(self.artifacts, rec, layer).reshape(-1)
            parts.append(flat if flat.size <= per_record else rng.choice(flat, per_record, replace=False))
        return np.concatenate(parts)


@dataclass(frozen=True)
class MiTask:
    """One (record, layer) of an mi run, with everything a worker needs beside the activations.

    seed: the record's seed, `seed + step` (the same whichever process runs the task).
    context: the layer's `Estimator.prepare` value, computed once on the driver.
    """

    record: dict
    layer: str
    seed: int
    context: object = None

    @property
    def where(self) -> str:
        return f"epoch {self.record['epoch']:g} (step {self.record['step']}), layer {self.layer}"


@dataclass(frozen=True)
class MiPlan:
    """What every task of one mi run shares: the estimator (by name), its checked params, and
    the table's fixed values."""

    method: str
    params: dict
    seed: int
    layer_index: dict


def plan_mi(artifacts, manifest: act.Manifest, estimator: Estimator, params: dict, selection: Selection,
            seed: int = 0) -> tuple[MiPlan, list[MiTask]]:
    """The shared plan and the tasks of an mi run, in the table's row order (records, then layers).

    Runs `estimator.prepare` (e.g. binning's edges over all records) once, here.
    params: `estimator.check_params(...)`'s output.
    """
    context = estimator.prepare(RecordedLayers(artifacts, manifest), selection.layers, params, seed)
    tasks = [MiTask(rec, name, seed + int(rec["step"]), context.get(name))
             for rec in selection.records for name in selection.layers]
    index = {layer["name"]: int(layer["index"]) for layer in manifest.layers}
    return MiPlan(estimator.name, params, seed, index), tasks


_PROBE: dict = {}


def _probe_inputs(artifacts) -> tuple[np.ndarray, np.ndarray]:
    """(label codes 0..K-1 (N,) int64, x (N, d_in) float32) of a run's probe set, loaded once per
    process (a worker runs many tasks of one run)."""
    key = (artifacts.run_id, artifacts.uri)
    if key not in _PROBE:
        _, labels, x = act.load_probe(artifacts)
        _PROBE.clear()
        _PROBE[key] = (np.unique(labels, return_inverse=True)[1].astype(np.int64), x)
    return _PROBE[key]


def estimate_task(artifacts, plan: MiPlan, device: str, task: MiTask) -> list[dict]:
    """The mi table rows (bits) of one (record, layer): one per value of a `multiple` parameter.

    Reads the layer's activations and the probe from `artifacts` (a local store in place, a
    server through the local cache), so it runs in this process or on any Dask worker.

    Raises:
        UserError: NaN/inf or otherwise unusable activations (naming epoch and layer).
    """
    estimator = registry.get(plan.method)
    labels, x = _probe_inputs(artifacts)
    n = len(labels)
    params = plan.params
    t = act.load_layer(artifacts, task.record, task.layer)
    if not np.isfinite(t).all():
        raise UserError(f"activations at {task.where} contain NaN or inf: the run diverged there; pass --layer or use a run without it")
    t0 = time.perf_counter()
    try:
        points = estimator.points(t, labels, x=x if estimator.needs_x else None, params=params,
                                  context=task.context, seed=task.seed, device=device)
    except EstimatorInputError as exc:
        raise UserError(f"{task.where}: {exc}") from exc
    seconds = (time.perf_counter() - t0) / max(1, len(points))
    fixed = {p.name: params[p.name] for p in estimator.params if p.column and not p.multiple}
    converted = [c for c in estimator.columns if c.nats]
    rows = []
    for p in points:
        values = dict(p.values)
        for c in converted:
            if values.get(c.key) is not None:
                values[c.name] = float(nats_to_bits(values.pop(c.key)))
        rows.append({
            "epoch": float(task.record["epoch"]), "step": int(task.record["step"]), "layer": task.layer,
            "layer_index": plan.layer_index[task.layer], "method": estimator.name,
            "i_xt_bits": float(nats_to_bits(p.i_xt_nats)), "i_ty_bits": float(nats_to_bits(p.i_ty_nats)),
            "ceiling_bits": math.log2(n), "n_probe": n, "width": int(t.shape[1]), "seed": plan.seed,
            "seconds": seconds, **fixed, **p.params, **values,
        })
    return rows


def assemble(rows_per_task: list[list[dict]]) -> pd.DataFrame:
    """The mi table from each task's rows, in the plan's order (what the driver writes once)."""
    return typed_table([row for rows in rows_per_task for row in rows])


def compute_mi_table(artifacts, manifest: act.Manifest, estimator: Estimator, params: dict, selection: Selection,
                     seed: int = 0, device: str = "cpu", progress=None, executor=None) -> pd.DataFrame:
    """Run `estimator` on every selected (record, layer); returns the mi table (bits).

    params: `estimator.check_params(...)`'s output. The seed of a record is `seed + step`, so
    every record gets its own noise and a rerun the same. executor: an `ibcli.executor.Executor`
    (default: this process); on Dask the table is the same, row for row.

    Raises:
        UserError: NaN/inf or otherwise unusable activations (naming epoch and layer).
        TaskFailed: a task failed on every try on the cluster (naming epoch and layer).
    """
    executor = executor or Executor()
    plan, tasks = plan_mi(artifacts, manifest, estimator, params, selection, seed)
    bar = progress.add_task(f"mi {estimator.name}", total=len(tasks), info=executor.description) if progress else None
    rows = executor.map(estimate_task, tasks, [t.where for t in tasks], artifacts, plan, device,
                        progress=progress, task=bar)
    return assemble(rows)


def typed_table(rows: list[dict]) -> pd.DataFrame:
    """The rows as a table with every column of `columns()`, in order and typed (absent = null)."""
    df = pd.DataFrame(rows)
    for name, dtype in columns().items():
        df[name] = (df[name] if name in df.columns else pd.Series([None] * len(df), dtype="object")).astype(dtype)
    return df[list(columns())]


def read_mi_table(path) -> pd.DataFrame:
    """An mi.parquet table, old column names renamed to today's (`RENAMED`)."""
    df = pd.read_parquet(path)
    return df.rename(columns={old: new for old, new in RENAMED.items() if old in df.columns and new not in df.columns})
