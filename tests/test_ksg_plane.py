"""ksg_information_plane against the exact noisy plane (sample propagation, Goldfeld et al. 2019).

Truth: `ibcli.estimators.sp.sp_information_plane`, the Monte Carlo I(X; T+Z) and I(T+Z; Y) on
the exact Gaussian-mixture densities. Data: the 12-bit task's network (ib, 12-10-7-5-4-3-2,
tanh), trained full-batch (Adam, lr 0.01, one torch thread, seed 0) and recorded after 20 and
300 steps, on the whole probe set (all 4096 inputs, N = 4096). Tolerances (the issue's):
within max(0.3 bits, 10 %) for layers of width <= 5 at every s2 in {0.01, 0.1, 1} and width
<= 10 at s2 >= 0.1; everywhere in [0, log2 N]; the kde bounds bracket the truth. These tests
use one set of draws (repeats=1) to stay fast; `benchmarks/ksg_plane_ib12.py` prints the same
table with the defaults (5 repeats) and the MNIST MLP's errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ibcli.datasets.ib12 import load_ib12
from ibcli.estimators import information_plane
from ibcli.estimators.errors import EstimatorInputError
from ibcli.estimators.interface import BASELINE_COLUMNS, FLAG_COLUMN, SD_COLUMNS, SE_COLUMNS
from ibcli.estimators.kde import kde_information_plane
from ibcli.estimators.ksg import KSGPlanePoint, ksg_information_plane, max_width
from ibcli.estimators.sp import sp_information_plane
from ibcli.models import build_model

BIT = math.log(2.0)
S2S = (0.01, 0.1, 1.0)
STEPS = (20, 300)


def ib12_records(steps=STEPS, seed: int = 0) -> tuple[dict, np.ndarray]:
    """{step: {layer: (4096, width) float32}} of the ib net trained full-batch, and the labels."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny net: intra-op threads only cost on a shared CPU
    try:
        torch.manual_seed(seed)
        x, y = load_ib12()
        net = build_model("ib", "tanh", (12,), 2)
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        out = {}
        for step in range(1, max(steps) + 1):
            loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step in steps:
                with torch.no_grad():
                    _, rec = net.forward_with_activations(x)
                out[step] = {k: v.numpy() for k, v in rec.items()}
        return out, y.numpy()
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ib12():
    return ib12_records()


def required(width: int, s2: float) -> bool:
    """Where the issue asks for the tolerance (elsewhere: inside [0, log2 N] only)."""
    return width <= 5 or (width <= 10 and s2 >= 0.1)


def close(est: float, truth: float) -> bool:
    """Within max(0.3 bits, 10 %) (nats in, nats compared)."""
    return abs(est - truth) <= max(0.3 * BIT, 0.1 * abs(truth))


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("layer", ["layer1", "layer2", "layer3", "layer4", "layer5", "output"])
def test_plane_matches_sample_propagation(ib12, step, layer):
    records, y = ib12
    t = records[step][layer]
    n, width = t.shape
    truth = sp_information_plane(t, y, S2S, noise_samples=4)
    points = ksg_information_plane(t, y, S2S, repeats=1, seed=1)
    kde = kde_information_plane(t, y, S2S)
    for tr, p, b in zip(truth, points, kde):
        assert p.noise_var == tr.noise_var == b.noise_var
        assert 0.0 <= p.i_xt <= math.log(n) and 0.0 <= p.i_ty <= p.h_y <= math.log(2)
        if required(width, p.noise_var):
            assert close(p.i_xt, tr.i_xt), (layer, step, p.noise_var, p.i_xt / BIT, tr.i_xt / BIT)
            assert close(p.i_ty, tr.i_ty), (layer, step, p.noise_var, p.i_ty / BIT, tr.i_ty / BIT)
        # the kde bounds bracket the truth (to 4 standard errors of the Monte Carlo truth)
        assert b.i_xt_lower - 4 * tr.i_xt_se <= tr.i_xt <= b.i_xt_upper + 4 * tr.i_xt_se, (layer, step, b, tr)
        assert (p.flag is not None) == (width > max_width(n))


def test_width_rule():
    assert max_width(4096) == 9 and max_width(10_000) == 10 and max_width(60_000) == 12
    assert all(2.5 ** max_width(n) <= n < 2.5 ** (max_width(n) + 1) for n in (10, 100, 4096, 10_000, 60_000))


