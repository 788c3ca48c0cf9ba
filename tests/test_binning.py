"""Binning (plug-in) estimators against tables whose entropies are known by hand."""

import math

import numpy as np
import pytest

from ibcli.estimators import EstimatorInputError, bin_edges, mutual_information
from ibcli.estimators.binning import (
    binning_information_plane,
    discrete_entropy,
    discrete_mi,
    discretize,
    pattern_ids,
)
from ibcli.estimators.units import nats_to_bits


def samples_from_counts(counts):
    """Paired samples (a, b) in which cell (i, j) occurs exactly counts[i, j] times."""
    counts = np.asarray(counts)
    a, b = np.nonzero(counts >= 0)
    reps = counts[a, b]
    return np.repeat(a, reps), np.repeat(b, reps)


def mi_of_table(p):
    """sum p ln(p / (px py)) over cells with p > 0: the truth, written independently."""
    p = np.asarray(p, dtype=float) / np.sum(p)
    px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / (px @ py)[m])))


# ---------------------------------------------------------------- exact tables
def test_entropy_of_dyadic_distribution_is_exact():
    # p = (1/2, 1/4, 1/8, 1/8): H = 1/2*1 + 1/4*2 + 2 * 1/8*3 = 1.75 bits exactly.
    ids = np.repeat([0, 1, 2, 3], [4, 2, 1, 1])
    assert nats_to_bits(discrete_entropy(ids)) == pytest.approx(1.75, abs=1e-12)
    # the same table laid out as a 2x2 joint variable (rows are symbols)
    rows = np.array([[0, 0]] * 4 + [[0, 1]] * 2 + [[1, 0]] + [[1, 1]])
    assert nats_to_bits(discrete_entropy(rows)) == pytest.approx(1.75, abs=1e-12)


def test_mi_of_2x2_table_is_exact():
    # p = [[1/2, 1/4], [1/8, 1/8]]: H(X) = h(3/4), H(Y) = h(5/8), H(X,Y) = 1.75 bits.
    a, b = samples_from_counts([[4, 2], [1, 1]])
    h = lambda q: -(q * math.log2(q) + (1 - q) * math.log2(1 - q))  # noqa: E731
    truth_bits = h(3 / 4) + h(5 / 8) - 1.75
    assert truth_bits == pytest.approx(0.0157121, abs=1e-6)  # 0.811278 + 0.954434 - 1.75
    assert nats_to_bits(discrete_mi(a, b)) == pytest.approx(truth_bits, abs=1e-12)
    # through the public API, integer inputs are used as symbols directly
    assert nats_to_bits(mutual_information(a, b, "binning")) == pytest.approx(truth_bits, abs=1e-12)


@pytest.mark.parametrize("shape", [(2, 2), (3, 5), (10, 10), (16, 4)])
def test_mi_exact_on_integer_tables_of_several_sizes(shape):
    rng = np.random.default_rng(sum(shape))
    counts = rng.integers(0, 20, size=shape)
    counts[0, 0] += 1
    a, b = samples_from_counts(counts)
    # labels need not be 0..K-1: relabelling symbols leaves MI unchanged
    a_lab = np.array([3, -7, 11, 100, 5, 6, 9, 8, 2, 1, 0, 41, 42, 43, 44, 45])[a]
    truth = mi_of_table(counts)
    assert discrete_mi(a, b) == pytest.approx(truth, abs=1e-12)
    assert discrete_mi(a_lab, b) == pytest.approx(truth, abs=1e-12)
    # H(A) from the marginal
    pa = counts.sum(1) / counts.sum()
    pa = pa[pa > 0]
    assert discrete_entropy(a) == pytest.approx(float(-(pa * np.log(pa)).sum()), abs=1e-12)


