"""The public estimator API: dispatch, input handling, errors, information_plane."""

import importlib
import importlib.util
import math

import numpy as np
import pytest

from ibcli.estimators import (
    METHODS,
    EstimatorInputError,
    PlanePoint,
    bin_edges,
    canonical_method,
    entropy,
    information_plane,
    mutual_information,
)
from ibcli.estimators.binning import binning_information_plane
from ibcli.estimators.kde import kde_information_plane
from ibcli.estimators.units import nats_to_bits


def has_module(name):
    return importlib.util.find_spec(name) is not None


@pytest.fixture
def fake_module(monkeypatch):
    """Replace functions of ibcli.estimators.<name> (ksg or mine) by recording stand-ins."""

    def install(name, **functions):
        calls = []
        mod = importlib.import_module(f"ibcli.estimators.{name}")
        for fname, value in functions.items():
            def make(fname=fname, value=value):
                def f(*args, **kwargs):
                    calls.append((fname, args, kwargs))
                    return value
                return f
            monkeypatch.setattr(mod, fname, make())
        return calls

    return install


# ---------------------------------------------------------------- method names
def test_methods_and_alias():
    assert METHODS == ("binning", "kde", "kraskov", "mine", "renyi", "sp")
    assert canonical_method("ksg") == "kraskov"
    assert canonical_method(" KSG ") == "kraskov"
    assert canonical_method("Binning") == "binning"


def test_unknown_method_lists_valid_names_in_one_line():
    for call in (lambda: canonical_method("histogram"),
                 lambda: mutual_information([1.0, 2.0], [1, 2], method="histogram"),
                 lambda: entropy([1.0, 2.0], method=None)):
        with pytest.raises(EstimatorInputError) as info:
            call()
        msg = str(info.value)
        assert "\n" not in msg
        for name in ("binning", "kde", "kraskov", "mine", "ksg"):
            assert name in msg


def test_unknown_parameter_is_a_user_error():
    with pytest.raises(EstimatorInputError, match="unknown parameter.*k; accepted: bins, strategy"):
        mutual_information(np.zeros(5), np.zeros(5, int), "binning", k=3)
    with pytest.raises(EstimatorInputError, match="mine has no entropy estimator"):
        entropy(np.zeros(5), "mine")


# ---------------------------------------------------------------- input handling
def test_one_d_inputs_are_read_as_one_column():
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    y = (x + 0.5 * rng.normal(size=400) > 0).astype(int)
    a = mutual_information(x, y, "binning", bins=8)
    b = mutual_information(x[:, None], y, "binning", bins=8)
    assert a == b
    # exact check: binning x into 2 bins split at the midpoint of its range
    e = bin_edges(x, 2)
    xb = (x >= e[1]).astype(int)
    assert a > 0 and mutual_information(x, y, "binning", bins=2) == pytest.approx(
        mutual_information(xb, y, "binning"), abs=1e-15)
    assert entropy(x, "binning", bins=2) == pytest.approx(entropy(xb, "binning"), abs=1e-15)


def test_binning_on_discrete_values_is_exact():
    # x = (0, 0, 1, 2): H = 1.5 bits; y = x mod 2 -> I(X;Y) = H(Y) = h(1/4) bits
    x = np.array([0, 0, 1, 2])
    assert nats_to_bits(entropy(x, "binning")) == pytest.approx(1.5, abs=1e-12)
    h = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    assert nats_to_bits(mutual_information(x, x % 2, "binning")) == pytest.approx(h, abs=1e-12)


def test_float_labels_stay_discrete_with_discrete_y_true():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    x = labels[:, None] * 1.0 + 0.3 * rng.normal(size=(300, 2))
    as_float = labels.astype(np.float64)
    # kde: continuous y is refused; float labels flagged discrete give the int-label value
    with pytest.raises(EstimatorInputError, match="kde mutual information needs a discrete y"):
        mutual_information(x, as_float, "kde")
    with pytest.raises(EstimatorInputError, match="needs a discrete y"):
        mutual_information(x, labels, "kde", discrete_y=False)
    v_int = mutual_information(x, labels, "kde", noise_var=0.05)
    v_float = mutual_information(x, as_float, "kde", discrete_y=True, noise_var=0.05)
    ref = kde_information_plane(x, labels, [0.05])[0]
    assert v_int == v_float == pytest.approx(ref.i_ty_kl, rel=1e-12)
    assert mutual_information(x, labels, "kde", noise_var=0.05, bound="lower") == pytest.approx(ref.i_ty_bd, rel=1e-12)
    # binning: labels read back as floats 0.0, 1.0, 2.0 are used as symbols
    assert mutual_information(x, as_float, "binning", discrete_y=True) == mutual_information(x, labels, "binning")


def test_entropy_kde_is_the_pairwise_bound():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 3))
    from ibcli.estimators.kde import kde_entropy_bounds

    b = kde_entropy_bounds(x, [0.2])[0]
    assert entropy(x, "kde", noise_var=0.2) == pytest.approx(b.upper, rel=1e-14)
    assert entropy(x, "kde", noise_var=0.2, bound="lower") == pytest.approx(b.lower, rel=1e-14)


