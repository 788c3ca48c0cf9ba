"""GradientStats: mean/std of mini-batch gradients per layer."""

import math

import pytest
import torch

from ibcli.gradient_stats import GradientStats


def _feed(param, grads):
    for g in grads:
        param.grad = torch.tensor(g, dtype=param.dtype)
        yield


def test_hand_computed_sequence():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
    stats = GradientStats({"h1": w})
    for _ in _feed(w, [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]):
        stats.update()
    (row,) = stats.summary()
    assert row["layer"] == "h1" and row["batches"] == 3
    # mean [3, 4] -> norm 5; population std per element sqrt(8/3) -> norm sqrt(16/3)
    assert abs(row["grad_mean_norm"] - 5.0) < 1e-12
    assert abs(row["grad_std_norm"] - math.sqrt(16.0 / 3.0)) < 1e-12
    assert abs(row["snr"] - 5.0 / math.sqrt(16.0 / 3.0)) < 1e-12
    assert abs(row["weight_norm"] - 5.0) < 1e-12


def test_float32_grads_small_integers_exact():
    w = torch.nn.Parameter(torch.zeros(2))
    stats = GradientStats({"h": [w]})
    for _ in _feed(w, [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]):
        stats.update()
    (row,) = stats.summary()
    assert abs(row["grad_mean_norm"] - 5.0) < 1e-12
    assert abs(row["grad_std_norm"] - math.sqrt(16.0 / 3.0)) < 1e-12


def test_list_of_params_is_one_vector():
    w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    b = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    stats = GradientStats({"h": [w, b]})
    for gw, gb in [(1.0, 2.0), (3.0, 4.0), (5.0, 6.0)]:
        w.grad = torch.tensor([gw], dtype=torch.float64)
        b.grad = torch.tensor([gb], dtype=torch.float64)
        stats.update()
    (row,) = stats.summary()
    assert abs(row["grad_mean_norm"] - 5.0) < 1e-12
    assert abs(row["grad_std_norm"] - math.sqrt(16.0 / 3.0)) < 1e-12


def test_reset_and_edge_cases():
    w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    stats = GradientStats({"h": w})
    (row,) = stats.summary()
    assert row["batches"] == 0 and math.isnan(row["grad_mean_norm"]) and math.isnan(row["snr"])
    for _ in _feed(w, [[1.0, 2.0], [3.0, 4.0]]):
        stats.update()
    stats.reset()
    assert stats.batches == 0
    # After reset only the new batches count; one batch -> std 0 -> snr inf.
    w.grad = torch.tensor([6.0, 8.0], dtype=torch.float64)
    stats.update()
    (row,) = stats.summary()
    assert row["batches"] == 1
    assert row["grad_mean_norm"] == 10.0 and row["grad_std_norm"] == 0.0
    assert row["snr"] == math.inf
    # Zero gradient with zero spread -> snr nan.
    stats.reset()
    w.grad = torch.zeros(2, dtype=torch.float64)
    stats.update()
    assert math.isnan(stats.summary()[0]["snr"])


def test_update_before_backward_raises():
    w = torch.nn.Parameter(torch.zeros(2))
    stats = GradientStats({"h": w})
    with pytest.raises(RuntimeError, match="backward"):
        stats.update()


def test_bad_constructor_args():
    with pytest.raises(ValueError):
        GradientStats({})
    with pytest.raises(ValueError):
        GradientStats({"h": []})
    with pytest.raises(TypeError):
        GradientStats({"h": [1.0]})


def test_real_linear_layers_after_backward():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    stats = GradientStats({"h1": [model[0].weight], "out": [model[2].weight, model[2].bias]})
    assert stats.layers == ["h1", "out"]
    x = torch.randn(40, 4)
    y = torch.randint(0, 2, (40,))
    grads = []
    for xb, yb in zip(x.split(8), y.split(8)):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        stats.update()
        grads.append(model[0].weight.grad.detach().double().clone().flatten())
    rows = stats.summary()
    assert [r["layer"] for r in rows] == ["h1", "out"]
    assert all(r["batches"] == 5 for r in rows)
    g = torch.stack(grads)  # (5, 12)
    # float32 gradients accumulate in float32 (shifted): 1e-6 relative.
    assert rows[0]["grad_mean_norm"] == pytest.approx(float(g.mean(0).norm()), rel=1e-6)
    assert rows[0]["grad_std_norm"] == pytest.approx(float(g.std(0, correction=0).norm()), rel=1e-6)
    assert abs(rows[0]["weight_norm"] - float(model[0].weight.detach().double().norm())) < 1e-6
    w_out = torch.cat([model[2].weight.flatten(), model[2].bias]).detach().double()
    assert abs(rows[1]["weight_norm"] - float(w_out.norm())) < 1e-6
    assert all(r["snr"] > 0 for r in rows)