def test_sampled_table_within_plugin_bias_plus_three_sd():
    """Plug-in MI from n samples: E[est] ~ truth + (|X||Y| - |X| - |Y| + 1)/(2n)
    (Miller 1955), sd ~ sqrt(Var_p[ln p(x,y)/(p(x)p(y))] / n) (analytic, first
    order). Every one of 30 seeded draws lies within bias + 3 sd of the truth,
    and their mean lies within 3 sd/sqrt(30) + 0.5 * bias of truth + bias."""
    p = np.array([[0.20, 0.05, 0.05], [0.05, 0.20, 0.05], [0.05, 0.05, 0.10], [0.02, 0.03, 0.15]])
    p = p / p.sum()
    truth = mi_of_table(p)
    nx, ny = p.shape
    n = 3000
    bias = (nx * ny - nx - ny + 1) / (2 * n)
    pmi = np.log(p / (p.sum(1, keepdims=True) * p.sum(0, keepdims=True)))
    sd = math.sqrt(float(np.sum(p * pmi**2) - truth**2) / n)
    rng = np.random.default_rng(7)
    ests = []
    for _ in range(30):
        cells = rng.choice(p.size, size=n, p=p.ravel())
        est = discrete_mi(cells // ny, cells % ny)
        assert abs(est - truth) <= bias + 3 * sd
        ests.append(est)
    assert abs(np.mean(ests) - (truth + bias)) <= 3 * sd / math.sqrt(30) + 0.5 * bias


# ---------------------------------------------------------------- edges, codes
def test_bin_edges_fit_the_data_range_not_minus_one_one():
    rng = np.random.default_rng(0)
    relu = np.maximum(rng.normal(1.0, 2.0, size=(3, 500, 20)), 0.0)  # epochs x samples x units
    relu[0, 0, 0] = 7.0
    relu = np.minimum(relu, 7.0)
    e = bin_edges(relu, bins=30)
    assert e.shape == (31,) and e.dtype == np.float64
    assert e[0] == 0.0 and e[-1] == 7.0
    np.testing.assert_allclose(np.diff(e), 7.0 / 30, rtol=1e-12)


def test_adaptive_edges_hold_equal_mass_and_merge_repeated_quantiles():
    rng = np.random.default_rng(1)
    v = rng.exponential(size=20000)
    e = bin_edges(v, bins=10, strategy="adaptive")
    counts = np.bincount(discretize(v, e).ravel(), minlength=10)
    assert e.size == 11
    np.testing.assert_array_equal(counts, 2000)  # quantile edges split 20000 distinct values exactly
    relu = np.maximum(rng.normal(size=10000), 0.0)  # half the mass at exactly 0
    e2 = bin_edges(relu, bins=10, strategy="adaptive")
    assert np.all(np.diff(e2) > 0) and e2[0] == 0.0 and e2[-1] == relu.max()
    assert e2.size <= 11


def test_constant_values_give_one_degenerate_bin_and_zero_information():
    t = np.full((50, 4), 0.25, dtype=np.float32)
    e = bin_edges(t, bins=30)
    np.testing.assert_array_equal(e, [0.25, 0.25])
    assert np.all(discretize(t, e) == 0)
    labels = np.arange(50) % 5
    i_xt, i_ty, uf = binning_information_plane(t, labels, e)
    assert i_xt == 0.0 and i_ty == 0.0 and uf == 0.0
    # constant activations with edges from other epochs: still exactly 0
    assert binning_information_plane(t, labels, np.linspace(-1, 1, 31))[:2] == (0.0, 0.0)


def test_bin_edges_rejects_bad_bins_and_strategy():
    for bins in (0, -3, 2.5):
        with pytest.raises(EstimatorInputError, match="bins must be a positive integer"):
            bin_edges([0.0, 1.0], bins=bins)
    with pytest.raises(EstimatorInputError, match="strategy"):
        bin_edges([0.0, 1.0], strategy="equal")
    with pytest.raises(EstimatorInputError, match="NaN"):
        bin_edges([0.0, np.nan])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("strategy", ["uniform", "adaptive"])
def test_discretize_matches_searchsorted_exactly_including_values_on_edges(dtype, strategy):
    rng = np.random.default_rng(3)
    t = np.tanh(rng.normal(size=(400, 30))).astype(dtype)
    e = bin_edges(t, bins=30, strategy=strategy)
    t.ravel()[:300] = e[rng.integers(0, e.size, 300)].astype(dtype)  # values exactly on edges
    t.ravel()[300:310] = [-5, 5, -1.5, 1.5, 0, 0, -0, 2, -2, 1]  # outside the range: clipped
    ref = np.searchsorted(e[1:-1], t.astype(np.float64), side="right")
    codes = discretize(t, e)
    assert codes.dtype == np.uint8 and codes.shape == t.shape
    np.testing.assert_array_equal(codes, ref)


def test_discretize_on_integer_grid_puts_each_integer_in_its_own_bin():
    v = np.arange(8, dtype=np.float32)  # ReLU-like values 0..7, edges at 0, 1, ..., 7
    e = bin_edges(v, bins=7)
    np.testing.assert_array_equal(discretize(v, e), [0, 1, 2, 3, 4, 5, 6, 6])


def test_pattern_ids_are_exact_for_rows_that_differ_in_one_entry():
    rng = np.random.default_rng(4)
    base = rng.integers(0, 30, size=(1, 1024)).astype(np.uint8)
    rows = np.repeat(base, 600, axis=0)
    rows[np.arange(600), np.arange(600)] += 1  # 600 distinct rows, each one entry off the base
    rows = np.vstack([rows, rows[:100]])  # 100 repeats
    ids, n_pat = pattern_ids(rows)
    assert n_pat == 600
    np.testing.assert_array_equal(ids[600:], ids[:100])
    assert len(set(ids[:600].tolist())) == 600


def test_unique_fraction_on_a_hand_made_case():
    # patterns A, A, B, C, D: B, C and D are unique -> 3/5
    t = np.array([[0.1, 0.9], [0.1, 0.9], [0.9, 0.1], [0.5, 0.5], [0.9, 0.9]])
    e = np.array([0.0, 0.25, 0.75, 1.0])
    i_xt, _, uf = binning_information_plane(t, [0, 0, 1, 1, 1], e)
    assert uf == pytest.approx(3 / 5, abs=1e-15)
    # H(T) for counts (2, 1, 1, 1) of 5
    assert i_xt == pytest.approx(math.log(5) - 2 * math.log(2) / 5, abs=1e-12)


def test_binning_information_plane_on_a_hand_case():
    # Y = (0,0,0,0,1,1,1,1); binned T = (a,a,b,b,c,c,c,c).
    # H(T) = H(1/4,1/4,1/2) = 1.5 bits; H(T|Y=0) = 1 bit, H(T|Y=1) = 0 -> H(T|Y) = 0.5 bit;
    # I(X;T) = 1.5 bits, I(T;Y) = 1 bit; no pattern is unique.
    t = np.array([[0.1, -0.5], [0.2, -0.6], [0.6, -0.5], [0.7, -0.9],
                  [0.6, 0.5], [0.7, 0.6], [0.9, 0.9], [0.55, 0.7]], dtype=np.float32)
    e = np.array([-1.0, 0.0, 0.5, 1.0])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=np.float64)  # float labels stay labels
    i_xt, i_ty, uf = binning_information_plane(t, labels, e)
    assert nats_to_bits(i_xt) == pytest.approx(1.5, abs=1e-12)
    assert nats_to_bits(i_ty) == pytest.approx(1.0, abs=1e-12)
    assert uf == 0.0


