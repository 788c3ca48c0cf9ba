"""What a user sees in the terminal: user text printed literally, --version, bare `ibcli`, mi's run id
and per-layer summary, --json alone on stdout, tables within 80 columns, unwrapped paths, help texts,
the end of training, and the exit code of a signal that lands as ibcli exits.

One small ib12 run (shipped data, 3 epochs, seconds) serves every test that needs a trained run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, run_cli, seed_store

from ibcli.store import Store

# Square brackets are rich markup: each of these was eaten, or crashed a command, before.
BRACKETED = "tanh[/lr=0.1]"
TRAIN = ["--dataset", "ib12", "--model", "ib", "--epochs", "3", "--log-epochs", "all", "--batch-size", "512"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, store_template):
    """A store in a folder whose path is longer than 80 characters, holding one ib12 train run
    named `tanh[/lr=0.1]` and one finished binning mi run of it."""
    folder = tmp_path_factory.mktemp("terminal") / ("a-folder-name-long-enough-to-pass-eighty-columns-" + "x" * 40)
    folder.mkdir()
    uri = seed_store(store_template, folder)
    from ibcli.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["train", *TRAIN, "--run-name", BRACKETED, "--tracking-uri", uri, "--json", "--quiet"]) == 0
    run_id = json.loads(out.getvalue())["run_id"]
    assert main(["mi", run_id, "--method", "binning", "--tracking-uri", uri, "--quiet"]) == 0
    return {"uri": uri, "folder": folder, "run_id": run_id}


def _cli(args, capsys, uri=None):
    return run_cli([*args, *(["--tracking-uri", uri] if uri else [])], capsys)


def _one_error_line(code, err, *texts):
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    for text in texts:
        assert text in lines[0], (text, lines[0])


# ------------------------------------------------------------------ 1. user text printed literally
def test_bracketed_text_in_errors_of_every_command(trained, capsys):
    """Every command that echoes input, fed text with square brackets: printed as typed, one error line, exit 2."""
    uri = trained["uri"]
    cases = [
        (["train", "--data-dir", "data[v2]", "--epochs", "1", "--train-fraction", "0.01", "--quiet"], ["data[v2]/MNIST/raw"]),
        (["train", "--model", "x[/y]"], ["'x[/y]'"]),
        (["train", "--log-epochs", "every:[/x]", *TRAIN[:4]], ["every:[/x]"]),
        (["train", "--resume", "[/x]"], ["'[/x]'"]),
        (["mi", "[/x]"], ["'[/x]'"]),
        (["mi", trained["run_id"], "--layer", "l[/a]"], ["'l[/a]'"]),
        (["mi", trained["run_id"], "--method", "kde", "--noise-var", "nan"], ["--noise-var", "got nan"]),
        (["mi", trained["run_id"], "--method", "k[/x]"], ["k[/x]"]),
        (["plot", "[bold]x"], ["'[bold]x'"]),
        (["plot", trained["run_id"], "--mi-run", "[/x]"], ["'[/x]'"]),
        (["show", "[/x]"], ["'[/x]'"]),
        (["rm", "[/x]"], ["'[/x]'"]),
        (["rm", "--status", "[x]"], ["'[X]'"]),
        (["sweep", "--seeds", "[1]", *TRAIN[:4]], ["'[1]'"]),
        (["sweep", "--model", "a[/b]"], ["'a[/b]'"]),
        (["reproduce", "tishby", "--seeds", "[/x]"], ["[/x]"]),
    ]
    for args, texts in cases:
        code, out, err = _cli(args, capsys, uri)
        _one_error_line(code, err, *texts)
    # a store path with brackets (no store there)
    for command in ("runs", "ui"):
        code, _, err = run_cli([command, "--tracking-uri", "sqlite:////tmp/no[/store]/mlflow.db"], capsys)
        _one_error_line(code, err, "/tmp/no[/store]/mlflow.db")


def test_bracketed_names_and_paths_in_output(trained, capsys, tmp_path):
    """A run named tanh[/lr=0.1] shows (it crashed `ibcli show`), and an --output folder with brackets prints whole."""
    uri, rid = trained["uri"], trained["run_id"]
    code, out, err = _cli(["show", rid[:8]], capsys, uri)
    assert code == 0 and "Traceback" not in err, err
    assert f"train run {rid} ({BRACKETED})" in out
    code, out, err = _cli(["show", rid, "--summary"], capsys, uri)
    assert code == 0 and BRACKETED in out, err
    code, out, err = _cli(["rm", rid, "--dry-run"], capsys, uri)
    assert code == 0 and BRACKETED in err and "would delete" in err, err
    figures = tmp_path / "fig[/a]"
    code, out, err = _cli(["plot", rid, "--output", str(figures)], capsys, uri)
    assert code == 0, err
    assert f"wrote {figures}/information_plane.html" in err.splitlines()


# ------------------------------------------------------------------ 2. terminal
def test_version_and_bare_ibcli(capsys):
    from ibcli import __version__

    code, out, err = run_cli(["--version"], capsys)
    assert code == 0 and out.startswith(f"ibcli {__version__}") and err == ""
    if (REPO / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        assert f"git {head[:12]}" in out
    code, out, err = run_cli([], capsys)
    assert code == 0 and "Usage" in out and "train" in out and "error" not in err


def test_mi_prints_its_run_id_and_a_per_layer_summary(trained, capsys):
    """The mi run's full id, then per layer first/peak/last I(X;T) and peak - last, as computed from mi.parquet."""
    uri, rid = trained["uri"], trained["run_id"]
    code, out, err = _cli(["mi", rid, "--method", "binning", "--bins", "12"], capsys, uri)
    assert code == 0 and out == "", (out, err)
    store = Store(uri)
    mi_run = store.children(rid, stage="mi")[0]
    assert f"mi run {mi_run.info.run_id} " in err
    table = pd.read_parquet(store.artifacts(mi_run).local_path("mi.parquet"))
    names = ["layer1", "layer2", "layer3", "layer4", "layer5", "output"]
    rows = [line.split() for line in err.splitlines() if line.split()[:1] and line.split()[0] in names]
    lines = {row[0]: row for row in rows}
    assert len(rows) == 6 and set(lines) == set(names)  # one row per layer, not the 24 of the table
    for layer, g in table.groupby("layer"):
        g = g.sort_values("step")
        x = g["i_xt_bits"].to_numpy()
        first, peak, last = x[0], x.max(), x[-1]
        shown = [float(v) for v in lines[layer][1:]]
        assert shown == pytest.approx([first, peak, g["epoch"].iloc[int(np.argmax(x))], last, peak - last], abs=6e-4)
    # --table: every (epoch, layer) row
    code, _, err = _cli(["mi", rid, "--method", "binning", "--bins", "12", "--table"], capsys, uri)
    rows = [line for line in err.splitlines() if line.split()[:1] and line.split()[0] in {"0", "1", "2", "3"}]
    assert code == 0 and len(rows) == 4 * 6


