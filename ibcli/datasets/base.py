"""The dataset contract, the in-memory tensors every dataset loads into, and the probe set.

Like torchvision's datasets: one class per dataset, constructed with the data `root`,
reading torchvision's on-disk layout under it, downloading as an option. Unlike them, a
dataset loads whole splits into tensors once (`Dataset.load`), so the training loop
indexes tensors and never runs a per-sample transform.

The registry in `ibcli.datasets` names the classes without importing them (or torch).
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from ibcli.errors import UserError


@dataclass
class DatasetTensors:
    """A dataset held in memory.

    x_train: (n_train, *input_shape) float32; y_train: (n_train,) int64 class labels.
    x_test, y_test: the same for the held-out split (the official test set where there is one).
    x_all, y_all: the whole dataset in its source order, when it has one (ib12), else None.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    x_all: torch.Tensor | None = None
    y_all: torch.Tensor | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def check_train_fraction(train_fraction: float | None) -> None:
    """Raises UserError unless `train_fraction` is None or in (0, 1]."""
    if train_fraction is not None and not 0.0 < train_fraction <= 1.0:
        raise UserError(f"--train-fraction must be in (0, 1], got {train_fraction}")


class Dataset:
    """The contract of every dataset (subclass it; register it in `ibcli.datasets.DATASETS`).

    Class attributes:
        name: the registry key and `--dataset` value, e.g. "cifar10".
        title: the name in messages, e.g. "CIFAR-10".
        input_shape: one sample's shape, (C, H, W) for images, (d,) for vectors.
        num_classes: labels are 0..num_classes-1.
        probe_split: the probe set's default split ("test", "train" or "all").
        folder: where the files lie under `root`, in torchvision's layout (e.g. "MNIST/raw");
            None for a dataset that ships inside ibcli.
        files: the file names in that folder.

    A file-backed subclass implements `read(folder)` and `download()`; `load` does the rest:
    it checks `root`, downloads missing files when allowed, converts pixels to float32 in
    [0, 1] (pixel / 255) and applies `train_fraction`.

    Args:
        root: the data directory (None = `$IBCLI_DATA_DIR`, else `./data`).
        download: fetch missing files with torchvision (when the network allows).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    input_shape: ClassVar[tuple[int, ...]]
    num_classes: ClassVar[int]
    probe_split: ClassVar[str] = "test"
    folder: ClassVar[str | None] = None
    files: ClassVar[tuple[str, ...]] = ()

    def __init__(self, root: str | os.PathLike | None = None, download: bool = True):
        self.root = Path(root) if root is not None else Path(os.environ.get("IBCLI_DATA_DIR", "data"))
        self.download_allowed = download

    @property
    def path(self) -> Path:
        """The folder holding the files: root/folder (root for a packaged dataset)."""
        return self.root / self.folder if self.folder else self.root

    # ---- what a file-backed subclass provides ------------------------------------
    def read(self, folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Read the files (all present) into (x_train, y_train, x_test, y_test).

        x: uint8 (n, *input_shape) pixels; y: int64 (n,) labels in 0..num_classes-1.

        Raises:
            UserError: a file that is unreadable, truncated or corrupt.
        """
        raise NotImplementedError

    def download(self) -> None:
        """Fetch the files into `self.path` (torchvision's download); raises on any failure."""
        raise NotImplementedError

    # ---- the contract ---------------------------------------------------------------
    def load(self, train_fraction: float | None = None, seed: int = 0) -> DatasetTensors:
        """Load both splits into memory.

        Args:
            train_fraction: keep this prefix of the official training set (None = all of it).
            seed: unused by datasets with an official split (their split is fixed).

        Returns:
            DatasetTensors with x float32 (n, *input_shape) in [0, 1] (pixel / 255, no
            per-channel normalisation), y int64 in 0..num_classes-1.

        Raises:
            UserError: fraction outside (0, 1], root not a folder, files missing and not
                downloadable (one line naming the folder and the files), or corrupt files.
        """
        check_train_fraction(train_fraction)
        self._ensure_files()
        x_train, y_train, x_test, y_test = self.read(self.path)
        if train_fraction is not None and train_fraction < 1.0:
            keep = max(1, int(round(train_fraction * len(x_train))))
            x_train, y_train = x_train[:keep], y_train[:keep]

        def to_float(pixels: torch.Tensor) -> torch.Tensor:
            return pixels.to(torch.float32).div_(255.0).contiguous()

        return DatasetTensors(self.name, to_float(x_train), y_train.long(), to_float(x_test), y_test.long(), self.num_classes)

    def missing_files(self) -> list[str]:
        """The names in `files` that are not regular files in `self.path`."""
        return [f for f in self.files if not (self.path / f).is_file()]

    def _ensure_files(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"data dir {self.root} is not a directory: pass --data-dir DIR with DIR/{self.folder} holding the {self.title} files")
        missing = self.missing_files()
        if not missing:
            return
        if not self.download_allowed:
            raise UserError(self._missing_message(missing, "downloads are off"))
        # A failed download must not leave empty folders behind: remember which ones it creates.
        created, d = [], self.path
        while not d.exists() and d != d.parent:
            created.append(d)
            d = d.parent
        reason = None
        try:
            # torchvision prints its progress with print(): keep stdout for --json.
            with contextlib.redirect_stdout(io.StringIO()):
                self.download()
        except Exception as exc:  # torchvision raises RuntimeError, URLError, ValueError, ImportError...
            lines = str(exc).strip().splitlines()
            reason = f"{type(exc).__name__}: {lines[0][:120].rstrip(':')}" if lines else type(exc).__name__
        missing = self.missing_files()
        if missing:
            for d in created:  # innermost first; only folders the download left empty
                with contextlib.suppress(OSError):
                    d.rmdir()
            raise UserError(self._missing_message(missing, reason or "the download did not provide them"))

    def _missing_message(self, missing: list[str], reason: str) -> str:
        gap = "" if len(missing) == len(self.files) else f" (missing {', '.join(missing)})"
        return (
            f"{self.title} not found and could not be downloaded ({reason}){gap}: put the files "
            f"{', '.join(self.files)} in {self.path}/ or pass --data-dir DIR with DIR/{self.folder} holding them"
        )


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
