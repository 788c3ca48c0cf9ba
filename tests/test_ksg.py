"""KSG / Kozachenko-Leonenko / Ross estimators against closed forms and exact truths.

Every estimate is in nats. Truths:
- Gaussian pairs: I = 1/2 ln(det Sxx det Syy / det S), S the joint covariance.
- Gaussian entropy: H = 1/2 ln((2 pi e)^d det S).
- Class-conditional Gaussian mixtures: I = ln 4 + E[ln p(y|x)] by Monte Carlo on the exact
  densities (standard error stated in the test).
- Atoms (the issue's cases): the chain rule over the atom indicator, data processing, exact
  discrete tables.
Fixed seeds everywhere.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import digamma

from ibcli.estimators import entropy, knn, mutual_information
from ibcli.estimators.errors import EstimatorInputError
from ibcli.estimators.ksg import _ksg_terms, ksg_entropy, ksg_mi, ksg_mixed_mi


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


def pair_1d(mi_nats: float, n: int, seed: int):
    r = math.sqrt(1.0 - math.exp(-2.0 * mi_nats))  # I = -1/2 ln(1 - r^2)
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


def noisy_copy(n: int, d: int, seed: int):
    """x ~ N(0, I_d), y = x + 0.5 N(0, I_d): I = d/2 ln 5."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    return x, x + 0.5 * rng.standard_normal((n, d))


# ---------------------------------------------------------------------------
# Gaussian pairs
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mi_true", [0.1, 0.5, 1.0, 2.0])
def test_gaussian_1d_within_003(mi_true):
    x, y = pair_1d(mi_true, 5000, seed=11)
    for norm in ("euclidean", "max"):  # the same in one dimension
        assert abs(ksg_mi(x, y, k=3, norm=norm) - mi_true) < 0.03


@pytest.mark.parametrize("norm", ["euclidean", "max"])
def test_gaussian_2d_cross_correlated_within_008(norm):
    cov = cov_2x2()
    truth = gaussian_mi(cov, 2)
    assert 0.5 < truth < 1.5  # a non-trivial case
    x, y = sample_gaussian(cov, 2, 5000, seed=12)
    est = ksg_mi(x, y, k=3, norm=norm)
    assert abs(est - truth) < 0.08, (est, truth)


def test_gaussian_5d_bias_is_downward_bounded_and_smaller_with_the_euclidean_norm():
    """KSG's known downward bias grows with dimension: at dx = dy = 5 the estimate
    lies in [truth - 0.4, truth + 0.05] at n = 5 000; the Euclidean norm within each variable
    loses less."""
    cov = cov_5x5()
    truth = gaussian_mi(cov, 5)
    x, y = sample_gaussian(cov, 5, 5000, seed=13)
    euclid, cheb = ksg_mi(x, y, k=3), ksg_mi(x, y, k=3, norm="max")
    assert truth - 0.4 <= cheb < euclid <= truth + 0.05, (euclid, cheb, truth)


def test_invariant_under_monotone_maps():
    """I is invariant under invertible maps of each coordinate; the estimate moves < 0.05."""
    x, y = pair_1d(1.0, 5000, seed=14)
    base = ksg_mi(x, y, k=3)
    mapped = ksg_mi(x + 0.3 * x**3, np.tanh(0.5 * y) + 0.1 * y, k=3)
    assert abs(mapped - base) < 0.05 and abs(mapped - 1.0) < 0.05, (mapped, base)
    x2, y2 = sample_gaussian(cov_2x2(), 2, 5000, seed=15)
    base2 = ksg_mi(x2, y2, k=3)
    mapped2 = ksg_mi(x2 + 0.1 * x2**3, np.tanh(0.3 * y2) + 0.3 * y2, k=3)
    assert abs(mapped2 - base2) < 0.05, (mapped2, base2)


def test_independent_is_near_zero_and_float32_accepted():
    rng = np.random.default_rng(16)
    x = rng.normal(size=(3000, 2)).astype(np.float32)
    y = rng.normal(size=(3000, 1)).astype(np.float32)
    est = ksg_mi(x, y)
    assert abs(est) < 0.03
    assert est == ksg_mi(x.astype(np.float64), y.astype(np.float64))  # float32 used exactly


