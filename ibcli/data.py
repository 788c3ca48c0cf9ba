"""Datasets as in-memory tensors, and the probe set.

MNIST lives in torchvision's `root/MNIST/raw` layout: the four IDX files are checked
(header, dims, size) and read here directly; torchvision's MNIST class is used only to
download them when they are absent. The whole split is turned into one float tensor
once, so the training loop indexes tensors and never runs a per-sample PIL transform.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ibcli.errors import UserError

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DATASETS = ("mnist", "ib12")


@dataclass
class DatasetTensors:
    """A dataset held in memory.

    x_train: (n_train, *input_shape) float32; y_train: (n_train,) int64 class labels.
    x_test, y_test: the same for the held-out split (MNIST: the official test set).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    x_all: torch.Tensor | None = None  # the whole dataset in its source order, when it has one (ib12)
    y_all: torch.Tensor | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def default_data_dir() -> Path:
    """`$IBCLI_DATA_DIR` if set, else `./data`."""
    return Path(os.environ.get("IBCLI_DATA_DIR", "data"))


def _missing_mnist_message(root: Path) -> str:
    raw = root / "MNIST" / "raw"
    return (
        f"MNIST not found and could not be downloaded: put the four IDX files "
        f"({', '.join(MNIST_FILES)}) in {raw}/ or pass --data-dir DIR with DIR/MNIST/raw holding them"
    )


# (IDX magic number, dims) of each MNIST file: unsigned bytes, 3-d images / 1-d labels.
MNIST_IDX = {
    "train-images-idx3-ubyte": (0x0803, (60_000, 28, 28)),
    "train-labels-idx1-ubyte": (0x0801, (60_000,)),
    "t10k-images-idx3-ubyte": (0x0803, (10_000, 28, 28)),
    "t10k-labels-idx1-ubyte": (0x0801, (10_000,)),
}


def check_idx_file(path: Path) -> None:
    """Check an MNIST IDX file's header and size before it is read.

    Raises:
        UserError: unreadable file, wrong magic number or dimensions, or a size that does
            not match the header (truncated or padded).
    """
    magic, dims = MNIST_IDX[path.name]
    expected_size = 4 + 4 * len(dims) + int(np.prod(dims))
    fix = f"replace it with an intact copy (the {path.name} of MNIST is {expected_size} bytes)"
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            header = fh.read(4 + 4 * len(dims))
    except OSError as exc:
        raise UserError(f"cannot read MNIST file {path} ({exc.strerror}): fix its permissions or {fix}") from None
    if len(header) < 4 + 4 * len(dims):
        raise UserError(f"MNIST file {path} is truncated ({size} bytes, shorter than its header): {fix}")
    found = struct.unpack(f">{1 + len(dims)}I", header)
    if found[0] != magic or tuple(found[1:]) != dims:
        raise UserError(
            f"MNIST file {path} has a corrupt header (magic {found[0]:#06x}, dims {list(found[1:])}; "
            f"expected {magic:#06x}, {list(dims)}): {fix}"
        )
    if size != expected_size:
        what = "truncated" if size < expected_size else "longer than its header says"
        raise UserError(f"MNIST file {path} is {what} ({size} bytes, expected {expected_size}): {fix}")


def _read_idx(path: Path) -> torch.Tensor:
    """An IDX file already checked by `check_idx_file`, as a uint8 tensor of its dims."""
    _, dims = MNIST_IDX[path.name]
    values = np.fromfile(path, dtype=np.uint8, offset=4 + 4 * len(dims))
    return torch.from_numpy(values.reshape(dims))


