"""The mi stage: every recorded (epoch, layer) of a train run -> one mi.parquet table.

I(X;T) and I(T;Y) come from `ibcli.estimators.information_plane` (nats) and are stored
in bits. Binning edges span each layer's range over all recorded epochs (from the
ranges the recorder wrote into the manifest), so saturation shows instead of being
rescaled away per epoch.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ibcli import activations as act
from ibcli.errors import UserError

MI_FILE = "mi.parquet"


@dataclass
class MiOptions:
    """Estimator choice and parameters of one `ibcli mi` call (all logged as params)."""

    method: str = "binning"
    bins: int = 30
    binning: str = "uniform"
    noise_vars: tuple = (0.1,)
    k: int = 3
    mine_steps: int = 1000
    mine_batch_size: int = 512
    mine_hidden: int = 128
    mine_lr: float = 1e-3
    layers: tuple = ()
    epochs: tuple = ()  # only these recorded epochs (the slow estimators on long runs)
    device: str = "auto"
    seed: int = 0

    def validate(self) -> None:
        from ibcli.estimators import canonical_method

        self.method = canonical_method(self.method)
        checks = [
            (self.bins >= 1, f"--bins must be at least 1, got {self.bins}"),
            (self.k >= 1, f"--k must be at least 1, got {self.k}"),
            (all(v > 0 and math.isfinite(v) for v in self.noise_vars), f"--noise-var must be positive, got {list(self.noise_vars)}"),
            (self.mine_steps >= 1, f"--mine-steps must be at least 1, got {self.mine_steps}"),
            (self.mine_batch_size >= 2, f"--mine-batch-size must be at least 2, got {self.mine_batch_size}"),
            (self.mine_hidden >= 1, f"--mine-hidden must be at least 1, got {self.mine_hidden}"),
            (self.mine_lr > 0, f"--mine-lr must be positive, got {self.mine_lr}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    def params(self) -> dict:
        """The parameters that apply to this method (logged and stored per row)."""
        common = {"method": self.method, "seed": self.seed}
        if self.method == "binning":
            return {**common, "bins": self.bins, "binning": self.binning}
        noise = {"noise_vars": ",".join(map(str, self.noise_vars))}
        if self.method == "kde":
            return {**common, **noise}
        if self.method == "kraskov":
            return {**common, **noise, "k": self.k}
        return {**common, **noise, "mine_steps": self.mine_steps, "mine_batch_size": self.mine_batch_size,
                "mine_hidden": self.mine_hidden, "mine_lr": self.mine_lr, "device": self.device}


def layer_ranges(artifacts, manifest: act.Manifest, layers: list[str]) -> dict[str, tuple[float, float]]:
    """Each layer's (min, max) over all complete records (from the manifest; a pass over files if absent)."""
    out = {}
    for layer in layers:
        lo, hi = math.inf, -math.inf
        for rec in manifest.records:
            r = rec.get("range", {}).get(layer)
            if r is None:
                values = act.load_layer(artifacts, rec, layer)
                r = (float(values.min()), float(values.max()))
            lo, hi = min(lo, r[0]), max(hi, r[1])
        out[layer] = (lo, hi)
    return out


def adaptive_sample(artifacts, manifest: act.Manifest, layer: str, per_record: int = 200_000, seed: int = 0) -> np.ndarray:
    """A random sample of a layer's values pooled over all records (for equal-mass bin edges)."""
    rng = np.random.default_rng(seed)
    parts = []
    for rec in manifest.records:
        flat = act.load_layer(artifacts, rec, layer).reshape(-1)
        parts.append(flat if flat.size <= per_record else rng.choice(flat, per_record, replace=False))
    return np.concatenate(parts)