def test_1d_inputs_become_columns():
    x, y = pair_1d(0.5, 1000, seed=17)
    assert ksg_mi(x[:, 0], y[:, 0]) == ksg_mi(x, y)


# ---------------------------------------------------------------------------
# Units: standardised by default (the case: I(a x; z), a in {1, 100, 1000})
# ---------------------------------------------------------------------------

def test_units_do_not_matter_by_default():
    x, z = noisy_copy(2000, 2, seed=18)
    truth = math.log(5.0)
    est = [mutual_information(a * x, z, "kraskov") for a in (1.0, 100.0, 1000.0)]
    assert max(est) - min(est) <= 1e-9, est
    assert abs(est[0] - truth) < 0.1, (est[0], truth)
    # per column too, and an affine map of y
    scaled = mutual_information(x * np.array([1e-3, 1e4]) + 7.0, 0.01 * z - 3.0, "kraskov")
    assert abs(scaled - est[0]) <= 1e-9


def test_standardize_opt_out_reaches_the_raw_algorithm():
    """standardize=False (passed through the public call) runs on the data as given, where the
    max-norm lets the widest variable decide every neighbourhood: 1000 x gives about 0."""
    x, z = noisy_copy(2000, 2, seed=18)
    raw = mutual_information(1000.0 * x, z, "kraskov", standardize=False, norm="max")
    assert abs(raw) < 0.05, raw
    assert mutual_information(x, z, "kraskov", standardize=False) == ksg_mi(x, z, standardize=False)


def test_constant_column_is_left_alone():
    x, z = noisy_copy(2000, 2, seed=19)
    with_const = np.hstack([x, np.full((2000, 1), 5.0)])
    assert ksg_mi(with_const, z) == ksg_mi(x, z)


# ---------------------------------------------------------------------------
# Ties and atoms (the cases, with their right values)
# ---------------------------------------------------------------------------

