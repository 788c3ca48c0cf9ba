"""`ibcli train`: set up a Trainer from options (or a run to resume) and end the run right."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import fields

import torch

from ibcli.datasets import default_data_dir, get_dataset
from ibcli.errors import UserError
from ibcli.gradient_stats import preload_kernel
from ibcli.progress import TrainProgress, make_progress
from ibcli.recorder import NonFiniteRecord
from ibcli.store import EPOCHS_DONE_TAG, EPOCHS_TAG, FAILURE_TAG, Store
from ibcli.training import CHECKPOINT, Diverged, TrainConfig, Trainer

# Options a resumed run may change; everything else comes from the run's params.
RESUMABLE = {"epochs", "device", "data_dir"}


def _config_from_run(run, options: dict, explicit: set[str]) -> TrainConfig:
    params = run.data.params
    cfg = TrainConfig()
    for f in fields(TrainConfig):
        if f.name not in params:
            continue
        raw, kind = params[f.name], str(f.type)  # e.g. "int | None" (annotations are strings here)
        if raw == "None":
            value = None
        elif kind.startswith("bool"):
            value = raw == "True"
        elif kind.startswith("int"):
            value = int(raw)
        elif kind.startswith("float"):
            value = float(raw)
        else:
            value = raw
        setattr(cfg, f.name, value)
    bad = sorted(explicit - RESUMABLE - {"resume", "tracking_uri", "json_out", "quiet", "run_name"})
    if bad:
        raise UserError(f"--resume continues a run with its own settings; only --epochs, --device and --data-dir may change (got --{bad[0].replace('_', '-')})")
    for name in RESUMABLE & explicit:
        setattr(cfg, name, options[name])
    return cfg


def run_train(options: dict, explicit: set[str], resume: str | None, run_name: str | None,
              tracking_uri: str | None, quiet: bool) -> dict:
    """Train (or resume) one run; returns the JSON summary.

    The run ends FINISHED, KILLED (SIGINT/SIGTERM: completed records are kept), or
    FAILED with the reason in the `ibcli.failure` tag. While it trains, the process
    holds the run's lock in the store (`Store.hold_run`), so `ibcli mi` can tell a
    live run from one killed with -9, and two processes never train one run.

    Raises:
        UserError: bad options or data, unknown run, divergence.
    """
    store = None
    run = None
    lock = None
    if resume:
        # Checks that leave the run as it was: a mistake in `--resume` must not touch a good run.
        store = Store(tracking_uri, must_exist=True)
        run = store.find_run(resume, stage="train")
        cfg = _config_from_run(run, options, explicit)
        cfg.validate()
        done = _checkpoint_epoch(store, run)
        if done >= cfg.epochs:
            raise UserError(f"run {run.info.run_id} has already trained {done} epochs: pass --epochs N with N > {done} to train it further")
        lock = store.hold_run(run.info.run_id)
    else:
        if options.get("data_dir") is None:
            options["data_dir"] = str(default_data_dir())
        if options.get("probe_split") is None:
            options["probe_split"] = get_dataset(options["dataset"]).probe_split
        cfg = TrainConfig(**options)
    if cfg.grad_stats and not (cfg.device in ("cuda", "auto") and torch.cuda.is_available()):
        preload_kernel()  # CPU runs: numba's imports (about 1 s) with ours, not in the first batch
    progress = make_progress(quiet)
    try:
        trainer = Trainer(cfg, TrainProgress(progress))
        store = store or Store(tracking_uri)
        if run is not None:
            try:
                trainer.resume_from(store, run)
            except BaseException:
                trainer.close()
                raise
    except BaseException:
        _release(lock)
        raise
    if run is not None:
        store.client.update_run(run.info.run_id, status="RUNNING")
        if FAILURE_TAG in run.data.tags:
            store.client.delete_tag(run.info.run_id, FAILURE_TAG)
        store.client.set_tag(run.info.run_id, EPOCHS_TAG, str(trainer.cfg.epochs))
    t0 = time.perf_counter()
    status, reason = "FINISHED", None
    with progress:
        try:
            if run is None:
                trainer.start(store, run_name)
                lock = store.hold_run(trainer.run.info.run_id)
            trainer.train()
        except KeyboardInterrupt:
            status, reason = "KILLED", "interrupted by SIGINT/SIGTERM"
        except (Diverged, NonFiniteRecord) as exc:
            status, reason = "FAILED", str(exc)
        except UserError as exc:
            status, reason = "FAILED", str(exc)
            _end(trainer, store, status, reason, lock)
            raise
        except BaseException as exc:
            status, reason = "FAILED", f"{type(exc).__name__}: {exc}"
            _end(trainer, store, status, reason, lock)
            raise
    _end(trainer, store, status, reason, lock)
    if status == "FAILED":
        n = len(trainer.recorder.manifest.records) if trainer.recorder else 0
        raise UserError(
            f"{reason}; run {trainer.run.info.run_id} is marked FAILED, "
            f"its {n} complete records stay usable by `ibcli mi {trainer.run.info.run_id[:8]}`"
        )
    summary = trainer.summary()
    summary.update(status=status, seconds=round(time.perf_counter() - t0, 2))
    return summary


def _checkpoint_epoch(store: Store, run) -> int:
    """The last completed epoch in `run`'s checkpoint.

    Raises:
        UserError: no checkpoint, or one that cannot be read.
    """
    import torch

    try:
        path = store.artifacts(run).local_path(CHECKPOINT)
    except FileNotFoundError:
        raise UserError(f"run {run.info.run_id} has no checkpoint to resume from (it ended before its first epoch): start a new run instead") from None
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])
    except Exception as exc:
        raise UserError(f"run {run.info.run_id} has a damaged checkpoint {CHECKPOINT} ({type(exc).__name__}): start a new run instead") from None


def _release(lock) -> None:
    if lock is not None:
        lock.release()


def _end(trainer: Trainer, store: Store, status: str, reason: str | None, lock=None) -> None:
    """Write what is queued, then end the MLflow run (if it was created).

    SIGINT/SIGTERM are held off meanwhile: a second Ctrl-C must not leave the run RUNNING
    with half its queued records written.
    """
    handlers = _hold_signals()
    try:
        try:
            trainer.close()
        except Exception as exc:
            # Queued records or the last checkpoint could not be written: the listed records stay usable.
            status = "FAILED"
            reason = f"{reason + '; ' if reason else ''}ending the run failed: {type(exc).__name__}: {exc}"
            raise
        finally:
            if trainer.run is not None:
                store.client.set_tag(trainer.run.info.run_id, EPOCHS_DONE_TAG, str(trainer.state.epoch))
                store.finish(trainer.run.info.run_id, status, reason)
    finally:
        _release(lock)
        _restore_signals(handlers)


def _hold_signals() -> dict:
    """Ignore SIGINT/SIGTERM (main thread only); returns the handlers to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    held = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        held[sig] = signal.signal(sig, signal.SIG_IGN)
    return held


def _restore_signals(handlers: dict) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