def compute_mi_table(artifacts, manifest: act.Manifest, options: MiOptions, progress=None) -> pd.DataFrame:
    """Run the estimator on every (record, layer); returns the mi table (bits).

    Raises:
        UserError: NaN/inf or otherwise unusable activations (naming epoch and layer), unknown layer.
    """
    from ibcli.estimators import EstimatorInputError, bin_edges, information_plane
    from ibcli.estimators.units import nats_to_bits

    known = [layer["name"] for layer in manifest.layers]
    layers = list(options.layers) or known
    unknown = [name for name in layers if name not in known]
    if unknown:
        raise UserError(f"unknown layer {unknown[0]!r}: this run recorded {', '.join(known)}")
    index = {layer["name"]: layer["index"] for layer in manifest.layers}
    records = manifest.records
    if options.epochs:
        recorded = {float(r["epoch"]) for r in records}
        missing = sorted(set(options.epochs) - recorded)
        if missing:
            shown = ", ".join(f"{e:g}" for e in sorted(recorded))
            raise UserError(f"epoch {missing[0]:g} was not recorded: this run recorded epochs {shown}")
        records = [r for r in records if float(r["epoch"]) in set(options.epochs)]
    _, labels, x = act.load_probe(artifacts)
    n = len(labels)
    edges = {}
    if options.method == "binning":
        if options.binning == "uniform":
            edges = {name: bin_edges(np.array(r), options.bins, "uniform") for name, r in layer_ranges(artifacts, manifest, layers).items()}
        else:
            edges = {name: bin_edges(adaptive_sample(artifacts, manifest, name, seed=options.seed), options.bins, "adaptive") for name in layers}
    needs_x = options.method in ("kraskov", "mine")
    mine_params = {"steps": options.mine_steps, "batch_size": options.mine_batch_size,
                   "hidden": options.mine_hidden, "lr": options.mine_lr} if options.method == "mine" else None
    device = _device(options.device) if options.method == "mine" else "cpu"
    rows = []
    task = progress.add_task(f"mi {options.method}", total=len(records) * len(layers), info="") if progress else None
    for rec in records:
        for name in layers:
            t = act.load_layer(artifacts, rec, name)
            where = f"epoch {rec['epoch']:g} (step {rec['step']}), layer {name}"
            if not np.isfinite(t).all():
                raise UserError(f"activations at {where} contain NaN or inf: the run diverged there; pass --layer or use a run without it")
            t0 = time.perf_counter()
            try:
                points = information_plane(
                    t, labels, options.method, x=x if needs_x else None, edges=edges.get(name),
                    noise_vars=options.noise_vars, k=options.k, seed=options.seed + rec["step"],
                    device=device, mine_params=mine_params,
                )
            except EstimatorInputError as exc:
                raise UserError(f"{where}: {exc}") from exc
            seconds = (time.perf_counter() - t0) / max(1, len(points))
            for p in points:
                rows.append({
                    "epoch": float(rec["epoch"]), "step": int(rec["step"]), "layer": name, "layer_index": int(index[name]),
                    "method": options.method,
                    "i_xt_bits": float(nats_to_bits(p.i_xt_nats)), "i_ty_bits": float(nats_to_bits(p.i_ty_nats)),
                    "i_xt_lower_bits": None if p.i_xt_lower_nats is None else float(nats_to_bits(p.i_xt_lower_nats)),
                    "i_ty_lower_bits": None if p.i_ty_lower_nats is None else float(nats_to_bits(p.i_ty_lower_nats)),
                    "ceiling_bits": math.log2(n), "n_probe": n, "width": int(t.shape[1]),
                    "noise_var": p.extras.get("noise_var"), "unique_fraction": p.extras.get("unique_fraction"),
                    "bins": options.bins if options.method == "binning" else None,
                    "binning": options.binning if options.method == "binning" else None,
                    "bin_lo": float(edges[name][0]) if name in edges else None,
                    "bin_hi": float(edges[name][-1]) if name in edges else None,
                    "k": options.k if options.method == "kraskov" else None,
                    "mine_steps": options.mine_steps if options.method == "mine" else None,
                    "seed": options.seed, "seconds": seconds,
                })
            if progress:
                progress.update(task, advance=1, info=f"epoch {rec['epoch']:g} {name}")
    return _typed_table(rows)


def _typed_table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    floats = ["i_xt_lower_bits", "i_ty_lower_bits", "noise_var", "unique_fraction", "bin_lo", "bin_hi"]
    for col in floats:
        df[col] = df[col].astype("float64")
    for col in ("bins", "k", "mine_steps"):
        df[col] = df[col].astype("Int64")
    df["binning"] = df["binning"].astype("string")
    return df


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA GPU is visible to torch here: use --device cpu or auto")
    return name