def test_high_snr_float32_matches_float64_two_pass():
    """SNR 1000 over 469 batches (a drift-phase epoch): the shifted float32 sums give
    the std norm to 1e-5 relative; unshifted float32 sums miss by over 1e-3."""
    gen = torch.Generator().manual_seed(0)
    n, batches = 20_000, 469
    mu = torch.randn(n, generator=gen, dtype=torch.float64)
    grads = (mu + 1e-3 * torch.randn(batches, n, generator=gen, dtype=torch.float64)).float()
    w = torch.nn.Parameter(torch.zeros(n))
    stats = GradientStats({"h": w})
    for g in grads:
        w.grad = g.clone()
        stats.update()
    (row,) = stats.summary()
    g64 = grads.double()
    ref_mean = float(g64.mean(0).norm())
    ref_std = float(g64.std(0, correction=0).norm())
    assert 900 < ref_mean / ref_std < 1100
    assert row["grad_mean_norm"] == pytest.approx(ref_mean, rel=1e-6)
    assert row["grad_std_norm"] == pytest.approx(ref_std, rel=1e-5)
    # The case is hard: plain float32 sums of g and ||g||^2 miss by over 100x the tolerance.
    total = torch.zeros(n)
    sq = 0.0
    for g in grads:
        total.add_(g)
        sq += float(torch.dot(g, g))
    naive_var = sq / batches - float((total / batches).double().square().sum())
    naive_std = math.sqrt(max(naive_var, 0.0))
    assert abs(naive_std - ref_std) / ref_std > 1e-3


@pytest.mark.parametrize("fused", [True, False], ids=["numba-kernel", "torch-ops"])
def test_cpu_paths_agree_with_float64_reference(monkeypatch, fused):
    """The fused numba kernel and the torch-ops fallback (no numba) give the same
    statistics, including batches where a parameter has no gradient (counts as zero)."""
    import ibcli.gradient_stats as gs

    if fused:
        assert gs.preload_kernel(), "numba is a dependency: its kernel must load"
    else:
        monkeypatch.setattr(gs, "_FUSED", False)
    gen = torch.Generator().manual_seed(1)
    w = torch.nn.Parameter(torch.zeros(300, 7))
    v = torch.nn.Parameter(torch.zeros(3))  # always has a gradient, so update() accepts the batch
    stats = GradientStats({"h": w, "o": v})
    seen = []
    for b in range(12):
        v.grad = torch.randn(3, generator=gen)
        if b in (3, 8):
            w.grad = None  # did not take part in this loss
            seen.append(torch.zeros(2100, dtype=torch.float64))
        else:
            w.grad = (0.5 + torch.randn(300, 7, generator=gen)).float()
            seen.append(w.grad.double().flatten())
        stats.update()
    row = stats.summary()[0]
    g = torch.stack(seen)
    assert row["batches"] == 12
    assert row["grad_mean_norm"] == pytest.approx(float(g.mean(0).norm()), rel=1e-6)
    assert row["grad_std_norm"] == pytest.approx(float(g.std(0, correction=0).norm()), rel=1e-6)


