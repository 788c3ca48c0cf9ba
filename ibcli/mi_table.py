"""A train run's recorded (epoch, layer) activations -> one mi table (bits), by one estimator.

The table is what `ibcli mi` stores as `mi.parquet`: one row per record x layer x
point (e.g. per noise variance), with the columns of `columns()` — the fixed ones below,
then every parameter and result column the registered estimators declare. Estimators
return nats; this is where information becomes bits (`units.nats_to_bits`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ibcli import activations as act
from ibcli.errors import UserError
from ibcli.estimators import registry
from ibcli.estimators.errors import EstimatorInputError
from ibcli.estimators.interface import Estimator
from ibcli.estimators.units import nats_to_bits

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


def select(manifest: act.Manifest, layers=(), epochs=()) -> Selection:
    """The chosen layers (default all) and recorded epochs (default all), checked against the manifest.

    Raises:
        UserError: a layer that was not recorded, an epoch that was not recorded.
    """
    known = [layer["name"] for layer in manifest.layers]
    chosen = list(dict.fromkeys(layers)) or known
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise UserError(f"unknown layer {unknown[0]!r}: this run recorded {', '.join(known)}")
    records = manifest.records
    if epochs:
        recorded = {float(r["epoch"]) for r in records}
        missing = sorted(set(map(float, epochs)) - recorded)
        if missing:
            shown = ", ".join(f"{e:g}" for e in sorted(recorded))
            raise UserError(f"epoch {missing[0]:g} was not recorded: this run recorded epochs {shown}")
        wanted = set(map(float, epochs))
        records = [r for r in records if float(r["epoch"]) in wanted]
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


def compute_mi_table(artifacts, manifest: act.Manifest, estimator: Estimator, params: dict, selection: Selection,
                     seed: int = 0, device: str = "cpu", progress=None) -> pd.DataFrame:
    """Run `estimator` on every selected (record, layer); returns the mi table (bits).

    params: `estimator.check_params(...)`'s output. The seed of a record is `seed + step`, so
    every record gets its own noise and a rerun the same.

    Raises:
        UserError: NaN/inf or otherwise unusable activations (naming epoch and layer).
    """
    index = {layer["name"]: int(layer["index"]) for layer in manifest.layers}
    _, labels, x = act.load_probe(artifacts)
    labels = np.unique(labels, return_inverse=True)[1].astype(np.int64)
    n = len(labels)
    context = estimator.prepare(RecordedLayers(artifacts, manifest), selection.layers, params, seed)
    fixed = {p.name: params[p.name] for p in estimator.params if p.column and not p.multiple}
    converted = [c for c in estimator.columns if c.nats]
    rows = []
    task = progress.add_task(f"mi {estimator.name}", total=len(selection.records) * len(selection.layers), info="") if progress else None
    for rec in selection.records:
        for name in selection.layers:
            t = act.load_layer(artifacts, rec, name)
            where = f"epoch {rec['epoch']:g} (step {rec['step']}), layer {name}"
            if not np.isfinite(t).all():
                raise UserError(f"activations at {where} contain NaN or inf: the run diverged there; pass --layer or use a run without it")
            t0 = time.perf_counter()
            try:
                points = estimator.points(t, labels, x=x if estimator.needs_x else None, params=params,
                                          context=context.get(name), seed=seed + int(rec["step"]), device=device)
            except EstimatorInputError as exc:
                raise UserError(f"{where}: {exc}") from exc
            seconds = (time.perf_counter() - t0) / max(1, len(points))
            for p in points:
                values = dict(p.values)
                for c in converted:
                    if values.get(c.key) is not None:
                        values[c.name] = float(nats_to_bits(values.pop(c.key)))
                rows.append({
                    "epoch": float(rec["epoch"]), "step": int(rec["step"]), "layer": name, "layer_index": index[name],
                    "method": estimator.name,
                    "i_xt_bits": float(nats_to_bits(p.i_xt_nats)), "i_ty_bits": float(nats_to_bits(p.i_ty_nats)),
                    "ceiling_bits": math.log2(n), "n_probe": n, "width": int(t.shape[1]), "seed": seed,
                    "seconds": seconds, **fixed, **p.params, **values,
                })
            if progress:
                progress.update(task, advance=1, info=f"epoch {rec['epoch']:g} {name}")
    return typed_table(rows)


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
