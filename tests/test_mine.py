"""mine_mi against closed-form MI, in nats.

Truths: a bivariate Gaussian with correlation rho has I = -1/2 ln(1 - rho^2); a Student-t
pair with identity dispersion and nu degrees of freedom (X of dim m, Y of dim n) has
I = lnG(nu/2) - lnG((nu+m)/2) - lnG((nu+n)/2) + lnG((nu+m+n)/2) + g(m) + g(n) - g(m+n),
g(k) = (nu+k)/2 (psi((nu+k)/2) - psi(nu/2)) (from the multivariate-t entropy; Czyz et al.
2023 give the same). Tolerance for the held-out estimate: max(10% of I, 0.03 nats) on
Gaussians; 0.1 nats on the heavy-tailed Student-t. Fixed seeds; each full-size call
(n = 5000, default steps) takes a few seconds on a 2-core CPU.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ibcli.estimators.errors import EstimatorInputError
from ibcli.estimators.mine import (
    DEFAULTS, MineResult, is_settled, marginal_transform, mine_mi, mine_mi_with_info, settle_gap,
)


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


def test_seeded_repeatable_and_invariant_to_monotone_maps():
    x, y = pair_1d(0.5, 2000, seed=13)
    kw = dict(steps=60, batch_size=256)
    a = mine_mi(x, y, seed=3, **kw)
    assert mine_mi(x, y, seed=3, **kw) == a  # same seed, same device: same number
    assert mine_mi(x, y, seed=4, **kw) != a
    # the rank transform sees only ranks: any increasing map of a coordinate (MI-invariant)
    # gives the very same number
    assert mine_mi(np.exp(3.0 * x), np.arcsinh(1000.0 * y) - 7.0, seed=3, **kw) == a
    # z-scoring: affine rescaling changes the estimate only through float rounding
    b = mine_mi(x, y, seed=3, transform="zscore", **kw)
    assert abs(mine_mi(1000.0 * x + 5.0, 0.001 * y, seed=3, transform="zscore", **kw) - b) < 1e-3


def student_t_mi(df: float, m: int, n: int) -> float:
    from scipy.special import digamma, gammaln

    def g(k):
        return (df + k) / 2 * (digamma((df + k) / 2) - digamma(df / 2))

    return float(gammaln(df / 2) - gammaln((df + m) / 2) - gammaln((df + n) / 2) + gammaln((df + m + n) / 2)
                 + g(m) + g(n) - g(m + n))


def test_student_t_formula_matches_known_values():
    # Czyz et al. 2023's benchmark values for Student-t 1x1 (dof 1) and 2x2 (dof 1, 2)
    assert student_t_mi(1, 1, 1) == pytest.approx(0.224171, abs=1e-6)
    assert student_t_mi(1, 2, 2) == pytest.approx(0.431946, abs=1e-6)
    assert student_t_mi(2, 2, 2) == pytest.approx(math.log(2) - 0.5, abs=1e-9)


def test_heavy_tailed_student_t_does_not_blow_up():
    """Student-t 2x2, one degree of freedom (Cauchy tails): z-scored MINE returned -82 nats
    on such samples; the rank transform keeps it near the truth 0.432."""
    from scipy.stats import multivariate_t

    xy = multivariate_t(loc=np.zeros(4), shape=np.eye(4), df=1, seed=21).rvs(size=5000)
    est = mine_mi(xy[:, :2], xy[:, 2:])
    truth = student_t_mi(1, 2, 2)
    assert abs(est - truth) <= 0.1, (est, truth)


def test_marginal_transforms():
    rng = np.random.default_rng(22)
    a = np.c_[rng.standard_cauchy(1001), np.repeat([0.0, 1.0], [500, 501])]
    r = marginal_transform(a, "rank")
    # rank-Gaussian: the values are the normal quantiles of (rank - 1/2) / n, ties share one
    from scipy.special import ndtri

    np.testing.assert_allclose(np.sort(r[:, 0]), ndtri((np.arange(1, 1002) - 0.5) / 1001), rtol=1e-6)
    assert len(np.unique(r[:, 1])) == 2 and np.all(np.argsort(r[:, 0], kind="stable") == np.argsort(a[:, 0], kind="stable"))
    for kind in ("asinh", "zscore"):
        z = marginal_transform(a, kind)
        np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-5)
    assert np.abs(marginal_transform(a, "asinh")[:, 0]).max() < 10  # Cauchy tails compressed
    with pytest.raises(EstimatorInputError, match="transform"):
        marginal_transform(a, "log")


def test_settle_rule():
    # checkpoints at 85, 90 (the preceding 10 %) and 95, 100 % (the last 10 %) of 100 steps
    assert settle_gap([(85, 1.0), (90, 1.2), (95, 1.3), (100, 1.5)], 100) == pytest.approx((1.4, 1.1))
    assert not is_settled(1.4, 1.1)  # moved 0.3 > max(0.05, 0.07)
    assert is_settled(1.4, 1.36)  # 0.04 <= 0.07 (5 %)
    assert is_settled(0.2, 0.16)  # 0.04 <= 0.05 nats
    assert not is_settled(0.2, 0.14)
    assert not is_settled(math.nan, 1.0)
    x, y = pair_1d(1.0, 2000, seed=23)
    info = mine_mi_with_info(x, y, steps=200, batch_size=256, train_estimate=False)
    assert [s for s, _ in info.heldout_curve] == [170, 180, 190, 200]
    assert info.settled
    # a slow learning rate on I = 2 nats: still climbing (about 0.8 nats) at the end
    x, y = pair_1d(2.0, 2000, seed=23)
    slow = mine_mi_with_info(x, y, steps=100, lr=3e-4, batch_size=256, train_estimate=False)
    assert not slow.settled and slow.estimate_nats < 1.5, slow.heldout_curve


def test_with_info_matches_and_describes_the_run():
    x, y = pair_1d(1.0, 1000, seed=14)
    info = mine_mi_with_info(x, y, steps=100, batch_size=128, seed=1, curve_every=25)
    assert isinstance(info, MineResult)
    assert info.estimate_nats == mine_mi(x, y, steps=100, batch_size=128, seed=1)
    assert info.steps == 100 and info.seconds > 0
    assert [s for s, _ in info.train_curve] == [25, 50, 75, 100]
    assert info.n_train + info.n_holdout == 1000
    assert info.n_marginal_pairs >= info.n_holdout
    assert set(DEFAULTS) == {"hidden", "lr", "steps", "batch_size", "ema_decay", "holdout_fraction", "transform"}


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
        (dict(x=np.zeros(10), y=np.zeros(10), transform="log"), "transform"),
    ],
)
def test_bad_input_one_line_errors(kwargs, match):
    x, y = kwargs.pop("x"), kwargs.pop("y")
    with pytest.raises(EstimatorInputError, match=match) as info:
        mine_mi(x, y, **kwargs)
    assert "\n" not in str(info.value)
