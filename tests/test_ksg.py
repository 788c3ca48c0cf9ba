"""KSG / Kozachenko-Leonenko / Ross estimators against closed forms and Monte Carlo truths.

Every estimate is in nats. Truths:
- Gaussian pairs: I = 1/2 ln(det Sxx det Syy / det S), S the joint covariance.
- Gaussian entropy: H = 1/2 ln((2 pi e)^d det S).
- Class-conditional Gaussian mixtures: I = ln 4 + E[ln p(y|x)] by Monte Carlo on
  the exact densities (standard error stated in the test).
Fixed seeds everywhere; the whole file runs in a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ibcli.estimators import ksg
from ibcli.estimators.errors import EstimatorInputError
from ibcli.estimators.ksg import ksg_entropy, ksg_mi, ksg_mixed_mi


# ---------------------------------------------------------------------------
# helpers: distributions with known MI
# ---------------------------------------------------------------------------

def gaussian_mi(cov: np.ndarray, dx: int) -> float:
    """I(X;Y) in nats of a joint Gaussian with covariance cov, X the first dx coords."""
    _, ld = np.linalg.slogdet(cov)
    _, ldx = np.linalg.slogdet(cov[:dx, :dx])
    _, ldy = np.linalg.slogdet(cov[dx:, dx:])
    return 0.5 * (ldx + ldy - ld)


def sample_gaussian(cov: np.ndarray, dx: int, n: int, seed: int):
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal(np.zeros(len(cov)), cov, size=n)
    return z[:, :dx], z[:, dx:]


def rho_for(mi_nats: float) -> float:
    """Correlation of a bivariate Gaussian with I = -1/2 ln(1 - rho^2)."""
    return math.sqrt(1.0 - math.exp(-2.0 * mi_nats))


def pair_1d(mi_nats: float, n: int, seed: int):
    r = rho_for(mi_nats)
    return sample_gaussian(np.array([[1.0, r], [r, 1.0]]), 1, n, seed)


def cov_2x2() -> np.ndarray:
    """A 4x4 joint covariance for dx = dy = 2 with correlations within and across."""
    a = np.array([
        [1.0, 0.3, 0.0, 0.0],
        [0.4, 1.0, 0.0, 0.0],
        [0.8, 0.2, 0.6, 0.0],
        [-0.3, 0.7, 0.1, 0.5],
    ])
    return a @ a.T


def cov_5x5() -> np.ndarray:
    """dx = dy = 5: x ~ N(0, 0.85 I + 0.15 J), y = 0.7 x + N(0, I); I is about 1 nat."""
    d = 5
    sxx = 0.85 * np.eye(d) + 0.15 * np.ones((d, d))
    c = np.zeros((2 * d, 2 * d))
    c[:d, :d] = sxx
    c[:d, d:] = 0.7 * sxx
    c[d:, :d] = 0.7 * sxx
    c[d:, d:] = 0.49 * sxx + np.eye(d)
    return c


# ---------------------------------------------------------------------------
# Gaussian pairs
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mi_true", [0.1, 0.5, 1.0, 2.0])
def test_gaussian_1d_within_003(mi_true):
    x, y = pair_1d(mi_true, 5000, seed=11)
    est = ksg_mi(x, y, k=3)
    assert abs(est - mi_true) < 0.03, (est, mi_true)


def test_gaussian_2d_cross_correlated_within_008():
    cov = cov_2x2()
    truth = gaussian_mi(cov, 2)
    assert 0.5 < truth < 1.5  # a non-trivial case
    x, y = sample_gaussian(cov, 2, 5000, seed=12)
    est = ksg_mi(x, y, k=3)
    assert abs(est - truth) < 0.08, (est, truth)


def test_gaussian_5d_bias_is_downward_and_bounded():
    """KSG's known downward bias grows with dimension: at dx = dy = 5, n = 10 000 the
    estimate must lie in [truth - 0.4, truth + 0.05]."""
    cov = cov_5x5()
    truth = gaussian_mi(cov, 5)
    x, y = sample_gaussian(cov, 5, 10_000, seed=13)
    est = ksg_mi(x, y, k=3)
    assert truth - 0.4 <= est <= truth + 0.05, (est, truth)


def test_invariant_under_monotone_maps():
    """I is invariant under invertible maps of each coordinate; the estimate moves < 0.05."""
    x, y = pair_1d(1.0, 5000, seed=14)
    base = ksg_mi(x, y, k=3)
    xm = x + 0.3 * x**3
    ym = np.tanh(0.5 * y) + 0.1 * y  # a saturating but strictly increasing map
    mapped = ksg_mi(xm, ym, k=3)
    assert abs(mapped - base) < 0.05, (mapped, base)
    assert abs(mapped - 1.0) < 0.05
    x2, y2 = sample_gaussian(cov_2x2(), 2, 5000, seed=15)
    base2 = ksg_mi(x2, y2, k=3)
    mapped2 = ksg_mi(x2 + 0.1 * x2**3, np.tanh(0.3 * y2) + 0.3 * y2, k=3)
    assert abs(mapped2 - base2) < 0.05, (mapped2, base2)


def test_standardize_removes_scale_dependence():
    """The max-norm mixes coordinates, so in 2-d the raw estimate depends on their
    relative scales: exp(0.5 x) moves it by ~0.08 nats. With standardize=True an
    affine map changes nothing (up to rounding) and exp(0.5 x) moves it < 0.05."""
    x2, y2 = sample_gaussian(cov_2x2(), 2, 5000, seed=15)
    base = ksg_mi(x2, y2, k=3, standardize=True)
    affine = ksg_mi(3.0 * x2 + 1.0, 0.1 * y2 * np.array([1.0, 20.0]) - 4.0, k=3, standardize=True)
    assert abs(affine - base) < 1e-3, (affine, base)
    mapped = ksg_mi(np.exp(0.5 * x2), y2 + 0.2 * np.sinh(y2), k=3, standardize=True)
    assert abs(mapped - base) < 0.05, (mapped, base)
    assert abs(base - gaussian_mi(cov_2x2(), 2)) < 0.08


def test_independent_is_near_zero_and_float32_accepted():
    rng = np.random.default_rng(16)
    x = rng.normal(size=(3000, 2)).astype(np.float32)
    y = rng.normal(size=(3000, 1)).astype(np.float32)
    est = ksg_mi(x, y)
    assert abs(est) < 0.03
    # float32 is used exactly (converted to float64, never re-rounded)
    assert est == ksg_mi(x.astype(np.float64), y.astype(np.float64))


def test_1d_inputs_become_columns():
    x, y = pair_1d(0.5, 1000, seed=17)
    assert ksg_mi(x[:, 0], y[:, 0]) == ksg_mi(x, y)


# ---------------------------------------------------------------------------
# Ross (2014) mixed continuous / discrete
# ---------------------------------------------------------------------------

MEANS = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])


def mixture_truth(scale: float, sigma: float, n_mc: int = 400_000, seed: int = 99):
    """I(X;Y) for Y uniform on 4 classes, X | Y=c ~ N(scale * mu_c, sigma^2 I_2):
    ln 4 + E[ln p(y|x)], Monte Carlo on the exact densities; returns (mean, stderr)."""
    rng = np.random.default_rng(seed)
    mu = scale * MEANS
    y = rng.integers(0, 4, size=n_mc)
    x = mu[y] + sigma * rng.standard_normal((n_mc, 2))
    logp = -((x[:, None, :] - mu[None, :, :]) ** 2).sum(-1) / (2 * sigma**2)  # (n, 4), constants cancel
    lse = np.logaddexp.reduce(logp, axis=1)
    vals = logp[np.arange(n_mc), y] - lse
    return math.log(4) + vals.mean(), vals.std() / math.sqrt(n_mc)


def mixture_sample(scale: float, sigma: float, n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, size=n)
    x = scale * MEANS[y] + sigma * rng.standard_normal((n, 2))
    return x, y


@pytest.mark.parametrize("scale", [4.0, 1.0], ids=["separated", "overlapping"])
def test_mixed_mi_gaussian_mixture_within_005(scale):
    truth, se = mixture_truth(scale, 1.0)
    assert se < 0.003
    x, y = mixture_sample(scale, 1.0, 5000, seed=21)
    est = ksg_mixed_mi(x, y, k=3)
    assert abs(est - truth) < 0.05, (est, truth)


def test_mixed_mi_matches_sklearn_on_1d():
    """1-d x: the same estimator as scikit-learn's mutual_info_classif (Ross 2014).
    Against sklearn's internal _compute_mi_cd (no noise, no scaling) to 1e-10; against
    the public mutual_info_classif (which scales x and adds 1e-10-relative noise) to 1e-6."""
    sk = pytest.importorskip("sklearn.feature_selection")
    rng = np.random.default_rng(22)
    y = rng.integers(0, 3, size=2000)
    x = y * 0.8 + rng.standard_normal(2000)
    ours = ksg_mixed_mi(x, y, k=3)
    assert ours > 0.1
    pub = sk.mutual_info_classif(x[:, None], y, discrete_features=False, n_neighbors=3, random_state=0)[0]
    assert abs(ours - pub) < 1e-6, (ours, pub)
    try:
        from sklearn.feature_selection._mutual_info import _compute_mi_cd
    except ImportError:  # private: may move
        return
    assert abs(ours - _compute_mi_cd(x, y, 3)) < 1e-10


def test_mixed_mi_small_classes_and_singletons():
    """k is clipped to class size - 1; a one-sample class is dropped, not an error."""
    rng = np.random.default_rng(23)
    x = rng.normal(size=(300, 2))
    y = np.r_[np.zeros(200, int), np.ones(97, int), [2, 2, 3]]  # class 2: 2 samples, class 3: 1
    x[y == 1] += 2.0
    est = ksg_mixed_mi(x, y, k=5)
    assert np.isfinite(est)
    assert 0.3 < est < math.log(2) + 0.1
    # string labels work the same as ints
    assert ksg_mixed_mi(x, y.astype(str), k=5) == est


# ---------------------------------------------------------------------------
# Kozachenko-Leonenko entropy
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("d", [1, 3])
def test_entropy_gaussian_within_005(d):
    rng = np.random.default_rng(31)
    a = rng.normal(size=(d, d)) * 0.5 + np.eye(d)
    cov = a @ a.T
    x = rng.multivariate_normal(np.zeros(d), cov, size=5000)
    truth = 0.5 * (d * math.log(2 * math.pi * math.e) + np.linalg.slogdet(cov)[1])
    est = ksg_entropy(x, k=3)
    assert abs(est - truth) < 0.05, (est, truth)


def test_entropy_rejects_repeated_points():
    x = np.repeat(np.arange(10.0), 5)[:, None]
    with pytest.raises(EstimatorInputError, match="repeated points"):
        ksg_entropy(x, k=3)


# ---------------------------------------------------------------------------
# ties, paths, reference implementations
# ---------------------------------------------------------------------------

def relu_tied_data(n: int, seed: int):
    """Like ReLU layers: most entries exactly 0, values on a coarse grid (many
    duplicate points and equal distances)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = np.maximum(0.0, x[:, :2] @ np.array([[1.0, -0.5], [0.3, 0.8]]) - 0.8)
    y = np.round(y * 4) / 4
    x = np.round(np.maximum(0.0, x - 0.5) * 4) / 4
    return x, y


