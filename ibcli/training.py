"""The train stage: a plain training loop that records the probe set's activations.

At step 0 and at every scheduled epoch or step, one forward pass over the probe set
gives every recorded layer's output; the recorder writes them as Parquet under the
run's `activations/` while training goes on. Per epoch: train/test loss and accuracy
(step = epoch), gradient statistics per layer, and a checkpoint for `--resume`.
"""

from __future__ import annotations

import copy
import io
import json
import math
import time
import typing
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pandas as pd
import torch
from torch import nn

from ibcli import activations as act
from ibcli.datasets import load_dataset
from ibcli.datasets.base import DatasetTensors, make_probe_set
from ibcli.devices import resolve_device
from ibcli.errors import UserError
from ibcli.gradient_stats import GradientStats
from ibcli.models import MODEL_ALIASES, OPTIMIZERS, build_model
from ibcli.recorder import Recorder
from ibcli.schedule import parse_epoch_schedule, parse_step_schedule
from ibcli.store import CONFIG_TAG

CHECKPOINT = "checkpoints/last.pt"
# Long runs of tiny nets do thousands of epochs: talk to MLflow and the disk at most this often.
METRICS_FLUSH_SECONDS = 2.0
CHECKPOINT_SECONDS = 30.0
GRADIENTS = "gradients/gradient_stats.parquet"


class Diverged(UserError):
    """The training loss became NaN or inf (the run ends FAILED; its earlier records stay usable)."""


