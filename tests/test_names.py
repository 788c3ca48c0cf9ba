"""Run names from settings, legend labels of compared runs, MLflow metric names and their steps."""

from __future__ import annotations

from ibcli import metric_names, run_names
from ibcli.estimators import registry


def test_train_mi_and_sweep_names():
    cfg = {"model": "mlp", "activation": "tanh", "optimizer": "adam", "dataset": "mnist", "seed": 0}
    assert run_names.train_run_name(cfg) == "mlp-tanh-adam-s0"
    assert run_names.train_run_name({**cfg, "model": "cnn", "dataset": "cifar10", "seed": 3}) == "cnn-tanh-adam-cifar10-s3"
    assert run_names.sweep_run_name({**cfg, "model": "ib", "dataset": "ib12"}) == "sweep-ib-tanh-adam-ib12"
    names = {m: run_names.mi_run_name(registry.get(m), registry.get(m).check_params({})) for m in ("binning", "kde", "renyi")}
    assert names == {"binning": "mi-binning-bins=30", "kde": "mi-kde-s2=0.1", "renyi": "mi-renyi-alpha=2"}
    kde, ksg = registry.get("kde"), registry.get("kraskov")
    assert run_names.mi_run_name(kde, kde.check_params({"noise_var": (0.1, 0.01)})) == "mi-kde-s2=0.1,0.01"
    assert run_names.mi_run_name(ksg, ksg.check_params({"k": 5})) == "mi-kraskov-s2=0.1-k=5"  # k only off its default


def test_labels_name_what_differs():
    tanh, relu = {"activation": "tanh", "lr": 0.001, "seed": 0}, {"activation": "relu", "lr": 0.001, "seed": 0}
    assert run_names.settings_labels([tanh, relu]) == ["tanh", "relu"]
    assert run_names.settings_labels([tanh, {**relu, "lr": 0.01}]) == ["tanh lr=0.001", "relu lr=0.01"]
    assert run_names.settings_labels([tanh, tanh, relu], ["aaaaaaaaaa", "bbbbbbbbbb", "cc"]) == [
        "tanh (aaaaaaaa)", "tanh (bbbbbbbb)", "relu"]
    assert run_names.settings_labels([tanh, tanh]) == ["run 1", "run 2"]
    assert run_names.compare_run_name(["tanh lr=0.001", "relu"]) == "compare-tanh-lr=0.001-vs-relu"


def test_description_is_the_command_line(monkeypatch):
    monkeypatch.setattr(run_names, "_command", None)  # put back after the test
    assert run_names.description() is None
    run_names.set_command(["train", "--run-name", "a b"])
    assert run_names.description() == "```\nibcli train --run-name 'a b'\n```"


def test_metric_names_are_grouped_and_old_names_still_read():
    assert metric_names.mlflow_name("test_accuracy") == "train/accuracy_test"
    assert metric_names.mlflow_name("snr.layer3") == "grad/snr/layer3"
    assert metric_names.mlflow_name("grad_mean_norm.conv1") == "grad/mean_norm/conv1"
    assert metric_names.mlflow_name("train/loss_train") == "train/loss_train"  # already grouped
    assert metric_names.read_keys("train_loss") == ("train/loss_train", "train_loss")
    assert metric_names.latest({"test_accuracy": 0.9}, "test_accuracy") == 0.9
    assert metric_names.latest({"train/accuracy_test": 0.8, "test_accuracy": 0.9}, "test_accuracy") == 0.8
    assert metric_names.latest({}, "test_accuracy") is None


def test_mi_metrics_step_is_the_epoch_or_the_optimizer_step():
    assert metric_names.mi_metric("i_xt_bits", "layer1", None, 3.0) == ("mi/i_xt_bits/layer1", True)
    assert metric_names.mi_metric("i_ty_bits", "layer1", float("nan"), 0.0) == ("mi/i_ty_bits/layer1", True)
    assert metric_names.mi_metric("i_xt_bits", "layer2", 0.1, 2.0) == ("mi/i_xt_bits/layer2/s2_0.1", True)
    assert metric_names.mi_metric("i_xt_bits", "layer2", 0.01, 0.25) == ("mi_steps/i_xt_bits/layer2/s2_0.01", False)