def test_json_alone_on_stdout(trained, capsys):
    """--json: one JSON object on stdout and nothing on stderr (not a terminal: no progress bars)."""
    uri, rid = trained["uri"], trained["run_id"]
    for args in (["mi", rid, "--method", "binning", "--bins", "7", "--json"], ["plot", rid, "--json"],
                 ["train", *TRAIN, "--epochs", "1", "--json"], ["show", rid, "--summary", "--json"]):
        code, out, err = _cli(args, capsys, uri)
        assert code == 0 and err == "", (args, err)
        assert len(out.strip().splitlines()) == 1 and isinstance(json.loads(out), dict), args


def test_tables_fit_80_columns_and_paths_never_wrap(trained, capsys, monkeypatch):
    """At 80 columns: no cell cut short (`activat…`), and every printed path whole on one line."""
    monkeypatch.setenv("COLUMNS", "80")
    s = Store(trained["uri"])
    run = s.create_run("ibcli", "train", run_name="wide")
    s.log_params(run.info.run_id, {"model": "mlp", "activation": "sigmoid", "epochs": 2000})
    for method in ("binning", "kde", "kraskov", "mine", "renyi"):
        child = s.create_child_run(run, "mi")
        s.log_params(child.info.run_id, {"method": method})
        s.finish(child.info.run_id)
    s.finish(run.info.run_id, "KILLED")
    code, out, err = _cli(["runs"], capsys, trained["uri"])
    assert code == 0, err
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert "…" not in out and "sigmoid" in out and "activation" in out and "binning," in out and "KILLED" in out
    uri, rid = trained["uri"], trained["run_id"]
    artifact_uri = s.find_run(rid).info.artifact_uri
    assert len(artifact_uri) > 80
    code, out, err = _cli(["show", rid], capsys, uri)
    assert f"  artifact uri: {artifact_uri}" in out.splitlines()
    code, out, err = _cli(["mi", rid, "--method", "binning", "--bins", "9"], capsys, uri)
    assert any(artifact_uri.rsplit("/", 3)[0] in line and line.endswith(f"/mi.parquet; figures: ibcli plot {rid[:8]}")
               for line in err.splitlines()), err
    assert all(len(line) <= 80 for line in err.splitlines() if "│" in line or "─" in line)


