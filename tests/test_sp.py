"""Sample propagation (Goldfeld et al. 2019) against truths computed independently.

The truths: a constant T (0), well-separated points (ln N and H(Y)), 1-d mixtures by
numerical quadrature of the exact densities, a plain NumPy/SciPy evaluation of the
log-density ratios for the torch kernel, an independent longer run, the spread over
seeds for the standard error, and the KDE bounds of Kolchinsky & Tracey (2017).
"""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.special import logsumexp

from ibcli.estimators import EstimatorInputError
from ibcli.estimators.interface import NOISE_VAR, SE_COLUMNS, PlanePoint
from ibcli.estimators.kde import kde_information_plane
from ibcli.estimators.sp import SampleNoiseEstimator, sp_information_plane, sp_terms


# --------------------------------------------------------------------------- references
def reference_terms(t, labels, noise, s2):
    """ln p(u | x_i) - ln p(u) and ln p(u | y_i) - ln p(u) for u = t_i + sqrt(s2) noise[i, m],
    written straight from the densities: full Gaussian log-densities from explicit differences
    u - t_j (no matrix product, no centring, no cancellation trick), scipy's logsumexp."""
    t = np.asarray(t, dtype=np.float64)
    n, d = t.shape
    u = t[:, None, :] + math.sqrt(s2) * noise  # (N, M, d)
    log_phi = -((u[:, :, None, :] - t[None, None, :, :]) ** 2).sum(-1) / (2 * s2) - d / 2 * math.log(2 * math.pi * s2)
    log_p = logsumexp(log_phi, axis=2) - math.log(n)  # (N, M)
    xt = log_phi[np.arange(n), :, np.arange(n)] - log_p
    ty = np.empty_like(xt)
    for i in range(n):
        same = labels == labels[i]
        ty[i] = logsumexp(log_phi[i][:, same], axis=1) - math.log(same.sum()) - log_p[i]
    return xt, ty


def mixture_entropy_1d(centres, s2):
    """h of (1/K) sum_k N(centres_k, s2) in nats, by adaptive quadrature of -p ln p."""
    c = np.asarray(centres, dtype=np.float64)
    sd = math.sqrt(s2)

    def integrand(u):
        log_p = logsumexp(-(u - c) ** 2 / (2 * s2)) - math.log(len(c)) - 0.5 * math.log(2 * math.pi * s2)
        return -math.exp(log_p) * log_p

    lo, hi = c.min() - 14 * sd, c.max() + 14 * sd
    val, err = quad(integrand, lo, hi, points=sorted(set(c.tolist())), limit=500, epsabs=1e-13, epsrel=1e-12)
    assert err < 1e-8
    return val


def quad_truth(t, labels, s2):
    """(I(X; T+Z), I(T+Z; Y)) of 1-d points t by quadrature: h(T+Z) - h(Z), h(T+Z) - sum p(y) h(T+Z | y)."""
    t, labels = np.asarray(t, dtype=np.float64), np.asarray(labels)
    h = mixture_entropy_1d(t, s2)
    h_z = 0.5 * math.log(2 * math.pi * math.e * s2)
    h_y = sum((labels == y).mean() * mixture_entropy_1d(t[labels == y], s2) for y in np.unique(labels))
    return h - h_z, h - h_y


