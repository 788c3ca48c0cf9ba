"""Matrix-based Rényi α-entropy (Sánchez Giraldo et al. 2015; Yu et al. 2019) against closed forms,
independent dense computations and invariances.

Tolerances: 1e-12 (or 1e-10 where the brief asks) where two float64 computations of the same
number differ only by summation order; 1e-6 where float32 tiles are compared with float64; near
α = 1 the bound comes from the derivative dS_α/dα = -Var_λ(ln λ)/2 at α = 1.
"""

import math

import numpy as np
import pytest

from ibcli.estimators import EstimatorInputError
from ibcli.estimators.renyi import (
    RenyiEstimator,
    XGramCache,
    delta_kernel,
    gaussian_kernel,
    gaussian_renyi2_entropy,
    hadamard_gram,
    matrix_mutual_information,
    matrix_renyi_entropy,
    normalized_gram,
    renyi_entropy_from_eigenvalues,
    renyi_information_plane,
    silverman_width,
)


def layer_data(n=240, d_x=6, d_t=3, classes=4, seed=0):
    """Probe-like data: x, a tanh layer t = f(x) and labels that depend on x."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d_x))
    t = np.tanh(x @ rng.standard_normal((d_x, d_t)))
    labels = np.digitize(x[:, 0] + 0.5 * rng.standard_normal(n), np.quantile(x[:, 0], [0.25, 0.5, 0.75]))
    assert len(np.unique(labels)) == classes
    return x, t, labels


def von_neumann(a):
    lam = np.linalg.eigvalsh(a)
    lam = lam[lam > 1e-300]
    return float(-(lam * np.log(lam)).sum())


def dense_plane(x, t, labels, alpha, wx, wt):
    """Independent dense N x N computation of (I(X;T), I(T;Y), S(T)) from the public matrix functions."""
    ax = normalized_gram(gaussian_kernel(x, wx))
    at = normalized_gram(gaussian_kernel(t, wt))
    ay = normalized_gram(delta_kernel(labels))
    return matrix_mutual_information(ax, at, alpha), matrix_mutual_information(at, ay, alpha), \
        matrix_renyi_entropy(at, alpha)


# --------------------------------------------------------------------------- closed forms and limits
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 3.0])
def test_vanishing_width_with_t_equal_x_gives_ln_n(alpha):
    # K = identity: every eigenvalue 1/N, so S_α = ln N for every α; T = X makes the joint
    # Gram matrix the identity too, hence I(X;T) = ln N + ln N - ln N = ln N.
    x, _, labels = layer_data(n=120)
    n = len(x)
    for width in (0.0, 1e-3):  # the exact limit, and a width far below the closest pair (~0.1)
        r = renyi_information_plane(x, x, labels, alpha=alpha, t_width=width, x_width=width, chunk_size=50)
        assert r.s_t == pytest.approx(math.log(n), abs=1e-12)
        assert r.s_x == pytest.approx(math.log(n), abs=1e-12)
        assert r.i_xt == pytest.approx(math.log(n), abs=1e-12)
        # T's Gram matrix = identity: I(T;Y) = S(Y), the labels' whole entropy
        assert r.i_ty == pytest.approx(r.s_y, abs=1e-12)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("width", [None, 0.0, 1.0])
def test_constant_layer_gives_zero(alpha, width):
    # K^T = all ones: A_T has the single eigenvalue 1, S(T) = 0, and A_X∘A_T ∝ A_X.
    x, _, labels = layer_data(n=150)
    t = np.full((len(x), 4), 0.3)
    r = renyi_information_plane(x, t, labels, alpha=alpha, t_width=width, chunk_size=64)
    assert r.s_t == pytest.approx(0.0, abs=1e-12)
    assert r.i_xt == pytest.approx(0.0, abs=1e-12)
    assert r.i_ty == pytest.approx(0.0, abs=1e-12)
    if width is None:
        assert r.width_t == 0.0  # Silverman's rule on zero spread


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 3.0])
def test_delta_kernel_entropy_is_renyi_entropy_of_class_proportions(alpha):
    labels = np.repeat([0, 1, 2, 3], [5, 11, 2, 30])
    np.random.default_rng(3).shuffle(labels)
    p = np.bincount(labels) / len(labels)
    truth = float(-(p * np.log(p)).sum()) if alpha == 1.0 else math.log((p**alpha).sum()) / (1 - alpha)
    a = normalized_gram(delta_kernel(labels))
    assert matrix_renyi_entropy(a, alpha) == pytest.approx(truth, abs=1e-10)
    # and through the plane's own path (α = 2: class counts; else class proportions)
    x, t, _ = layer_data(n=len(labels))
    assert renyi_information_plane(x, t, labels, alpha=alpha).s_y == pytest.approx(truth, abs=1e-12)


def test_alpha_to_one_is_von_neumann_entropy():
    x, t, _ = layer_data(n=80)
    a = normalized_gram(gaussian_kernel(t, silverman_width(t)))
    lam = np.linalg.eigvalsh(a)
    vn = von_neumann(a)
    assert matrix_renyi_entropy(a, 1.0) == pytest.approx(vn, abs=1e-12)
    # S_α = S_1 - (α - 1) Var_λ(ln λ) / 2 + O((α - 1)²): a 1e-6 step moves it by at most
    # 1e-6 * Var / 2; twice that (plus rounding) is the tolerance.
    p = lam[lam > 1e-15]
    p = p / p.sum()
    var = float((p * np.log(p) ** 2).sum() - (p * np.log(p)).sum() ** 2)
    for alpha in (1 - 1e-6, 1 + 1e-6):
        got = matrix_renyi_entropy(a, alpha)
        assert abs(got - vn) <= 1e-6 * var + 1e-9
        assert got != vn  # the α != 1 formula ran, not the α = 1 branch
    # monotone in α (Rényi entropies decrease with the order)
    assert matrix_renyi_entropy(a, 1 - 1e-6) > vn > matrix_renyi_entropy(a, 1 + 1e-6)


def test_alpha_one_plane_is_von_neumann_of_the_normalised_gram_matrices():
    x, t, labels = layer_data(n=100)
    r = renyi_information_plane(x, t, labels, alpha=1.0)
    ax = normalized_gram(gaussian_kernel(x, r.width_x))
    at = normalized_gram(gaussian_kernel(t, r.width_t))
    ay = normalized_gram(delta_kernel(labels))
    assert r.s_x == pytest.approx(von_neumann(ax), abs=1e-10)
    assert r.s_t == pytest.approx(von_neumann(at), abs=1e-10)
    assert r.s_xt == pytest.approx(von_neumann(hadamard_gram(ax, at)), abs=1e-10)
    assert r.s_ty == pytest.approx(von_neumann(hadamard_gram(at, ay)), abs=1e-10)


@pytest.mark.parametrize("alpha", [2.0, 3.0, 10.0, 0.7])
def test_eigenvalue_formula_against_direct_sum(alpha):
    rng = np.random.default_rng(1)
    lam = rng.exponential(size=50) ** 3
    p = lam / lam.sum()
    assert renyi_entropy_from_eigenvalues(lam, alpha) == pytest.approx(
        math.log((p**alpha).sum()) / (1 - alpha), rel=1e-12)
    # large α on a near-uniform spectrum: Σ p^α is tiny (here 1e-36); still exact
    flat = np.full(10_000, 1.0)
    assert renyi_entropy_from_eigenvalues(flat, 10.0) == pytest.approx(math.log(10_000), abs=1e-12)


# --------------------------------------------------------------------------- the computations agree
def test_alpha_two_frobenius_equals_eigenvalues():
    x, t, _ = layer_data(n=150)
    for a in (normalized_gram(gaussian_kernel(t, 0.4)), normalized_gram(gaussian_kernel(x, 2.0))):
        frob = matrix_renyi_entropy(a, 2.0)
        eig = renyi_entropy_from_eigenvalues(np.linalg.eigvalsh(a), 2.0)
        assert frob == pytest.approx(eig, abs=1e-10)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_blocked_frobenius_equals_dense(chunk):
    _, t, _ = layer_data(n=130)
    dense = matrix_renyi_entropy(normalized_gram(gaussian_kernel(t, 0.5)), 2.0)
    assert gaussian_renyi2_entropy(t, 0.5, chunk_size=chunk, workers=1) == pytest.approx(dense, abs=1e-12)
    assert gaussian_renyi2_entropy(t, 0.5, chunk_size=chunk, workers=3) == pytest.approx(dense, abs=1e-12)
    # float32 input is computed in float32 tiles (sums in float64)
    assert gaussian_renyi2_entropy(t.astype(np.float32), 0.5, chunk_size=chunk) == pytest.approx(dense, abs=1e-6)


@pytest.mark.parametrize("alpha", [2.0, 1.0, 1.5])
def test_plane_equals_dense_matrix_functions(alpha):
    x, t, labels = layer_data(n=200)
    r = renyi_information_plane(x, t, labels, alpha=alpha, chunk_size=33, workers=2)
    assert r.width_t == pytest.approx(silverman_width(t))
    assert r.width_x == pytest.approx(silverman_width(x))
    i_xt, i_ty, s_t = dense_plane(x, t, labels, alpha, r.width_x, r.width_t)
    assert r.i_xt == pytest.approx(i_xt, abs=1e-10)
    assert r.i_ty == pytest.approx(i_ty, abs=1e-10)
    assert r.s_t == pytest.approx(s_t, abs=1e-10)
    assert r.n_samples == len(x)
    # float32 inputs (the recorded activations' dtype): float32 tiles / float64 eigen solves
    r32 = renyi_information_plane(x.astype(np.float32), t.astype(np.float32), labels, alpha=alpha, chunk_size=33)
    assert r32.i_xt == pytest.approx(r.i_xt, abs=1e-5)
    assert r32.i_ty == pytest.approx(r.i_ty, abs=1e-5)


def test_subsample_for_alpha_other_than_two():
    x, t, labels = layer_data(n=300)
    r = renyi_information_plane(x, t, labels, alpha=1.5, eig_samples=100, seed=4)
    assert r.n_samples == 100
    idx = np.sort(np.random.default_rng(4).choice(300, size=100, replace=False))
    i_xt, i_ty, s_t = dense_plane(x[idx], t[idx], labels[idx], 1.5, silverman_width(x[idx]), silverman_width(t[idx]))
    assert (r.i_xt, r.i_ty, r.s_t) == pytest.approx((i_xt, i_ty, s_t), abs=1e-10)
    assert s_t <= math.log(100) + 1e-12
    again = renyi_information_plane(x, t, labels, alpha=1.5, eig_samples=100, seed=4)
    assert again == r  # the same seed draws the same subsample
    # α = 2 ignores eig_samples: all N samples through the Frobenius norm
    assert renyi_information_plane(x, t, labels, eig_samples=100).n_samples == 300


# --------------------------------------------------------------------------- invariances and bounds
@pytest.mark.parametrize("alpha", [2.0, 1.0, 0.6])
def test_invariant_to_permuting_samples_jointly(alpha):
    x, t, labels = layer_data(n=180)
    perm = np.random.default_rng(7).permutation(len(x))
    a = renyi_information_plane(x, t, labels, alpha=alpha, chunk_size=40)
    b = renyi_information_plane(x[perm], t[perm], labels[perm], alpha=alpha, chunk_size=40)
    for field in ("i_xt", "i_ty", "s_x", "s_t", "s_y", "s_xt", "s_ty", "width_x", "width_t"):
        assert getattr(b, field) == pytest.approx(getattr(a, field), abs=1e-10), field


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 4.0])
def test_mutual_information_between_zero_and_the_smaller_entropy(alpha):
    x, t, labels = layer_data(n=160)
    r = renyi_information_plane(x, t, labels, alpha=alpha)
    assert 0 < r.i_ty <= min(r.s_t, r.s_y) + 1e-12
    assert 0 < r.i_xt <= min(r.s_x, r.s_t) + 1e-12
    assert r.s_xt >= max(r.s_x, r.s_t) - 1e-12 and r.s_ty >= max(r.s_t, r.s_y) - 1e-12


def test_silverman_width_rule():
    rng = np.random.default_rng(0)
    data = rng.standard_normal((500, 4)) * [1.0, 2.0, 3.0, 4.0]
    s = math.sqrt(np.mean(np.var(data, axis=0, ddof=1)))
    assert silverman_width(data) == pytest.approx(s * 500 ** (-1 / 8), rel=1e-12)
    assert silverman_width(data, spread=2.0) == pytest.approx(2.0 * 500 ** (-1 / 8), rel=1e-12)
    assert silverman_width(3 * data) == pytest.approx(3 * silverman_width(data), rel=1e-12)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [
    ({"alpha": 0.0}, "alpha"),
    ({"alpha": -1.0}, "alpha"),
    ({"alpha": float("nan")}, "alpha"),
    ({"t_width": -0.1}, "t_width"),
    ({"x_width": float("inf")}, "x_width"),
    ({"eig_samples": 1}, "eig_samples"),
    ({"chunk_size": 0}, "chunk_size"),
    ({"workers": 0}, "workers"),
    ({"t_spread": -1.0}, "spread"),
])
def test_bad_parameters_raise(kwargs, match):
    x, t, labels = layer_data(n=40)
    with pytest.raises(EstimatorInputError, match=match):
        renyi_information_plane(x, t, labels, **kwargs)


def test_bad_data_raise():
    x, t, labels = layer_data(n=40)
    with pytest.raises(EstimatorInputError, match="rows"):
        renyi_information_plane(x[:-1], t, labels)
    bad = t.copy()
    bad[3, 1] = np.nan
    with pytest.raises(EstimatorInputError, match="NaN"):
        renyi_information_plane(x, bad, labels)
    with pytest.raises(EstimatorInputError, match="at least 2"):
        renyi_information_plane(x[:1], t[:1], labels[:1])
    with pytest.raises(EstimatorInputError, match="square"):
        matrix_renyi_entropy(np.ones((3, 4)))
    with pytest.raises(EstimatorInputError, match="diagonal"):
        normalized_gram(np.zeros((3, 3)))
    with pytest.raises(EstimatorInputError, match="alpha"):
        renyi_entropy_from_eigenvalues([0.5, 0.5], 0)


# --------------------------------------------------------------------------- the adapter
class FakeLayers:
    """LayerValues over in-memory records: {layer: [array per record]}."""

    def __init__(self, records):
        self.records = records

    def value_range(self, layer):
        v = np.concatenate([r.ravel() for r in self.records[layer]])
        return float(v.min()), float(v.max())

    def sample(self, layer, per_record, seed):
        rng = np.random.default_rng(seed)
        return np.concatenate([rng.choice(r.ravel(), size=min(per_record, r.size), replace=False)
                               for r in self.records[layer]]).astype(np.float32)


def test_adapter_points_match_functions_and_cache():
    x, t, labels = layer_data(n=150)
    x, t = x.astype(np.float32), t.astype(np.float32)
    est = RenyiEstimator()
    assert est.name == "renyi" and est.needs_x and est.quantity == ("I_α(X;T)", "I_α(T;Y)")
    params = est.check_params({})
    assert params == {"alpha": 2.0, "kernel_width": None, "x_kernel_width": None, "eig_samples": 1000}
    [p] = est.points(t, labels, x=x, params=params)
    r = renyi_information_plane(x, t, labels)
    assert (p.i_xt_nats, p.i_ty_nats) == pytest.approx((r.i_xt, r.i_ty), abs=1e-12)
    assert p.values == {"kernel_width_t": r.width_t, "kernel_width_x": r.width_x, "gram_samples": 150,
                        "s_t": pytest.approx(r.s_t, abs=1e-12), "flag": None}
    assert {c.key for c in est.columns} == set(p.values)
    held = est._cache.nbytes
    assert 0 < held <= 150 * 150 * 4  # float32 upper-triangular tiles of (K^X)²
    # second layer, same x: served from the cache, same numbers as without it
    t2 = np.tanh(3 * t[:, :2])
    [p2] = est.points(t2, labels, x=x, params=params)
    r2 = renyi_information_plane(x, t2, labels)
    assert (p2.i_xt_nats, p2.i_ty_nats) == pytest.approx((r2.i_xt, r2.i_ty), abs=1e-10)
    assert est._cache.nbytes == held
    # another x replaces the entry
    [p3] = est.points(t2, labels, x=2 * x, params=params)
    r3 = renyi_information_plane(2 * x, t2, labels)
    assert p3.i_xt_nats == pytest.approx(r3.i_xt, abs=1e-10)
    # α != 2 through the adapter: the seeded subsample, cached likewise
    p_sub = est.check_params({"alpha": 1.0, "eig_samples": 60})
    [p4] = est.points(t, labels, x=x, params=p_sub, seed=5)
    r4 = renyi_information_plane(x, t, labels, alpha=1.0, eig_samples=60, seed=5)
    assert (p4.i_xt_nats, p4.i_ty_nats, p4.values["gram_samples"]) == pytest.approx((r4.i_xt, r4.i_ty, 60), abs=1e-12)
    est.clear_cache()
    assert est._cache.nbytes == 0


def test_adapter_width_from_prepared_spread_and_given_width():
    x, t, labels = layer_data(n=120)
    est = RenyiEstimator()
    records = [t, 2 * t]  # the layer spreads out over training
    ctx = est.prepare(FakeLayers({"layer1": records}), ["layer1"], est.check_params({}), seed=0)
    spread = ctx["layer1"]["spread"]
    assert spread == pytest.approx(np.concatenate([r.ravel() for r in records]).std(), rel=1e-6)
    params = est.check_params({})
    widths = [est.points(r, labels, x=x, params=params, context=ctx["layer1"])[0].values["kernel_width_t"]
              for r in records]
    assert widths[0] == widths[1] == pytest.approx(spread * 120 ** (-1 / 7))  # one width per layer
    given = est.check_params({"kernel_width": 0.25})
    assert est.prepare(FakeLayers({"layer1": records}), ["layer1"], given, seed=7) == {"layer1": {"seed": 7, "spread": None}}
    [p] = est.points(t, labels, x=x, params=given)
    r = renyi_information_plane(x, t, labels, t_width=0.25)
    assert p.values["kernel_width_t"] == 0.25 and p.i_xt_nats == pytest.approx(r.i_xt, abs=1e-12)
    assert est.label({"alpha": 2.0, "kernel_width": 0.25}) == "renyi (α=2, σ=0.25)"
    assert est.label({"alpha": 1.01, "kernel_width": float("nan")}) == "renyi (α=1.01)"


def test_adapter_flags_identity_gram_and_checks_input():
    x, t, labels = layer_data(n=100)
    est = RenyiEstimator()
    [p] = est.points(t, labels, x=x, params=est.check_params({"kernel_width": 1e-4}))
    r = renyi_information_plane(x, t, labels)  # for S(X) and S(Y)
    assert p.values["s_t"] == pytest.approx(math.log(100), abs=1e-12)
    assert (p.i_xt_nats, p.i_ty_nats) == pytest.approx((r.s_x, r.s_y), abs=1e-12)
    assert "identity" in p.values["flag"]
    [p] = est.points(t, labels, x=x, params=est.check_params({}))
    assert p.values["flag"] is None
    with pytest.raises(EstimatorInputError, match="needs the probe inputs"):
        est.points(t, labels, x=None, params=est.check_params({}))
    with pytest.raises(EstimatorInputError, match="alpha"):
        est.check_params({"alpha": 0})
    with pytest.raises(EstimatorInputError, match="kernel-width"):
        est.check_params({"kernel_width": -1.0})
    with pytest.raises(EstimatorInputError, match="eig-samples"):
        est.check_params({"eig_samples": 1})
    with pytest.raises(EstimatorInputError, match="no parameter"):
        est.check_params({"noise_var": 0.1})


def test_cache_respects_its_memory_limit():
    x, t, labels = layer_data(n=100)
    cache = XGramCache(max_bytes=1000)  # too small for the tiles: only S(X) is kept
    a = renyi_information_plane(x, t, labels, x_cache=cache, chunk_size=30)
    assert cache.nbytes == 0
    b = renyi_information_plane(x, t, labels, x_cache=cache, chunk_size=30)  # recomputes K^X
    assert (b.i_xt, b.i_ty) == pytest.approx((a.i_xt, a.i_ty), abs=1e-12)


def test_adapter_uses_the_runs_seed_for_every_record():
    """alpha != 2 subsamples: the record's own seed (seed + step in the mi stage) must not
    change the subsample, so every epoch is measured on the same samples."""
    x, t, labels = layer_data(n=150)
    est = RenyiEstimator()
    params = est.check_params({"alpha": 1.5, "eig_samples": 60, "kernel_width": 0.5})
    ctx = est.prepare(FakeLayers({"layer1": [t]}), ["layer1"], params, seed=3)["layer1"]
    a = est.points(t, labels, x=x, params=params, context=ctx, seed=100)[0]
    b = est.points(t, labels, x=x, params=params, context=ctx, seed=200)[0]
    c = est.points(t, labels, x=x, params=params, seed=200)[0]  # no context: the given seed
    assert (a.i_xt_nats, a.i_ty_nats) == (b.i_xt_nats, b.i_ty_nats)
    assert a.values["gram_samples"] == 60 and (c.i_xt_nats, c.i_ty_nats) != (a.i_xt_nats, a.i_ty_nats)
