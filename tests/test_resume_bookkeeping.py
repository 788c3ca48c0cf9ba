"""What a killed or resumed run says about itself: the target a plain `--resume` continues to,
the epochs done while it trains, the epoch a kill ends at, and the seeds every stage takes.

All on the 12-bit task (shipped with the package): no MNIST needed, seconds per test.
"""

from __future__ import annotations

import pytest

from conftest import ib12_train, run_cli, run_json, seed_store
from ibcli.metric_names import mlflow_name
from ibcli.store import EPOCHS_DONE_TAG, EPOCHS_TAG, STAGE_TAG, Store


def _config(epochs: int):
    from ibcli.training import TrainConfig

    return TrainConfig(dataset="ib12", model="ib", probe_split="all", epochs=epochs, log_epochs="all", lr=3e-3,
                       device="cpu", seed=3, experiment="t", grad_stats=False)


def test_plain_resume_continues_to_the_target_of_the_last_resume(store_env, capsys, store_template):
    """`--resume RUN --epochs N` killed before N leaves the target N in `ibcli.epochs`; the command
    ibcli then prints, `--resume RUN` without --epochs, continues to N (it used the start's target)."""
    seed_store(store_template, store_env)
    first = run_json([*ib12_train(2), "--device", "cpu"], capsys)
    store = Store()
    assert store.find_run(first["run_id"]).data.tags[EPOCHS_TAG] == "2"  # every train run has its target
    run_json(["train", "--resume", first["run_id"], "--epochs", "3"], capsys)
    # What a `--resume --epochs 5` killed after epoch 3 leaves behind: target 5, checkpoint at 3.
    store.client.set_tag(first["run_id"], EPOCHS_TAG, "5")
    store.finish(first["run_id"], "KILLED")

    resumed = run_json(["train", "--resume", first["run_id"]], capsys)
    assert resumed["status"] == "FINISHED" and resumed["epochs"] == 5 and resumed["epochs_target"] == 5
    tags = store.find_run(first["run_id"]).data.tags
    assert tags[EPOCHS_TAG] == "5" and tags[EPOCHS_DONE_TAG] == "5"


def test_epochs_done_is_logged_while_the_run_trains(tmp_path, store_template):
    """`ibcli runs` reads `ibcli.epochs_done`: it goes out with each metrics flush, not only at the end."""
    from ibcli.training import Trainer

    store = Store(seed_store(store_template, tmp_path))
    trainer = Trainer(_config(2))
    run = store.create_run("t", "train")
    trainer.start(store, run)
    trainer.train()
    trainer.recorder.wait()  # what the writer thread was given is written; the run has not ended
    assert store.client.get_run(run.info.run_id).data.tags.get(EPOCHS_DONE_TAG) == "2"
    trainer.close()


def test_a_kill_before_the_epochs_snapshot_ends_at_the_checkpointed_epoch(tmp_path, store_template, monkeypatch):
    """Ctrl-C after an epoch's bookkeeping but before its snapshot: the run ends at the epoch its
    checkpoint holds (it said one more, and a resume then started one epoch earlier than said)."""
    from ibcli.training import Trainer, load_checkpoint

    store = Store(seed_store(store_template, tmp_path))
    trainer = Trainer(_config(3))
    trainer.start(store, store.create_run("t", "train"))
    take = trainer._take_snapshot

    def interrupted_at_epoch_2():
        if trainer.state.epoch == 2:
            raise KeyboardInterrupt
        take()

    monkeypatch.setattr(trainer, "_take_snapshot", interrupted_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    trainer.close()
    assert trainer.summary()["epochs"] == 1
    assert [h["epoch"] for h in trainer.state.history] == [0, 1]
    assert load_checkpoint(trainer.artifacts.local_path("checkpoints/last.pt"))["epoch"] == 1
    run = store.client.get_run(trainer.run.info.run_id)
    assert run.data.tags[EPOCHS_DONE_TAG] == "1"
    assert [m.step for m in store.client.get_metric_history(run.info.run_id, mlflow_name("train_loss"))] == [1]


def test_a_missing_checkpoint_is_named_as_missing(store_env, capsys, store_template):
    seed_store(store_template, store_env)
    first = run_json([*ib12_train(2), "--device", "cpu"], capsys)
    store = Store()
    store.artifacts(store.find_run(first["run_id"])).local_path("checkpoints/last.pt").unlink()
    code, _, err = run_cli(["train", "--resume", first["run_id"], "--epochs", "3"], capsys)
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert "trained 2 epochs" in line and "checkpoints/last.pt is missing" in line, line


@pytest.mark.parametrize("seed", ["99999999999999999999", "-1"])
def test_seeds_out_of_range_are_one_line_errors(store_env, capsys, store_template, seed):
    seed_store(store_template, store_env)
    code, _, err = run_cli([*ib12_train(1), "--device", "cpu", f"--seed={seed}"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "--seed must be between 0 and 2^63-1" in err and len(err.strip().splitlines()) == 1
    assert not [r for r in Store().all_runs() if r.data.tags.get(STAGE_TAG) == "train"]

    trained = run_json([*ib12_train(1), "--device", "cpu"], capsys)
    code, _, err = run_cli(["mi", trained["run_id"], "--method", "binning", f"--seed={seed}"], capsys)
    assert code == 2 and "--seed must be between 0 and 2^63-1" in err and len(err.strip().splitlines()) == 1
    assert not [r for r in Store().all_runs() if r.data.tags.get(STAGE_TAG) == "mi"]  # no FAILED mi run left


@pytest.mark.parametrize("spec", ["0-99999999999999999999", "99999999999999999999", "0-9223372036854775807"])
def test_sweep_seeds_out_of_range_are_refused_at_once(spec):
    from ibcli.errors import UserError
    from ibcli.stages.sweep import parse_seeds

    with pytest.raises(UserError, match="seeds must be between 0 and 2\\^63-1|more than 10000 seeds"):
        parse_seeds(spec)
