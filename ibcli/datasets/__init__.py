"""Every dataset ibcli trains on, one class per dataset with one contract (`base.Dataset`).

- `mnist`, `fashion-mnist` (`mnist.py`): IDX files in torchvision's `root/MNIST/raw/`,
  `root/FashionMNIST/raw/`; 1x28x28 images.
- `cifar10` (`cifar10.py`): pickled batches in `root/cifar-10-batches-py/`; 3x32x32 images.
- `ib12` (`ib12.py`): the 12-bit task of Shwartz-Ziv & Tishby (2017), packaged as
  `var_u.mat` (no data directory, no download).

A new dataset is one module with a `Dataset` subclass, one line in `DATASETS`, and its
tests. The registry names each class as "module:Class" and imports it when it is used,
so the CLI lists `--dataset`'s choices without importing torch.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from ibcli.errors import UserError

#: `--dataset` name -> "module:Class" of its dataset class.
DATASETS: dict[str, str] = {
    "mnist": "ibcli.datasets.mnist:MNIST",
    "fashion-mnist": "ibcli.datasets.mnist:FashionMNIST",
    "cifar10": "ibcli.datasets.cifar10:CIFAR10",
    "ib12": "ibcli.datasets.ib12:IB12",
}

__all__ = ["DATASETS", "default_data_dir", "get_dataset", "load_dataset"]


def default_data_dir() -> Path:
    """`$IBCLI_DATA_DIR` if set, else `./data`."""
    return Path(os.environ.get("IBCLI_DATA_DIR", "data"))


def get_dataset(name: str):
    """The dataset class (a `base.Dataset` subclass) registered as `name`.

    Raises:
        UserError: unknown name.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    module, cls = DATASETS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def load_dataset(name: str, data_dir: str | os.PathLike | None, train_fraction: float | None, seed: int):
    """Load dataset `name` from `data_dir` (downloading missing files when the network allows);
    a `base.DatasetTensors`.

    `train_fraction`: for datasets with an official test split (mnist, fashion-mnist,
    cifar10) the prefix of the training set kept (None = all); for ib12 the train share of
    its seeded train/test split (None = 0.85). See each class's `load` for shapes and dtypes.

    Raises:
        UserError: unknown dataset, fraction out of range, missing or corrupt data.
    """
    return get_dataset(name)(data_dir).load(train_fraction, seed)