def test_constant_layer_gives_zero_at_any_width():
    """T constant: T+Z = c + Z carries nothing about X or Y (truth 0). The same estimator on the
    same noise draws cancels the k-NN bias, so I(X; T+Z) is 0 to rounding even for a 200-wide
    layer (the closed form h(Z) would leave tens of bits); I(T+Z; Y) is within 0.05 bits."""
    y = np.arange(1000) % 10
    for width in (3, 200):
        (p,) = ksg_information_plane(np.full((1000, width), 0.7), y, 0.1, repeats=2, seed=3)
        assert abs(p.i_xt_unclipped) < 1e-9, width
        assert abs(p.i_ty_unclipped) < 0.05 * BIT, width
        assert (p.flag is not None) == (width == 200)


def test_separated_inputs_reach_log_n_and_label_entropy():
    """Inputs far apart relative to the noise: T+Z identifies X (I = ln N) and so Y (I = H(Y))."""
    rng = np.random.default_rng(4)
    t = np.arange(512.0)[:, None] * np.array([[1.0, 0.5]])
    y = rng.integers(0, 3, 512)
    (p,) = ksg_information_plane(t, y, 1e-4, repeats=1)
    assert p.i_xt == pytest.approx(math.log(512), abs=0.05)
    assert p.i_xt <= p.ceiling == math.log(512)
    p_y = np.bincount(y) / 512
    assert p.h_y == pytest.approx(-np.sum(p_y * np.log(p_y)), abs=1e-12)
    assert p.i_ty == pytest.approx(p.h_y, abs=0.05)


def test_repeats_spread_baselines_and_columns():
    rng = np.random.default_rng(5)
    t = np.tanh(rng.normal(size=(800, 3)))
    y = (t[:, 0] > 0).astype(int)
    a, b = ksg_information_plane(t, y, (0.05, 0.5), repeats=4, baseline=6, seed=7)
    for p in (a, b):
        assert p.i_xt_sd > 0 and p.i_xt_se == pytest.approx(p.i_xt_sd / 2)
        assert p.i_ty_sd > 0 and p.i_ty_se == pytest.approx(p.i_ty_sd / 2)
        # shuffled labels have truth 0: the baseline sits near it, far below the layer's value
        assert abs(p.i_ty_baseline) < 0.02 and p.i_ty_baseline <= p.i_ty_baseline_q95 < p.i_ty / 3
        assert p.i_xt_baseline is None and p.i_xt_baseline_q95 is None  # 0 by construction
        keys = {c.key for c in SE_COLUMNS + SD_COLUMNS + BASELINE_COLUMNS + (FLAG_COLUMN,)}
        assert set(p.columns()) == keys
    assert a.i_xt > b.i_xt  # more noise, less information
    # same seed, same numbers; the noise draws are shared across noise variances
    (again,) = ksg_information_plane(t, y, 0.5, repeats=4, baseline=6, seed=7)
    assert again == b
    (one,) = ksg_information_plane(t, y, 0.5, repeats=1, seed=7)
    assert one.i_xt_sd is None and one.i_xt_se is None and one.i_xt_baseline is None


def test_adapter_runs_the_plane_function():
    rng = np.random.default_rng(6)
    t = rng.normal(size=(300, 2)).astype(np.float32)
    y = rng.integers(0, 2, 300)
    (p,) = information_plane(t, y, "kraskov", noise_var=(0.2,), repeats=2, seed=3)
    (q,) = ksg_information_plane(t, y, 0.2, repeats=2, seed=3)
    assert (p.i_xt_nats, p.i_ty_nats) == (q.i_xt, q.i_ty)
    assert p.values == {k: v for k, v in q.columns().items() if v is not None}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(noise_vars=0.0), "noise variance must be a finite number > 0"),
        (dict(noise_vars=()), "at least one variance"),
        (dict(k=0), "k must be an integer >= 1"),
        (dict(draws=0), "draws must be an integer >= 1"),
        (dict(repeats=0), "repeats must be an integer >= 1"),
        (dict(baseline=-1), "baseline must be an integer >= 0"),
        (dict(seed=-1), "seed must be an integer >= 0"),
        (dict(norm="l2"), "norm must be one of"),
        (dict(labels=np.zeros(9)), "same number of samples"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(t=np.zeros((10, 2)), labels=np.zeros(10), noise_vars=0.1)
    args.update(kwargs)
    with pytest.raises(EstimatorInputError, match=match):
        ksg_information_plane(args.pop("t"), args.pop("labels"), args.pop("noise_vars"), **args)
