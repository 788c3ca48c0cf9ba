"""Every dataset ibcli trains on, one class per dataset with one contract (`Dataset`).

- `mnist`, `fashion-mnist` (:mod:`ibcli.datasets.mnist`): IDX files in torchvision's
  `root/MNIST/raw/`, `root/FashionMNIST/raw/`; 1x28x28 images.
- `cifar10` (:mod:`ibcli.datasets.cifar10`): pickled batches in `root/cifar-10-batches-py/`;
  3x32x32 images.
- `ib12` (:mod:`ibcli.datasets.ib12`): the 12-bit task of Shwartz-Ziv & Tishby (2017),
  packaged as `var_u.mat` (no data directory, no download).

A new dataset is one module with a `Dataset` subclass, one entry in `DATASETS`, and its tests.
Importing this package loads neither torch nor NumPy (the CLI lists `DATASETS` at start-up).
"""

from __future__ import annotations

import os

from ibcli.datasets.base import Dataset, DatasetTensors, ProbeSet, default_data_dir, make_probe_set
from ibcli.datasets.cifar10 import CIFAR10
from ibcli.datasets.ib12 import IB12
from ibcli.datasets.mnist import MNIST, FashionMNIST
from ibcli.errors import UserError

#: `--dataset` name -> dataset class.
DATASETS: dict[str, type[Dataset]] = {cls.name: cls for cls in (MNIST, FashionMNIST, CIFAR10, IB12)}

__all__ = [
    "DATASETS", "CIFAR10", "IB12", "MNIST", "Dataset", "DatasetTensors", "FashionMNIST", "ProbeSet",
    "default_data_dir", "get_dataset", "load_dataset", "make_probe_set",
]


def get_dataset(name: str) -> type[Dataset]:
    """The dataset class registered as `name`.

    Raises:
        UserError: unknown name.
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}") from None


def load_dataset(name: str, data_dir: str | os.PathLike | None, train_fraction: float | None, seed: int) -> DatasetTensors:
    """Load dataset `name` from `data_dir` (downloading missing files when the network allows).

    `train_fraction`: for datasets with an official test split (mnist, fashion-mnist,
    cifar10) the prefix of the training set kept (None = all); for ib12 the train share of
    its seeded train/test split (None = 0.85). See each class's `load` for shapes and dtypes.

    Raises:
        UserError: unknown dataset, fraction out of range, missing or corrupt data.
    """
    return get_dataset(name)(data_dir).load(train_fraction, seed)