def test_heavy_ties_finite_and_paths_agree_exactly(monkeypatch):
    x, y = relu_tied_data(1500, seed=41)
    assert np.mean(x == 0) > 0.5 and np.mean(y == 0) > 0.5
    joint = np.hstack([x, y])
    assert len(np.unique(joint, axis=0)) < len(joint) // 2  # many duplicate points
    vals = {nb: ksg_mi(x, y, k=3, neighbours=nb) for nb in ("kdtree", "brute")}
    assert all(np.isfinite(v) for v in vals.values())
    assert vals["kdtree"] == vals["brute"]
    # the primitives themselves agree element by element
    for z in (joint, x, y):
        eps_t = ksg._kth(z, 3, "kdtree")
        eps_b = ksg._kth(z, 3, "brute")
        assert np.array_equal(eps_t, eps_b)
        assert np.any(eps_t == 0)  # the eps = 0 case is exercised
        assert np.array_equal(ksg._count(z, eps_t, "kdtree"), ksg._count(z, eps_t, "brute"))
    labels = (y[:, 0] > 0).astype(int) + 2 * (x[:, 0] > 0)
    m_t = ksg_mixed_mi(x, labels, k=3, neighbours="kdtree")
    m_b = ksg_mixed_mi(x, labels, k=3, neighbours="brute")
    assert np.isfinite(m_t) and m_t == m_b
    # the torch fallback (no numba) gives the same numbers
    monkeypatch.setattr(ksg, "_NUMBA_KERNELS", False)
    assert ksg_mi(x, y, k=3, neighbours="brute") == vals["kdtree"]
    assert ksg_mixed_mi(x, labels, k=3, neighbours="brute") == m_t


