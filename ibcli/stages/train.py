"""`ibcli train`: a Trainer from options (or from a run to resume), inside one tracked run.

The run ends FINISHED, KILLED (SIGINT/SIGTERM: completed records are kept), or FAILED
with the reason in the `ibcli.failure` tag (`Store.tracked`). While it trains, the
process holds the run's lock in the store (`Store.hold_run`), so `ibcli mi` can tell a
live run from one killed with -9, and two processes never train one run.
"""

from __future__ import annotations

import json
import shlex
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict

import torch

from ibcli.console import counted
from ibcli.datasets import default_data_dir, get_dataset
from ibcli.errors import UserError
from ibcli.gradient_stats import preload_kernel
from ibcli.progress import TrainProgress, make_progress
from ibcli.provenance import provenance_tags
from ibcli.recorder import NonFiniteRecord
from ibcli.run_names import train_run_name
from ibcli.store import CONFIG_TAG, EPOCHS_DONE_TAG, EPOCHS_TAG, Store, StoreUnreachable
from ibcli.training import CHECKPOINT, Diverged, TrainConfig, Trainer

# Options a resumed run may change; everything else comes from the run's configuration.
RESUMABLE = {"epochs", "device", "data_dir"}
# Options that are about this command, not the run.
NOT_CONFIG = {"resume", "tracking_uri", "json_out", "quiet", "run_name"}
# A resumed run keeps the provenance tags of its start; each resume appends its own here (JSON list).
RESUMES_TAG = "ibcli.resumes"


def config_from_run(run, options: dict, explicit: set[str]) -> TrainConfig:
    """The configuration of `run` (its `ibcli.config` tag; its params for older runs), with its
    latest target epochs (the `ibcli.epochs` tag an earlier `--resume --epochs N` set) and the
    resumable options the user typed.

    Raises:
        UserError: the user typed an option a resume cannot change.
    """
    tag = run.data.tags.get(CONFIG_TAG)
    cfg = TrainConfig.from_json(tag) if tag else TrainConfig.from_params(run.data.params)
    # The config tag and params keep the start's settings; a resume that changed the target
    # says so in ibcli.epochs, and a later plain `--resume` continues to that target.
    target = run.data.tags.get(EPOCHS_TAG)
    if target is not None:
        cfg.epochs = int(target)
    bad = sorted(explicit - RESUMABLE - NOT_CONFIG)
    if bad:
        raise UserError(f"--resume continues a run with its own settings; only --epochs, --device and --data-dir may change (got --{bad[0].replace('_', '-')})")
    for name in RESUMABLE & explicit:
        setattr(cfg, name, options[name])
    return cfg


