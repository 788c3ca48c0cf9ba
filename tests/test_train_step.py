"""StaticStep, the GPU's training step, against the plain eager loop.

On a CPU the step runs eagerly and must compute exactly what the plain loop computes (same
batches, same optimizer arithmetic: parameters bit for bit). Capture and replay as CUDA
graphs are checked only where CUDA is present.
"""

from __future__ import annotations

import math

import pytest
import torch

from conftest import seed_store

from ibcli.gradient_stats import DeviceGradientStats, GradientStats
from ibcli.models import build_model
from ibcli.train_step import StaticStep

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _data(n=300, d=12, classes=4, device="cpu"):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=gen)
    y = (x[:, :classes].argmax(1) + (torch.rand(n, generator=gen) < 0.2).long()) % classes
    return x.to(device), y.to(device)


def _net(d=12, classes=4, device="cpu"):
    torch.manual_seed(1)
    return build_model("ib", "tanh", (d,), classes).to(device)  # d-10-7-5-4-3-classes


def _optimizer(kind, model, **kw):
    if kind == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3, **kw)
    return torch.optim.Adam(model.parameters(), lr=1e-2, **kw)


def _plain_epochs(model, opt, x, y, bs, orders, stats=None):
    """The loop of Trainer._eager_epoch, written out: returns [(loss_sum, correct, stats rows)] per epoch."""
    loss_fn = torch.nn.CrossEntropyLoss()
    out = []
    for order in orders:
        loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
        if stats:
            stats.reset()
        for b in range(math.ceil(len(x) / bs)):
            idx = order[b * bs : (b + 1) * bs]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if stats:
                stats.update()
            opt.step()
            loss_sum += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == yb).sum()
        out.append((float(loss_sum), int(correct), stats.summary() if stats else None))
    return out


def _static_epochs(step, x, bs, orders):
    out = []
    for order in orders:
        step.start_epoch(order)
        n = len(x)
        for b in range(math.ceil(n / bs)):
            step(min(bs, n - b * bs), first=b == 0)
        out.append((float(step.loss_sum), int(step.correct), step.grad_stats.summary() if step.grad_stats else None))
    return out


def _orders(n, epochs, seed=5):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randperm(n, generator=gen) for _ in range(epochs)]


def _assert_rows_close(rows, ref, rel=1e-5):
    assert [r["layer"] for r in rows] == [r["layer"] for r in ref]
    for r, q in zip(rows, ref):
        assert r["batches"] == q["batches"]
        for key in ("grad_mean_norm", "grad_std_norm", "snr", "weight_norm"):
            assert r[key] == pytest.approx(q[key], rel=rel), (r["layer"], key)


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_eager_static_step_is_the_plain_loop_on_a_cpu(kind):
    """3 epochs, batches of 64 over 300 samples (the last one 44 rows): the same parameters
    bit for bit, the same loss sums and hits; gradient statistics (device sums vs the CPU
    kernel with hold=4) to 1e-5 relative."""
    x, y = _data()
    orders = _orders(len(x), 3)
    ref_model = _net()
    ref_opt = _optimizer(kind, ref_model)
    ref_stats = GradientStats(_weights(ref_model), hold=4)
    ref = _plain_epochs(ref_model, ref_opt, x, y, 64, orders, ref_stats)

    model = _net()
    opt = _optimizer(kind, model)
    stats = DeviceGradientStats(_weights(model))
    step = StaticStep(model, torch.nn.CrossEntropyLoss(), opt, x, y, 64, stats)
    got = _static_epochs(step, x, 64, orders)

    for p, q in zip(model.parameters(), ref_model.parameters()):
        assert torch.equal(p, q)
    for (loss, correct, rows), (ref_loss, ref_correct, ref_rows) in zip(got, ref):
        assert loss == ref_loss and correct == ref_correct
        _assert_rows_close(rows, ref_rows)
    assert step.captured == 0 and step.fallback is None


def _weights(model):
    from ibcli.training import layer_weights

    return layer_weights(model)


def test_static_step_without_gradient_statistics_and_one_batch_per_epoch():
    x, y = _data(n=50)
    orders = _orders(50, 2)
    ref_model, model = _net(), _net()
    ref = _plain_epochs(ref_model, _optimizer("adam", ref_model), x, y, 128, orders)
    step = StaticStep(model, torch.nn.CrossEntropyLoss(), _optimizer("adam", model), x, y, 128)
    got = _static_epochs(step, x, 128, orders)
    assert [g[:2] for g in got] == [r[:2] for r in ref]
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), ref_model.parameters()))