def _read_mnist_split(root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    raw = root / "MNIST" / "raw"
    present = all((raw / name).is_file() for name in MNIST_FILES)
    if present:
        # The files are there: read them directly (importing torchvision costs seconds per command).
        for name in MNIST_FILES:
            check_idx_file(raw / name)
        prefix = "train" if train else "t10k"
        return _check_split(raw, train, _read_idx(raw / f"{prefix}-images-idx3-ubyte"), _read_idx(raw / f"{prefix}-labels-idx1-ubyte"))

    from torchvision.datasets import MNIST

    # A failed download must not leave empty folders behind: remember which ones it creates.
    created, d = [], raw
    while not d.exists() and d != d.parent:
        created.append(d)
        d = d.parent
    try:
        dataset = MNIST(str(root), train=train, download=not present)
    except Exception as exc:  # torchvision raises RuntimeError, URLError, ValueError...
        if not present:
            for d in created:  # innermost first; only folders the download left empty
                try:
                    d.rmdir()
                except OSError:
                    pass
            raise UserError(_missing_mnist_message(root)) from exc
        raise UserError(
            f"MNIST files in {raw} could not be read ({type(exc).__name__}: {exc}); "
            "replace them with intact copies of the four IDX files"
        ) from exc
    return _check_split(raw, train, dataset.data, dataset.targets)


def _check_split(raw: Path, train: bool, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    expected = 60_000 if train else 10_000
    if images.shape != (expected, 28, 28) or labels.shape != (expected,):
        raise UserError(
            f"MNIST files in {raw} are truncated or corrupt: expected {expected} images of 28x28 "
            f"and as many labels, found images {tuple(images.shape)} and labels {tuple(labels.shape)}"
        )
    if int(labels.min()) < 0 or int(labels.max()) > 9:
        raise UserError(f"MNIST labels in {raw} are outside 0..9: the label file is corrupt")
    return images, labels


def load_mnist(data_dir: str | os.PathLike) -> DatasetTensors:
    """Load MNIST train and test splits into memory.

    Args:
        data_dir: directory holding `MNIST/raw/` with the four IDX files (torchvision
            layout). Downloaded there when absent and the network allows.

    Returns:
        DatasetTensors with x of shape (n, 1, 28, 28), float32 in [0, 1]
        (pixel / 255), y int64 in 0..9; 60 000 train and 10 000 test samples.

    Raises:
        UserError: files missing and no download possible, or files truncated/corrupt.
    """
    root = Path(data_dir)
    if root.exists() and not root.is_dir():
        raise UserError(f"data dir {root} is not a directory: pass --data-dir DIR with DIR/MNIST/raw")
    x_train, y_train = _read_mnist_split(root, train=True)
    x_test, y_test = _read_mnist_split(root, train=False)

    def to_float(images: torch.Tensor) -> torch.Tensor:
        return (images.to(torch.float32) / 255.0).unsqueeze(1).contiguous()

    return DatasetTensors("mnist", to_float(x_train), y_train.long(), to_float(x_test), y_test.long(), 10)


def load_ib12(train_fraction: float = 0.85, seed: int = 0) -> DatasetTensors:
    """The 12-bit task of Shwartz-Ziv & Tishby (2017), split seeded into train/test.

    x: (n, 12) float32 in {0, 1}; y: (n,) int64 in {0, 1}. The test split is what
    the held-out metrics use; the probe set is normally all 4 096 inputs.
    """
    from ibcli.datasets.ib12 import load_ib12 as _load, split_ib12

    x, y = _load()
    try:
        train_idx, test_idx = split_ib12(len(x), train_fraction=train_fraction, seed=seed)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    return DatasetTensors("ib12", x[train_idx], y[train_idx], x[test_idx], y[test_idx], 2, x_all=x, y_all=y)


def load_dataset(name: str, data_dir, train_fraction: float | None, seed: int) -> DatasetTensors:
    """Load `name` ("mnist" or "ib12").

    For MNIST, `train_fraction` keeps that prefix of the training set (None = all).
    For ib12 it is the train share of the seeded train/test split (None = 0.85).

    Raises:
        UserError: unknown dataset, fraction outside (0, 1], or data problems.
    """
    if train_fraction is not None and not 0.0 < train_fraction <= 1.0:
        raise UserError(f"--train-fraction must be in (0, 1], got {train_fraction}")
    if name == "mnist":
        data = load_mnist(data_dir)
        if train_fraction is not None and train_fraction < 1.0:
            keep = max(1, int(round(train_fraction * len(data.x_train))))
            data.x_train, data.y_train = data.x_train[:keep], data.y_train[:keep]
        return data
    if name == "ib12":
        fraction = 0.85 if train_fraction is None else train_fraction
        if fraction >= 1.0:
            raise UserError("--train-fraction for ib12 is the train share of a split and must be < 1")
        return load_ib12(fraction, seed)
    raise UserError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")


@dataclass
class ProbeSet:
    """The fixed samples every record is computed on.

    indices: (n,) int64 positions in the source split; x: (n, *input_shape) float32;
    y: (n,) int64 labels; split: "test", "train" or "all".
    """

    split: str
    indices: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor


def make_probe_set(data: DatasetTensors, split: str, size: int | None) -> ProbeSet:
    """Pick the probe set: the first `size` samples of `split` (None = all of it).

    "all" is the whole dataset in its source order (used for ib12, whose input space is all
    4 096 12-bit patterns); for a dataset without one it is train then test.

    Raises:
        UserError: unknown split, size < 1 or larger than the split.
    """
    if split == "test":
        x, y = data.x_test, data.y_test
    elif split == "train":
        x, y = data.x_train, data.y_train
    elif split == "all" and data.x_all is not None:
        x, y = data.x_all, data.y_all
    elif split == "all":
        x, y = torch.cat([data.x_train, data.x_test]), torch.cat([data.y_train, data.y_test])
    else:
        raise UserError(f"unknown probe split {split!r}: choose test, train or all")
    n = len(x) if size is None else size
    if n < 1:
        raise UserError(f"--probe-size must be at least 1, got {n}")
    if n > len(x):
        raise UserError(f"--probe-size {n} is larger than the {split} split ({len(x)} samples): pass at most {len(x)}")
    return ProbeSet(split, torch.arange(n, dtype=torch.int64), x[:n], y[:n])
