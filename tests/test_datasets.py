"""The datasets: MNIST, Fashion-MNIST, CIFAR-10 and the 12-bit task behind one contract.

MNIST-like and CIFAR-10 data cannot be downloaded here, so the tests write tiny files in
each dataset's real on-disk format (IDX; CIFAR-10's pickled batches) and check that the
exact pixels and labels written come back, then train on them through the CLI.
"""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, SHARED_DATA, run_cli, run_json, seed_store

from ibcli import activations as act
from ibcli.datasets import DATASETS, get_dataset, load_dataset
from ibcli.datasets.base import make_probe_set
from ibcli.datasets.cifar10 import CIFAR10
from ibcli.datasets.ib12 import IB12
from ibcli.datasets.mnist import MNIST, FashionMNIST
from ibcli.datasets.ib12 import load_ib12, split_ib12
from ibcli.errors import UserError
from ibcli.store import Store

N_TRAIN, N_TEST = 64, 32  # MNIST-like files
CIFAR_PER_BATCH, CIFAR_TEST = 4, 6


# ------------------------------------------------------------------ writers of the real formats
def write_idx(path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes: magic 0x000008NN, NN big-endian uint32 dims, the values."""
    header = struct.pack(f">I{array.ndim}I", 0x0800 | array.ndim, *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist_like(root, folder: str, seed: int = 0) -> dict:
    """Random 28x28 images and labels 0..9 in root/folder (torchvision's raw layout)."""
    rng = np.random.default_rng(seed)
    raw = root / folder
    raw.mkdir(parents=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(raw / name, array)
    return arrays


def py2_pickle(obj) -> bytes:
    """`obj` pickled as Python 2's cPickle wrote the official CIFAR-10 files (protocol 2).

    Python 2 strings (here: bytes) become SHORT_BINSTRING/BINSTRING opcodes, which Python 3
    reads back as str through the unpickler's `encoding`; a uint8 2-d array is NumPy's
    reduce (`numpy.core.multiarray._reconstruct`, `numpy.ndarray`, `numpy.dtype`, then its
    state with the raw bytes). Handles bytes, int, list, dict and uint8 2-d arrays.
    """

    def string(b: bytes) -> bytes:
        return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<i", len(b))) + b

    def integer(v: int) -> bytes:
        return b"J" + struct.pack("<i", v)

    def encode(o) -> bytes:
        if isinstance(o, bytes):
            return string(o)
        if isinstance(o, int):
            return integer(o)
        if isinstance(o, list):
            return b"](" + b"".join(encode(v) for v in o) + b"e"  # EMPTY_LIST MARK ... APPENDS
        if isinstance(o, dict):
            return b"}(" + b"".join(encode(k) + encode(v) for k, v in o.items()) + b"u"  # EMPTY_DICT MARK ... SETITEMS
        assert isinstance(o, np.ndarray) and o.dtype == np.uint8 and o.ndim == 2
        dtype = (b"cnumpy\ndtype\n" + string(b"u1") + b"\x89\x88\x87R"  # dtype('u1', False, True)
                 + b"(" + integer(3) + string(b"|") + b"NNN" + integer(-1) + integer(-1) + integer(0) + b"tb")
        return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + integer(0) + b"\x85" + string(b"b") + b"\x87R"
                + b"(" + integer(1) + integer(o.shape[0]) + integer(o.shape[1]) + b"\x86" + dtype
                + b"\x89" + string(o.tobytes()) + b"tb")  # state: (1, shape, dtype, fortran=False, raw bytes)

    return b"\x80\x02" + encode(obj) + b"."


def write_cifar10(root, seed: int = 0) -> dict:
    """Five training batches, a test batch and batches.meta, byte for byte in the official files' format."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        n = CIFAR_TEST if name == "test_batch" else CIFAR_PER_BATCH
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)  # row: 1024 red, 1024 green, 1024 blue
        labels = [int(v) for v in rng.integers(0, 10, n)]
        entry = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img_{i}_{j}.png".encode() for j in range(n)]}
        (folder / name).write_bytes(py2_pickle(entry))
        batches[name] = (data, labels)
    meta = {b"num_cases_per_batch": CIFAR_PER_BATCH, b"num_vis": 3072,
            b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]}
    (folder / "batches.meta").write_bytes(py2_pickle(meta))
    return batches


@pytest.fixture(params=[MNIST, FashionMNIST], ids=["mnist", "fashion-mnist"])
def mnist_like(request, tmp_path):
    cls = request.param
    return cls, tmp_path, write_mnist_like(tmp_path, cls.folder)


@pytest.fixture
def cifar(tmp_path):
    return tmp_path, write_cifar10(tmp_path)


def no_download(cls, monkeypatch) -> list:
    """Make `cls.download` fail as offline; returns the list of calls it got."""
    calls = []

    def offline(self):
        calls.append(self.path)
        raise OSError("[Errno 101] Network is unreachable\nsecond line of detail")

    monkeypatch.setattr(cls, "download", offline)
    return calls


# ------------------------------------------------------------------ the registry
def test_registry_names_and_contract():
    assert list(DATASETS) == ["mnist", "fashion-mnist", "cifar10", "ib12"]
    for name in DATASETS:
        assert get_dataset(name).name == name
    assert [get_dataset(n) for n in DATASETS] == [MNIST, FashionMNIST, CIFAR10, IB12]
    assert (MNIST.input_shape, FashionMNIST.input_shape, CIFAR10.input_shape, IB12.input_shape) == ((1, 28, 28), (1, 28, 28), (3, 32, 32), (12,))
    assert [c.num_classes for c in (MNIST, FashionMNIST, CIFAR10, IB12)] == [10, 10, 10, 2]
    assert (MNIST.folder, FashionMNIST.folder, CIFAR10.folder) == ("MNIST/raw", "FashionMNIST/raw", "cifar-10-batches-py")
    with pytest.raises(UserError, match="unknown dataset 'svhn': choose one of mnist, fashion-mnist, cifar10, ib12"):
        get_dataset("svhn")


def test_registry_and_cli_import_without_torch():
    code = "import sys, ibcli.cli, ibcli.datasets, ibcli.models; print(sorted(m for m in ('torch', 'torchvision', 'mlflow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={"PYTHONPATH": str(REPO)}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ MNIST and Fashion-MNIST
def test_idx_round_trip(mnist_like):
    cls, root, arrays = mnist_like
    data = cls(root).load()
    assert data.name == cls.name and data.num_classes == 10 and data.input_shape == (1, 28, 28)
    for split, prefix, n in (("train", "train", N_TRAIN), ("test", "t10k", N_TEST)):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32 and x.is_contiguous()
        assert y.shape == (n,) and y.dtype == torch.int64
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        pixels = arrays[f"{prefix}-images-idx3-ubyte"]
        assert torch.equal(x, torch.from_numpy(pixels.astype(np.float32) / np.float32(255)).unsqueeze(1))
        assert torch.equal(torch.round(x * 255).to(torch.uint8)[:, 0], torch.from_numpy(pixels))
        assert torch.equal(y, torch.from_numpy(arrays[f"{prefix}-labels-idx1-ubyte"].astype(np.int64)))


def test_written_idx_files_are_what_torchvision_reads(tmp_path):
    """The test files are real IDX: torchvision's own reader gives the arrays written."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    arrays = write_mnist_like(tmp_path, "MNIST/raw")
    raw = tmp_path / "MNIST" / "raw"
    assert np.array_equal(read_image_file(str(raw / "t10k-images-idx3-ubyte")).numpy(), arrays["t10k-images-idx3-ubyte"])
    assert np.array_equal(read_label_file(str(raw / "train-labels-idx1-ubyte")).numpy(), arrays["train-labels-idx1-ubyte"])


def test_real_mnist_matches_torchvisions_reader():
    """On the real files: 60 000 / 10 000 images, the same values torchvision reads."""
    raw = SHARED_DATA / "MNIST" / "raw"
    if not (raw / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST not found under {SHARED_DATA}")
    from torchvision.datasets.mnist import read_image_file, read_label_file

    data = MNIST(SHARED_DATA, download=False).load()
    assert data.x_train.shape == (60_000, 1, 28, 28) and data.x_test.shape == (10_000, 1, 28, 28)
    assert torch.equal(torch.round(data.x_test[:, 0] * 255).to(torch.uint8), read_image_file(str(raw / "t10k-images-idx3-ubyte")))
    assert torch.equal(data.y_train, read_label_file(str(raw / "train-labels-idx1-ubyte")).long())
    assert data.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def test_train_fraction_keeps_a_prefix_and_probe_set(mnist_like):
    cls, root, arrays = mnist_like
    full = load_dataset(cls.name, root, None, seed=0)
    quarter = load_dataset(cls.name, root, 0.25, seed=7)
    assert len(quarter.x_train) == N_TRAIN // 4 and torch.equal(quarter.x_train, full.x_train[: N_TRAIN // 4])
    assert torch.equal(quarter.y_train, full.y_train[: N_TRAIN // 4]) and torch.equal(quarter.x_test, full.x_test)
    assert len(load_dataset(cls.name, root, 1e-6, seed=0).x_train) == 1  # never empty
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(UserError, match=r"--train-fraction must be in \(0, 1\]"):
            load_dataset(cls.name, root, bad, seed=0)

    probe = make_probe_set(full, "test", 10)
    assert probe.split == "test" and torch.equal(probe.indices, torch.arange(10))
    assert torch.equal(probe.x, full.x_test[:10]) and torch.equal(probe.y, full.y_test[:10])
    everything = make_probe_set(full, "all", None)
    assert torch.equal(everything.y, torch.cat([full.y_train, full.y_test]))
    with pytest.raises(UserError, match=f"--probe-size {N_TEST + 1} is larger than the test split \\({N_TEST} samples\\)"):
        make_probe_set(full, "test", N_TEST + 1)


@pytest.mark.parametrize("damage,words", [
    (lambda raw, a: (raw / "train-images-idx3-ubyte").write_bytes((raw / "train-images-idx3-ubyte").read_bytes()[:-5]),
     ["train-images-idx3-ubyte", "truncated", f"{16 + N_TRAIN * 784 - 5} bytes", f"header says {16 + N_TRAIN * 784}", "47040016"]),
    (lambda raw, a: (raw / "t10k-labels-idx1-ubyte").write_bytes((raw / "t10k-labels-idx1-ubyte").read_bytes() + b"\0"),
     ["t10k-labels-idx1-ubyte", "longer than its header says"]),
    (lambda raw, a: write_idx(raw / "t10k-labels-idx1-ubyte", np.full(N_TEST - 1, 3, np.uint8)),
     [f"{N_TEST} images", f"{N_TEST - 1} labels"]),
    (lambda raw, a: write_idx(raw / "train-images-idx3-ubyte", np.zeros((N_TRAIN, 27, 27), np.uint8)),
     ["27x27 images", "28x28"]),
    (lambda raw, a: write_idx(raw / "train-labels-idx1-ubyte", np.full(N_TRAIN, 10, np.uint8)),
     ["labels", "outside 0..9", "corrupt"]),
    (lambda raw, a: write_idx(raw / "train-labels-idx1-ubyte", np.zeros((N_TRAIN, 1), np.uint8)),
     ["train-labels-idx1-ubyte", "corrupt header", "0x0801"]),
])
def test_idx_damage_is_one_line_user_error(mnist_like, damage, words):
    cls, root, arrays = mnist_like
    damage(root / cls.folder, arrays)
    with pytest.raises(UserError) as err:
        cls(root, download=False).load()
    message = str(err.value)
    assert "\n" not in message and cls.title in message
    for word in words:
        assert word in message, (word, message)


# ------------------------------------------------------------------ CIFAR-10
def test_cifar10_round_trip(cifar):
    root, batches = cifar
    data = CIFAR10(root).load()
    n_train = 5 * CIFAR_PER_BATCH
    assert data.name == "cifar10" and data.num_classes == 10 and data.input_shape == (3, 32, 32)
    assert data.x_train.shape == (n_train, 3, 32, 32) and data.x_test.shape == (CIFAR_TEST, 3, 32, 32)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert float(data.x_train.min()) >= 0.0 and float(data.x_train.max()) <= 1.0
    train_pixels = np.concatenate([batches[f"data_batch_{k}"][0] for k in range(1, 6)])
    train_labels = sum((batches[f"data_batch_{k}"][1] for k in range(1, 6)), [])
    assert torch.equal(torch.round(data.x_train * 255).to(torch.uint8).reshape(n_train, 3072), torch.from_numpy(train_pixels))
    assert data.y_train.tolist() == train_labels and data.y_test.tolist() == batches["test_batch"][1]
    assert torch.equal(data.x_test, torch.from_numpy(batches["test_batch"][0].astype(np.float32) / np.float32(255)).reshape(-1, 3, 32, 32))
    half = load_dataset("cifar10", root, 0.5, seed=0)
    assert torch.equal(half.x_train, data.x_train[: n_train // 2])


def test_cifar10_rows_are_channel_major(tmp_path):
    """Byte c*1024 + i*32 + j of a row is channel c (R, G, B), image row i, column j."""
    write_cifar10(tmp_path)
    data = np.zeros((CIFAR_TEST, 3072), np.uint8)
    data[0, 1 * 1024 + 2 * 32 + 3] = 255  # green, row 2, column 3 of image 0
    data[1, 2 * 1024 + 31 * 32 + 0] = 51  # blue, row 31, column 0 of image 1
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(py2_pickle({b"data": data, b"labels": [0] * CIFAR_TEST}))
    x = CIFAR10(tmp_path).load().x_test
    assert x[0, 1, 2, 3] == 1.0 and x[1, 2, 31, 0] == np.float32(51) / np.float32(255)
    assert int((x != 0).sum()) == 2


def test_written_batches_are_what_pickle_reads(tmp_path):
    """The test files are what the CIFAR-10 page's reader gets: pickle.load(fo, encoding="bytes")."""
    batches = write_cifar10(tmp_path)
    entry = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes(), encoding="bytes")
    assert sorted(entry) == [b"batch_label", b"data", b"filenames", b"labels"]
    assert np.array_equal(entry[b"data"], batches["data_batch_1"][0]) and entry[b"labels"] == batches["data_batch_1"][1]


@pytest.mark.parametrize("protocol,key", [(2, b"data"), (pickle.HIGHEST_PROTOCOL, "data")])
def test_cifar10_reads_batches_pickled_by_python_3(tmp_path, protocol, key):
    """Batches re-saved from Python 3 (bytes or str keys, old or new protocol) read the same."""
    batches = write_cifar10(tmp_path)
    data, labels = batches["data_batch_3"]
    entry = {key: data, (b"labels" if isinstance(key, bytes) else "labels"): labels}
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps(entry, protocol=protocol))
    x = CIFAR10(tmp_path).load().x_train
    assert torch.equal(torch.round(x[2 * CIFAR_PER_BATCH : 3 * CIFAR_PER_BATCH] * 255).to(torch.uint8).reshape(-1, 3072), torch.from_numpy(data))


class _Exploit:
    """Unpickling this calls open(path, "w"): a stand-in for code a crafted batch could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("content,words", [
    (lambda good, marker: good[: len(good) // 2], ["data_batch_2", "truncated or corrupt"]),
    (lambda good, marker: b"not a pickle at all", ["data_batch_2", "truncated or corrupt"]),
    (lambda good, marker: pickle.dumps({b"data": _Exploit(marker), b"labels": []}), ["data_batch_2", "truncated or corrupt (UnpicklingError: global io.open is not allowed in a CIFAR-10 batch)"]),
    (lambda good, marker: pickle.dumps({b"data": np.zeros((4, 1024), np.uint8), b"labels": [0] * 4}), ["data_batch_2", "expected uint8 (n, 3072)"]),
    (lambda good, marker: pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}), ["4 images but 3 labels"]),
    (lambda good, marker: pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 10]}), ["outside 0..9"]),
    (lambda good, marker: pickle.dumps([1, 2, 3]), ["holds a list, not a batch dict"]),
])
def test_cifar10_damage_is_one_line_user_error(cifar, content, words):
    root, _ = cifar
    path = root / "cifar-10-batches-py" / "data_batch_2"
    marker = root / "written-by-a-crafted-pickle"
    path.write_bytes(content(path.read_bytes(), marker))
    with pytest.raises(UserError) as err:
        CIFAR10(root, download=False).load()
    message = str(err.value)
    assert "\n" not in message and "CIFAR-10" in message
    for word in words:
        assert word in message, (word, message)
    assert not marker.exists()  # the unpickler ran no code


# ------------------------------------------------------------------ missing files, offline
@pytest.mark.parametrize("cls", [MNIST, FashionMNIST, CIFAR10])
def test_missing_files_offline_is_one_line_naming_folder_and_files(cls, tmp_path, monkeypatch):
    calls = no_download(cls, monkeypatch)
    root = tmp_path / "nowhere" / "data"
    with pytest.raises(UserError) as err:
        cls(root).load()
    message = str(err.value)
    assert calls == [root / cls.folder]
    assert "\n" not in message and message.startswith(f"{cls.title} not found and could not be downloaded (OSError: [Errno 101] Network is unreachable)")
    assert f"{root / cls.folder}/" in message and f"--data-dir DIR with DIR/{cls.folder}" in message
    for name in cls.files:
        assert name in message
    assert not (tmp_path / "nowhere").exists()  # the failed download leaves no empty folders


def test_partly_missing_files_named_and_download_off(cifar, monkeypatch):
    root, _ = cifar
    (root / "cifar-10-batches-py" / "test_batch").unlink()
    (root / "cifar-10-batches-py" / "batches.meta").unlink()
    calls = no_download(CIFAR10, monkeypatch)
    with pytest.raises(UserError, match=r"\(missing test_batch, batches.meta\)"):
        CIFAR10(root).load()
    assert len(calls) == 1 and (root / "cifar-10-batches-py").is_dir()  # the existing folder stays
    with pytest.raises(UserError, match=r"downloads are off"):
        CIFAR10(root, download=False).load()
    assert len(calls) == 1


def test_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="data dir .*afile is not a directory: pass --data-dir DIR with DIR/cifar-10-batches-py"):
        CIFAR10(tmp_path / "afile").load()


# ------------------------------------------------------------------ the 12-bit task in the same contract
def test_ib12_through_the_contract():
    data = load_dataset("ib12", "/ignored", None, seed=3)
    x, y = load_ib12()
    train_idx, test_idx = split_ib12(4096, 0.85, seed=3)
    assert torch.equal(data.x_train, x[train_idx]) and torch.equal(data.y_test, y[test_idx])
    assert torch.equal(data.x_all, x) and data.num_classes == 2 and IB12.probe_split == "all"
    assert make_probe_set(data, "all", None).x.shape == (4096, 12)
    with pytest.raises(UserError, match="must be < 1"):
        load_dataset("ib12", None, 1.0, seed=0)


# ------------------------------------------------------------------ through the CLI
def _manifest_shapes(run_id: str) -> tuple[dict, np.ndarray, dict]:
    store = Store()
    run = store.find_run(run_id, stage="train")
    arts = store.artifacts(run)
    manifest = act.load_manifest(arts)
    _, labels, x = act.load_probe(arts)
    return {layer["name"]: layer["shape"] for layer in manifest.layers}, x, run.data.params


def test_cli_train_cifar10_cnn(store_env, store_template, cifar, capsys):
    root, batches = cifar
    seed_store(store_template, store_env)
    summary = run_json(["train", "--dataset", "cifar10", "--model", "cnn", "--data-dir", root, "--epochs", 1,
                        "--batch-size", 8], capsys)  # gradient statistics on (the default) over 3-channel convs
    assert summary["status"] == "FINISHED" and summary["records"] == 2  # step 0 + epoch 1
    shapes, x, params = _manifest_shapes(summary["run_id"])
    assert shapes == {"conv1": [32, 16, 16], "conv2": [64, 8, 8], "fc1": [128], "output": [10]}
    assert x.shape == (CIFAR_TEST, 3072)  # probe = the whole test split, flattened C, H, W
    assert np.array_equal(np.round(x * 255).astype(np.uint8), batches["test_batch"][0])
    assert params["dataset"] == "cifar10" and params["n_train"] == str(5 * CIFAR_PER_BATCH) and params["probe_split"] == "test"


def test_cli_train_fashion_mnist_mlp(store_env, store_template, tmp_path, capsys):
    arrays = write_mnist_like(tmp_path / "data", "FashionMNIST/raw")
    seed_store(store_template, store_env)
    summary = run_json(["train", "--dataset", "fashion-mnist", "--model", "mlp", "--data-dir", tmp_path / "data",
                        "--epochs", 1, "--no-grad-stats"], capsys)
    shapes, x, params = _manifest_shapes(summary["run_id"])
    assert shapes == {"layer1": [1024], "layer2": [20], "layer3": [20], "layer4": [20], "layer5": [20], "output": [10]}
    assert np.array_equal(np.round(x * 255).astype(np.uint8), arrays["t10k-images-idx3-ubyte"].reshape(N_TEST, 784))
    assert params["dataset"] == "fashion-mnist" and params["n_train"] == str(N_TRAIN)


def test_cli_missing_cifar10_offline_and_cnn_on_ib12(store_env, tmp_path, capsys, monkeypatch):
    no_download(CIFAR10, monkeypatch)
    code, out, err = run_cli(["train", "--dataset", "cifar10", "--data-dir", tmp_path / "empty", "--quiet"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "CIFAR-10 not found" in err and "cifar-10-batches-py" in err and "data_batch_1" in err
    code, _, err = run_cli(["train", "--dataset", "ib12", "--model", "cnn", "--quiet"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--model cnn needs images C x H x W" in err, err
    assert not (store_env / "runs").exists() and not (tmp_path / "empty").exists()