def test_mismatched_lengths_nan_and_ndim_give_one_line_messages():
    x = np.zeros((100, 2))
    cases = [
        (lambda: mutual_information(x, np.zeros(99), "binning"), "x has 100 rows but y has 99; they must be paired samples"),
        (lambda: mutual_information(x, np.zeros(99, int), "kde"), "x has 100 rows but y has 99"),
        (lambda: mutual_information(np.full((10, 2), np.nan), np.zeros(10, int), "kde"), "x has 20 NaN and 0 inf"),
        (lambda: mutual_information(np.zeros((10, 2, 2)), np.zeros(10, int), "kde"), "got 3 dimensions"),
        (lambda: entropy(np.zeros((4, 2, 2)), "binning"), "shape"),
        (lambda: mutual_information(np.zeros((0, 2)), np.zeros(0, int), "kde"), "at least one sample"),
        (lambda: mutual_information(x, np.zeros(100, int), "kde", discrete_y="yes"), "discrete_y must be"),
        (lambda: mutual_information(np.array(["a", "b"]), np.zeros(2, int), "kde"), "real numbers"),
    ]
    for call, text in cases:
        with pytest.raises(EstimatorInputError) as info:
            call()
        assert text in str(info.value)
        assert "\n" not in str(info.value)
        assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------- dispatch to ksg / mine
def test_kraskov_dispatch_uses_mixed_estimator_for_discrete_y(fake_module):
    calls = fake_module("ksg", ksg_mi=1.0, ksg_mixed_mi=2.0, ksg_entropy=3.0)
    x = np.arange(20.0)
    labels = np.arange(20) % 2
    assert mutual_information(x, labels, "ksg") == 2.0
    assert mutual_information(x, labels.astype(float), "kraskov", k=5) == 1.0  # float y: continuous
    assert mutual_information(x, labels.astype(float), "kraskov", discrete_y=True) == 2.0
    assert mutual_information(x, labels, "kraskov", discrete_y=False) == 1.0
    assert entropy(x, "ksg", k=4) == 3.0
    names = [c[0] for c in calls]
    assert names == ["ksg_mixed_mi", "ksg_mi", "ksg_mixed_mi", "ksg_mi", "ksg_entropy"]
    _, args, kwargs = calls[1]
    assert args[0].shape == (20, 1) and args[0].dtype == np.float64 and args[1].shape == (20, 1)
    assert kwargs == {"k": 5, "norm": "euclidean", "standardize": True, "neighbours": "auto", "device": "cpu"}
    _, args, _ = calls[2]
    assert args[1].dtype == np.int64 and list(args[1][:4]) == [0, 1, 0, 1]
    assert calls[4][2] == {"k": 4, "norm": "max", "neighbours": "auto", "device": "cpu"}


def test_mine_dispatch_one_hot_encodes_discrete_y(fake_module):
    calls = fake_module("mine", mine_mi=0.5)
    x = np.zeros((6, 3))
    labels = np.array([5, 7, 5, 9, 7, 5])
    assert mutual_information(x, labels, "mine", steps=10, seed=3) == 0.5
    _, (xa, ya), kwargs = calls[0]
    np.testing.assert_array_equal(ya, np.eye(3)[[0, 1, 0, 2, 1, 0]])
    assert ya.dtype == np.float64 and kwargs["steps"] == 10 and kwargs["seed"] == 3


@pytest.mark.skipif(not has_module("ibcli.estimators.ksg"), reason="ksg module not there yet")
def test_kraskov_on_a_gaussian_pair_with_known_mi():
    # I = -1/2 ln(1 - rho^2) nats for a bivariate normal; KSG(k=3) sd at n=2000 is ~0.015
    rng = np.random.default_rng(3)
    rho = 0.8
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=2000)
    truth = -0.5 * math.log(1 - rho**2)
    assert mutual_information(z[:, 0], z[:, 1], "ksg") == pytest.approx(truth, abs=0.06)
    # a discrete y that is a function of x: I = H(Y) = ln 2
    labels = (z[:, 0] > 0).astype(int)
    assert mutual_information(z[:, :1], labels, "kraskov") == pytest.approx(math.log(2), abs=0.06)


# ---------------------------------------------------------------- information_plane
def test_information_plane_binning_matches_the_binning_module():
    rng = np.random.default_rng(4)
    t = np.tanh(rng.normal(size=(300, 5))).astype(np.float32)
    labels = rng.integers(0, 4, 300)
    edges = bin_edges(t, 10)
    (p,) = information_plane(t, labels, "binning", edges=edges)
    i_xt, i_ty, uf = binning_information_plane(t, labels, edges)
    assert isinstance(p, PlanePoint)
    assert (p.i_xt_nats, p.i_ty_nats, p.values["unique_fraction"]) == (i_xt, i_ty, uf)
    assert (p.values["bin_lo"], p.values["bin_hi"]) == (edges[0], edges[-1]) and p.params == {}
    with pytest.raises(EstimatorInputError, match="binning needs edges"):
        information_plane(t, labels, "binning")


