"""KDE pairwise-distance bounds (Kolchinsky & Tracey 2017) against known truths."""

import math

import numpy as np
import pytest
from scipy.special import logsumexp

from ibcli.estimators import EstimatorInputError
from ibcli.estimators.kde import kde_entropy, kde_entropy_bounds, kde_information_plane

LOG_2PI_E = math.log(2 * math.pi * math.e)


def grid_points(m, d, spacing=1.0, seed=0):
    """m distinct points in R^d, pairwise at least `spacing` apart (jittered grid)."""
    rng = np.random.default_rng(seed)
    side = math.ceil(m ** (1 / d)) + 1
    cells = rng.choice(side**d, size=m, replace=False)
    pts = np.stack(np.unravel_index(cells, (side,) * d), axis=1).astype(float) * 2 * spacing
    return pts + rng.uniform(-0.5 * spacing, 0.5 * spacing, size=pts.shape)


def mc_mixture_entropy(mu, s2, n_samples=10**6, seed=1, batch=250_000):
    """H of (1/M) sum_i N(mu_i, s2 I) by Monte Carlo on the exact density.
    Returns (estimate, standard error), nats."""
    rng = np.random.default_rng(seed)
    m, d = mu.shape
    total, total_sq = 0.0, 0.0
    const = math.log(m) + d / 2 * math.log(2 * math.pi * s2)
    for start in range(0, n_samples, batch):
        b = min(batch, n_samples - start)
        comp = rng.integers(0, m, b)
        z = rng.standard_normal((b, d))
        x = mu[comp] + math.sqrt(s2) * z
        # log-sum-exp over components, shifted by the sampled component's own term
        # (exponent -|z|^2/2), which keeps every sum >= 1 and needs no max pass
        d2 = (x**2).sum(1)[:, None] + (mu**2).sum(1)[None, :] - 2 * x @ mu.T
        a = -np.maximum(d2, 0) / (2 * s2)
        own = -0.5 * (z**2).sum(1)
        log_p = own + np.log(np.exp(a - own[:, None]).sum(1)) - const
        total += float(-log_p.sum())
        total_sq += float((log_p**2).sum())
    mean = total / n_samples
    var = (total_sq - n_samples * mean**2) / (n_samples - 1)
    return mean, math.sqrt(var / n_samples)


def dense_reference(t, labels, s2):
    """Straightforward N x N float64 implementation of the same bounds and estimates."""
    t = np.asarray(t, dtype=np.float64)
    n, d = t.shape
    dist = ((t[:, None, :] - t[None, :, :]) ** 2).sum(-1)
    h_cond = d / 2 * (LOG_2PI_E + math.log(s2))
    out = {}
    for name, c in (("kl", 1 / (2 * s2)), ("bd", 1 / (8 * s2))):
        h = h_cond - np.mean(logsumexp(-dist * c, axis=1) - math.log(n))
        h_y = 0.0
        for y in np.unique(labels):
            idx = np.flatnonzero(labels == y)
            sub = dist[np.ix_(idx, idx)]
            h_y += idx.size / n * (h_cond - np.mean(logsumexp(-sub * c, axis=1) - math.log(idx.size)))
        out[name] = (h, h - h_cond, h - h_y)
    return out


# ---------------------------------------------------------------- truth by Monte Carlo
@pytest.mark.parametrize("d", [2, 5])
@pytest.mark.parametrize("s2", [0.01, 0.1, 1.0])
def test_bounds_bracket_the_monte_carlo_truth(d, s2):
    """X uniform on M = 16 points (spacing >= 1), T = X + N(0, s2 I).
    Truth I(X;T) = H(T) - d/2 ln(2 pi e s2), H(T) by Monte Carlo (10^6 samples)
    on the exact mixture density; lower - 3 se <= truth <= upper + 3 se."""
    mu = grid_points(16, d, seed=d)
    h_mc, se = mc_mixture_entropy(mu, s2)
    truth = h_mc - d / 2 * (LOG_2PI_E + math.log(s2))
    res = kde_information_plane(mu, np.zeros(16, int), [s2])[0]
    assert res.i_xt_lower - 3 * se <= truth <= res.i_xt_upper + 3 * se
    b = kde_entropy_bounds(mu, [s2])[0]
    assert b.lower - 3 * se <= h_mc <= b.upper + 3 * se
    assert 0.0 <= res.i_xt_lower <= res.i_xt_upper <= math.log(16) + 1e-12


