"""The packaged 12-bit task of Shwartz-Ziv & Tishby (2017)."""

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from ibcli.datasets.ib12 import load_ib12, split_ib12

SHARED_MAT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ib" / "var_u.mat"


@pytest.fixture(scope="module")
def data():
    return load_ib12()


def test_shapes_dtypes_values(data):
    x, y = data
    assert x.shape == (4096, 12) and x.dtype == torch.float32
    assert y.shape == (4096,) and y.dtype == torch.int64
    assert set(torch.unique(x).tolist()) == {0.0, 1.0}
    assert set(torch.unique(y).tolist()) == {0, 1}


def test_rows_are_every_12bit_pattern_in_counting_order(data):
    x, _ = data
    assert torch.unique(x, dim=0).shape[0] == 4096
    codes = (x.to(torch.int64) * (2 ** torch.arange(11, -1, -1))).sum(dim=1)
    assert torch.equal(codes, torch.arange(4096))


def test_label_balance(data):
    _, y = data
    # What var_u.mat holds: 1978 zeros, 2118 ones.
    assert int((y == 0).sum()) == 1978
    assert int((y == 1).sum()) == 2118


def test_packaged_file_is_loadable_as_resource():
    raw = resources.files("ibcli.datasets").joinpath("var_u.mat").read_bytes()
    assert raw.startswith(b"MATLAB 5.0 MAT-file")
    assert len(raw) == 1003


@pytest.mark.skipif(not SHARED_MAT.is_file(), reason="shared data directory absent")
def test_identical_to_shared_file(data):
    raw = resources.files("ibcli.datasets").joinpath("var_u.mat").read_bytes()
    assert raw == SHARED_MAT.read_bytes()
    mat = scipy.io.loadmat(str(SHARED_MAT))
    x, y = data
    assert mat["F"].shape == (4096, 12) and mat["F"].dtype == np.uint8
    assert mat["y"].shape == (1, 4096) and mat["y"].dtype == np.uint8
    np.testing.assert_array_equal(x.numpy(), mat["F"].astype(np.float32))
    np.testing.assert_array_equal(y.numpy(), mat["y"].reshape(-1).astype(np.int64))


def test_split_sizes_and_partition():
    train, test = split_ib12(4096)
    assert train.dtype == torch.int64 and test.dtype == torch.int64
    assert len(train) == 3481 and len(test) == 615  # floor(4096 * 0.85)
    both = torch.cat([train, test])
    assert torch.equal(torch.sort(both).values, torch.arange(4096))
    assert torch.equal(train, torch.sort(train).values)
    train, test = split_ib12(10, train_fraction=0.5, seed=3)
    assert len(train) == 5 and len(test) == 5


def test_split_deterministic_by_seed():
    a = split_ib12(4096, seed=1)
    b = split_ib12(4096, seed=1)
    c = split_ib12(4096, seed=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("frac", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_split_rejects_bad_fraction(frac):
    with pytest.raises(ValueError, match="train_fraction"):
        split_ib12(4096, train_fraction=frac)


def test_split_rejects_empty_side_and_bad_n():
    with pytest.raises(ValueError, match="empty"):
        split_ib12(3, train_fraction=0.2)
    with pytest.raises(ValueError, match="n must be"):
        split_ib12(1)