def clusters(n=300, d=10, k=3, spread=1.0, seed=0):
    """n points around k random centres (unit within-cluster sd), labelled by their centre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=spread, size=(k, d))
    y = rng.integers(0, k, n)
    return centres[y] + rng.normal(size=(n, d)), y


# --------------------------------------------------------------------------- kernel
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_torch_kernel_equals_numpy_reference(offset):
    rng = np.random.default_rng(0)
    n, d, m = 37, 5, 3
    t = rng.normal(size=(n, d)) + offset  # the offset exercises the centring
    y = rng.integers(0, 3, n)
    noise = rng.standard_normal((n, m, d))
    s2s = [0.05, 0.3, 2.0]
    for chunk in (1, 7, 10_000):
        xt, ty = sp_terms(t, y, noise, s2s, chunk_size=chunk)
        assert xt.shape == ty.shape == (3, n, m)
        for k, s2 in enumerate(s2s):
            rx, ry = reference_terms(t, y, noise, s2)
            np.testing.assert_allclose(xt[k], rx, rtol=1e-10, atol=1e-10 * math.log(n))
            np.testing.assert_allclose(ty[k], ry, rtol=1e-10, atol=1e-10 * math.log(n))
            assert xt[k].max() <= math.log(n) + 1e-12  # the own term bounds each draw
            counts = np.bincount(y)[y]
            assert (ty[k] <= np.log(n / counts)[:, None] + 1e-12).all()


def test_float32_input_and_one_dimension():
    rng = np.random.default_rng(1)
    t = rng.normal(size=20).astype(np.float32)  # (N,) is N samples of one feature
    y = np.arange(20) % 2
    noise = rng.standard_normal((20, 4, 1))
    xt, ty = sp_terms(t, y, noise, 0.2)
    rx, ry = reference_terms(t.astype(np.float64)[:, None], y, noise, 0.2)
    np.testing.assert_allclose(xt[0], rx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ty[0], ry, rtol=1e-10, atol=1e-10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_equals_cpu():
    t, y = clusters(n=500, d=40, seed=3)
    cpu = sp_information_plane(t, y, [0.1, 1.0], seed=5)
    gpu = sp_information_plane(t, y, [0.1, 1.0], seed=5, device="cuda")
    for a, b in zip(cpu, gpu):
        for f in ("i_xt", "i_ty", "i_xt_se", "i_ty_se"):
            assert getattr(b, f) == pytest.approx(getattr(a, f), rel=1e-10, abs=1e-12)


# --------------------------------------------------------------------------- known values
def test_constant_t_gives_zero():
    t = np.full((50, 3), 2.5)
    y = np.arange(50) % 4
    for r in sp_information_plane(t, y, [0.01, 1.0]):
        assert abs(r.i_xt) <= 1e-12 and abs(r.i_ty) <= 1e-12
        assert r.i_xt_se <= 1e-12 and r.i_ty_se <= 1e-12


def test_well_separated_points_give_ln_n_and_label_entropy():
    n, s2 = 64, 0.1
    rng = np.random.default_rng(2)
    grid = np.stack(np.unravel_index(rng.permutation(n), (8, 8)), axis=1).astype(float)
    t = grid * 100 * math.sqrt(s2)  # neighbours 100 noise sd apart
    y = np.repeat([0, 1, 2, 3], [8, 16, 16, 24])
    p = np.bincount(y) / n
    (r,) = sp_information_plane(t, y, s2)
    assert r.i_xt == pytest.approx(math.log(n), abs=1e-6)
    assert r.i_ty == pytest.approx(float(-(p * np.log(p)).sum()), abs=1e-6)


@pytest.mark.parametrize(
    "t, y, s2",
    [
        ([-1.0, 1.0], [0, 1], 0.5),  # two overlapping points: I(X;T) = I(T;Y)
        ([-1.0, 1.0], [0, 1], 4.0),  # mostly overlapping
        ([-1.3, -0.2, 0.4, 2.0, 2.1, 2.15], [0, 1, 0, 1, 1, 0], 0.3),  # asymmetric, unequal classes
    ],
)
def test_one_dimensional_mixtures_against_quadrature(t, y, s2):
    truth_xt, truth_ty = quad_truth(t, y, s2)
    (r,) = sp_information_plane(t, y, s2, noise_samples=20_000, seed=4)
    assert r.i_xt_se < 0.01 and r.i_ty_se < 0.01  # the comparison below is a sharp one
    assert r.i_xt == pytest.approx(truth_xt, abs=max(4 * r.i_xt_se, 1e-4))
    assert r.i_ty == pytest.approx(truth_ty, abs=max(4 * r.i_ty_se, 1e-4))


def test_agrees_with_independent_long_run():
    t, y = clusters(n=300, d=10, seed=5)
    short = sp_information_plane(t, y, [1.0, 10.0], noise_samples=4, seed=0)
    long = sp_information_plane(t, y, [1.0, 10.0], noise_samples=40, seed=1)
    for a, b in zip(short, long):
        assert 0.5 < a.i_xt < math.log(300) - 0.5  # an intermediate, non-trivial regime
        assert a.i_xt == pytest.approx(b.i_xt, abs=4 * math.hypot(a.i_xt_se, b.i_xt_se))
        assert a.i_ty == pytest.approx(b.i_ty, abs=4 * math.hypot(a.i_ty_se, b.i_ty_se))
        assert b.i_xt_se < a.i_xt_se / 2  # ten times the draws: about 1/sqrt(10) the se


def test_standard_error_matches_spread_over_seeds():
    t, y = clusters(n=100, d=6, seed=6)
    runs = [sp_information_plane(t, y, 1.0, noise_samples=4, seed=s)[0] for s in range(40)]
    for f in ("i_xt", "i_ty"):
        spread = np.std([getattr(r, f) for r in runs], ddof=1)
        se = np.mean([getattr(r, f + "_se") for r in runs])
        assert 0.6 < spread / se < 1.5, (f, spread, se)  # 40 repeats: the sd is known to about 11 %


def test_per_draw_spread_is_that_of_independent_draws():
    t, y = clusters(n=200, d=6, seed=12)
    (r,) = sp_information_plane(t, y, 1.0, noise_samples=8)
    xt, ty = sp_terms(t, y, np.random.default_rng(9).standard_normal((200, 8, 6)), 1.0)
    for got, terms in ((r.i_xt_sd, xt[0]), (r.i_ty_sd, ty[0])):
        assert got == pytest.approx(math.sqrt(terms.var(axis=1, ddof=1).mean()), rel=0.15)
    # antithetic pairs: the se is below that of M independent draws (the pairs are anticorrelated)
    assert r.i_xt_se < r.i_xt_sd / math.sqrt(200 * 8)


def test_same_seed_same_numbers_for_any_chunk_size_and_workers():
    t, y = clusters(n=120, d=4, seed=7)
    ref = sp_information_plane(t, y, [0.1, 1.0], seed=3, workers=1)
    for chunk, workers in ((8, 2), (100, 1), (100, 3), (10_000, 2)):  # 2 strata per block, 25, all
        got = sp_information_plane(t, y, [0.1, 1.0], seed=3, chunk_size=chunk, workers=workers)
        for a, b in zip(ref, got):
            assert b.i_xt == pytest.approx(a.i_xt, rel=1e-12) and b.i_ty == pytest.approx(a.i_ty, rel=1e-12)
    other = sp_information_plane(t, y, [0.1, 1.0], seed=4)
    assert other[0].i_xt != ref[0].i_xt


def test_translation_leaves_the_terms_unchanged():
    t, y = clusters(n=80, d=5, seed=8)
    a = sp_information_plane(t, y, 0.5, seed=2)[0]
    b = sp_information_plane(t + 500.0, y, 0.5, seed=2)[0]
    assert b.i_xt == pytest.approx(a.i_xt, abs=1e-9) and b.i_ty == pytest.approx(a.i_ty, abs=1e-9)


@pytest.mark.parametrize("s2", [0.03, 0.3, 3.0])
def test_kde_bounds_bracket_sp(s2):
    t, y = clusters(n=400, d=3, spread=2.0, seed=9)
    (r,) = sp_information_plane(t, y, s2, noise_samples=16)
    (b,) = kde_information_plane(t, y, s2)
    assert b.i_xt_upper - b.i_xt_lower > 0.05  # the bracket is informative at these s2
    assert b.i_xt_lower - 4 * r.i_xt_se <= r.i_xt <= b.i_xt_upper + 4 * r.i_xt_se


def test_single_sample_and_single_class():
    (r,) = sp_information_plane([[1.0, 2.0]], [3], 0.1)
    assert (r.i_xt, r.i_ty, r.i_xt_se, r.n) == (0.0, 0.0, 0.0, 1)
    t, _ = clusters(n=50, d=2, seed=10)
    (r,) = sp_information_plane(t, np.zeros(50), 0.1)
    assert abs(r.i_ty) <= 1e-12 and r.i_xt > 0.5


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"t": [[0.0], [np.nan]]}, "NaN"),
        ({"labels": [0, 1, 0]}, "rows"),
        ({"noise_vars": 0.0}, "positive"),
        ({"noise_vars": []}, "at least one"),
        ({"noise_samples": 2}, "noise_samples"),
        ({"noise_samples": 5}, "even"),
        ({"noise_samples": 2.5}, "noise_samples"),
        ({"seed": -1}, "seed"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"workers": 0}, "workers"),
        ({"device": "nonsense"}, "device"),
        ({"device": "mps"}, "device"),
        ({"t": np.zeros((2, 2, 2))}, "dimensions"),
    ],
)
def test_bad_input_raises(kwargs, match):
    args = {"t": [[0.0], [1.0]], "labels": [0, 1], "noise_vars": 0.1, **kwargs}
    with pytest.raises(EstimatorInputError, match=match):
        sp_information_plane(args.pop("t"), args.pop("labels"), args.pop("noise_vars"), **args)


def test_bad_noise_raises():
    t = np.zeros((4, 2))
    with pytest.raises(EstimatorInputError, match="shape"):
        sp_terms(t, [0, 0, 1, 1], np.zeros((4, 3, 5)), 0.1)
    with pytest.raises(EstimatorInputError, match="NaN"):
        sp_terms(t, [0, 0, 1, 1], np.full((4, 3, 2), np.nan), 0.1)
    with pytest.raises(EstimatorInputError, match="numeric"):
        sp_terms(t, [0, 0, 1, 1], [[[0.0, 1.0]], [[0.0]], "a", None], 0.1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_unavailable_cuda_raises():
    with pytest.raises(EstimatorInputError, match="CUDA"):
        sp_information_plane([[0.0], [1.0]], [0, 1], 0.1, device="cuda")


# --------------------------------------------------------------------------- adapter
def test_adapter_declares_and_returns_points():
    est = SampleNoiseEstimator()
    assert est.name == "sp" and est.uses_device and est.columns == SE_COLUMNS
    assert NOISE_VAR in est.params and "Goldfeld" in est.title
    params = est.check_params({"noise_var": (0.1, 1.0)})
    assert params["noise_samples"] >= 4
    with pytest.raises(EstimatorInputError, match="noise-samples"):
        est.check_params({"noise_samples": 2})
    t, y = clusters(n=60, d=3, seed=11)
    pts = est.points(t.astype(np.float32), y, x=None, params=params, seed=1)
    direct = sp_information_plane(t.astype(np.float32), y, (0.1, 1.0), seed=1)
    assert [p.params for p in pts] == [{"noise_var": 0.1}, {"noise_var": 1.0}]
    for p, r in zip(pts, direct):
        assert isinstance(p, PlanePoint)
        assert (p.i_xt_nats, p.i_ty_nats) == (r.i_xt, r.i_ty)
        assert set(p.values) == {c.key for c in SE_COLUMNS}
        assert (p.values["i_xt_se"], p.values["i_ty_se"]) == (r.i_xt_se, r.i_ty_se)