# ---------------------------------------------------------------- exact references
@pytest.mark.parametrize("s2", [0.05, 0.5, 5.0])
def test_agrees_with_dense_float64_reference(s2):
    rng = np.random.default_rng(11)
    t = rng.normal(size=(257, 7)) + 3.0  # off-centre on purpose
    labels = rng.integers(0, 4, 257)
    ref = dense_reference(t, labels, s2)
    r = kde_information_plane(t, labels, [s2], chunk_size=50)[0]
    rel = dict(rel=1e-9, abs=1e-12)
    assert r.h_upper == pytest.approx(ref["kl"][0], **rel)
    assert r.h_lower == pytest.approx(ref["bd"][0], **rel)
    assert r.i_xt_upper == pytest.approx(ref["kl"][1], **rel)
    assert r.i_xt_lower == pytest.approx(ref["bd"][1], **rel)
    assert r.i_ty_kl == pytest.approx(ref["kl"][2], **rel)
    assert r.i_ty_bd == pytest.approx(ref["bd"][2], **rel)
    b = kde_entropy_bounds(t, [s2], chunk_size=64)[0]
    assert b.upper == pytest.approx(ref["kl"][0], **rel)
    assert b.lower == pytest.approx(ref["bd"][0], **rel)
    assert kde_entropy(t, s2, bound="upper") == pytest.approx(ref["kl"][0], **rel)


def test_chunk_size_does_not_change_the_result():
    rng = np.random.default_rng(12)
    t = rng.normal(size=(203, 4))
    labels = rng.integers(0, 3, 203)
    results = [kde_information_plane(t, labels, [0.1, 1.0], chunk_size=c) for c in (5, 64, 202, 203, 5000)]
    for other in results[1:]:
        for a, b in zip(results[0], other):
            for field in ("i_xt_upper", "i_xt_lower", "i_ty_kl", "i_ty_bd", "h_upper", "h_lower"):
                assert getattr(b, field) == pytest.approx(getattr(a, field), rel=1e-12, abs=1e-13)


def test_worker_threads_do_not_change_the_result():
    rng = np.random.default_rng(17)
    t = rng.normal(size=(230, 5)).astype(np.float32)
    labels = rng.integers(0, 4, 230)
    one = kde_information_plane(t, labels, [0.1, 1.0], chunk_size=32, workers=1)
    for w in (2, 3):
        many = kde_information_plane(t, labels, [0.1, 1.0], chunk_size=32, workers=w)
        for a, b in zip(one, many):
            for field in ("i_xt_upper", "i_xt_lower", "i_ty_kl", "i_ty_bd"):
                assert getattr(b, field) == pytest.approx(getattr(a, field), rel=1e-12, abs=1e-13)
    # repeatable: the same worker count gives bit-identical numbers
    assert kde_information_plane(t, labels, [0.1], chunk_size=32, workers=3) == \
        kde_information_plane(t, labels, [0.1], chunk_size=32, workers=3)


def test_one_pass_for_many_noise_variances_equals_separate_calls():
    rng = np.random.default_rng(13)
    t = rng.normal(size=(120, 3))
    labels = rng.integers(0, 2, 120)
    together = kde_information_plane(t, labels, [0.01, 0.3, 2.0])
    for r in together:
        alone = kde_information_plane(t, labels, r.noise_var)[0]
        assert r.i_xt_upper == pytest.approx(alone.i_xt_upper, rel=1e-12)
        assert r.i_ty_bd == pytest.approx(alone.i_ty_bd, rel=1e-12, abs=1e-14)


def test_float32_input_agrees_with_float64():
    rng = np.random.default_rng(14)
    t = np.tanh(rng.normal(size=(600, 64)) * 0.3 + rng.normal(size=(1, 64)))
    labels = rng.integers(0, 10, 600)
    for s2 in (0.01, 0.1, 1.0):
        r64 = kde_information_plane(t, labels, [s2])[0]
        r32 = kde_information_plane(t.astype(np.float32), labels, [s2])[0]
        assert r32.h_upper == pytest.approx(r64.h_upper, rel=1e-4)
        assert r32.h_lower == pytest.approx(r64.h_lower, rel=1e-4)
        assert r32.i_xt_upper == pytest.approx(r64.i_xt_upper, rel=1e-4, abs=1e-4)
        assert r32.i_ty_kl == pytest.approx(r64.i_ty_kl, rel=1e-3, abs=1e-4)