def run_train(options: dict, explicit: set[str], resume: str | None, run_name: str | None,
              tracking_uri: str | None, quiet: bool, bars: str | None = None) -> dict:
    """Train (or resume) one run; returns the JSON summary (status KILLED when interrupted).

    bars: "on", "off" or "transient" progress bars (default: off when quiet).

    Raises:
        UserError: bad options or data, unknown run, a run another process trains,
            divergence (the run is then FAILED, its complete records usable).
    """
    store = run = None
    if resume:
        # Checks that leave the run as it was: a mistake in `--resume` must not touch a good run.
        store = Store(tracking_uri, must_exist=True)
        run = store.find_run(resume, stage="train")
        cfg = config_from_run(run, options, explicit)
        cfg.validate()
        done = _checkpoint_epoch(store, run)
        if done >= cfg.epochs:
            raise UserError(f"run {run.info.run_id} has already trained {counted(done, 'epoch')}: pass --epochs N with N > {done} to train it further")
    else:
        options = dict(options)
        if options.get("data_dir") is None:
            options["data_dir"] = str(default_data_dir())
        if options.get("probe_split") is None:
            options["probe_split"] = get_dataset(options["dataset"]).probe_split
        cfg = TrainConfig(**options)
    if cfg.grad_stats and not (cfg.device in ("cuda", "auto") and torch.cuda.is_available()):
        preload_kernel()  # CPU runs: numba's imports (about 1 s) with ours, not in the first batch
    lock = store.hold_run(run.info.run_id) if run is not None else None  # before loading data
    trainer = None
    opening: list[Future] = []

    def open_store() -> None:
        # The options and the data are good: create or open the store (a new SQLite store
        # migrates MLflow's schema, seconds) while the model and the data go to the device.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ibcli-store")
        opening.append(pool.submit(Store, tracking_uri))
        pool.shutdown(wait=False)  # the thread ends with its one task

    try:
        bars = bars or ("off" if quiet else "on")
        progress = make_progress(bars == "off", transient=bars == "transient")
        trainer = Trainer(cfg, TrainProgress(progress), on_valid=None if store else open_store)
        store = store or opening[0].result()
        where = provenance_tags(str(trainer.device))
        if run is None:
            run = store.create_run(cfg.experiment, "train", run_name=run_name or train_run_name(asdict(cfg)),
                                   tags={**where, EPOCHS_TAG: str(cfg.epochs)})
            lock = store.hold_run(run.info.run_id)
        else:
            trainer.resume_from(store, run)
            store.reopen(run)
            store.client.set_tag(run.info.run_id, EPOCHS_TAG, str(cfg.epochs))
            resumes = json.loads(run.data.tags.get(RESUMES_TAG, "[]"))
            resumes.append({"from_epoch": trainer.state.epoch, **where})
            while len(resumes) > 1 and len(json.dumps(resumes)) > 7000:  # MLflow's tag values hold 8000 characters
                resumes.pop(0)
            store.client.set_tag(run.info.run_id, RESUMES_TAG, json.dumps(resumes))
        summary = _train(trainer, store, run, progress, resumed=resume is not None)
        if summary["status"] == "KILLED":
            where_store = f" --tracking-uri {shlex.quote(tracking_uri)}" if tracking_uri else ""
            summary["resume"] = f"ibcli train --resume {run.info.run_id}{where_store}"
        return summary
    finally:
        if trainer is not None:
            trainer.close()  # a no-op once the run has ended; else stops the writer thread
        if lock is not None:
            lock.release()


def _train(trainer: Trainer, store: Store, run, progress, resumed: bool) -> dict:
    """Train inside the tracked run; the summary, or a UserError saying what happened."""
    run_id = run.info.run_id

    def end(status: str) -> None:
        trainer.close()
        store.client.set_tag(run_id, EPOCHS_DONE_TAG, str(trainer.state.epoch))

    t0 = time.perf_counter()
    status = "FINISHED"
    try:
        with progress, store.tracked(run_id, before_end=end):
            if not resumed:
                trainer.start(store, run)
            trainer.train()
    except KeyboardInterrupt:
        status = "KILLED"
    except (Diverged, NonFiniteRecord) as exc:
        n = len(trainer.recorder.manifest.records) if trainer.recorder else 0
        raise UserError(f"{exc}; run {run_id} is marked FAILED, its complete records ({n}) stay usable by `ibcli mi {run_id[:8]}`") from None
    except StoreUnreachable as exc:
        raise UserError(f"{exc}; run {run_id} stays RUNNING there with the records and checkpoint the server received: "
                        f"once it answers, `ibcli train --resume {run_id[:8]}` continues it") from None
    summary = trainer.summary()
    summary.update(status=status, seconds=round(time.perf_counter() - t0, 2), epochs_target=trainer.cfg.epochs)
    return summary


def _checkpoint_epoch(store: Store, run) -> int:
    """The last completed epoch in `run`'s checkpoint.

    Raises:
        UserError: no checkpoint, or one that cannot be read.
    """
    try:
        path = store.artifacts(run).local_path(CHECKPOINT)
    except FileNotFoundError:
        done = run.data.tags.get(EPOCHS_DONE_TAG, "0")
        why = ("it ended before its first epoch" if done in ("0", "")
               else f"it trained {counted(int(done), 'epoch')}, but {CHECKPOINT} is missing from its artifacts")
        raise UserError(f"run {run.info.run_id} has no checkpoint to resume from ({why}): start a new run instead") from None
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])
    except Exception as exc:
        raise UserError(f"run {run.info.run_id} has a damaged checkpoint {CHECKPOINT} ({type(exc).__name__}): start a new run instead") from None
