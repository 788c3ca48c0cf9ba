"""MLflow metric names: the one mapping from the keys ibcli computes with to the names runs log.

MLflow's UI groups a run's charts by the prefix before the first "/", so every name has one:

    train/   accuracy_test, accuracy_train, loss_test, loss_train, seconds_per_epoch   (step = epoch)
    grad/    mean_norm/LAYER, std_norm/LAYER, snr/LAYER, weight_norm/LAYER               (step = epoch)
    mi/      i_xt_bits/LAYER[/s2_V], i_ty_bits/LAYER[/s2_V], seconds                     (step = epoch)
    mi_steps/ the same for records inside an epoch (--log-steps)                        (step = optimizer step)
    sweep/   seconds, members_finished, accuracy_test_mean, accuracy_test_sd

The code keeps computing with the flat keys (``train_loss``, ``snr.layer1``); `Store.log_metric_rows`
renames them on the way out. Runs logged before this mapping (2026-11-30) carry the flat keys;
readers accept both (`read_keys`, `latest`).
"""

from __future__ import annotations

import math

#: ibcli's flat keys -> MLflow names (ungrouped before 2026-11-30).
FLAT = {
    "train_loss": "train/loss_train",
    "train_accuracy": "train/accuracy_train",
    "test_loss": "train/loss_test",
    "test_accuracy": "train/accuracy_test",
    "epoch_seconds": "train/seconds_per_epoch",
    "mi_seconds": "mi/seconds",
    "sweep_seconds": "sweep/seconds",
    "members_finished": "sweep/members_finished",
    "test_accuracy_mean": "sweep/accuracy_test_mean",
    "test_accuracy_sd": "sweep/accuracy_test_sd",
}
#: Per-layer gradient statistics: flat "STAT.LAYER" -> "grad/NAME/LAYER".
GRAD = {"grad_mean_norm": "mean_norm", "grad_std_norm": "std_norm", "snr": "snr", "weight_norm": "weight_norm"}


def mlflow_name(key: str) -> str:
    """The MLflow name of an ibcli metric key; a name that is already grouped (has "/") is kept."""
    if "/" in key:
        return key
    if key in FLAT:
        return FLAT[key]
    stat, dot, layer = key.partition(".")
    if dot and stat in GRAD:
        return f"grad/{GRAD[stat]}/{layer}"
    return key


def read_keys(key: str) -> tuple[str, ...]:
    """The names a metric may carry in a run, newest first: (MLflow name, flat key) or (key,)."""
    new = mlflow_name(key)
    return (new, key) if new != key else (key,)


def latest(metrics: dict[str, float], key: str) -> float | None:
    """A run's latest value of `key` (an ibcli flat key) under its new name or its old one."""
    for name in read_keys(key):
        if name in metrics:
            return metrics[name]
    return None


def mi_metric(quantity: str, layer: str, noise_var: float | None, epoch: float) -> tuple[str, bool]:
    """(MLflow name, whether the step is the epoch) of an mi table value.

    MLflow steps are integers. A record at a whole epoch (step 0 = before training included) is
    logged under ``mi/`` with step = the epoch; a record inside an epoch (``--log-steps``) under
    ``mi_steps/`` with step = the optimizer step, so neither scale is rounded into the other.

    quantity: "i_xt_bits" or "i_ty_bits"; noise_var: s2 of a noisy method (None/NaN otherwise).
    """
    whole = float(epoch).is_integer()
    name = f"{'mi' if whole else 'mi_steps'}/{quantity}/{layer}"
    if noise_var is not None and not math.isnan(float(noise_var)):
        name += f"/s2_{noise_var:g}"
    return name, whole