def test_help_texts(capsys):
    code, out, _ = run_cli(["mi", "--help"], capsys)
    flat = " ".join(out.replace("│", " ").split())
    assert code == 0 and "repeat to sweep [default: 0.1]" in flat
    assert "number of bins spanning the layer's range over all recorded epochs" in flat and "[default: 30]" in flat
    assert "--force" in flat and "--table" in flat
    code, out, _ = run_cli(["sweep", "--help"], capsys)
    flat = " ".join(out.replace("│", " ").split())
    for flag in ("--model", "--dataset", "--lr", "--epochs", "--log-epochs", "--grad-stats/--no-grad-stats", "--data-dir"):
        assert flag in flat, flag
    code, out, _ = run_cli(["train", "--help"], capsys)
    assert "tishby" in out


def test_option_help_prints_literally():
    """Option help is rich markup: `ibcli[dask]` or `[adam]` written plainly was eaten (`Optimizer .`)."""
    import typer
    from rich.text import Text

    from ibcli.cli import app

    for name, command in typer.main.get_command(app).commands.items():
        for param in command.params:
            text = getattr(param, "help", None) or ""
            assert Text.from_markup(text).plain == text.replace("\\[", "["), (name, param.name, text)


@pytest.mark.parametrize("command", ["train", "mi", "plot", "sweep", "reproduce", "runs", "show", "rm", "ui", "server"])
def test_help_at_80_columns_cuts_nothing(capsys, monkeypatch, command):
    """Typer's `<mlp|cnn|ib|tishby>` type column made rich cut `--activation-dty…`; long words cut `sqlite:///./runs…`."""
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_cli([command, "--help"], capsys)
    assert code == 0 and "--help" in out
    assert "…" not in out, out


def test_reproduce_help_states_each_default(capsys):
    from ibcli.stages.reproduce import DEFAULTS

    code, out, _ = run_cli(["reproduce", "--help"], capsys)
    flat = " ".join(out.replace("│", " ").split())
    assert code == 0 and " . " not in flat  # "Optimizer ." where markup ate "[adam]"
    tishby, saxe = DEFAULTS["tishby"], DEFAULTS["saxe"]
    for field in ("epochs", "lr", "optimizer", "batch_size", "bins", "jobs", "threads", "band"):
        assert getattr(tishby, field) == getattr(saxe, field), field
        assert f"[default: {getattr(tishby, field)}]" in flat, field
    assert f"[default: {tishby.noise_var}," in flat
    assert f"[default: tishby {tishby.seeds}, saxe {saxe.seeds}]" in flat
    assert f"[default: tishby {tishby.records}, saxe {saxe.records}]" in flat


def test_no_stale_batch_bar_after_the_last_epoch():
    from rich.progress import Progress

    from ibcli.progress import TrainProgress

    progress = TrainProgress(Progress(disable=True))
    progress.start(epochs=2, steps_per_epoch=469, done=0)
    progress.epoch(1, {"test_accuracy": 0.9, "train_loss": 0.3})
    assert [t.description for t in progress.p.tasks] == ["epochs", "batches"]
    progress.epoch(2, {"test_accuracy": 0.95, "train_loss": 0.2})
    assert [t.description for t in progress.p.tasks] == ["epochs"]


def test_train_prints_outcome_and_next_step(trained, capsys):
    code, out, err = _cli(["train", *TRAIN, "--epochs", "1"], capsys, trained["uri"])
    assert code == 0 and out == ""
    lines = err.strip().splitlines()
    assert lines[-2].startswith("train run ") and "FINISHED, 1 epoch in" in lines[-2] and "test accuracy" in lines[-2]
    assert lines[-1].startswith("next: ibcli mi ")


def test_counts_of_one_are_singular(trained, capsys):
    uri, rid = trained["uri"], trained["run_id"]
    before = {r.info.run_id for r in Store(uri).children(rid, stage="mi")}
    code, _, err = _cli(["mi", rid, "--method", "binning", "--bins", "5", "--epoch", "1", "--layer", "layer1"], capsys, uri)
    assert code == 0 and "1 record x 1 layer," in err, err
    code, _, err = _cli(["mi", rid, "--method", "binning", "--bins", "5", "--layer", "layer1"], capsys, uri)
    assert code == 0 and "4 records x 1 layer," in err, err
    added = [r.info.run_id for r in Store(uri).children(rid, stage="mi") if r.info.run_id not in before]
    assert len(added) == 2 and _cli(["rm", *added, "--quiet"], capsys, uri)[0] == 0  # the other tests' latest mi run stays


