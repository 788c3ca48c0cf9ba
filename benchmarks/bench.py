#!/usr/bin/env python
"""ibcli's speed benchmark: the figures a researcher feels, each against its target.

Run with `make bench` (or `.venv/bin/python benchmarks/bench.py --data-dir ../shared/data`).
Prints one `name: value (target: ...) ok|MISS` line per figure and a last line
`N of M targets met`; lines starting with `#` are context (machine, BLAS, breakdowns).
Everything it writes goes to a temporary folder that is removed at the end.
benchmarks/README.md says what each line measures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # growth.py beside this file
T_START = time.perf_counter()
RESULTS: list[bool] = []


# --------------------------------------------------------------------------- output
def report(name: str, value: str, target: str, ok: bool) -> None:
    RESULTS.append(bool(ok))
    print(f"{name}: {value} (target: {target}) {'ok' if ok else 'MISS'}", flush=True)


def note(text: str) -> None:
    print(f"# {text}", flush=True)


def remove_or_keep(work: Path, keep: bool) -> None:
    """Remove the benchmark's temporary folder, or say where it is kept (--keep)."""
    if keep:
        note(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def summary_line() -> int:
    """Print the closing lines (time, load, targets met); the exit status (0)."""
    note(f"benchmark took {time.perf_counter() - T_START:.0f} s; load average {loadavg()}")
    print(f"{sum(RESULTS)} of {len(RESULTS)} targets met", flush=True)
    return 0


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


# --------------------------------------------------------------------------- 1, 2: training
class FirstBatch:
    """A Trainer progress callback that notes when the first batch is done."""

    def __init__(self):
        self.first_batch = None

    def start(self, epochs, steps_per_epoch, done):
        pass

    def batch(self, b):
        if self.first_batch is None:
            self.first_batch = time.perf_counter()

    def epoch(self, epoch, metrics):
        pass


def ibcli_epochs(trainer, k: int = 1) -> float:
    """k more epochs of ibcli's Trainer, back to back, timed until everything they queued
    (records, metrics, gradient table, checkpoints) is written; seconds per epoch.

    The writer thread overlaps each epoch's writes with the next epoch, as in `ibcli
    train`; the block's last writes would overlap the next (bare) epoch, so the clock
    waits for them: they are charged in full.
    """
    trainer.cfg.epochs = trainer.state.epoch + k  # train() runs state.epoch+1 .. cfg.epochs
    t = time.perf_counter()
    trainer.train()
    trainer.recorder.wait()
    return (time.perf_counter() - t) / k


class BareLoop:
    """A plain PyTorch loop on the same model class, optimizer, tensors, batching and
    per-epoch test evaluation as ibcli's Trainer; no recording, no gradient statistics,
    no logging, no checkpoints. It runs where the tensors are, with PyTorch's default Adam
    (what a plain loop gets from `torch.optim.Adam(params)`: on a CPU the for-loop
    implementation), or with `fused` its fused kernel, the one ibcli's Trainer steps with."""

    def __init__(self, x_train, y_train, x_test, y_test, batch_size=128, seed=0, model="mlp", activation="tanh",
                 fused=False):
        import torch
        from torch import nn

        from ibcli.models import build_model

        torch.manual_seed(seed)
        self.torch = torch
        self.model = build_model(model, activation, tuple(x_train.shape[1:]), 10).to(x_train.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, **({"fused": True} if fused else {}))
        self.loss_fn = nn.CrossEntropyLoss()
        self.generator = torch.Generator().manual_seed(seed)
        self.x, self.y, self.x_test, self.y_test = x_train, y_train, x_test, y_test
        self.batch_size = batch_size

    def epochs(self, k: int = 1) -> float:
        """k epochs; seconds per epoch."""
        t = time.perf_counter()
        for _ in range(k):
            self.epoch()
        return (time.perf_counter() - t) / k

    def epoch(self) -> float:
        torch, model, bs = self.torch, self.model, self.batch_size
        t = time.perf_counter()
        n, device = len(self.x), self.x.device
        order = torch.randperm(n, generator=self.generator).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        for b in range(math.ceil(n / bs)):
            idx = order[b * bs : (b + 1) * bs]
            xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)  # the gather ibcli uses
            logits = model(xb)
            loss = self.loss_fn(logits, yb)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == yb).sum()
        self.train_loss, self.train_acc = (loss_sum / n).item(), correct.item() / n
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(self.x_test[i : i + 2500]) for i in range(0, len(self.x_test), 2500)])
            self.test_loss = self.loss_fn(logits, self.y_test).item()
            self.test_acc = (logits.argmax(1) == self.y_test).float().mean().item()
        model.train()
        return time.perf_counter() - t