def h2(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


@pytest.mark.parametrize("seed", [20, 21])
def test_rows_zero_in_both_variables(seed):
    """30 % of the rows all-zero in x and y (dead-ReLU-like), the rest x ~ N(0, I_3),
    y = x + 0.5 noise: the zero pattern is a function of both, so
    I = H(0.3) + 0.7 * 1.5 ln 5 = 2.30 (chain rule). Within 0.25 (n = 2000)."""
    x, y = noisy_copy(2000, 3, seed=seed)
    dead = np.random.default_rng(seed + 100).random(2000) < 0.3
    x[dead], y[dead] = 0.0, 0.0
    truth = h2(0.3) + 0.7 * 1.5 * math.log(5.0)
    est = mutual_information(x, y, "kraskov")
    assert abs(est - truth) < 0.25, (est, truth)


def clipped_truth(a: float = 1 / 3, s: float = 0.5) -> float:
    """I(clip(x / a); clip(y / a)) in nats per coordinate, clip at +-1, x ~ N(0, 1),
    y = x + s N(0, 1), by quadrature over the four parts of the joint law: both saturated
    (atoms), one saturated and the other continuous (a density times an atom), both continuous."""
    from scipy import integrate, stats

    px, py = stats.norm(0, 1), stats.norm(0, math.hypot(1, s))
    joint = stats.multivariate_normal([0, 0], [[1, 1], [1, 1 + s * s]])
    sides = ((-np.inf, -a), (a, np.inf))
    total = 0.0
    for x0, x1 in sides:
        for y0, y1 in sides:
            pab = joint.cdf([x1, y1], lower_limit=[x0, y0])
            total += pab * math.log(pab / ((px.cdf(x1) - px.cdf(x0)) * (py.cdf(y1) - py.cdf(y0))))
    sd_x_y = s / math.hypot(1, s)  # x | y ~ N(y / (1 + s^2), s^2 / (1 + s^2))
    for lo, hi in sides:
        pa, pb = px.cdf(hi) - px.cdf(lo), py.cdf(hi) - py.cdf(lo)

        def x_atom(y):
            q = stats.norm.cdf(hi, y / (1 + s * s), sd_x_y) - stats.norm.cdf(lo, y / (1 + s * s), sd_x_y)
            return py.pdf(y) * q * math.log(q / pa)

        def y_atom(x):
            q = stats.norm.cdf(hi, x, s) - stats.norm.cdf(lo, x, s)
            return px.pdf(x) * q * math.log(q / pb)

        total += integrate.quad(x_atom, -a, a)[0] + integrate.quad(y_atom, -a, a)[0]

    def both(y, x):
        return px.pdf(x) * stats.norm.pdf(y, x, s) * (stats.norm.logpdf(y, x, s) - py.logpdf(y))

    return total + integrate.dblquad(both, -a, a, -a, a)[0]


def test_clipped_variables():
    """clip(3x, +-1) and clip(3y, +-1) (about 3/4 of the coordinates saturated: atoms at +-1,
    mixed with continuous parts): within 0.1 of the quadrature truth 3 x 0.4396 = 1.319 nats,
    and never above the data-processing bound I(x; y) = 1.5 ln 5 = 2.41 (+ 0.05)."""
    truth = 3 * clipped_truth()
    assert truth == pytest.approx(1.3187, abs=1e-3)  # a separate quadrature (bivariate-normal rectangles) gave this
    x, y = noisy_copy(2000, 3, seed=22)
    est = mutual_information(np.clip(3 * x, -1, 1), np.clip(3 * y, -1, 1), "kraskov")
    assert est <= 1.5 * math.log(5.0) + 0.05
    assert abs(est - truth) < 0.1, (est, truth)


def test_discrete_table_gives_about_the_plug_in_value():
    """Both variables on 4 symbols (every point an atom): the closed-ball rule is the plug-in
    pointwise information, so the estimate is the exact I of the table within 0.03 (n = 4000)."""
    rng = np.random.default_rng(23)
    p = np.array([[0.2, 0.05, 0.0, 0.0], [0.05, 0.2, 0.05, 0.0], [0.0, 0.05, 0.15, 0.05], [0.0, 0.0, 0.05, 0.15]])
    p /= p.sum()
    cells = rng.choice(16, size=4000, p=p.ravel())
    x, y = (cells // 4).astype(float), (cells % 4).astype(float)
    px, py = p.sum(1), p.sum(0)
    truth = sum(p[i, j] * math.log(p[i, j] / (px[i] * py[j])) for i in range(4) for j in range(4) if p[i, j] > 0)
    for norm in ("euclidean", "max"):
        assert abs(ksg_mi(x, y, norm=norm) - truth) < 0.03


def test_constant_variable_gives_zero():
    x, y = noisy_copy(1000, 2, seed=24)
    assert abs(ksg_mi(np.ones((1000, 2)), y)) < 1e-12
    assert abs(ksg_mi(np.zeros((50, 2)), np.ones((50, 1)))) < 1e-12  # every point the same


def test_mixed_constant_x_gives_zero():
    """Discrete labels, x constant: |I| <= 0.05 (the issue's case; it is exactly 0 here)."""
    labels = np.random.default_rng(25).integers(0, 2, 4000)
    est = mutual_information(np.ones(4000), labels, "kraskov")
    assert abs(est) <= 0.05, est


def test_mixed_x_zero_on_one_class():
    """x exactly 0 for one of two equiprobable classes, N(0,1) for the other: x tells the
    class, I = ln 2; within 0.06 (n = 4000)."""
    rng = np.random.default_rng(26)
    labels = rng.integers(0, 2, 4000)
    x = np.where(labels == 0, 0.0, rng.standard_normal(4000))
    est = mutual_information(x, labels, "kraskov")
    assert abs(est - math.log(2.0)) < 0.06, est


def test_foreign_atoms_are_not_neighbours():
    """A continuous point never sees a foreign atom's copies: adding an atom (500 copies of
    (0, 0), in the middle of both variables' values) changes the continuous points' terms only
    through psi(N)."""
    x, y = noisy_copy(1500, 1, seed=27)
    xa, ya = np.vstack([x, np.zeros((500, 1))]), np.vstack([y, np.zeros((500, 1))])
    terms = _ksg_terms(knn.prepare([xa, ya], "euclidean"), 3, "auto")
    alone = _ksg_terms(knn.prepare([x, y], "euclidean"), 3, "auto")
    np.testing.assert_allclose(terms[:1500], alone + digamma(2000) - digamma(1500), rtol=0, atol=1e-12)


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


@pytest.mark.parametrize("scale", [4.0, 1.0], ids=["separated", "overlapping"])
@pytest.mark.parametrize("norm", ["euclidean", "max"])
def test_mixed_mi_gaussian_mixture_within_005(scale, norm):
    truth, se = mixture_truth(scale, 1.0)
    assert se < 0.003
    rng = np.random.default_rng(21)
    y = rng.integers(0, 4, size=5000)
    x = scale * MEANS[y] + rng.standard_normal((5000, 2))
    est = ksg_mixed_mi(x, y, k=3, norm=norm)
    assert abs(est - truth) < 0.05, (est, truth)


def test_mixed_mi_matches_sklearn_on_1d():
    """1-d x: the same estimator as scikit-learn's mutual_info_classif (Ross 2014).
    Against sklearn's internal _compute_mi_cd (no noise, no scaling) to 1e-10; against the
    public mutual_info_classif (which scales x and adds 1e-10-relative noise) to 1e-6."""
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
    assert 0.3 < est < math.log(2) + 0.1
    assert ksg_mixed_mi(x, y.astype(str), k=5) == est  # string labels work the same as ints


# ---------------------------------------------------------------------------
# Kozachenko-Leonenko entropy
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("norm", ["max", "euclidean"])
def test_entropy_gaussian_within_005(d, norm):
    rng = np.random.default_rng(31)
    a = rng.normal(size=(d, d)) * 0.5 + np.eye(d)
    cov = a @ a.T
    x = rng.multivariate_normal(np.zeros(d), cov, size=5000)
    truth = 0.5 * (d * math.log(2 * math.pi * math.e) + np.linalg.slogdet(cov)[1])
    est = ksg_entropy(x, k=3, norm=norm)
    assert abs(est - truth) < 0.05, (est, truth)
    if norm == "max":
        assert entropy(x, "kraskov") == est  # the public call's default


def test_entropy_rejects_repeated_points():
    x = np.repeat(np.arange(10.0), 5)[:, None]
    with pytest.raises(EstimatorInputError, match="repeated points"):
        ksg_entropy(x, k=3)


# ---------------------------------------------------------------------------
# neighbour search: paths, ties, references
# ---------------------------------------------------------------------------

def relu_tied_data(n: int, seed: int):
    """Like ReLU layers: most entries exactly 0, values on a coarse grid (many duplicate points
    and equal distances)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = np.maximum(0.0, x[:, :2] @ np.array([[1.0, -0.5], [0.3, 0.8]]) - 0.8)
    y = np.round(y * 4) / 4
    x = np.round(np.maximum(0.0, x - 0.5) * 4) / 4
    return x, y


def test_heavy_ties_finite_and_max_norm_paths_agree_exactly(monkeypatch):
    x, y = relu_tied_data(1500, seed=41)
    assert np.mean(x == 0) > 0.5 and np.mean(y == 0) > 0.5
    joint = np.hstack([x, y])
    assert len(np.unique(joint, axis=0)) < len(joint) // 2  # many duplicate points
    vals = {nb: ksg_mi(x, y, k=3, norm="max", neighbours=nb) for nb in ("kdtree", "brute")}
    assert all(np.isfinite(v) for v in vals.values())
    assert vals["kdtree"] == vals["brute"]
    p = knn.prepare([x, y], "max")
    rows = np.arange(0, 1500, 3)
    for q in (p, p.block(0), p.block(1)):
        eps_t = knn.kth(q, 3, neighbours="kdtree")
        assert np.array_equal(eps_t, knn.kth(q, 3, neighbours="brute"))
        assert np.any(eps_t == 0)  # the eps = 0 case is exercised
        assert np.array_equal(knn.kth(q, 3, rows, "kdtree"), eps_t[rows])
        assert np.array_equal(knn.kth(q, 3, rows, "brute"), eps_t[rows])
        assert np.array_equal(knn.count(q, q.a, eps_t, "kdtree"), knn.count(q, q.a, eps_t, "brute"))
    labels = (y[:, 0] > 0).astype(int) + 2 * (x[:, 0] > 0)
    m_t = ksg_mixed_mi(x, labels, k=3, norm="max", neighbours="kdtree")
    assert np.isfinite(m_t) and m_t == ksg_mixed_mi(x, labels, k=3, norm="max", neighbours="brute")
    # the torch fallback (no numba) gives the same numbers
    monkeypatch.setattr(knn, "_NUMBA_KERNELS", False)
    assert ksg_mi(x, y, k=3, norm="max", neighbours="brute") == vals["kdtree"]
    assert ksg_mixed_mi(x, labels, k=3, norm="max", neighbours="brute") == m_t


def test_euclidean_kernels_match_a_plain_reference_and_the_fallback(monkeypatch):
    """Per-block squared Euclidean distances: the kernels' k-th distances and counts equal a
    plain NumPy evaluation (same columns, same order of the sums: exactly); the torch fallback
    agrees to rounding."""
    rng = np.random.default_rng(42)
    x, y = rng.normal(size=(400, 3)), rng.normal(size=(400, 2))
    p = knn.prepare([x, y], "euclidean")
    a = p.a
    dx = ((a[:, None, :3] - a[None, :, :3]) ** 2).sum(-1)
    dy = ((a[:, None, 3:] - a[None, :, 3:]) ** 2).sum(-1)
    dz = np.maximum(dx, dy)
    np.fill_diagonal(dz, np.inf)
    kth = knn.kth(p, 3)
    assert np.array_equal(kth, np.sort(dz, axis=1)[:, 2])
    assert np.array_equal(knn.count(p.block(0), p.block(0).a, kth), (dx < kth[:, None]).sum(1))  # itself included
    est = ksg_mi(x, y)
    monkeypatch.setattr(knn, "_NUMBA_KERNELS", False)
    assert ksg_mi(x, y) == pytest.approx(est, abs=1e-9)


def test_high_dimension_uses_brute_and_matches_kdtree():
    rng = np.random.default_rng(42)
    x = rng.normal(size=(600, 12))
    y = x[:, :6] + 0.5 * rng.normal(size=(600, 6))
    kw = dict(norm="max")
    assert ksg_mi(x, y, **kw) == ksg_mi(x, y, neighbours="kdtree", **kw) == ksg_mi(x, y, neighbours="brute", **kw)


def test_every_fast_path_gives_scikit_learns_distances_and_counts():
    """neighbours="sklearn" (scikit-learn's KDTree, Chebyshev metric) is the plain reference:
    scipy's kd-tree, numba's brute force and the torch path give its k-th distances and its
    "strictly closer than r" counts exactly, on points with many ties and copies, and so
    the same KSG estimate."""
    rng = np.random.default_rng(7)
    x = np.maximum(np.round(rng.standard_normal((800, 3)) * 2) / 2, 0.0)  # ties, zero radii
    y = np.round(x[:, :2] + 0.5 * rng.standard_normal((800, 2)), 1)
    p = knn.prepare([x, y], "max")
    zero_radii = 0
    for q in (p, p.block(0), p.block(1)):
        ref = knn.kth(q, 3, neighbours="sklearn")
        zero_radii += int(np.sum(ref == 0))
        for fast in ("kdtree", "brute", "torch"):
            assert np.array_equal(knn.kth(q, 3, neighbours=fast), ref), fast
        for r in (ref, np.nextafter(ref, np.inf), 0.5 * ref):
            counts = knn.count(q, q.a, r, "sklearn")
            for fast in ("kdtree", "brute", "torch"):
                assert np.array_equal(knn.count(q, q.a, r, fast), counts), fast
    assert zero_radii > 50  # points with k copies: the zero-radius case is exercised
    z = rng.normal(size=(700, 4))
    w = z[:, :2] + 0.5 * rng.normal(size=(700, 2))
    ref = ksg_mi(z, w, norm="max", neighbours="sklearn")
    assert ref > 0.5
    for fast in ("auto", "kdtree", "brute", "torch"):
        assert ksg_mi(z, w, norm="max", neighbours=fast) == ref, fast
    with pytest.raises(EstimatorInputError, match="neighbours='sklearn' serves the max-norm"):
        ksg_mi(z, w, norm="euclidean", neighbours="sklearn")


def test_matches_infomeasure_ksg_type1():
    """Same data, infomeasure's KSG type I with its noise off, max-norm, nats."""
    im = pytest.importorskip("infomeasure")
    rng = np.random.default_rng(43)
    x = rng.normal(size=(2000, 3))
    y = x[:, :2] @ rng.normal(size=(2, 2)) + rng.normal(size=(2000, 2))
    ref = im.mutual_information(x, y, approach="ksg", k=3, ksg_id=1, noise_level=0, minkowski_p=np.inf, base="e")
    for nb in ("kdtree", "brute"):
        assert abs(ksg_mi(x, y, k=3, norm="max", standardize=False, neighbours=nb) - ref) < 1e-6
    h_ref = im.entropy(x, approach="kl", k=3, noise_level=0, minkowski_p=np.inf, base="e")
    assert abs(ksg_entropy(x, k=3) - h_ref) < 1e-6


def test_matches_the_benchmarks_ksg_definition():
    """Euclidean within each variable, max over the pair, standardised columns: the definition
    of bmi's KSGEnsembleFirstEstimator(neighborhoods=(3,)) (Czyz et al. 2023), here written out
    with SciPy distance matrices (continuous data: no atoms)."""
    from scipy.spatial.distance import cdist

    x, y = sample_gaussian(cov_2x2(), 2, 800, seed=44)
    xs, ys = [(a - a.mean(0)) / a.std(0) for a in (x, y)]
    dx, dy = cdist(xs, xs), cdist(ys, ys)
    dz = np.maximum(dx, dy)
    np.fill_diagonal(dz, np.inf)
    eps = np.sort(dz, axis=1)[:, 2]
    nx, ny = (dx < eps[:, None]).sum(1) - 1, (dy < eps[:, None]).sum(1) - 1
    ref = digamma(3) + digamma(800) - np.mean(digamma(nx + 1) + digamma(ny + 1))
    assert ksg_mi(x, y) == pytest.approx(ref, abs=1e-9)


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
        (lambda: ksg_mi(np.zeros(10), np.zeros(10), norm="l1"), "norm must be one of euclidean, max"),
        (lambda: ksg_mi(np.zeros(10), np.zeros(10), neighbours="kdtree"), "neighbours=.kdtree. serves the max-norm"),
        (lambda: ksg_mi(np.zeros((10, 0)), np.zeros(10)), "at least one column"),
        (lambda: ksg_mi(np.array(["a"] * 10), np.zeros(10)), "real numbers"),
        (lambda: ksg_mixed_mi(np.zeros(10), np.zeros((10, 2))), "labels must be 1-d"),
        (lambda: ksg_mixed_mi(np.zeros(10), np.zeros(9)), "same number of samples"),
        (lambda: ksg_mixed_mi(np.zeros(10), np.arange(10)), "class with at least 2"),
        (lambda: ksg_mixed_mi(np.zeros(10), np.r_[np.nan, np.zeros(9)]), "labels must be finite"),
        (lambda: ksg_entropy(np.zeros(3), k=3), "more samples than k=3"),
        (lambda: mutual_information(np.zeros(10), np.zeros(10), "kraskov", scale=True), "unknown parameter"),
    ],
)
def test_bad_input_one_line_errors(call, match):
    with pytest.raises(EstimatorInputError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)
