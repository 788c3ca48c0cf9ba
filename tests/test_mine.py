"""MINE against closed-form Gaussian MI, in nats.

Truth: a bivariate Gaussian with correlation rho has I = -1/2 ln(1 - rho^2).
Tolerance for the held-out estimate: max(10% of I, 0.03 nats). Fixed seeds; each
full-size call (n = 5000, default steps) takes a few seconds on a 2-core CPU.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ibcli.estimators.errors import EstimatorInputError
from ibcli.estimators.mine import DEFAULTS, MineResult, mine_mi, mine_mi_with_info


def pair_1d(mi_nats: float, n: int, seed: int):
    rho = math.sqrt(1.0 - math.exp(-2.0 * mi_nats))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    y = rho * x + math.sqrt(1.0 - rho**2) * rng.standard_normal(n)
    return x, y


@pytest.mark.parametrize("mi_true", [0.5, 1.0, 2.0])
def test_gaussian_1d_within_10_percent(mi_true):
    x, y = pair_1d(mi_true, 5000, seed=10)
    est = mine_mi(x, y)  # the defaults
    assert abs(est - mi_true) <= max(0.1 * mi_true, 0.03), (est, mi_true)


def test_independent_is_near_zero():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(4000, 2))
    y = rng.normal(size=(4000, 1))
    est = mine_mi(x, y, steps=200)
    assert abs(est) < 0.05, est


def test_reports_heldout_not_training_value():
    """On 200 independent pairs the network memorises its training half: the DV
    bound on the training split is far above 0 (the truth), the reported held-out
    value is not."""
    rng = np.random.default_rng(12)
    x = rng.normal(size=(200, 2))
    y = rng.normal(size=(200, 2))
    info = mine_mi_with_info(x, y, steps=300, batch_size=100, lr=1e-2, seed=0)
    assert info.train_estimate_nats > 0.3, info
    assert info.estimate_nats < 0.1, info
    assert info.n_train == 100 and info.n_holdout == 100


def test_seeded_repeatable_and_scale_free():
    x, y = pair_1d(0.5, 2000, seed=13)
    kw = dict(steps=60, batch_size=256)
    a = mine_mi(x, y, seed=3, **kw)
    assert mine_mi(x, y, seed=3, **kw) == a  # same seed, same device: same number
    assert mine_mi(x, y, seed=4, **kw) != a
    # inputs are z-scored with training-split statistics: affine rescaling changes
    # the estimate only through float rounding
    assert abs(mine_mi(1000.0 * x + 5.0, 0.001 * y, seed=3, **kw) - a) < 1e-3


def test_with_info_matches_and_describes_the_run():
    x, y = pair_1d(1.0, 1000, seed=14)
    info = mine_mi_with_info(x, y, steps=100, batch_size=128, seed=1, curve_every=25)
    assert isinstance(info, MineResult)
    assert info.estimate_nats == mine_mi(x, y, steps=100, batch_size=128, seed=1)
    assert info.steps == 100 and info.seconds > 0
    assert [s for s, _ in info.train_curve] == [25, 50, 75, 100]
    assert info.n_train + info.n_holdout == 1000
    assert info.n_marginal_pairs >= info.n_holdout
    assert set(DEFAULTS) == {"hidden", "lr", "steps", "batch_size", "ema_decay", "holdout_fraction"}


def test_torch_thread_setting_is_restored():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    x, y = pair_1d(0.5, 200, seed=15)
    mine_mi(x, y, steps=5, batch_size=32)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x=np.zeros(10), y=np.zeros(9)), "same number of samples"),
        (dict(x=np.zeros((10, 2, 2)), y=np.zeros(10)), "1-d .* or 2-d"),
        (dict(x=np.r_[np.nan, np.zeros(9)], y=np.zeros(10)), "finite"),
        (dict(x=np.zeros((10, 0)), y=np.zeros(10)), "at least one column"),
        (dict(x=np.zeros(3), y=np.zeros(3)), "at least 2 training and 2 held-out"),
        (dict(x=np.zeros(10), y=np.zeros(10), holdout_fraction=1.0), "holdout_fraction"),
        (dict(x=np.zeros(10), y=np.zeros(10), steps=0), "steps"),
        (dict(x=np.zeros(10), y=np.zeros(10), batch_size=1), "batch_size"),
        (dict(x=np.zeros(10), y=np.zeros(10), hidden=0), "hidden"),
        (dict(x=np.zeros(10), y=np.zeros(10), lr=-1.0), "lr"),
        (dict(x=np.zeros(10), y=np.zeros(10), ema_decay=0.0), "ema_decay"),
        (dict(x=np.zeros(10), y=np.zeros(10), device="nonsense"), "device"),
    ],
)
def test_bad_input_one_line_errors(kwargs, match):
    x, y = kwargs.pop("x"), kwargs.pop("y")
    with pytest.raises(EstimatorInputError, match=match) as info:
        mine_mi(x, y, **kwargs)
    assert "\n" not in str(info.value)