def time_updates(stats) -> list:
    """Wrap ``stats.update`` to sum its wall time: returns [seconds, calls], filled as it runs."""
    acc = [0.0, 0]
    update = stats.update

    def timed_update():
        t = time.perf_counter()
        update()
        acc[0] += time.perf_counter() - t
        acc[1] += 1

    stats.update = timed_update
    return acc


def data_seconds_per_epoch(trainer) -> float:
    """The training loop's own data handling for one epoch, alone: the permutation and
    every batch's index gather, exactly as Trainer.train does them (median of 3)."""
    import torch

    g = torch.Generator().manual_seed(123)
    n, bs = len(trainer.x_train), trainer.cfg.batch_size
    times = []
    for _ in range(3):
        t = time.perf_counter()
        order = torch.randperm(n, generator=g).to(trainer.device)
        for b in range(trainer.steps_per_epoch):
            idx = order[b * bs : (b + 1) * bs]
            xb, yb = trainer.x_train.index_select(0, idx), trainer.y_train.index_select(0, idx)
        times.append(time.perf_counter() - t)
    del xb, yb
    return statistics.median(times)


def bench_training(args, work: Path):
    """Items 1 and 2. Returns the default trainer (its records feed items 3, 5 and 6)."""
    t = time.perf_counter()
    import torch
    import torchvision.datasets  # noqa: F401  (ibcli.datasets imports it only to download)
    import mlflow  # noqa: F401

    from ibcli.gradient_stats import preload_kernel
    from ibcli.store import Store
    from ibcli.training import TrainConfig, Trainer

    t_mods = time.perf_counter() - t
    t_kernel, fused = timed(preload_kernel)  # as `ibcli train` does with its imports
    note(f"imports (torch, torchvision, mlflow, ibcli): {t_mods:.2f} s; gradient-statistics kernel "
         f"(numba imports, cached code): {t_kernel:.2f} s{'' if fused else ' (numba missing: torch ops)'}")
    uri = f"sqlite:///{work / 'runs' / 'mlflow.db'}"
    t_store, store = timed(Store, uri)
    note(f"opening a new MLflow SQLite store (first run in a folder only): {t_store:.2f} s")
    blocks, k = max(1, args.epochs // args.block), args.block
    epochs = 1 + blocks * k

    def config(grad_stats: bool, batch_size: int = 128):
        return TrainConfig(model="mlp", dataset="mnist", activation="tanh", optimizer="adam", lr=1e-3,
                           epochs=epochs, batch_size=batch_size, device="cpu", seed=0, data_dir=args.data_dir,
                           log_epochs="all", experiment="bench", grad_stats=grad_stats,
                           train_fraction=args.train_fraction)

    # Item 2a: from the start of training (after imports) to the first batch.
    fb = FirstBatch()
    t0 = time.perf_counter()
    trainer = Trainer(config(True), progress=fb)
    t1 = time.perf_counter()
    trainer.start(store, store.create_run(trainer.cfg.experiment, "train", run_name="bench-default"))
    t2 = time.perf_counter()
    first_epoch = {"ibcli": ibcli_epochs(trainer)}
    to_first = fb.first_batch - t0
    note(f"to first batch: load MNIST + build model {t1 - t0:.2f} s, start (run, params, probe, "
         f"step-0 record) {t2 - t1:.2f} s, first batch {fb.first_batch - t2:.3f} s")
    report("time to first batch", f"{to_first:.2f} s", "<= 2 s", to_first <= 2.0)

    nogs = Trainer(config(False))
    nogs.start(store, store.create_run(nogs.cfg.experiment, "train", run_name="bench-no-grad-stats"))
    # The plain loop steps with the same (fused) Adam as ibcli; a second one with PyTorch's
    # default Adam, as `torch.optim.Adam(params)` gives it, is context.
    bare = BareLoop(trainer.x_train, trainer.y_train, trainer.x_test, trainer.y_test, fused=True)
    bare_default = BareLoop(trainer.x_train, trainer.y_train, trainer.x_test, trainer.y_test)
    first_epoch["no-grad-stats"] = ibcli_epochs(nogs)
    first_epoch["bare"] = bare.epochs()
    first_epoch["bare default Adam"] = bare_default.epochs()
    note("epoch 1 (warm-up, not counted): " + ", ".join(f"{k} {v:.2f} s" for k, v in first_epoch.items()))

    update_seconds = time_updates(trainer.grad_stats)
    sides = {"ibcli": lambda k: ibcli_epochs(trainer, k), "no-grad-stats": lambda k: ibcli_epochs(nogs, k),
             "bare": bare.epochs, "bare default Adam": bare_default.epochs}
    times = compare(sides, blocks, k, "batch 128")
    per_batch = update_seconds[0] / max(update_seconds[1], 1)
    note(f"gradient statistics inside ibcli's loop: {per_batch * 1e3:.2f} ms per batch = "
         f"{per_batch * trainer.steps_per_epoch:.2f} s per epoch (GradientStats.update, timed alone)")
    note(f"final test accuracy: ibcli {trainer.state.history[-1].get('test_accuracy', float('nan')):.4f}, "
         f"bare {bare.test_acc:.4f}, bare default Adam {bare_default.test_acc:.4f}")
    overhead_line(times, "ibcli", "training overhead, ibcli / bare PyTorch s per epoch")
    overhead_line(times, "no-grad-stats", "training overhead with --no-grad-stats")
    default_adam_note(times, ["ibcli", "no-grad-stats", "bare"], "batch 128")
    median = {name: statistics.median(v) for name, v in times.items()}

    # Item 2b: the loop's data handling as a share of an epoch.
    data_s = data_seconds_per_epoch(trainer)
    share = data_s / median["ibcli"]
    report("data handling share of an epoch", f"{100 * share:.2f} % ({data_s * 1000:.0f} ms of {median['ibcli']:.2f} s)",
           "<= 2 %", share <= 0.02)
    nogs.close()
    store.finish(nogs.run.info.run_id)
    del nogs

    # Batch 512: a quarter of the steps, the same fixed costs per epoch (probe pass, writes).
    big = Trainer(config(True, batch_size=512))
    big.start(store, store.create_run(big.cfg.experiment, "train", run_name="bench-batch-512"))
    bare_big = BareLoop(big.x_train, big.y_train, big.x_test, big.y_test, batch_size=512, fused=True)
    bare_big_default = BareLoop(big.x_train, big.y_train, big.x_test, big.y_test, batch_size=512)
    warm = {"ibcli": ibcli_epochs(big), "bare": bare_big.epochs(), "bare default Adam": bare_big_default.epochs()}
    note("batch 512, epoch 1 (warm-up, not counted): " + ", ".join(f"{k} {v:.2f} s" for k, v in warm.items()))
    times_big = compare({"ibcli": lambda k: ibcli_epochs(big, k), "bare": bare_big.epochs,
                         "bare default Adam": bare_big_default.epochs}, blocks, k, "batch 512")
    overhead_line(times_big, "ibcli", "training overhead at batch 512, ibcli / bare PyTorch s per epoch")
    default_adam_note(times_big, ["ibcli", "bare"], "batch 512")
    big.close()
    store.finish(big.run.info.run_id)
    trainer.close()
    store.finish(trainer.run.info.run_id)
    return store, trainer


def compare(sides: dict, blocks: int, k: int, label: str) -> dict[str, list[float]]:
    """Seconds per epoch of each side in each of `blocks` rounds of one block of `k` epochs per
    side, the sides alternated per round (ABC, CBA, ...) to cancel drift. `sides` maps a name
    to f(k) -> s/epoch; returns {name: [s/epoch of round 1, round 2, ...]}."""
    times = {name: [] for name in sides}
    order = list(sides)
    for i in range(blocks):
        for name in order:
            times[name].append(sides[name](k))
        note(f"{label}, round {i + 1} ({k} epochs per side): " + ", ".join(f"{n} {times[n][-1]:.2f}" for n in sides)
             + f" s per epoch  (load {loadavg()})")
        order.reverse()
    note(f"{label}, for comparison, means of the same rounds: " + ", ".join(f"{n} {statistics.fmean(v):.2f}" for n, v in times.items()))
    return times


def round_ratios(times: dict[str, list[float]], side: str, base: str) -> list[float]:
    """side / base in each round (the two timed next to each other)."""
    return [a / b for a, b in zip(times[side], times[base])]


def paired_ratio(times: dict[str, list[float]], side: str, base: str) -> float:
    """side / base: the geometric mean of each forward/reversed pair of rounds (ABC then CBA),
    then the median over pairs (a last unpaired round counts alone).

    The host's speed drifts by 10-30 % over minutes (other tenants' memory traffic), far more
    than within one round: a ratio per round cancels most of it, a forward round with its
    reversed one the rest of a steady drift, and the median drops a stray pair.
    """
    r = round_ratios(times, side, base)
    pairs = [math.sqrt(r[i] * r[i + 1]) if i + 1 < len(r) else r[i] for i in range(0, len(r), 2)]
    return statistics.median(pairs)


def overhead_line(times: dict[str, list[float]], side: str, name: str) -> None:
    """The target line: `side` over the plain loop with the same optimizer ("bare"), with the
    spread of the per-round ratios and each side's median seconds per epoch."""
    ratio, r = paired_ratio(times, side, "bare"), round_ratios(times, side, "bare")
    report(name, f"{ratio:.3f} ({len(r)} rounds, {min(r):.3f}-{max(r):.3f}; median s per epoch "
           f"{statistics.median(times[side]):.2f} / {statistics.median(times['bare']):.2f})", "<= 1.10", ratio <= 1.10)


def default_adam_note(times: dict[str, list[float]], sides: list[str], label: str) -> None:
    """Context: each side over a plain loop with PyTorch's default Adam (what
    `torch.optim.Adam(params)` gives; on a CPU its for-loop implementation)."""
    note(f"{label}, over a plain loop with PyTorch's default Adam: "
         + ", ".join(f"{s} {paired_ratio(times, s, 'bare default Adam'):.3f}" for s in sides))


# --------------------------------------------------------------------------- 3: KDE
def reference_kde_upper(t, s2: float, chunk: int = 2500) -> float:
    """The IB literature's reference recipe (Saxe et al. 2018, kde.py), in NumPy float64:
    pairwise squared distances and scipy's logsumexp, chunked by rows only so that a
    block stays at 200 MB. Returns the KL upper bound on I(X; T+Z) in nats:
    ln N - mean_i logsumexp_j(-||t_i - t_j||^2 / (2 s2)); H(T+Z) adds d/2 ln(2 pi e s2)."""
    import numpy as np
    from scipy.special import logsumexp

    x = np.asarray(t, dtype=np.float64)
    n = x.shape[0]
    sq = np.einsum("ij,ij->i", x, x)
    lse = np.empty(n)
    for i0 in range(0, n, chunk):
        i1 = min(n, i0 + chunk)
        dist = sq[i0:i1, None] + sq[None, :] - 2.0 * (x[i0:i1] @ x.T)
        lse[i0:i1] = logsumexp(-dist / (2.0 * s2), axis=1)
    return math.log(n) - float(lse.mean())


def pick_noise_var(t) -> float:
    """A noise variance at which the kernel sums matter: half the median squared distance
    from a point to its nearest neighbour (so that neighbour weighs exp(-1))."""
    import numpy as np

    x = t.astype(np.float64)
    rows = np.random.default_rng(0).choice(len(x), 500, replace=False)
    sq = np.einsum("ij,ij->i", x, x)
    d = sq[rows, None] + sq[None, :] - 2.0 * (x[rows] @ x.T)
    d[np.arange(len(rows)), rows] = np.inf
    return float(np.median(np.maximum(d.min(axis=1), 0.0)) / 2.0)


def blas_note() -> None:
    try:
        from threadpoolctl import threadpool_info

        for lib in threadpool_info():
            if lib.get("user_api") == "blas":
                note(f"NumPy BLAS: {lib.get('internal_api')} {lib.get('version')}, kernel {lib.get('architecture')}, "
                     f"{lib.get('num_threads')} threads; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    except Exception as exc:  # threadpoolctl missing or odd: context only
        note(f"NumPy BLAS: unknown ({type(exc).__name__})")


def bench_kde(t, labels, repeat: int):
    import numpy as np

    from ibcli.estimators.kde import kde_entropy, kde_information_plane

    n, d = t.shape
    s2 = pick_noise_var(t)
    h_cond = 0.5 * d * (math.log(2 * math.pi * math.e) + math.log(s2))
    note(f"KDE data: layer1 tanh activations, N={n}, d={d}, {t.dtype}; s2={s2:.4g} "
         f"(median nearest-neighbour squared distance / 2)")
    ref_times, ib_times = [], []
    i_ref = i_ib = None
    for _ in range(repeat):  # interleaved
        tr, i_ref = timed(reference_kde_upper, t, s2)
        ref_times.append(tr)
        ti, h = timed(kde_entropy, t, s2, bound="upper")
        ib_times.append(ti)
        i_ib = h - h_cond
    a = np.ascontiguousarray(t, dtype=np.float32)
    b = a.copy()  # a different buffer: numpy would use a half-cost SYRK for a @ a.T
    out = np.empty((n, n), dtype=np.float32)
    mm = min(timed(np.matmul, a, b.T, out=out)[0] for _ in range(3))
    del out
    t_ref, t_ib = min(ref_times), min(ib_times)
    rel = abs(i_ib - i_ref) / abs(i_ref)
    note(f"KDE I(X;T+Z) upper: ibcli {i_ib:.6f}, reference {i_ref:.6f} nats (ln N = {math.log(n):.4f}); "
         f"times ibcli {t_ib:.2f} s, reference {t_ref:.2f} s, float32 GEMM {mm:.2f} s")
    report("KDE upper bound, relative difference from float64 reference", f"{rel:.2e}", "<= 1e-4", rel <= 1e-4)
    report("KDE upper bound, speed-up over NumPy float64 reference", f"{t_ref / t_ib:.1f}x", ">= 6x", t_ref / t_ib >= 6)
    report("KDE upper bound, time / one float32 (N x d)(d x N) GEMM", f"{t_ib / mm:.2f}", "<= 2", t_ib / mm <= 2)
    tp, _ = timed(kde_information_plane, t, labels, [s2])
    note(f"KDE full layer (both bounds, I(X;T) and I(T;Y), one s2): {tp:.2f} s = {tp / mm:.2f} GEMMs")


# --------------------------------------------------------------------------- 4: KSG
def bench_ksg(repeat: int):
    import numpy as np
    import infomeasure as im

    from ibcli.estimators.ksg import ksg_mi

    rng = np.random.default_rng(0)
    n, dim, k = 5000, 10, 3
    x = rng.standard_normal((n, dim))
    y = 0.6 * x + 0.8 * rng.standard_normal((n, dim))
    truth = -0.5 * dim * math.log(1 - 0.36)
    # infomeasure's KSG is the max-norm on the data as given: ibcli's the same way (its defaults,
    # standardised and Euclidean within each variable, are another estimator, printed apart).
    same = dict(k=k, norm="max", standardize=False)
    t_first, _ = timed(ksg_mi, x, y, **same)
    t_default, v_default = timed(ksg_mi, x, y, k=k)
    ib_times, ref_times = [], []
    for _ in range(repeat):
        t, v_ib = timed(ksg_mi, x, y, **same)
        ib_times.append(t)
        t, v_ref = timed(im.mutual_information, x, y, approach="ksg", k=k, noise_level=0,
                         minkowski_p=np.inf, base="e")
        ref_times.append(t)
    v_ref = float(v_ref)
    t_ib, t_ref = min(ib_times), min(ref_times)
    note(f"KSG N={n}, dx=dy={dim}, k={k}: ibcli {v_ib:.9f}, infomeasure {im.__version__} {v_ref:.9f}, "
         f"truth {truth:.4f} nats; ibcli {t_ib:.3f} s (first call {t_first:.2f} s), infomeasure {t_ref:.3f} s; "
         f"ibcli's defaults (standardised, Euclidean within x and y) {v_default:.6f} nats in {t_default:.3f} s")
    diff = abs(v_ib - v_ref)
    report("KSG, difference from infomeasure", f"{diff:.1e} nats", "<= 1e-6", diff <= 1e-6)
    report("KSG, speed-up over infomeasure", f"{t_ref / t_ib:.1f}x", ">= 2x", t_ref / t_ib >= 2)


# --------------------------------------------------------------------------- 5: binning
def bench_binning(artifacts, manifest, record, labels, repeat: int):
    import numpy as np

    from ibcli import activations as act
    from ibcli.estimators import bin_edges, information_plane
    from ibcli.mi_table import RecordedLayers

    names = [layer["name"] for layer in manifest.layers]
    t_load, layers = timed(lambda: {nm: act.load_layer(artifacts, record, nm) for nm in names})
    ranges = RecordedLayers(artifacts, manifest)
    edges = {nm: bin_edges(np.array(ranges.value_range(nm)), 30, "uniform") for nm in names}

    def all_layers():
        return [information_plane(layers[nm], labels, "binning", edges=edges[nm])[0] for nm in names]

    times = []
    for _ in range(repeat):
        t, points = timed(all_layers)
        times.append(t)
    widths = ",".join(str(layers[nm].shape[1]) for nm in names)
    note(f"binning, 30 uniform bins, layers of widths {widths}, N={len(labels)}: reading them from Parquet {t_load:.2f} s "
         f"(not counted); I(X;T) bits " + " ".join(f"{p.i_xt_nats / math.log(2):.2f}" for p in points))
    best = min(times)
    report("binning, all layers of one epoch", f"{best:.3f} s", "<= 0.2 s", best <= 0.2)


# --------------------------------------------------------------------------- 6, 7: ibcli mi --method kde
def write_mi_run(store, source, n_records: int) -> str:
    """A train run with `n_records` records, written by ibcli's own Recorder from the real
    records of `source` (cycled: real shapes, dtypes and scale). Returns its run id."""
    from ibcli import activations as act
    from ibcli.recorder import Recorder

    src_manifest = act.load_manifest(source.artifacts)
    cache = {}
    run = store.create_run("bench", "train", run_name=f"bench-mi-{n_records}-records")
    arts = store.artifacts(run)
    manifest = act.Manifest(layers=src_manifest.layers, records=[], probe=src_manifest.probe,
                            dtype=src_manifest.dtype, info=src_manifest.info)
    recorder = Recorder(arts, manifest)
    recorder.write_probe(*act.load_probe(source.artifacts))
    steps = src_manifest.info.get("steps_per_epoch", 469)
    for e in range(1, n_records + 1):
        src = src_manifest.records[e % len(src_manifest.records)]
        if src["record"] not in cache:
            cache[src["record"]] = {layer["name"]: act.load_layer(source.artifacts, src, layer["name"])
                                    for layer in src_manifest.layers}
        recorder.submit(float(e), e * steps, cache[src["record"]])
    recorder.close()
    store.finish(run.info.run_id)
    return run.info.run_id


WRAPPER = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "p = subprocess.run(sys.argv[2:], capture_output=True, text=True)\n"
    "wall = time.perf_counter() - t\n"
    "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "open(sys.argv[1], 'w').write(json.dumps({'rc': p.returncode, 'wall': wall, 'maxrss_kb': rss,"
    " 'stdout': p.stdout, 'stderr': p.stderr[-3000:]}))\n"
)


def bench_mi_kde(store, trainer, work: Path, n_records: int):
    run_id = write_mi_run(store, trainer, n_records)
    ibcli = Path(sys.executable).with_name("ibcli")
    out = work / "mi_kde.json"
    cmd = [sys.executable, "-c", WRAPPER, str(out), str(ibcli), "mi", run_id, "--method", "kde",
           "--quiet", "--json", "--tracking-uri", store.uri]
    subprocess.run(cmd, check=True)
    res = json.loads(out.read_text())
    if res["rc"] != 0:
        raise RuntimeError(f"ibcli mi failed ({res['rc']}): {res['stderr']}")
    summary = json.loads(res["stdout"].strip().splitlines()[-1])
    wall, per_records = res["wall"], summary["seconds"]
    fixed = max(wall - per_records, 0.0)
    t100 = fixed + per_records * 100 / n_records
    note(f"ibcli mi --method kde (default s2=0.1), {n_records} records x 6 layers, N=10000: wall {wall:.1f} s = "
         f"{fixed:.1f} s start-up and store + {per_records:.1f} s estimating ({per_records / n_records:.2f} s per record)")
    report(f"ibcli mi --method kde, 100 epochs (extrapolated from {n_records})", f"{t100 / 60:.2f} min",
           "<= 8 min", t100 <= 8 * 60)
    rss_gib = res["maxrss_kb"] / 2**20
    report("ibcli mi --method kde, peak resident memory", f"{rss_gib:.2f} GiB", "<= 2 GiB", rss_gib <= 2.0)


# --------------------------------------------------------------------------- 8: growth with N
def bench_growth(artifacts, record, labels):
    """How kde, sp, kraskov and mine grow with the probe size on layer2 (context lines)."""
    from growth import growth_lines, warm_up

    from ibcli import activations as act

    note(f"growth lines: warm-up {warm_up('cpu'):.1f} s; load average {loadavg()}")
    growth_lines(act.load_layer(artifacts, record, "layer2"), labels, "layer2", "cpu", note, light=True)


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("IBCLI_DATA_DIR", "../shared/data"),
                   help="folder holding MNIST/raw (default ../shared/data)")
    p.add_argument("--epochs", type=int, default=8, help="measured training epochs per side after one warm-up (default 8)")
    p.add_argument("--block", type=int, default=2, help="epochs per timed block, back to back (default 2; see README)")
    p.add_argument("--repeat", type=int, default=2, help="repetitions of the estimator timings (best is kept; default 2)")
    p.add_argument("--mi-records", type=int, default=10, help="records for the `ibcli mi --method kde` run (default 10)")
    p.add_argument("--train-fraction", type=float, default=None, help="debugging only: train on this share of MNIST")
    p.add_argument("--no-growth", action="store_true", help="skip the growth lines (estimators' time against N)")
    p.add_argument("--keep", action="store_true", help="keep the temporary store (its path is printed)")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    print(f"# ibcli benchmark, {time.strftime('%Y-%m-%d %H:%M:%S')}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}, "
          f"load average {loadavg()}", flush=True)
    blas_note()
    work = Path(tempfile.mkdtemp(prefix="ibcli-bench-"))
    try:
        store, trainer = bench_training(args, work)
        from ibcli import activations as act

        manifest = act.load_manifest(trainer.artifacts)
        last = manifest.records[-1]
        _, labels, _ = act.load_probe(trainer.artifacts)
        note(f"load average {loadavg()}")
        bench_kde(act.load_layer(trainer.artifacts, last, "layer1"), labels, args.repeat)
        bench_ksg(max(args.repeat, 2))
        bench_binning(trainer.artifacts, manifest, last, labels, 5)
        note(f"load average {loadavg()}")
        bench_mi_kde(store, trainer, work, args.mi_records)
        if not args.no_growth:
            bench_growth(trainer.artifacts, last, labels)
    finally:
        remove_or_keep(work, args.keep)
    return summary_line()


if __name__ == "__main__":
    sys.exit(main())