def test_information_plane_kde_one_point_per_noise_variance():
    rng = np.random.default_rng(5)
    t = rng.normal(size=(200, 4)).astype(np.float32)
    labels = rng.integers(0, 3, 200)
    points = information_plane(t, labels, "kde", noise_var=(0.01, 0.1, 1.0))
    ref = kde_information_plane(t, labels, [0.01, 0.1, 1.0])
    assert [p.params["noise_var"] for p in points] == [0.01, 0.1, 1.0]
    for p, r in zip(points, ref):
        assert (p.i_xt_nats, p.values["i_xt_lower"], p.i_ty_nats, p.values["i_ty_bd"]) == (
            r.i_xt_upper, r.i_xt_lower, r.i_ty_kl, r.i_ty_bd)
        assert p.i_xt_nats >= p.values["i_xt_lower"]
    # more noise, less information (upper bound)
    assert points[0].i_xt_nats > points[1].i_xt_nats > points[2].i_xt_nats


def test_information_plane_kraskov_passes_params_and_columns(fake_module):
    from ibcli.estimators.ksg import KSGPlanePoint

    point = KSGPlanePoint(noise_var=0.5, i_xt=1.25, i_ty=0.5, i_xt_unclipped=1.25, i_ty_unclipped=0.5,
                          i_xt_sd=0.1, i_ty_sd=0.2, i_xt_se=0.05, i_ty_se=0.1, i_xt_baseline=None,
                          i_xt_baseline_q95=None, i_ty_baseline=None, i_ty_baseline_q95=None,
                          flag="too wide", ceiling=3.0, h_y=0.69)
    calls = fake_module("ksg", ksg_information_plane=[point])
    t = np.zeros((20, 3), dtype=np.float32)
    labels = np.arange(20) % 2
    (p,) = information_plane(t, labels, "ksg", noise_var=(0.5,), k=4, repeats=3, ksg_draws=2, seed=11)
    assert (p.i_xt_nats, p.i_ty_nats, p.params) == (1.25, 0.5, {"noise_var": 0.5})
    assert p.values == {"i_xt_sd": 0.1, "i_ty_sd": 0.2, "i_xt_se": 0.05, "i_ty_se": 0.1, "flag": "too wide"}
    ((_, (targ, larg, nv), kw),) = calls
    assert nv == (0.5,) and kw == {"k": 4, "draws": 2, "repeats": 3, "baseline": 0, "seed": 11, "device": "cpu"}
    np.testing.assert_array_equal(larg, labels)


def test_information_plane_mine_passes_params_and_flags(fake_module):
    from ibcli.estimators.mine import MinePlanePoint

    point = MinePlanePoint(noise_var=0.5, i_xt_nats=0.75, i_ty_nats=0.25, i_xt_sd_nats=0.1, i_ty_sd_nats=0.2,
                           i_xt_se_nats=0.05, i_ty_se_nats=0.1, flag="i_ty unsettled (1 of 2 seeds)",
                           ceiling_nats=1.0, seconds=0.0)
    calls = fake_module("mine", mine_information_plane=[point])
    t = np.ones((10, 2))
    labels = np.arange(10) % 5
    (p,) = information_plane(t, labels, "mine", noise_var=(0.5,), mine_steps=7, mine_seeds=2, seed=2, device="cpu")
    assert (p.i_xt_nats, p.i_ty_nats, p.params) == (0.75, 0.25, {"noise_var": 0.5})
    assert p.values == {"i_xt_se": 0.05, "i_ty_se": 0.1, "i_xt_sd": 0.1, "i_ty_sd": 0.2,
                        "flag": "i_ty unsettled (1 of 2 seeds)"}  # no baseline asked: those columns stay empty
    ((_, (targ, larg, nv), kw),) = calls
    assert nv == (0.5,) and (kw["steps"], kw["seeds"], kw["seed"], kw["device"], kw["baseline"]) == (7, 2, 2, "cpu", 0)
    with pytest.raises(EstimatorInputError, match="has no parameter 'mine_seed'"):
        information_plane(t, labels, "mine", seed=1, mine_seed=1)


def test_information_plane_checks_its_inputs():
    t = np.zeros((20, 3))
    labels = np.zeros(20, int)
    bad = t.copy()
    bad[0, 0] = np.nan
    cases = [
        (lambda: information_plane(t, labels[:-1], "kde"), "t has 20 rows but labels has 19"),
        (lambda: information_plane(t, labels, "kraskov", x=np.zeros((19, 2))), "t has 20 rows but x has 19"),
        (lambda: information_plane(bad, labels, "kde"), "t has 1 NaN"),
        (lambda: information_plane(t, labels, "renyi", x=np.full((20, 2), np.inf)), "x has 0 NaN and 40 inf"),
        (lambda: information_plane(t, labels, "kde", noise_var=(0.1, -1.0)), "--noise-var must be positive"),
        (lambda: information_plane(t, labels, "nope"), "unknown estimator method"),
        (lambda: information_plane(np.zeros((20, 3, 1)), labels, "kde"), "dimensions"),
    ]
    for call, text in cases:
        with pytest.raises(EstimatorInputError) as info:
            call()
        assert text in str(info.value) and "\n" not in str(info.value)