def test_graphs_need_cuda():
    x, y = _data()
    model = _net()
    with pytest.raises(ValueError, match="CUDA"):
        StaticStep(model, torch.nn.CrossEntropyLoss(), _optimizer("adam", model), x, y, 64, graphs=True)


def test_trainer_static_step_on_cpu_matches_the_plain_trainer(tmp_path, store_template):
    """The whole Trainer with the GPU's step run eagerly on a CPU (device-side gradient
    statistics, static step) against the plain trainer, on the 12-bit task (28 batches, the
    last one shorter): identical weights, metrics and records, gradient rows to 1e-5."""
    from ibcli import activations as act
    from ibcli.store import Store
    from ibcli.training import TrainConfig, Trainer

    store = Store(seed_store(store_template, tmp_path))
    out = {}
    for static in (False, True):
        cfg = TrainConfig(dataset="ib12", model="ib", probe_split="all", epochs=2, log_epochs="all", lr=3e-3,
                          device="cpu", seed=3, experiment="t")
        trainer = Trainer(cfg, static_step=static)
        assert (trainer.step_fn is not None) == static
        trainer.start(store, store.create_run("t", "train"))
        trainer.train()
        trainer.close()
        manifest = act.load_manifest(trainer.artifacts)
        layers = [act.load_layer(trainer.artifacts, manifest.records[-1], layer["name"]) for layer in manifest.layers]
        out[static] = (trainer, layers)
    (plain, plain_layers), (static, static_layers) = out[False], out[True]
    for p, q in zip(static.model.parameters(), plain.model.parameters()):
        assert torch.equal(p, q)
    keys = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
    assert [[h.get(k) for k in keys] for h in static.state.history] == [[h.get(k) for k in keys] for h in plain.state.history]
    for a, b in zip(static_layers, plain_layers):
        assert (a == b).all()
    assert len(static.gradient_rows) == len(plain.gradient_rows) == 2 * 6
    _assert_rows_close(static.gradient_rows, plain.gradient_rows)


# ------------------------------------------------------------------ CUDA only
@cuda
@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_captured_step_replays_what_the_eager_step_computes(kind):
    """warmup=1: each shape (first, full, last batch) runs eagerly once, is captured, then
    replayed; 3 epochs against the same step run eagerly on the GPU."""
    x, y = _data(device="cuda")
    orders = _orders(len(x), 3)
    results = {}
    for graphs in (False, True):
        model = _net(device="cuda")
        capturable = {"capturable": True} if kind == "adam" else {}
        opt = _optimizer(kind, model, fused=True, **capturable)
        step = StaticStep(model, torch.nn.CrossEntropyLoss(), opt, x, y, 64, DeviceGradientStats(_weights(model)),
                          graphs=graphs, warmup=1)
        results[graphs] = (_static_epochs(step, x, 64, orders), [p.detach().clone() for p in model.parameters()], step)
    (eager, eager_params, _), (replayed, graph_params, step) = results[False], results[True]
    assert step.captured == 3 and step.fallback is None
    for p, q in zip(graph_params, eager_params):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    for (loss, correct, rows), (ref_loss, ref_correct, ref_rows) in zip(replayed, eager):
        assert loss == pytest.approx(ref_loss, rel=1e-5) and correct == ref_correct
        _assert_rows_close(rows, ref_rows, rel=1e-4)


def test_layer_ranges_of_tensors_and_row_chunks():
    """min and max over all rows, NaN or inf kept (the finiteness check), zeros when empty."""
    from ibcli.training import layer_ranges

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(7, 5, generator=gen)
    b = a.clone()
    b[4, 2] = float("nan")
    c = a.clone()
    c[6, 0] = float("-inf")
    got = layer_ranges({"whole": a, "chunks": list(a.split(3)), "nan": list(b.split(2)), "inf": c,
                        "half": a.to(torch.float16), "empty": torch.zeros(0, 4)})
    assert got["whole"] == got["chunks"] == [float(a.min()), float(a.max())]
    assert all(math.isnan(v) for v in got["nan"])
    assert got["inf"][0] == float("-inf") and got["inf"][1] == float(a.max())
    assert got["half"] == [float(a.to(torch.float16).min()), float(a.to(torch.float16).max())]
    assert got["empty"] == [0.0, 0.0]
