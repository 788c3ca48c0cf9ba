"""Bad input: one line on stderr naming the problem and the fix, exit code 2, no traceback,
and nothing left in the store that looks like a good run.

Most cases need no training: runs without activations, mi/plot runs and ambiguous ids are
made directly in a store with MlflowClient.
"""

from __future__ import annotations

import os

import pytest

from conftest import SHARED_DATA, ib12_train, main_json, run_cli, seed_store

from ibcli.store import FAILURE_TAG, Store

MNIST_RAW = SHARED_DATA / "MNIST" / "raw"
SMALL = ["--train-fraction", "0.01", "--probe-size", "50", "--epochs", "1", "--quiet"]


def one_line(code: int, err: str, *words: str) -> str:
    """Assert exit code 2 and exactly one stderr line holding `words`; return the line."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{err}"
    assert code == 2, (code, err)
    line = lines[0]
    assert line.startswith("error: "), line
    for word in words:
        assert word.lower() in line.lower(), (word, line)
    return line


def no_good_runs(db) -> None:
    """The store at `db` is absent, or every run in it is FAILED with the reason in `ibcli.failure`."""
    if not os.path.exists(db):
        return
    store = Store(f"sqlite:///{db}")
    for run in store.all_runs():
        assert run.info.status == "FAILED", (run.info.run_id, run.info.status)
        assert run.data.tags.get(FAILURE_TAG), run.info.run_id


# ------------------------------------------------------------------ a store without training
@pytest.fixture(scope="module")
def store(tmp_path_factory, store_template):
    """A store holding: a train run with no activations, an mi child and a plot child of it,
    a train run with no children, and train runs until two of them share a first character (for an ambiguous prefix)."""
    root = tmp_path_factory.mktemp("bad-store")
    uri = seed_store(store_template, root)
    s = Store(uri)
    bare = s.create_run("ibcli", "train", run_name="no-activations")
    s.log_params(bare.info.run_id, {"model": "mlp", "activation": "tanh", "epochs": 2})
    s.finish(bare.info.run_id)
    mi = s.create_child_run(bare, "mi", run_name="mi-binning")
    s.log_params(mi.info.run_id, {"method": "binning"})
    s.finish(mi.info.run_id)
    plot = s.create_child_run(bare, "plot", run_name="plot")
    s.finish(plot.info.run_id)
    lonely = s.create_run("ibcli", "train", run_name="no-mi-yet")
    s.finish(lonely.info.run_id)
    checkpointed = {}
    for name, content in (("ckpt", None), ("damaged", b"not a torch file")):
        r = s.create_run("ibcli", "train", run_name=name)
        arts = s.artifacts(r)
        path = arts.writable_path("checkpoints/last.pt")
        if content is None:
            import torch

            torch.save({"epoch": 1}, path)
        else:
            path.write_bytes(content)
        arts.commit(path, "checkpoints/last.pt")
        s.finish(r.info.run_id, "KILLED", "interrupted by SIGINT/SIGTERM")
        checkpointed[name] = r.info.run_id
    firsts: dict[str, str] = {}
    ambiguous = None
    while ambiguous is None:
        r = s.create_run("ibcli", "train")
        s.finish(r.info.run_id)
        c = r.info.run_id[0]
        ambiguous = c if c in firsts else None
        firsts[c] = r.info.run_id
    ids = {"bare": bare.info.run_id, "mi": mi.info.run_id, "plot": plot.info.run_id, "ambiguous": ambiguous,
           "lonely": lonely.info.run_id, **checkpointed}
    return {"uri": uri, "ids": ids, "known": {r.info.run_id for r in s.all_runs()}}


def no_new_good_runs(store) -> None:
    """Nothing but FAILED runs (with a reason) was added to the module store."""
    for r in Store(store["uri"]).all_runs():
        if r.info.run_id not in store["known"]:
            assert r.info.status == "FAILED" and r.data.tags.get(FAILURE_TAG), r.info.run_id


@pytest.fixture
def mnist_broken(tmp_path):
    """A data dir whose MNIST/raw links to the real files; tests replace one with a broken copy."""
    if not (MNIST_RAW / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST not found under {SHARED_DATA}")
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in MNIST_RAW.iterdir():
        (raw / f.name).symlink_to(f)

    def replace(name: str, content: bytes) -> os.PathLike:
        (raw / name).unlink()
        (raw / name).write_bytes(content)
        return tmp_path / "data"

    return replace


# ------------------------------------------------------------------ unknown choices (Typer)
@pytest.mark.parametrize("option,value,choices", [
    ("--model", "resnet", "mlp"),
    ("--activation", "gelu", "tanh"),
    ("--optimizer", "rmsprop", "adam"),
])
def test_unknown_train_choice(store_env, capsys, option, value, choices):
    code, _, err = run_cli(["train", option, value], capsys)
    line = one_line(code, err, option, value, choices, "--help")
    assert "Value error" not in line
    assert not (store_env / "runs").exists()


def test_unknown_method(store, capsys):
    code, _, err = run_cli(["mi", store["ids"]["bare"], "--method", "histogram", "--tracking-uri", store["uri"]], capsys)
    one_line(code, err, "--method", "histogram", "binning", "kde")
    no_new_good_runs(store)


def test_unknown_option_and_missing_argument(store_env, capsys):
    code, _, err = run_cli(["train", "--epoch", "3"], capsys)
    one_line(code, err, "--epoch", "--help")
    code, _, err = run_cli(["mi"], capsys)
    one_line(code, err, "RUN_ID", "--help")


# ------------------------------------------------------------------ numbers out of range
@pytest.mark.parametrize("option,value", [
    ("--epochs", "0"), ("--epochs", "-3"), ("--lr", "0"), ("--lr", "-0.1"), ("--lr", "nan"),
    ("--batch-size", "0"), ("--batch-size", "-8"),
])
def test_train_number_out_of_range(store_env, capsys, option, value):
    code, _, err = run_cli(["train", option, value, "--data-dir", SHARED_DATA, "--quiet"], capsys)
    one_line(code, err, option, "must be")
    assert not (store_env / "runs").exists()


@pytest.mark.parametrize("option,value", [("--bins", "0"), ("--bins", "-5"), ("--k", "0"), ("--k", "-1")])
def test_mi_number_out_of_range(store, capsys, option, value):
    code, _, err = run_cli(["mi", store["ids"]["bare"], option, value, "--method", "kraskov" if option == "--k" else "binning",
                            "--tracking-uri", store["uri"]], capsys)
    one_line(code, err, option, "at least 1")
    no_new_good_runs(store)


@pytest.fixture(scope="module")
def ib12_run(tmp_path_factory, store_template):
    """A store holding one small ib12 train run with activations (4096 probe inputs; seconds to train)."""
    uri = seed_store(store_template, tmp_path_factory.mktemp("ib12-store"))
    run_id = main_json([*ib12_train(1), "--tracking-uri", uri])["run_id"]
    return {"uri": uri, "run_id": run_id}


def no_mi_runs(ib12_run) -> None:
    assert Store(ib12_run["uri"]).children(ib12_run["run_id"], stage="mi") == []


@pytest.mark.parametrize("value", ["3", "5"])
def test_sp_noise_samples_refused_before_the_run(ib12_run, capsys, value):
    """Odd --noise-samples was refused only mid-estimation, leaving a FAILED mi run; 3 (< 4) before any run."""
    code, _, err = run_cli(["mi", ib12_run["run_id"], "--method", "sp", "--noise-samples", value,
                            "--tracking-uri", ib12_run["uri"]], capsys)
    one_line(code, err, "--noise-samples", "at least 4" if value == "3" else "must be even", value)
    no_mi_runs(ib12_run)


@pytest.mark.parametrize("draws,largest", [(None, 4095), ("3", 12287)])
def test_kraskov_k_above_the_probe_set_refused_before_the_run(ib12_run, capsys, draws, largest):
    """--k needs more noisy points (probe inputs x draws; 1 draw for ib12's 10-wide layer1, flagged too wide)."""
    code, _, err = run_cli(["mi", ib12_run["run_id"], "--method", "kraskov", "--k", "100000",
                            *(["--ksg-draws", draws] if draws else []), "--tracking-uri", ib12_run["uri"]], capsys)
    one_line(code, err, "--k 100000", "layer1", "4096 probe inputs", f"--k {largest} or less")
    no_mi_runs(ib12_run)


def test_probe_size_larger_than_split(store_env, capsys, mnist_dir):
    code, _, err = run_cli(["train", "--data-dir", mnist_dir, "--probe-size", "20000", "--train-fraction", "0.01",
                            "--quiet"], capsys)
    one_line(code, err, "--probe-size 20000", "larger than the test split", "at most 10000")
    assert not (store_env / "runs").exists()


# ------------------------------------------------------------------ data
def test_data_dir_missing(store_env, capsys, tmp_path):
    missing = tmp_path / "nowhere" / "data"
    code, _, err = run_cli(["train", "--data-dir", missing, *SMALL], capsys)
    one_line(code, err, "MNIST not found", str(missing / "MNIST" / "raw"), "--data-dir")
    assert not (tmp_path / "nowhere").exists()  # a failed download leaves no empty folders
    assert not (store_env / "runs").exists()


def test_data_dir_is_a_file(store_env, capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli(["train", "--data-dir", tmp_path / "afile", *SMALL], capsys)
    one_line(code, err, "not a directory", "--data-dir")


def test_idx_truncated(store_env, capsys, mnist_broken):
    head = (MNIST_RAW / "train-images-idx3-ubyte").read_bytes()[:1_000_000]
    data = mnist_broken("train-images-idx3-ubyte", head)
    code, _, err = run_cli(["train", "--data-dir", data, *SMALL], capsys)
    one_line(code, err, "train-images-idx3-ubyte", "truncated", "1000000 bytes", "47040016", "intact copy")
    assert not (store_env / "runs").exists()


def test_idx_garbage_header(store_env, capsys, mnist_broken):
    good = (MNIST_RAW / "t10k-labels-idx1-ubyte").read_bytes()
    data = mnist_broken("t10k-labels-idx1-ubyte", b"garbage!" + good[8:])
    code, _, err = run_cli(["train", "--data-dir", data, *SMALL], capsys)
    one_line(code, err, "t10k-labels-idx1-ubyte", "corrupt header", "intact copy")
    assert not (store_env / "runs").exists()


def test_idx_empty_file(store_env, capsys, mnist_broken):
    data = mnist_broken("train-labels-idx1-ubyte", b"")
    code, _, err = run_cli(["train", "--data-dir", data, *SMALL], capsys)
    one_line(code, err, "train-labels-idx1-ubyte", "truncated", "0 bytes", "intact copy")


def test_idx_labels_out_of_range(store_env, capsys, mnist_broken):
    good = bytearray((MNIST_RAW / "t10k-labels-idx1-ubyte").read_bytes())
    good[8:18] = bytes([200] * 10)
    data = mnist_broken("t10k-labels-idx1-ubyte", bytes(good))
    code, _, err = run_cli(["train", "--data-dir", data, *SMALL], capsys)
    one_line(code, err, "labels", "outside 0..9", "corrupt")
    assert not (store_env / "runs").exists()


# ------------------------------------------------------------------ run ids
@pytest.mark.parametrize("command", [["mi"], ["plot"], ["show"], ["train", "--resume"]])
def test_unknown_run_id(store, capsys, command):
    code, _, err = run_cli([*command, "feedbeef", "--tracking-uri", store["uri"]], capsys)
    one_line(code, err, "no run with id 'feedbeef'", "ibcli runs")
    no_new_good_runs(store)


@pytest.mark.parametrize("command", [["mi"], ["plot"], ["show"], ["train", "--resume"]])
def test_ambiguous_run_id(store, capsys, command):
    prefix = store["ids"]["ambiguous"]
    code, _, err = run_cli([*command, prefix, "--tracking-uri", store["uri"]], capsys)
    one_line(code, err, f"prefix '{prefix}' is ambiguous", "more characters")
    no_new_good_runs(store)


@pytest.mark.parametrize("command,kind", [(["mi"], "mi"), (["mi"], "plot"), (["plot"], "mi"), (["train", "--resume"], "plot")])
def test_child_run_where_train_run_needed(store, capsys, command, kind):
    code, _, err = run_cli([*command, store["ids"][kind][:10], "--tracking-uri", store["uri"]], capsys)
    one_line(code, err, f"is a {kind} run", "a train run is needed", f"its train run is {store['ids']['bare']}")
    no_new_good_runs(store)


def test_plot_mi_run_without_table(store, capsys):
    code, _, err = run_cli(["plot", store["ids"]["bare"], "--tracking-uri", store["uri"]], capsys)
    one_line(code, err, "has no mi.parquet", "ibcli mi", "--mi-run")
    no_new_good_runs(store)


def test_train_run_without_activations(store, capsys):
    code, _, err = run_cli(["mi", store["ids"]["bare"], "--tracking-uri", store["uri"]], capsys)
    one_line(code, err, "no recorded activations", "manifest.json", "--log-epochs")
    no_new_good_runs(store)


def test_plot_without_mi_results(store, capsys):
    code, _, err = run_cli(["plot", store["ids"]["lonely"], "--tracking-uri", store["uri"]], capsys)
    one_line(code, err, "no finished mi results", "ibcli mi")
    no_new_good_runs(store)


def test_resume_without_checkpoint_leaves_the_run_alone(store, capsys):
    bare = store["ids"]["bare"]
    code, _, err = run_cli(["train", "--resume", bare, "--tracking-uri", store["uri"]], capsys)
    one_line(code, err, "no checkpoint")
    run = Store(store["uri"]).find_run(bare)
    assert run.info.status == "FINISHED" and FAILURE_TAG not in run.data.tags


def test_resume_finished_epochs(store, capsys):
    code, _, err = run_cli(["train", "--resume", store["ids"]["ckpt"], "--epochs", "1", "--tracking-uri", store["uri"]], capsys)
    one_line(code, err, "already trained 1 epoch:", "--epochs N with N > 1")
    assert Store(store["uri"]).find_run(store["ids"]["ckpt"]).info.status == "KILLED"


def test_resume_damaged_checkpoint(store, capsys):
    code, _, err = run_cli(["train", "--resume", store["ids"]["damaged"], "--epochs", "5", "--tracking-uri", store["uri"]], capsys)
    one_line(code, err, "damaged checkpoint", "start a new run")
    assert Store(store["uri"]).find_run(store["ids"]["damaged"]).info.status == "KILLED"


def test_resume_a_run_another_process_trains(store, capsys):
    lock = Store(store["uri"]).hold_run(store["ids"]["ckpt"])  # as a live `ibcli train` would
    try:
        code, _, err = run_cli(["train", "--resume", store["ids"]["ckpt"], "--epochs", "5", "--tracking-uri", store["uri"]], capsys)
    finally:
        lock.release()
    one_line(code, err, "being trained by another live process", "wait for it")
    assert Store(store["uri"]).find_run(store["ids"]["ckpt"]).info.status == "KILLED"


def test_resume_with_changed_setting(store, capsys):
    code, _, err = run_cli(["train", "--resume", store["ids"]["bare"], "--lr", "0.1", "--tracking-uri", store["uri"]], capsys)
    one_line(code, err, "only --epochs, --device and --data-dir may change", "--lr")


# ------------------------------------------------------------------ device and store
def test_device_cuda_without_gpu(store_env, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here")
    code, _, err = run_cli(["train", "--device", "cuda", "--data-dir", SHARED_DATA, *SMALL], capsys)
    one_line(code, err, "--device cuda", "no CUDA GPU", "--device cpu")
    assert not (store_env / "runs").exists()


@pytest.mark.parametrize("method", ["mine", "kde", "kraskov", "binning"])  # binning runs on the CPU: refused all the same
def test_mi_device_cuda_without_gpu(store, capsys, method):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here")
    code, _, err = run_cli(["mi", store["ids"]["bare"], "--method", method, "--device", "cuda",
                            "--tracking-uri", store["uri"]], capsys)
    one_line(code, err, "--device cuda", "no CUDA GPU")


def test_store_folder_cannot_be_created(tmp_path, capsys, mnist_dir):
    (tmp_path / "plain-file").write_text("not a folder")
    uri = f"sqlite:///{tmp_path}/plain-file/runs/mlflow.db"
    code, _, err = run_cli(["train", "--data-dir", mnist_dir, *SMALL, "--tracking-uri", uri], capsys)
    one_line(code, err, "cannot create the store folder", "--tracking-uri")
    assert (tmp_path / "plain-file").read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_store_folder_read_only(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, _, err = run_cli(["train", "--data-dir", SHARED_DATA, *SMALL, "--tracking-uri", f"sqlite:///{ro}/runs/mlflow.db"], capsys)
        one_line(code, err, "store folder", "--tracking-uri")
    finally:
        ro.chmod(0o700)


def test_store_database_corrupt(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "mlflow.db").write_bytes(b"this is not a sqlite database" * 100)
    code, _, err = run_cli(["runs", "--tracking-uri", f"sqlite:///{tmp_path}/runs/mlflow.db"], capsys)
    one_line(code, err, "cannot open the MLflow store", "--tracking-uri")


def test_tracking_uri_unknown_scheme(store_env, capsys):
    code, _, err = run_cli(["runs", "--tracking-uri", "nosuchscheme://host/x"], capsys)
    one_line(code, err, "unsupported tracking URI 'nosuchscheme://host/x'", "--tracking-uri sqlite:///")


@pytest.mark.parametrize("existing", [True, False])
def test_tracking_uri_given_as_a_file_path(store, capsys, existing):
    """A plain path to the SQLite file (no sqlite:///): the URI to type, not MLflow's file-store message."""
    db = store["uri"][len("sqlite:///"):]
    path = db if existing else os.path.join(os.path.dirname(db), "other.db")
    code, _, err = run_cli(["mi", store["ids"]["bare"], "--tracking-uri", path], capsys)
    line = one_line(code, err, f"--tracking-uri {path} is a file path", f"use sqlite:///{path}")
    assert "maintenance" not in line
    assert existing or not os.path.exists(path)
    no_new_good_runs(store)


def test_tracking_uri_env_var_as_a_file_path(store, capsys, monkeypatch):
    db = store["uri"][len("sqlite:///"):]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", db)
    code, _, err = run_cli(["runs"], capsys)
    one_line(code, err, f"$MLFLOW_TRACKING_URI={db} is a file path", f"use sqlite:///{db}")


@pytest.mark.parametrize("command", [["mi", "abc"], ["plot", "abc"], ["runs"], ["show", "abc"], ["ui"]])
def test_no_store_yet(store_env, capsys, command):
    code, _, err = run_cli(command, capsys)
    one_line(code, err, "no ibcli store at", "ibcli train", "--tracking-uri")
    assert not (store_env / "runs").exists()  # reading commands create no store



@pytest.mark.parametrize("args,option", [
    (["plot", "abc", "--output", "", "-q", "--no-histograms"], "--output"),
    (["plot", "abc", "--output", "  "], "--output"),
    (["reproduce", "tishby", "--out", ""], "--out"),
    (["train", "--data-dir", ""], "--data-dir"),
    (["sweep", "--seeds", "0", "--data-dir", ""], "--data-dir"),
    (["train", "--resume", ""], "--resume"),
    (["mi", "abc", "--scheduler", ""], "--scheduler"),
    (["sweep", "--seeds", "0", "--scheduler", ""], "--scheduler"),
    (["runs", "--tracking-uri", ""], "--tracking-uri"),
    (["mi", "abc", "--tracking-uri", ""], "--tracking-uri"),
    (["server", "--dry-run", "--artifacts-destination", ""], "--artifacts-destination"),
    (["server", "--dry-run", "--backend-store-uri", ""], "--backend-store-uri"),
])
def test_an_empty_path_or_address_is_refused(store_env, capsys, args, option):
    """An empty value would quietly mean the current folder (Path("") is ".") or the default."""
    code, _, err = run_cli(args, capsys)
    one_line(code, err, f"invalid value for '{option}'", "it is empty", "leave the option out")
    assert list(store_env.iterdir()) == []  # no store, no figures in the current folder

# ------------------------------------------------------------------ damaged run files
@pytest.fixture(scope="module")
def recorded(tmp_path_factory, store_template):
    """A store with one small recorded train run (12-bit task, 2 epochs), no mi run yet."""
    from conftest import ib12_train, main_json

    uri = seed_store(store_template, tmp_path_factory.mktemp("damaged"))
    rid = main_json([*ib12_train(2), "--tracking-uri", uri])["run_id"]
    store = Store(uri)
    return {"uri": uri, "id": rid, "root": store.artifacts(store.find_run(rid)).local_root}


@pytest.fixture
def damage(recorded):
    """damage(relpath, content): replace (None: delete) one artifact of the recorded run; put
    back after the test, and drop the mi and plot runs the test made."""
    saved = {}

    from ibcli import mi_table

    mi_table._PROBE.clear()  # this process's probe cache: the test reads the files as a new process would

    def do(relpath, content: bytes | None) -> None:
        path = recorded["root"] / relpath
        saved[path] = path.read_bytes()
        if content is None:
            path.unlink()
        else:
            path.write_bytes(content)

    yield do
    for path, data in saved.items():
        path.write_bytes(data)
    store = Store(recorded["uri"])
    for r in store.all_runs():
        if r.info.run_id != recorded["id"]:
            store.client.delete_run(r.info.run_id)


LAYER3 = "activations/step_0000000/layer3.parquet"


def _mi_runs_failed_with(recorded, *words) -> None:
    """Exactly one mi run was made, and it is FAILED with `words` in its reason."""
    runs = Store(recorded["uri"]).children(recorded["id"], stage="mi")
    assert len(runs) == 1 and runs[0].info.status == "FAILED", runs
    for word in words:
        assert word in runs[0].data.tags[FAILURE_TAG], runs[0].data.tags


def _no_runs_made(recorded) -> None:
    assert [r.info.run_id for r in Store(recorded["uri"]).all_runs()] == [recorded["id"]]


def test_layer_file_deleted(recorded, damage, capsys):
    damage(LAYER3, None)
    code, _, err = run_cli(["mi", recorded["id"], "--tracking-uri", recorded["uri"], "--quiet"], capsys)
    one_line(code, err, f"run {recorded['id']}: {LAYER3} is missing", "damaged")
    _mi_runs_failed_with(recorded, LAYER3, "missing")


def test_layer_file_truncated(recorded, damage, capsys, tmp_path):
    damage(LAYER3, (recorded["root"] / LAYER3).read_bytes()[:200])
    code, _, err = run_cli(["mi", recorded["id"], "--tracking-uri", recorded["uri"], "--quiet"], capsys)
    one_line(code, err, f"run {recorded['id']}: {LAYER3} is unreadable", "Parquet magic bytes", "damaged")
    _mi_runs_failed_with(recorded, LAYER3, "unreadable")
    # plot reads the layer files for its histograms: the same line, and no plot run
    code, _, err = run_cli(["plot", recorded["id"], "--output", tmp_path, "--tracking-uri", recorded["uri"], "--quiet"], capsys)
    one_line(code, err, f"{LAYER3} is unreadable", "damaged")
    assert Store(recorded["uri"]).children(recorded["id"], stage="plot") == []


def test_probe_file_truncated(recorded, damage, capsys):
    damage("activations/probe.parquet", b"PAR1 not really")
    code, _, err = run_cli(["mi", recorded["id"], "--tracking-uri", recorded["uri"], "--quiet"], capsys)
    one_line(code, err, "activations/probe.parquet is unreadable", "damaged")
    _mi_runs_failed_with(recorded, "probe.parquet")


@pytest.mark.parametrize("content,why", [
    (b'{"format": "ibcli.activations/2", "records": [\n', "JSONDecodeError"),  # cut short
    (b'[1, 2]', "not an object"),
    (b'{"format": "ibcli.activations/2", "layers": [], "probe": {}, "records": [{"epoch": 0}]}', "KeyError"),
])
def test_manifest_damaged(recorded, damage, capsys, tmp_path, content, why):
    damage("activations/manifest.json", content)
    for command in (["mi"], ["plot", "--output", tmp_path]):
        code, _, err = run_cli([command[0], recorded["id"], *command[1:], "--tracking-uri", recorded["uri"], "--quiet"], capsys)
        one_line(code, err, f"run {recorded['id']}: activations/manifest.json is unreadable", why, "damaged")
    _no_runs_made(recorded)  # read before any run is made
    assert not any(tmp_path.iterdir())


def test_manifest_without_a_layer_file(recorded, damage, capsys):
    import json

    manifest = json.loads((recorded["root"] / "activations/manifest.json").read_text())
    del manifest["records"][1]["files"]["layer2"]
    damage("activations/manifest.json", json.dumps(manifest).encode())
    code, _, err = run_cli(["mi", recorded["id"], "--layer", "layer2", "--tracking-uri", recorded["uri"], "--quiet"], capsys)
    one_line(code, err, "activations/manifest.json is incomplete (no file of layer 'layer2' at epoch 1)", "damaged")


def test_a_missing_artifact_is_both_kinds_of_error(recorded):
    """Readers of optional files catch FileNotFoundError; elsewhere it is one line and exit 2."""
    from ibcli.errors import UserError

    arts = Store(recorded["uri"]).artifacts(Store(recorded["uri"]).find_run(recorded["id"]))
    with pytest.raises(FileNotFoundError) as caught:
        arts.local_path("no/such.file")
    assert isinstance(caught.value, UserError) and str(caught.value) == f"run {recorded['id']} has no artifact no/such.file"


def test_mi_table_truncated(recorded, damage, capsys, tmp_path):
    from conftest import run_json

    args = ["mi", recorded["id"], "--tracking-uri", recorded["uri"]]
    first = run_json(args, capsys)["mi_run_id"]
    store = Store(recorded["uri"])
    damage(store.artifacts(store.find_run(first)).local_root / "mi.parquet", b"PAR1")  # an absolute path
    code, _, err = run_cli(["plot", recorded["id"], "--output", tmp_path, "--tracking-uri", recorded["uri"], "--quiet"], capsys)
    one_line(code, err, f"run {first}: mi.parquet is unreadable", "damaged")
    again = run_json(args, capsys)  # the damaged table is not reused
    assert again["reused"] is False and again["mi_run_id"] != first