def test_binning_plane_wide_layer_hits_the_log_n_ceiling():
    rng = np.random.default_rng(5)
    t = np.tanh(rng.normal(size=(500, 256))).astype(np.float32)
    labels = rng.integers(0, 10, 500)
    i_xt, i_ty, uf = binning_information_plane(t, labels, bin_edges(t, 30))
    assert i_xt == pytest.approx(math.log(500), abs=1e-12)
    assert uf == 1.0
    # every pattern unique: I(T;Y) = H(Y) exactly
    assert i_ty == pytest.approx(discrete_entropy(labels), abs=1e-12)


def test_binning_plane_rejects_bad_input():
    t = np.zeros((10, 3))
    with pytest.raises(EstimatorInputError, match="t has 10 rows but labels has 9"):
        binning_information_plane(t, np.zeros(9, int), [0.0, 1.0])
    bad = t.copy()
    bad[2, 1] = np.nan
    with pytest.raises(EstimatorInputError, match="NaN"):
        binning_information_plane(bad, np.zeros(10, int), [0.0, 1.0])
    with pytest.raises(EstimatorInputError, match="edges"):
        binning_information_plane(t, np.zeros(10, int), [1.0, 0.0])


def test_pattern_ids_stay_exact_when_the_hash_collides(monkeypatch):
    from ibcli.estimators import binning

    rng = np.random.default_rng(6)
    rows = rng.integers(0, 3, size=(300, 40)).astype(np.uint8)
    rows[150:] = rows[:150]  # every pattern twice
    want, n_want = pattern_ids(rows)
    # a degenerate "hash" that maps every row to 0: verification must catch it
    monkeypatch.setattr(binning, "_hash_multipliers", lambda m: np.zeros(m, dtype=np.uint64))
    ids, n_pat = pattern_ids(rows)
    assert n_pat == n_want == len({r.tobytes() for r in rows})
    np.testing.assert_array_equal(ids[150:], ids[:150])
    # same partition as the hashed path
    assert len(set(zip(ids.tolist(), want.tolist()))) == n_pat