def test_hold4_matches_float64_reference_with_leftovers():
    """hold=4 in a real Adam loop (zero_grad(set_to_none=True)): 10 batches = the shift,
    two groups of four and one left for summary() to add."""
    import ibcli.gradient_stats as gs

    assert gs.preload_kernel(), "numba is a dependency: its kernel must load"
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(30, 40), torch.nn.Tanh(), torch.nn.Linear(40, 3))
    stats = GradientStats({"h": model[0].weight}, hold=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    seen = []
    for _ in range(10):
        x, y = torch.randn(16, 30), torch.randint(0, 3, (16,))
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        stats.update()
        seen.append(model[0].weight.grad.detach().double().flatten().clone())
        opt.step()
    (row,) = stats.summary()
    g = torch.stack(seen)
    assert row["batches"] == 10
    assert row["grad_mean_norm"] == pytest.approx(float(g.mean(0).norm()), rel=1e-6)
    assert row["grad_std_norm"] == pytest.approx(float(g.std(0, correction=0).norm()), rel=1e-6)


@pytest.mark.parametrize(
    "write, message",
    [("zero_grad(set_to_none=False)", "in place"), ("clip after update()", "written in place")],
)
def test_hold4_refuses_gradients_written_in_place(write, message):
    """A held gradient changed after update() (the same .grad tensor zeroed and reused,
    or clipped) is refused, not miscounted."""
    import ibcli.gradient_stats as gs

    assert gs.preload_kernel(), "numba is a dependency: its kernel must load"
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 2)
    stats = GradientStats({"h": model.weight}, hold=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    reuse = write.startswith("zero_grad")
    with pytest.raises(RuntimeError, match=message):
        for _ in range(6):
            opt.zero_grad(set_to_none=not reuse)
            (100 * model(torch.randn(4, 8))).sum().backward()
            stats.update()
            if not reuse:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
            opt.step()
        stats.summary()


def test_hold_must_be_1_or_4():
    with pytest.raises(ValueError, match="hold"):
        GradientStats({"h": torch.nn.Parameter(torch.zeros(2))}, hold=3)


@pytest.mark.parametrize("fused", [True, False])  # the trainer's default, and --eager
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_trainer_optimizers_leave_grads_alone(optimizer, weight_decay, fused):
    """The trainer's hold=4 relies on its optimizers never writing into .grad."""
    from types import SimpleNamespace

    from ibcli.training import make_optimizer

    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    cfg = SimpleNamespace(optimizer=optimizer, lr=0.1, momentum=0.9, weight_decay=weight_decay)
    opt = make_optimizer(cfg, model, fused=fused)
    for _ in range(3):  # momentum buffers exist from the second step on
        opt.zero_grad(set_to_none=True)
        model(torch.randn(5, 6)).square().sum().backward()
        before = [p.grad.clone() for p in model.parameters()]
        opt.step()
        assert all(torch.equal(b, p.grad) for b, p in zip(before, model.parameters()))


def test_hold4_empty_parameter_and_size_change():
    empty = torch.nn.Parameter(torch.zeros(0))
    w = torch.nn.Parameter(torch.zeros(3))
    stats = GradientStats({"e": empty, "w": w}, hold=4)
    for b in range(6):
        empty.grad = torch.zeros(0)
        w.grad = torch.full((3,), float(b))
        stats.update()
    rows = stats.summary()
    assert rows[0]["grad_mean_norm"] == 0.0 and rows[0]["batches"] == 6
    assert rows[1]["grad_mean_norm"] == pytest.approx(2.5 * math.sqrt(3))
    w.data = torch.zeros(5)  # the parameter replaced mid-epoch
    w.grad = torch.zeros(5)
    with pytest.raises(RuntimeError, match="changed size"):
        stats.update()


def test_torch_ops_path_squares_in_float64(monkeypatch):
    """Huge float32 gradients: ||d||^2 overflows float32 (3.4e38) but not float64."""
    import ibcli.gradient_stats as gs

    monkeypatch.setattr(gs, "_FUSED", False)
    w = torch.nn.Parameter(torch.zeros(4))
    stats = GradientStats({"h": w})
    for v in (1e19, -1e19, 3e19):
        w.grad = torch.full((4,), v)
        stats.update()
    (row,) = stats.summary()
    expected = float(torch.tensor([1e19, -1e19, 3e19], dtype=torch.float64).std(correction=0)) * 2
    assert row["grad_std_norm"] == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------ DeviceGradientStats
def test_device_stats_hand_computed_sequence():
    from ibcli.gradient_stats import DeviceGradientStats

    w = torch.nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
    stats = DeviceGradientStats({"h1": w})
    for _ in _feed(w, [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]):
        stats.update()
    (row,) = stats.summary()
    assert row["layer"] == "h1" and row["batches"] == 3 == stats.batches
    assert abs(row["grad_mean_norm"] - 5.0) < 1e-12
    assert abs(row["grad_std_norm"] - math.sqrt(16.0 / 3.0)) < 1e-12
    assert abs(row["snr"] - 5.0 / math.sqrt(16.0 / 3.0)) < 1e-12
    assert abs(row["weight_norm"] - 5.0) < 1e-12


def test_device_stats_edge_cases_like_gradient_stats():
    """No batch: nan; one batch: std 0, snr inf; zero gradients: snr nan; a list is one vector."""
    from ibcli.gradient_stats import DeviceGradientStats

    w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    b = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    stats = DeviceGradientStats({"h": [w, b]})
    (row,) = stats.summary()
    assert row["batches"] == 0 and math.isnan(row["grad_mean_norm"]) and math.isnan(row["snr"])
    for gw, gb in [(1.0, 2.0), (3.0, 4.0), (5.0, 6.0)]:
        w.grad, b.grad = torch.tensor([gw], dtype=torch.float64), torch.tensor([gb], dtype=torch.float64)
        stats.update()
    (row,) = stats.summary()
    assert abs(row["grad_mean_norm"] - 5.0) < 1e-12 and abs(row["grad_std_norm"] - math.sqrt(16.0 / 3.0)) < 1e-12
    stats.reset()
    w.grad, b.grad = torch.tensor([6.0], dtype=torch.float64), torch.tensor([8.0], dtype=torch.float64)
    stats.update()
    (row,) = stats.summary()
    assert row["batches"] == 1 and row["grad_mean_norm"] == 10.0 and row["grad_std_norm"] == 0.0 and row["snr"] == math.inf
    stats.reset()
    w.grad, b.grad = torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    stats.update()
    assert math.isnan(stats.summary()[0]["snr"])


def test_device_stats_high_snr_float32_matches_float64_two_pass():
    """The case of test_high_snr_float32_matches_float64_two_pass: SNR 1000, 469 batches."""
    from ibcli.gradient_stats import DeviceGradientStats

    gen = torch.Generator().manual_seed(0)
    n, batches = 20_000, 469
    mu = torch.randn(n, generator=gen, dtype=torch.float64)
    grads = (mu + 1e-3 * torch.randn(batches, n, generator=gen, dtype=torch.float64)).float()
    w = torch.nn.Parameter(torch.zeros(n))
    stats = DeviceGradientStats({"h": w})
    w.grad = torch.zeros(n)
    for g in grads:
        w.grad.copy_(g)  # the same .grad tensor, written in place (as the static step does)
        stats.update()
    (row,) = stats.summary()
    g64 = grads.double()
    assert row["grad_mean_norm"] == pytest.approx(float(g64.mean(0).norm()), rel=1e-6)
    assert row["grad_std_norm"] == pytest.approx(float(g64.std(0, correction=0).norm()), rel=1e-5)


def test_device_stats_agree_with_gradient_stats_in_an_adam_loop():
    """Two epochs of a real loop, the explicit first= of a captured step, against the CPU
    class (numba kernel, hold=4) and a float64 reference: 1e-6 relative."""
    import ibcli.gradient_stats as gs

    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(30, 40), torch.nn.Tanh(), torch.nn.Linear(40, 3))
    layers = {"h": model[0].weight, "out": [model[2].weight, model[2].bias]}
    device_stats, cpu_stats = gs.DeviceGradientStats(layers), gs.GradientStats(layers, hold=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(2):
        device_stats.reset()
        cpu_stats.reset()
        seen = []
        for b in range(10):
            x, y = torch.randn(16, 30), torch.randint(0, 3, (16,))
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            device_stats.update(first=b == 0)
            cpu_stats.update()
            seen.append(model[0].weight.grad.detach().double().flatten().clone())
            opt.step()
        rows, ref = device_stats.summary(), cpu_stats.summary()
        g = torch.stack(seen)
        assert rows[0]["grad_mean_norm"] == pytest.approx(float(g.mean(0).norm()), rel=1e-6)
        assert rows[0]["grad_std_norm"] == pytest.approx(float(g.std(0, correction=0).norm()), rel=1e-6)
        for r, q in zip(rows, ref):
            assert r["layer"] == q["layer"] and r["batches"] == q["batches"] == 10
            for key in ("grad_mean_norm", "grad_std_norm", "snr", "weight_norm"):
                assert r[key] == pytest.approx(q[key], rel=1e-6), (r["layer"], key)


def test_device_stats_reset_keeps_the_tensors():
    """A captured graph holds the sums' addresses: reset() must zero them in place."""
    from ibcli.gradient_stats import DeviceGradientStats

    w = torch.nn.Parameter(torch.zeros(5))
    stats = DeviceGradientStats({"h": w})
    buffers = [t.data_ptr() for t in (*stats._shifts, *stats._totals, stats._sq, stats._count)]
    for v in (1.0, 2.0, 4.0):
        w.grad = torch.full((5,), v)
        stats.update()
    stats.reset()
    assert stats.batches == 0
    assert [t.data_ptr() for t in (*stats._shifts, *stats._totals, stats._sq, stats._count)] == buffers
    assert float(stats._sq.sum()) == 0.0 and all(float(t.abs().sum()) == 0.0 for t in stats._totals)


def test_device_stats_errors():
    from ibcli.gradient_stats import DeviceGradientStats

    with pytest.raises(ValueError):
        DeviceGradientStats({})
    with pytest.raises(TypeError):
        DeviceGradientStats({"h": [1.0]})
    with pytest.raises(ValueError, match="one device"):
        DeviceGradientStats({"a": torch.zeros(2), "b": torch.zeros(2, device="meta")})
    w = torch.nn.Parameter(torch.zeros(3))
    stats = DeviceGradientStats({"h": w})
    with pytest.raises(RuntimeError, match="backward"):
        stats.update()
    w.grad = torch.zeros(3)
    stats.update()
    w.data = torch.zeros(4)  # the parameter replaced mid-epoch
    w.grad = torch.zeros(4)
    with pytest.raises(RuntimeError, match="changed size"):
        stats.update()


def test_device_stats_square_in_float64():
    """||d||^2 of 1e19 gradients overflows float32 but not the float64 norms."""
    from ibcli.gradient_stats import DeviceGradientStats

    w = torch.nn.Parameter(torch.zeros(4))
    stats = DeviceGradientStats({"h": w})
    for v in (1e19, -1e19, 3e19):
        w.grad = torch.full((4,), v)
        stats.update()
    (row,) = stats.summary()
    expected = float(torch.tensor([1e19, -1e19, 3e19], dtype=torch.float64).std(correction=0)) * 2
    assert row["grad_std_norm"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_stats_update_captured_in_cuda_graphs():
    """update(first=True) and update(first=False) captured as two graphs, replayed over
    an epoch of gradients written into the same .grad: the eager result to 1e-6."""
    from ibcli.gradient_stats import DeviceGradientStats

    gen = torch.Generator().manual_seed(2)
    grads = (0.3 + torch.randn(12, 50, 7, generator=gen)).cuda()
    w = torch.nn.Parameter(torch.zeros(50, 7, device="cuda"))
    w.grad = torch.zeros_like(w)
    eager = DeviceGradientStats({"h": w})
    for g in grads:
        w.grad.copy_(g)
        eager.update()
    expected = eager.summary()

    stats = DeviceGradientStats({"h": w})
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up, as the notes on CUDA graphs ask
        stats.update(first=True)
        stats.update(first=False)
    torch.cuda.current_stream().wait_stream(side)
    graphs = {}
    for first in (True, False):
        graphs[first] = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graphs[first]):
            stats.update(first=first)
    stats.reset()
    for b, g in enumerate(grads):
        w.grad.copy_(g)
        graphs[b == 0].replay()
    (row,) = stats.summary()
    assert row["batches"] == 12
    for key in ("grad_mean_norm", "grad_std_norm", "weight_norm"):
        assert row[key] == pytest.approx(expected[0][key], rel=1e-6)


def test_device_stats_empty_parameter():
    """An empty parameter beside a real one: zero statistics for it, the right ones for the other."""
    from ibcli.gradient_stats import DeviceGradientStats

    empty, w = torch.nn.Parameter(torch.zeros(0)), torch.nn.Parameter(torch.zeros(3))
    stats = DeviceGradientStats({"e": empty, "w": w})
    for b in range(6):
        empty.grad, w.grad = torch.zeros(0), torch.full((3,), float(b))
        stats.update()
    rows = stats.summary()
    assert rows[0]["grad_mean_norm"] == 0.0 and rows[0]["grad_std_norm"] == 0.0 and rows[0]["batches"] == 6
    assert rows[1]["grad_mean_norm"] == pytest.approx(2.5 * math.sqrt(3))
    assert rows[1]["grad_std_norm"] == pytest.approx(math.sqrt(35 / 12 * 3))