@dataclass
class TrainConfig:
    """Every option of `ibcli train`; all of it is logged as run params."""

    model: str = "mlp"
    dataset: str = "mnist"
    activation: str = "tanh"
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: int = 20
    batch_size: int = 128
    device: str = "auto"
    seed: int = 0
    data_dir: str = "data"
    train_fraction: float | None = None
    probe_split: str = "test"
    probe_size: int | None = None
    log_epochs: str = "log:30"
    log_steps: str = "none"
    activation_dtype: str = "float32"
    experiment: str = "ibcli"
    grad_stats: bool = True

    def to_json(self) -> str:
        """The whole configuration as JSON (stored in the run's `ibcli.config` tag)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        """The configuration `to_json` wrote; fields added since then take their defaults."""
        data = json.loads(text)
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    @classmethod
    def from_params(cls, params: dict[str, str]) -> "TrainConfig":
        """Rebuild the configuration of a run written before the `ibcli.config` tag, from its
        MLflow params (strings), converting each by its field's declared type."""
        hints = typing.get_type_hints(cls)
        values = {}
        for f in fields(cls):
            raw = params.get(f.name)
            if raw is None:
                continue
            kinds = [k for k in typing.get_args(hints[f.name]) or (hints[f.name],) if k is not type(None)]
            if raw == "None":
                values[f.name] = None
            elif kinds[0] is bool:
                values[f.name] = raw == "True"
            else:
                values[f.name] = kinds[0](raw)
        return cls(**values)

    def validate(self) -> None:
        """Raise UserError for option values no run can use."""
        self.model = MODEL_ALIASES.get(self.model, self.model)
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.lr > 0 and math.isfinite(self.lr), f"--lr must be a positive number, got {self.lr}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.momentum >= 0, f"--momentum must be >= 0, got {self.momentum}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}: choose sgd or adam"),
            (self.activation_dtype in ("float32", "float16"), f"--activation-dtype must be float32 or float16, got {self.activation_dtype!r}"),
            (self.probe_size is None or self.probe_size >= 1, f"--probe-size must be at least 1, got {self.probe_size}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def layer_weights(model) -> dict[str, torch.Tensor]:
    """{recorded layer name: its weight}; the logits layer's weight is listed as `output`."""
    out = {}
    for name, block in model.blocks.items():
        weights = [m.weight for m in block.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        out["output" if name == "logits" else name] = weights[0]
    return out


@dataclass
class TrainState:
    """What a checkpoint holds besides model and optimizer: where the loop stands."""

    epoch: int = 0
    step: int = 0
    history: list = field(default_factory=list)


class Trainer:
    """Runs one train run end to end. `progress` is a callback object or None."""

    def __init__(self, cfg: TrainConfig, progress=None):
        cfg.validate()
        self.cfg, self.progress = cfg, progress
        self.store = None
        self.device = torch.device(resolve_device(cfg.device))
        if self.device.type == "cpu" and MODEL_ALIASES.get(cfg.model, cfg.model) == "ib":
            # The 12-10-7-5-4-3-2 net is too small to split across threads: more only contend
            # (measured: 11 vs 1 epochs/s on a busy 2-core machine).
            torch.set_num_threads(1)
        torch.manual_seed(cfg.seed)
        self.data: DatasetTensors = load_dataset(cfg.dataset, cfg.data_dir, cfg.train_fraction, cfg.seed)
        probe_split = cfg.probe_split
        self.probe = make_probe_set(self.data, probe_split, cfg.probe_size)
        self.model = build_model(cfg.model, cfg.activation, self.data.input_shape, self.data.num_classes).to(self.device)
        self.optimizer = make_optimizer(cfg, self.model)
        self.loss_fn = nn.CrossEntropyLoss()
        self.steps_per_epoch = math.ceil(len(self.data.x_train) / cfg.batch_size)
        self.epoch_schedule = parse_epoch_schedule(cfg.log_epochs, cfg.epochs)
        self.step_schedule = parse_step_schedule(cfg.log_steps, self.steps_per_epoch)
        self.generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
        self.state = TrainState()
        # hold=4: gradients are added four batches per pass on a CPU (half the cost); safe
        # because the loop clears them with set_to_none=True and SGD/Adam never write .grad.
        self.grad_stats = (
            GradientStats(layer_weights(self.model), hold=4 if self.device.type == "cpu" else 1)
            if cfg.grad_stats else None
        )
        self.gradient_rows: list[dict] = []
        # Tensors live on the device once; batches are index gathers, not a DataLoader.
        self.x_train = self.data.x_train.to(self.device)
        self.y_train = self.data.y_train.to(self.device)
        self.x_test = self.data.x_test.to(self.device)
        self.y_test = self.data.y_test.to(self.device)
        self.x_probe = self.probe.x.to(self.device)
        # When the probe set is the whole test set, one pass gives both test metrics and the record.
        self.probe_is_test = cfg.probe_split == "test" and len(self.probe.x) == len(self.data.x_test)
        self.run = None
        self.artifacts = None
        self.recorder: Recorder | None = None
        self._pending_metrics: list[tuple[int, dict]] = []
        self._last_flush = self._last_checkpoint = time.monotonic()
        self._snapshot: dict | None = None
        self._closed = False

    # ---- passes over fixed sets -------------------------------------------------
    @torch.no_grad()
    def _forward_all(self, x: torch.Tensor, record: bool, chunk: int = 2500):
        """Logits for all of x, and (if record) each layer's outputs flattened to (n, width)."""
        self.model.eval()
        logits, layers = [], {}
        for i in range(0, len(x), chunk):
            if record:
                out, acts = self.model.forward_with_activations(x[i : i + chunk])
                for name, a in acts.items():
                    layers.setdefault(name, []).append(a.flatten(1))
            else:
                out = self.model(x[i : i + chunk])
            logits.append(out)
        self.model.train()
        return torch.cat(logits), {k: torch.cat(v) for k, v in layers.items()}

    def _metrics(self, logits: torch.Tensor, y: torch.Tensor, prefix: str) -> dict[str, float]:
        loss = self.loss_fn(logits, y).item()
        acc = (logits.argmax(1) == y).float().mean().item()
        return {f"{prefix}_loss": loss, f"{prefix}_accuracy": acc}

    def _record(self, epoch: float, step: int, want_test_metrics: bool) -> dict[str, float]:
        """Record the probe set at this point; returns test metrics if they came for free."""
        logits, layers = self._forward_all(self.x_probe, record=True)
        dtype = np.float16 if self.cfg.activation_dtype == "float16" else np.float32
        arrays = {k: v.to("cpu").numpy().astype(dtype, copy=False) for k, v in layers.items()}
        self.recorder.submit(epoch, step, arrays)
        if want_test_metrics and self.probe_is_test:
            return self._metrics(logits, self.y_test, "test")
        return {}

    def _test_metrics(self) -> dict[str, float]:
        logits, _ = self._forward_all(self.x_test, record=False)
        return self._metrics(logits, self.y_test, "test")

    # ---- the run ------------------------------------------------------------------
    def start(self, store, run) -> None:
        """Begin the new MLflow run `run`: log params and the configuration, write the probe file
        and the step-0 record."""
        cfg = self.cfg
        self.store, self.run = store, run
        self.artifacts = self.store.artifacts(self.run)
        self.store.client.set_tag(run.info.run_id, CONFIG_TAG, cfg.to_json())
        params = {k: v for k, v in asdict(cfg).items() if k not in ("experiment",)}
        params.update(
            device_used=str(self.device), n_train=len(self.data.x_train), n_test=len(self.data.x_test),
            probe_n=len(self.probe.x), steps_per_epoch=self.steps_per_epoch,
            recorded_epochs=",".join(map(str, sorted(self.epoch_schedule))),
            recorded_steps=",".join(map(str, sorted(self.step_schedule))),
        )
        self.store.log_params(self.run.info.run_id, params)
        self._open_recorder(new=True)
        self.recorder.write_probe(
            self.probe.indices.numpy(), self.probe.y.numpy(), self.probe.x.flatten(1).numpy().astype(np.float32)
        )
        metrics = self._record(0.0, 0, want_test_metrics=True) or self._test_metrics()
        self.store.log_metrics(self.run.info.run_id, metrics, step=0)
        self.state.history.append({"epoch": 0, **metrics})

    def _open_recorder(self, new: bool, manifest: act.Manifest | None = None) -> None:
        if manifest is None:
            layers = []
            shapes = self._layer_shapes()
            for i, name in enumerate(self.model.layer_names, start=1):
                shape = shapes[name]
                layers.append({"name": name, "index": i, "shape": list(shape), "width": int(np.prod(shape))})
            manifest = act.Manifest(
                layers=layers, records=[],
                probe={"file": act.PROBE, "size": len(self.probe.x), "split": self.probe.split},
                dtype=self.cfg.activation_dtype,
                info={"model": self.cfg.model, "dataset": self.cfg.dataset, "activation": self.cfg.activation,
                      "steps_per_epoch": self.steps_per_epoch, "num_classes": self.data.num_classes},
            )
        self.recorder = Recorder(self.artifacts, manifest)

    @torch.no_grad()
    def _layer_shapes(self) -> dict[str, tuple]:
        self.model.eval()
        _, acts = self.model.forward_with_activations(self.x_probe[:1])
        self.model.train()
        return {k: tuple(v.shape[1:]) for k, v in acts.items()}

    def train(self) -> None:
        """Epochs state.epoch+1 .. cfg.epochs. Raises Diverged (or KeyboardInterrupt); the caller ends the run."""
        cfg = self.cfg
        n = len(self.x_train)
        if self.progress:
            self.progress.start(cfg.epochs, self.steps_per_epoch, self.state.epoch)
        for epoch in range(self.state.epoch + 1, cfg.epochs + 1):
            t0 = time.perf_counter()
            order = torch.randperm(n, generator=self.generator).to(self.device)
            loss_sum = torch.zeros((), device=self.device)
            correct = torch.zeros((), device=self.device, dtype=torch.long)
            if self.grad_stats:
                self.grad_stats.reset()
            for b in range(self.steps_per_epoch):
                idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                # index_select copies whole rows: 2-3x faster than x[idx] advanced indexing on CPU.
                xb, yb = self.x_train.index_select(0, idx), self.y_train.index_select(0, idx)
                logits = self.model(xb)
                loss = self.loss_fn(logits, yb)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.grad_stats:
                    self.grad_stats.update()
                self.optimizer.step()
                loss_sum += loss.detach() * len(idx)
                correct += (logits.detach().argmax(1) == yb).sum()
                self.state.step += 1
                if self.state.step in self.step_schedule:
                    if not math.isfinite(loss.item()):
                        raise Diverged(f"training loss became {loss.item()} at step {self.state.step} (epoch {epoch})")
                    self._record(self.state.step / self.steps_per_epoch, self.state.step, want_test_metrics=False)
                if self.progress:
                    self.progress.batch(b + 1)
            train_loss = (loss_sum / n).item()
            if not math.isfinite(train_loss):
                raise Diverged(f"training loss became {train_loss} in epoch {epoch}: lower --lr")
            metrics = {"train_loss": train_loss, "train_accuracy": correct.item() / n}
            if epoch in self.epoch_schedule:
                metrics.update(self._record(float(epoch), self.state.step, want_test_metrics=True))
            if "test_loss" not in metrics:
                metrics.update(self._test_metrics())
            metrics["epoch_seconds"] = time.perf_counter() - t0
            if self.grad_stats:
                # Every epoch goes to gradients/gradient_stats.parquet; MLflow gets them only at
                # recorded epochs, since per-metric SQLite writes dominate long runs of tiny nets.
                to_mlflow = epoch in self.epoch_schedule or epoch == cfg.epochs
                for row in self.grad_stats.summary():
                    row = {"epoch": epoch, "step": self.state.step, **row}
                    self.gradient_rows.append(row)
                    for key in ("grad_mean_norm", "grad_std_norm", "snr", "weight_norm"):
                        if to_mlflow and math.isfinite(row[key]):
                            metrics[f"{key}.{row['layer']}"] = row[key]
            self.state.epoch = epoch
            self.state.history.append({"epoch": epoch, **metrics})
            self._pending_metrics.append((epoch, metrics))
            self._take_snapshot()
            now = time.monotonic()
            recorded, last = epoch in self.epoch_schedule, epoch == cfg.epochs
            if recorded or last or now - self._last_flush >= METRICS_FLUSH_SECONDS:
                self.flush()
            if recorded or last or now - self._last_checkpoint >= CHECKPOINT_SECONDS:
                self.save_checkpoint()
            if self.progress:
                self.progress.epoch(epoch, metrics)

    def flush(self) -> None:
        """Send buffered metrics to MLflow and rewrite the gradient table."""
        if self._pending_metrics:
            self.store.log_metric_rows(self.run.info.run_id, self._pending_metrics)
            self._pending_metrics = []
        self._write_gradients()
        self._last_flush = time.monotonic()

    def _write_gradients(self) -> None:
        if not self.gradient_rows:
            return
        path = self.artifacts.writable_path(GRADIENTS)
        pd.DataFrame(self.gradient_rows).to_parquet(path, index=False)
        self.artifacts.commit(path, GRADIENTS)

    def _take_snapshot(self) -> None:
        """Copy the end-of-epoch state in memory (cheap), so an interrupt mid-epoch can
        still checkpoint the last completed epoch."""
        self._snapshot = {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "epoch": self.state.epoch, "step": self.state.step,
            # Lengths, not copies: both lists only grow, so a prefix is the state at this epoch.
            "history_len": len(self.state.history), "gradient_rows_len": len(self.gradient_rows),
        }

    def save_checkpoint(self) -> None:
        """Write the last completed epoch's state to checkpoints/last.pt (atomically)."""
        if self._snapshot is None:
            return
        snap = dict(self._snapshot)
        snap["history"] = self.state.history[: snap.pop("history_len")]
        snap["gradient_rows"] = self.gradient_rows[: snap.pop("gradient_rows_len")]
        buffer = io.BytesIO()
        torch.save(snap, buffer)
        path = self.artifacts.writable_path(CHECKPOINT)
        path.write_bytes(buffer.getvalue())
        self.artifacts.commit(path, CHECKPOINT)
        self._last_checkpoint = time.monotonic()

    def resume_from(self, store, run) -> None:
        """Continue `run` (same MLflow run) from its last checkpoint.

        Records the killed run made after the checkpoint are dropped from the manifest
        (their files are overwritten when re-recorded).

        Raises:
            UserError: the run has no checkpoint.
        """
        self.store, self.run = store, run
        self.artifacts = store.artifacts(run)
        try:
            path = self.artifacts.local_path(CHECKPOINT)
        except FileNotFoundError:
            raise UserError(f"run {run.info.run_id} has no checkpoint to resume from (it ended before its first epoch)") from None
        ckpt = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.generator.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        self.state = TrainState(ckpt["epoch"], ckpt["step"], ckpt["history"])
        self.gradient_rows = ckpt.get("gradient_rows", [])
        manifest = act.load_manifest(self.artifacts)
        manifest.records = [r for r in manifest.records if r["step"] <= self.state.step]
        self._open_recorder(new=False, manifest=manifest)
        self.recorder._write_manifest()

    def close(self) -> None:
        """Finish writing queued records, flush metrics, checkpoint the last completed epoch.

        Only the first call does anything (the run's end, or a failed start)."""
        if self._closed:
            return
        self._closed = True
        if self.recorder is not None:
            self.recorder.close()
        if self.run is not None:
            self.flush()
            self.save_checkpoint()

    def summary(self) -> dict:
        last = self.state.history[-1] if self.state.history else {}
        return {
            "run_id": self.run.info.run_id,
            "experiment_id": self.run.info.experiment_id,
            "artifact_uri": self.run.info.artifact_uri,
            "epochs": self.state.epoch,
            "records": len(self.recorder.manifest.records) if self.recorder else 0,
            "final_metrics": {k: v for k, v in last.items() if k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")},
        }