def test_show_summary_is_the_end_of_make_run(trained, capsys, tmp_path):
    """`ibcli show RUN --summary` (what `make run` ends with): accuracy, each method's per-layer
    I(X;T), the figure paths where --output put them, and the command that opens the UI on this store."""
    uri, rid = trained["uri"], trained["run_id"]
    s = Store(uri)
    acc = s.find_run(rid).data.metrics["train/accuracy_test"]
    code, _, err = _cli(["plot", rid, "--output", str(tmp_path / "figs")], capsys, uri)
    assert code == 0, err
    code, out, err = _cli(["show", rid, "--summary"], capsys, uri)
    assert code == 0 and err == "", err
    lines = out.splitlines()
    assert lines[0] == f"train run {rid} ({BRACKETED}): FINISHED, 3 epochs, test accuracy {acc:.4f}"
    binning = next(r for r in s.children(rid, stage="mi") if r.data.params["method"] == "binning")
    i = lines.index(f"mi run {binning.info.run_id}:")
    assert lines[i + 1].startswith("binning: I(X;T) in bits")
    assert [line.split()[0] for line in lines[i + 4 : i + 10]] == ["layer1", "layer2", "layer3", "layer4", "layer5", "output"]
    assert f"  {tmp_path / 'figs' / 'information_plane.html'}" in lines
    assert lines[-1].startswith(f"browse every run: ibcli ui --tracking-uri {uri}")


# ------------------------------------------------------------------ signals at exit
LATE_SIGNAL = textwrap.dedent("""
    import atexit, os, signal, sys
    from ibcli import cli
    real = cli.main
    def main(argv=None):
        rc = real(["--version"])
        # a library's teardown, registered after ibcli's own exit hook, runs first; the signal
        # lands while the interpreter exits, where Python has put back the default handlers
        atexit.register(lambda: os.kill(os.getpid(), signal.{sig}))
        return rc
    cli.main = main
    cli.main_exit()
""")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_as_ibcli_exits_gives_130(sig):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", LATE_SIGNAL.format(sig=sig)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stdout.startswith("ibcli ")


def test_a_signal_right_after_the_command_gives_130():
    """A SIGTERM as the command returns, before ibcli exits: 130, not a traceback or 143."""
    script = textwrap.dedent("""
        import os, signal
        from ibcli import cli
        real = cli.main
        def main(argv=None):
            rc = real(["--version"])
            os.kill(os.getpid(), signal.SIGTERM)
            return rc
        cli.main = main
        cli.main_exit()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, (proc.returncode, proc.stderr)


def test_killed_train_prints_the_resume_command(trained, capsys, monkeypatch):
    """A KILLED run ends with exit 130 and the exact command that continues it."""
    from ibcli import training

    calls = {"n": 0}
    real = training.Trainer._take_snapshot

    def interrupt_after_first_epoch(self):
        real(self)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(training.Trainer, "_take_snapshot", interrupt_after_first_epoch)
    code, out, err = _cli(["train", *TRAIN, "--quiet"], capsys, trained["uri"])
    assert code == 130, err
    rid = next(r.info.run_id for r in Store(trained["uri"]).all_runs() if r.info.status == "KILLED"
               and r.data.tags.get("ibcli.stage") == "train" and r.info.run_name != "wide")
    assert f"train run {rid}: KILLED after 2 of 3 epochs" in err
    assert f"continue it with: ibcli train --resume {rid} --tracking-uri {trained['uri']}" in err


# ------------------------------------------------------------------ make run
SHIM = """#!/bin/sh
# `make run` with a small MNIST run: the recipe as written, 2% of the train set and a 300-image probe.
if [ "$1" = train ]; then set -- "$@" --train-fraction 0.02 --probe-size 300; fi
exec "{python}" -m ibcli.cli "$@"
"""


@pytest.mark.skipif(not os.environ.get("IBCLI_SLOW_TESTS"), reason="about 25 s of CPU: set IBCLI_SLOW_TESTS=1")
def test_make_run_ends_with_the_summary(tmp_path, store_template):
    """The Makefile's recipe, run as is (ibcli shimmed to train small): no recipe echo, and it ends
    with the test accuracy, each method's per-layer I(X;T), the figure paths and the UI command."""
    from conftest import SHARED_DATA

    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip("real MNIST not found")
    if shutil.which("make") is None:
        pytest.skip("no make")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ibcli").write_text(SHIM.format(python=sys.executable))
    (bin_dir / "ibcli").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    work = tmp_path / "project"
    seed_store(store_template, work)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MAKEFLAGS")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(["make", "-f", str(REPO / "Makefile"), "run", f"BIN={bin_dir}", "STAMP=", f"DATA={SHARED_DATA}",
                           "EPOCHS=1"], cwd=work, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "set -e" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr == "", proc.stderr  # not a terminal: no bars; every stage's --json went to /dev/null
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("train run ") and ": FINISHED, 1 epochs, test accuracy 0." in lines[0]
    assert sum(line.startswith("mi run ") for line in lines) == 2
    assert any(line.startswith("binning: I(X;T) in bits") for line in lines)
    assert any(line.startswith("kde: I(X;T) in bits") for line in lines)
    assert sum(line.split()[:1] == ["layer5"] for line in lines) == 2
    figures = work / "figures" / "mlp"
    assert f"  {figures / 'information_plane.html'}" in lines and (figures / "information_plane.html").is_file()
    assert lines[-1].startswith("browse every run: ibcli ui")
