"""The 12-bit binary task of Shwartz-Ziv & Tishby (2017).

Source: R. Shwartz-Ziv and N. Tishby, "Opening the black box of deep neural networks
via information", arXiv:1703.00810 (2017); the data file is ``var_u.mat`` from the
authors' code (github.com/ravidziv/IDNNs, ``data/var_u.mat``), shipped inside this
package so that it loads offline, without a data directory.

Exact contents of ``var_u.mat`` (MATLAB 5.0 MAT-file, created 2016-08-26), as read by
``scipy.io.loadmat``:

- ``F``: ``uint8``, shape ``(4096, 12)``, values in {0, 1}. Row ``i`` is the 12-bit
  binary expansion of ``i`` with column 0 the most significant bit, so the rows are
  all 2**12 distinct 12-bit patterns, in counting order.
- ``y``: ``uint8``, shape ``(1, 4096)`` (a row vector, not one-hot), values in {0, 1}:
  1978 zeros and 2118 ones (51.7 % ones).

Each input appears once and its label is a deterministic function of it, so with X
uniform over the 4096 patterns I(X;Y) = H(Y) = 0.99916 bits (the paper's "about 0.99
bits"): the ceiling for I(T;Y) of every layer T.
"""

from __future__ import annotations

import io
import math
from importlib import resources

import numpy as np
import scipy.io
import torch

from ibcli.datasets.base import Dataset, DatasetTensors, check_train_fraction
from ibcli.errors import UserError

#: Name of the packaged data file (inside ``ibcli/datasets/``).
MAT_FILENAME = "var_u.mat"
#: Number of samples and input bits of the task.
N_SAMPLES = 4096
N_BITS = 12


def _read_mat_bytes() -> bytes:
    """Return the raw bytes of the packaged ``var_u.mat``.

    Raises:
        FileNotFoundError: the file is not in the installed package (package data
            missing from the build).
    """
    resource = resources.files("ibcli.datasets").joinpath(MAT_FILENAME)
    try:
        return resource.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"ibcli.datasets/{MAT_FILENAME} is missing from the installed package "
            "(package data not included in the build)"
        ) from None


def load_ib12() -> tuple[torch.Tensor, torch.Tensor]:
    """Load the 12-bit task of Shwartz-Ziv & Tishby (2017) from the packaged file.

    Works offline: the data is read with ``importlib.resources`` from the package
    (``ibcli/datasets/var_u.mat``), never from disk paths or the network.

    Returns:
        ``(x, y)`` where

        - ``x``: ``torch.float32``, shape ``(4096, 12)``, values in {0., 1.}; row ``i``
          is the binary expansion of ``i`` (column 0 most significant), i.e. every
          12-bit pattern exactly once (the file's ``F``).
        - ``y``: ``torch.int64``, shape ``(4096,)``, values in {0, 1}; 1978 zeros and
          2118 ones (the file's ``y``, stored there as a ``(1, 4096)`` uint8 row).

    Raises:
        FileNotFoundError: the packaged file is missing.
        ValueError: the file does not hold ``F`` of shape (4096, 12) and ``y`` of
            4096 binary labels (a corrupted or replaced file).
    """
    mat = scipy.io.loadmat(io.BytesIO(_read_mat_bytes()))
    if "F" not in mat or "y" not in mat:
        raise ValueError(f"{MAT_FILENAME} must hold arrays 'F' and 'y'; found {sorted(k for k in mat if not k.startswith('__'))}")
    f = np.asarray(mat["F"])
    labels = np.asarray(mat["y"]).reshape(-1)
    if f.shape != (N_SAMPLES, N_BITS):
        raise ValueError(f"{MAT_FILENAME}: expected F of shape ({N_SAMPLES}, {N_BITS}), got {f.shape}")
    if labels.shape != (N_SAMPLES,):
        raise ValueError(f"{MAT_FILENAME}: expected {N_SAMPLES} labels in y, got shape {np.asarray(mat['y']).shape}")
    if not (np.isin(f, (0, 1)).all() and np.isin(labels, (0, 1)).all()):
        raise ValueError(f"{MAT_FILENAME}: F and y must be binary (0/1)")
    x = torch.from_numpy(f.astype(np.float32))
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def split_ib12(
    n: int = N_SAMPLES, train_fraction: float = 0.85, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the indices ``0..n-1`` into train and test by a seeded random permutation.

    The permutation comes from ``torch.randperm`` with a ``torch.Generator`` seeded
    with ``seed``, so the split is identical on every machine for the same
    ``(n, train_fraction, seed)``. Not stratified. The train set gets
    ``floor(n * train_fraction)`` indices (3481 of 4096 for the default 0.85), the
    test set the rest. The paper trains on 85 % of the 4096 patterns.

    Args:
        n: number of samples (4096 for the 12-bit task); an int >= 2.
        train_fraction: share of samples for training, strictly between 0 and 1.
        seed: seed of the permutation.

    Returns:
        ``(train_idx, test_idx)``: ``torch.int64`` 1-D tensors, disjoint, each sorted
        ascending, together covering ``0..n-1``.

    Raises:
        ValueError: ``train_fraction`` not in (0, 1), ``n`` not an int >= 2, or a
            split that would leave the train or the test set empty.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    try:
        frac = float(train_fraction)
    except (TypeError, ValueError):
        raise ValueError(f"train_fraction must be a number in (0, 1), got {train_fraction!r}") from None
    if not (0.0 < frac < 1.0):
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    n_train = math.floor(int(n) * frac)
    if n_train == 0 or n_train == n:
        raise ValueError(
            f"train_fraction={train_fraction!r} of n={n} leaves an empty "
            f"{'train' if n_train == 0 else 'test'} set"
        )
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(int(n), generator=gen)
    train_idx = torch.sort(perm[:n_train]).values
    test_idx = torch.sort(perm[n_train:]).values
    return train_idx, test_idx


class IB12(Dataset):
    """The 12-bit task as a dataset: ships inside ibcli, so `root` and `download` are unused.

    `load(train_fraction, seed)`: x float32 (n, 12) in {0, 1}, y int64 in {0, 1}; train/test
    is the seeded split of `split_ib12` (`train_fraction` = the train share, None = 0.85, < 1);
    `x_all`/`y_all` hold all 4096 patterns in counting order, the default probe set.
    """

    name = "ib12"
    title = "12-bit task"
    input_shape = (N_BITS,)
    num_classes = 2
    probe_split = "all"

    def load(self, train_fraction: float | None = None, seed: int = 0) -> DatasetTensors:
        """Raises UserError: train_fraction outside (0, 1)."""
        check_train_fraction(train_fraction)
        fraction = 0.85 if train_fraction is None else train_fraction
        if fraction >= 1.0:
            raise UserError("--train-fraction for ib12 is the train share of a split and must be < 1")
        x, y = load_ib12()
        try:
            train_idx, test_idx = split_ib12(len(x), train_fraction=fraction, seed=seed)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
        return DatasetTensors(self.name, x[train_idx], y[train_idx], x[test_idx], y[test_idx], self.num_classes, x_all=x, y_all=y)