def run_mi(run_id: str, options: MiOptions, tracking_uri: str | None, quiet: bool = False) -> dict:
    """The `ibcli mi` stage: a child run of the train run holding mi.parquet.

    Given a sweep run id, runs the stage on every finished member (`ibcli.sweep.run_mi_sweep`).

    Raises:
        UserError: bad options, unknown/ambiguous/non-train run id, run without activations,
        unusable activations. A run created before the error is marked FAILED.
    """
    from ibcli.progress import make_progress, stderr
    from ibcli.store import Store

    options.validate()
    if options.method == "mine":
        _device(options.device)
    store = Store(tracking_uri, must_exist=True)
    found = store.find_run(run_id)
    if found.data.tags.get("ibcli.stage") == "sweep":  # every member of an `ibcli sweep`
        from ibcli.sweep import run_mi_sweep

        return run_mi_sweep(store, found, options, quiet)
    train_run = found if found.data.tags.get("ibcli.stage") == "train" else store.find_run(run_id, stage="train")
    artifacts = store.artifacts(train_run)
    manifest = act.load_manifest(artifacts)
    notes = []
    if train_run.info.status == "RUNNING":
        live = store.is_live(train_run.info.run_id)
        n = len(manifest.records)
        if live:
            notes.append(f"train run is still training (live): using the {n} complete records so far")
        elif live is None:
            notes.append(f"train run is still RUNNING (live, or killed without cleanup): using its {n} complete records")
        else:
            notes.append(f"train run is RUNNING in MLflow but no process trains it (killed without cleanup, e.g. kill -9): "
                         f"using its {n} complete records; `ibcli train --resume {train_run.info.run_id[:8]}` continues it")
    elif train_run.info.status != "FINISHED":
        notes.append(f"train run ended {train_run.info.status}: using its {len(manifest.records)} complete records")
    if not quiet:
        for note in notes:
            stderr.print(f"[yellow]note:[/] {note}")
    mi_run = store.create_child_run(train_run, "mi", run_name=f"mi-{options.method}")
    mi_id = mi_run.info.run_id
    try:
        store.log_params(mi_id, {**options.params(), "train_run_id": train_run.info.run_id,
                                  "records": len(manifest.records), "n_probe": manifest.probe.get("size")})
        t0 = time.perf_counter()
        progress = make_progress(quiet)
        with progress:
            table = compute_mi_table(artifacts, manifest, options, progress)
        seconds = time.perf_counter() - t0
        _log_results(store, mi_id, table, seconds)
        out = store.artifacts(mi_run)
        path = out.writable_path(MI_FILE)
        table.to_parquet(path, index=False)
        out.commit(path, MI_FILE)
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        store.finish(mi_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED", reason)
        raise
    store.finish(mi_id)
    if not quiet:
        print_table(table)
    return {"train_run_id": train_run.info.run_id, "mi_run_id": mi_id, "method": options.method,
            "rows": len(table), "records": len(manifest.records), "seconds": round(seconds, 2),
            "artifact_uri": mi_run.info.artifact_uri, "notes": notes}


def _log_results(store, mi_id: str, table: pd.DataFrame, seconds: float) -> None:
    metrics_by_step: dict[int, dict[str, float]] = {}
    for row in table.itertuples():
        suffix = f"{row.layer}" if pd.isna(row.noise_var) else f"{row.layer}.s2_{row.noise_var:g}"
        m = metrics_by_step.setdefault(int(row.step), {})
        m[f"i_xt_bits.{suffix}"] = row.i_xt_bits
        m[f"i_ty_bits.{suffix}"] = row.i_ty_bits
    for step, metrics in metrics_by_step.items():
        store.log_metrics(mi_id, metrics, step=step)
    store.log_metrics(mi_id, {"mi_seconds": seconds}, step=0)


def print_table(table: pd.DataFrame) -> None:
    """A rich table of the mi rows (bits)."""
    from rich.table import Table

    from ibcli.progress import stderr

    has_lower = table["i_xt_lower_bits"].notna().any()
    t = Table(title=f"{table['method'].iloc[0]}: I(X;T) and I(T;Y) in bits (ceiling log2 N = {table['ceiling_bits'].iloc[0]:.2f})")
    for col in ["epoch", "layer", "s2" if table["noise_var"].notna().any() else None, "I(X;T)", "I(T;Y)",
                "I(X;T) lower" if has_lower else None, "I(T;Y) BD" if has_lower else None]:
        if col:
            t.add_column(col, justify="right")
    for row in table.itertuples():
        cells = [f"{row.epoch:g}", row.layer]
        if table["noise_var"].notna().any():
            cells.append(f"{row.noise_var:g}")
        cells += [f"{row.i_xt_bits:.3f}", f"{row.i_ty_bits:.3f}"]
        if has_lower:
            cells += [f"{row.i_xt_lower_bits:.3f}", f"{row.i_ty_lower_bits:.3f}"]
        t.add_row(*cells)
    stderr.print(t)