# ---------------------------------------------------------------- properties and limits
def test_upper_is_never_below_lower():
    rng = np.random.default_rng(15)
    t = rng.normal(size=(150, 6))
    for r in kde_information_plane(t, rng.integers(0, 3, 150), [1e-3, 0.03, 1.0, 30.0]):
        assert r.i_xt_upper >= r.i_xt_lower
        assert r.h_upper >= r.h_lower
        assert r.h_cond == pytest.approx(3 * (LOG_2PI_E + math.log(r.noise_var)), rel=1e-14)


def test_tiny_noise_gives_log_m_and_label_entropy_for_separated_points():
    mu = grid_points(16, 3)
    labels = np.arange(16) % 4  # a function of X: I(T;Y) -> H(Y) = ln 4
    r = kde_information_plane(mu, labels, [1e-6])[0]
    assert r.i_xt_upper == pytest.approx(math.log(16), abs=1e-9)
    assert r.i_xt_lower == pytest.approx(math.log(16), abs=1e-9)
    assert r.i_ty_kl == pytest.approx(math.log(4), abs=1e-9)
    assert r.i_ty_bd == pytest.approx(math.log(4), abs=1e-9)


def test_huge_noise_gives_zero_information():
    mu = grid_points(16, 2)
    r = kde_information_plane(mu, np.arange(16) % 2, [1e8])[0]
    for v in (r.i_xt_upper, r.i_xt_lower, r.i_ty_kl, r.i_ty_bd):
        assert abs(v) < 1e-6


def test_single_sample_and_identical_samples_give_zero():
    r = kde_information_plane(np.array([[0.3, -1.0]]), [1], [0.1])[0]
    assert r.i_xt_upper == 0.0 and r.i_xt_lower == 0.0 and r.i_ty_kl == 0.0
    assert r.h_upper == pytest.approx(r.h_cond, rel=1e-15)
    r = kde_information_plane(np.ones((40, 5)), np.arange(40) % 3, [0.1])[0]
    assert abs(r.i_xt_upper) < 1e-12 and abs(r.i_ty_kl) < 1e-12


def test_bad_input_raises_one_line_errors():
    t = np.zeros((10, 2))
    t_nan = t.copy()
    t_nan[3, 0] = np.inf
    cases = [
        (lambda: kde_entropy_bounds(t_nan, [0.1]), "inf"),
        (lambda: kde_entropy_bounds(t, [0.0]), "noise variances must be positive"),
        (lambda: kde_entropy_bounds(t, [-1.0]), "noise variances must be positive"),
        (lambda: kde_information_plane(t, np.zeros(9, int), [0.1]), "t has 10 rows but labels has 9"),
        (lambda: kde_entropy_bounds(np.zeros((2, 3, 4)), [0.1]), "dimensions"),
        (lambda: kde_entropy_bounds(t, [0.1], chunk_size=0), "chunk_size"),
        (lambda: kde_entropy_bounds(t, [0.1], workers=0), "workers"),
        (lambda: kde_entropy(t, 0.1, bound="middle"), "bound"),
    ]
    for call, text in cases:
        with pytest.raises(EstimatorInputError, match=text) as info:
            call()
        assert "\n" not in str(info.value)


def test_labels_that_identify_each_sample_give_i_ty_equal_to_i_xt():
    # Y = X (every sample its own class): H(T+Z | Y=y) = d/2 ln(2 pi e s2) exactly,
    # so both I(T;Y) estimates equal the corresponding I(X;T) bound.
    rng = np.random.default_rng(16)
    t = rng.normal(size=(150, 3))
    labels = rng.permutation(150)
    for r in kde_information_plane(t, labels, [0.05, 1.0], chunk_size=40):
        assert r.i_ty_kl == pytest.approx(r.i_xt_upper, rel=1e-12)
        assert r.i_ty_bd == pytest.approx(r.i_xt_lower, rel=1e-12)
