"""`ibcli train`: set up a Trainer from options (or a run to resume) and end the run right."""

from __future__ import annotations

import time

from ibcli.data import default_data_dir
from ibcli.errors import UserError
from ibcli.progress import TrainProgress, make_progress
from ibcli.store import Store
from ibcli.training import Diverged, TrainConfig, Trainer

# Options a resumed run may change; everything else comes from the run's params.
RESUMABLE = {"epochs", "device"}


def _config_from_run(run, options: dict, explicit: set[str]) -> TrainConfig:
    params = run.data.params
    cfg = TrainConfig()
    for name, default in vars(TrainConfig()).items():
        if name not in params:
            continue
        raw = params[name]
        if raw == "None":
            value = None
        elif isinstance(default, bool):
            value = raw == "True"
        elif isinstance(default, int):
            value = int(raw)
        elif isinstance(default, float) or name == "train_fraction":
            value = float(raw)
        else:
            value = raw
        setattr(cfg, name, value)
    bad = sorted(explicit - RESUMABLE - {"resume", "tracking_uri", "json_out", "quiet", "run_name"})
    if bad:
        raise UserError(f"--resume continues a run with its own settings; only --epochs and --device may change (got --{bad[0].replace('_', '-')})")
    for name in RESUMABLE & explicit:
        setattr(cfg, name, options[name])
    return cfg


def run_train(options: dict, explicit: set[str], resume: str | None, run_name: str | None,
              tracking_uri: str | None, quiet: bool) -> dict:
    """Train (or resume) one run; returns the JSON summary.

    The run ends FINISHED, KILLED (SIGINT/SIGTERM: completed records are kept), or
    FAILED with the reason in the `ibcli.failure` tag.

    Raises:
        UserError: bad options or data, unknown run, divergence.
    """
    store = None
    run = None
    if resume:
        store = Store(tracking_uri)
        run = store.find_run(resume, stage="train")
        cfg = _config_from_run(run, options, explicit)
    else:
        if options.get("data_dir") is None:
            options["data_dir"] = str(default_data_dir())
        if options.get("probe_split") is None:
            options["probe_split"] = "all" if options["dataset"] == "ib12" else "test"
        cfg = TrainConfig(**options)
    progress = make_progress(quiet)
    trainer = Trainer(cfg, TrainProgress(progress))
    store = store or Store(tracking_uri)
    t0 = time.perf_counter()
    status, reason = "FINISHED", None
    with progress:
        try:
            if run is None:
                trainer.start(store, run_name)
            else:
                if trainer.cfg.epochs <= 0:
                    raise UserError("--epochs must be positive")
                trainer.resume_from(store, run)
                store.client.update_run(run.info.run_id, status="RUNNING")
            trainer.train()
        except KeyboardInterrupt:
            status, reason = "KILLED", "interrupted by SIGINT/SIGTERM"
        except Diverged as exc:
            status, reason = "FAILED", str(exc)
        except UserError as exc:
            status, reason = "FAILED", str(exc)
            _end(trainer, store, status, reason)
            raise
        except BaseException as exc:
            status, reason = "FAILED", f"{type(exc).__name__}: {exc}"
            _end(trainer, store, status, reason)
            raise
    _end(trainer, store, status, reason)
    if status == "FAILED":
        raise UserError(f"{reason}; run {trainer.run.info.run_id} is marked FAILED, its earlier records stay usable")
    summary = trainer.summary()
    summary.update(status=status, seconds=round(time.perf_counter() - t0, 2))
    return summary


def _end(trainer: Trainer, store: Store, status: str, reason: str | None) -> None:
    """Write what is queued, then end the MLflow run (if it was created)."""
    try:
        trainer.close()
    finally:
        if trainer.run is not None:
            store.finish(trainer.run.info.run_id, status, reason)
