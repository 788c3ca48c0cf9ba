"""CIFAR-10: 32x32 colour images of 10 classes (Krizhevsky 2009, www.cs.toronto.edu/~kriz/cifar.html).

torchvision's layout: `root/cifar-10-batches-py/` holds the extracted `cifar-10-python.tar.gz`,
five training batches `data_batch_1..5`, `test_batch` (10 000 images each) and `batches.meta`.
Each batch is a pickled dict: `data` a uint8 array (n, 3072), each row the red, green and
blue 32x32 planes one after the other (channel-major, rows in C order), and `labels` a
list of n ints in 0..9; `batches.meta` holds the 10 `label_names`.

The batches are read here directly (torchvision's CIFAR10 checks the official files' MD5
sums on every load, so it would reject any other copy); torchvision is imported only to
download. The unpickler accepts nothing but NumPy arrays, lists, dicts and scalars, so a
crafted batch file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ibcli.datasets.base import Dataset
from ibcli.errors import UserError

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
# The globals a pickled NumPy array refers to (NumPy 1 and 2 module paths), and the one
# Python 3 writes bytes with under protocol 2 (a batch re-saved from Python 3).
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only (no other globals)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    """A batch file's dict with str keys (the official Python 2 files give str keys when read
    with latin1; batches re-saved from Python 3 may have bytes keys).

    Raises:
        UserError: unreadable, not a pickle, or not a dict.
    """
    fix = "replace it with an intact copy (extract cifar-10-python.tar.gz again)"
    try:
        with open(path, "rb") as fh:
            # latin1: the official files are Python 2 pickles, whose NumPy arrays need it.
            entry = _ArrayUnpickler(fh, encoding="latin1").load()
    except OSError as exc:
        raise UserError(f"cannot read CIFAR-10 file {path} ({exc.strerror}): fix its permissions or {fix}") from None
    except Exception as exc:  # UnpicklingError, EOFError, ValueError... on truncated or foreign files
        detail = str(exc).strip().splitlines()[:1]
        raise UserError(f"CIFAR-10 file {path} is truncated or corrupt ({': '.join([type(exc).__name__, *detail])}): {fix}") from None
    if not isinstance(entry, dict):
        raise UserError(f"CIFAR-10 file {path} holds a {type(entry).__name__}, not a batch dict: {fix}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def read_batch(path: Path):
    """One CIFAR-10 batch file as (images uint8 (n, 3, 32, 32), labels int64 (n,)).

    Raises:
        UserError: the file is unreadable or corrupt, lacks `data`/`labels`, has data not
            uint8 (n, 3072), a label count other than n, or labels outside 0..9.
    """
    entry = _unpickle(path)
    fix = "replace it with an intact copy (extract cifar-10-python.tar.gz again)"
    data, labels = entry.get("data"), entry.get("labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise UserError(f"CIFAR-10 file {path} has no 'data' array and 'labels' list (keys {sorted(entry)}): {fix}")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(f"CIFAR-10 file {path} holds data {data.dtype} {data.shape}, expected uint8 (n, 3072): {fix}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(data),):
        raise UserError(f"CIFAR-10 file {path} holds {len(data)} images but {labels.size} labels: {fix}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"CIFAR-10 labels in {path} are outside 0..9: the file is corrupt, {fix}")
    images = data.reshape(-1, 3, 32, 32)
    if not images.flags.writeable:  # arrays unpickled from a buffer may be read-only; torch wants writable
        images = images.copy()
    return images, labels


class CIFAR10(Dataset):
    """CIFAR-10: 50 000 train and 10 000 test colour images, 3x32x32, labels 0..9.

    Labels: airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck.
    `load()` gives x float32 (n, 3, 32, 32) = pixel / 255 in [0, 1], channels R, G, B, with
    no per-channel normalisation (as for MNIST); y int64 (n,). Files: root/cifar-10-batches-py/.
    """

    name = "cifar10"
    title = "CIFAR-10"
    input_shape = (3, 32, 32)
    num_classes = 10
    folder = FOLDER
    files = (*TRAIN_BATCHES, TEST_BATCH, META)

    def read(self, folder: Path):
        meta = _unpickle(folder / META)
        if len(meta.get("label_names", ())) != self.num_classes:
            raise UserError(f"CIFAR-10 file {folder / META} does not list 10 label_names: replace it with an intact copy")
        train = [read_batch(folder / name) for name in TRAIN_BATCHES]
        x_test, y_test = read_batch(folder / TEST_BATCH)
        x_train = np.concatenate([x for x, _ in train])
        y_train = np.concatenate([y for _, y in train])
        return torch.from_numpy(x_train), torch.from_numpy(y_train), torch.from_numpy(x_test), torch.from_numpy(y_test)

    def download(self) -> None:
        from torchvision.datasets import CIFAR10 as TorchvisionCIFAR10  # only to download: it costs seconds

        TorchvisionCIFAR10(str(self.root), train=True, download=True)
