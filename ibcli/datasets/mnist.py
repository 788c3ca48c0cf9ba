"""MNIST and Fashion-MNIST: 28x28 grey images of 10 classes in IDX files.

Both use torchvision's layout, `root/MNIST/raw/` and `root/FashionMNIST/raw/`, with the same
four file names (LeCun et al. 1998, yann.lecun.com/exdb/mnist; Xiao, Rasul & Vollgraf 2017,
arXiv:1708.07747). The files are checked (magic number, dims, size against the header,
labels in range) and read here with one `np.fromfile` each; torchvision is imported only
to download them.

IDX format: a big-endian header, the magic number 0x0000 08 NN (08 = unsigned bytes,
NN = number of dims), then NN big-endian uint32 dims, then the values in C order.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

from ibcli.datasets.base import Dataset
from ibcli.errors import UserError

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
IDX_UBYTE = 0x08
# Sizes of the official files (MNIST and Fashion-MNIST alike), named when a file is damaged.
OFFICIAL_BYTES = {TRAIN_IMAGES: 47_040_016, TRAIN_LABELS: 60_008, TEST_IMAGES: 7_840_016, TEST_LABELS: 10_008}


def read_idx(path: Path, ndim: int, title: str):
    """Check an unsigned-byte IDX file against its own header, then read it.

    Args:
        path: the file.
        ndim: the dims it must have (3 for images, 1 for labels).
        title: the dataset's name, for messages.

    Returns:
        np.ndarray, uint8, of the dims the header gives.

    Raises:
        UserError: unreadable file, a magic number that is not unsigned bytes with `ndim`
            dims, a zero dim, or a size that does not match the header (truncated or padded).
    """
    header_len = 4 + 4 * ndim
    official = OFFICIAL_BYTES.get(path.name)
    fix = "replace it with an intact copy" + (f" (the {path.name} of {title} is {official} bytes)" if official else "")
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            header = fh.read(header_len)
    except OSError as exc:
        raise UserError(f"cannot read {title} file {path} ({exc.strerror}): fix its permissions or {fix}") from None
    if len(header) < header_len:
        raise UserError(f"{title} file {path} is truncated ({size} bytes, shorter than its header): {fix}")
    magic, *dims = struct.unpack(f">{1 + ndim}I", header)
    if magic != (IDX_UBYTE << 8 | ndim) or min(dims) < 1:
        raise UserError(
            f"{title} file {path} has a corrupt header (magic {magic:#06x}, dims {dims}; "
            f"expected magic {IDX_UBYTE << 8 | ndim:#06x} and {ndim} positive dims): {fix}"
        )
    expected = header_len + int(np.prod(dims, dtype=np.int64))
    if size != expected:
        what = "truncated" if size < expected else "longer than its header says"
        raise UserError(f"{title} file {path} is {what} ({size} bytes, its header says {expected}): {fix}")
    return np.fromfile(path, dtype=np.uint8, offset=header_len).reshape(dims)


class MNIST(Dataset):
    """MNIST handwritten digits: 60 000 train and 10 000 test images, 1x28x28, labels 0..9.

    Files: root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (torchvision's layout;
    a subset with consistent headers, e.g. a few images for tests, is read as well).
    `load()` gives x float32 (n, 1, 28, 28) = pixel / 255 in [0, 1]; y int64 (n,).
    """

    name = "mnist"
    title = "MNIST"
    input_shape = (1, 28, 28)
    num_classes = 10
    folder = "MNIST/raw"
    files = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
    torchvision_class = "MNIST"

    def read(self, folder: Path):
        train = self._read_pair(folder, TRAIN_IMAGES, TRAIN_LABELS)
        test = self._read_pair(folder, TEST_IMAGES, TEST_LABELS)
        return (*train, *test)

    def _read_pair(self, folder: Path, image_file: str, label_file: str):
        images = read_idx(folder / image_file, 3, self.title)
        labels = read_idx(folder / label_file, 1, self.title)
        if images.shape[1:] != self.input_shape[1:]:
            raise UserError(
                f"{self.title} file {folder / image_file} holds {images.shape[1]}x{images.shape[2]} images, "
                f"{self.title} images are 28x28: replace it with an intact copy"
            )
        if len(labels) != len(images):
            raise UserError(
                f"{self.title} files in {folder} do not match: {image_file} holds {len(images)} images, "
                f"{label_file} {len(labels)} labels; replace them with intact copies"
            )
        if int(labels.max()) >= self.num_classes:
            raise UserError(f"{self.title} labels in {folder / label_file} are outside 0..9: the label file is corrupt, replace it with an intact copy")
        return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype("int64"))

    def download(self) -> None:
        import torchvision.datasets  # only to download: importing it costs seconds

        getattr(torchvision.datasets, self.torchvision_class)(str(self.root), train=True, download=True)


class FashionMNIST(MNIST):
    """Fashion-MNIST (Zalando clothing images): MNIST's sizes, format and file names.

    Files: root/FashionMNIST/raw/ (torchvision's layout). Labels 0..9: T-shirt/top, Trouser,
    Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot.
    """

    name = "fashion-mnist"
    title = "Fashion-MNIST"
    folder = "FashionMNIST/raw"
    torchvision_class = "FashionMNIST"