def test_all_points_identical_is_finite():
    x = np.zeros((50, 2))
    y = np.ones((50, 1))
    est = ksg_mi(x, y, k=3)
    assert np.isfinite(est)
    assert est == ksg_mi(x, y, k=3, neighbours="brute")


def test_high_dimension_uses_brute_and_matches_kdtree():
    rng = np.random.default_rng(42)
    x = rng.normal(size=(600, 12))
    y = x[:, :6] + 0.5 * rng.normal(size=(600, 6))
    assert ksg_mi(x, y) == ksg_mi(x, y, neighbours="kdtree") == ksg_mi(x, y, neighbours="brute")


def test_matches_infomeasure_ksg_type1():
    """Same data, infomeasure's KSG type I with its noise off, max-norm, nats."""
    im = pytest.importorskip("infomeasure")
    rng = np.random.default_rng(43)
    x = rng.normal(size=(2000, 3))
    y = x[:, :2] @ rng.normal(size=(2, 2)) + rng.normal(size=(2000, 2))
    for xx, yy in [(x, y), relu_tied_data(1000, seed=44)]:
        ref = im.mutual_information(xx, yy, approach="ksg", k=3, ksg_id=1, noise_level=0,
                                    minkowski_p=np.inf, base="e")
        for nb in ("kdtree", "brute"):
            assert abs(ksg_mi(xx, yy, k=3, neighbours=nb) - ref) < 1e-6
    h_ref = im.entropy(x, approach="kl", k=3, noise_level=0, minkowski_p=np.inf, base="e")
    assert abs(ksg_entropy(x, k=3) - h_ref) < 1e-6


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ksg_mi(np.zeros((10, 1)), np.zeros((9, 1))), "same number of samples"),
        (lambda: ksg_mi(np.zeros((10, 2, 2)), np.zeros((10, 1))), "1-d .* or 2-d"),
        (lambda: ksg_mi(np.zeros((3, 1)), np.zeros((3, 1)), k=3), "more samples than k=3"),
        (lambda: ksg_mi(np.r_[np.nan, np.zeros(9)], np.zeros(10)), "finite"),
        (lambda: ksg_mi(np.zeros(10), np.r_[np.inf, np.zeros(9)]), "finite"),
        (lambda: ksg_mi(np.zeros(10), np.zeros(10), k=0), "k must be an integer"),
        (lambda: ksg_mi(np.zeros(10), np.zeros(10), k=2.5), "k must be an integer"),
        (lambda: ksg_mi(np.zeros(10), np.zeros(10), neighbours="ball"), "neighbours must be"),
        (lambda: ksg_mi(np.zeros((10, 0)), np.zeros(10)), "at least one column"),
        (lambda: ksg_mi(np.array(["a"] * 10), np.zeros(10)), "real numbers"),
        (lambda: ksg_mixed_mi(np.zeros(10), np.zeros((10, 2))), "labels must be 1-d"),
        (lambda: ksg_mixed_mi(np.zeros(10), np.zeros(9)), "same number of samples"),
        (lambda: ksg_mixed_mi(np.zeros(10), np.arange(10)), "class with at least 2"),
        (lambda: ksg_mixed_mi(np.zeros(10), np.r_[np.nan, np.zeros(9)]), "labels must be finite"),
        (lambda: ksg_entropy(np.zeros(3), k=3), "more samples than k=3"),
    ],
)
def test_bad_input_one_line_errors(call, match):
    with pytest.raises(EstimatorInputError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)
