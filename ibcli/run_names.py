"""What a run is called and described as: names from its settings, the command line as description.

Torch- and MLflow-free, so the CLI can record its command line before any stage is imported.

    train   mlp-tanh-adam-s0           (model-activation-optimizer[-dataset unless mnist]-sSEED)
    mi      mi-kde-s2=0.1              (method, its first parameter, every other one set off its default)
    plot    plot-binning+kde           (the methods drawn; plot-training without mi results)
    compare compare-tanh-vs-relu       (what tells the runs apart, `settings_labels`)
    sweep   sweep-ib-tanh-adam-ib12    (members: the train name with their seed)
"""

from __future__ import annotations

import shlex

DESCRIPTION_TAG = "mlflow.note.content"  # what MLflow's UI shows as a run's description
_command: list[str] | None = None
# Train settings that tell runs apart, in the order a label names them.
SETTINGS = ("model", "dataset", "activation", "optimizer", "lr", "batch_size", "weight_decay", "epochs", "seed")


def set_command(argv: list[str]) -> None:
    """Remember this process's `ibcli` arguments (the CLI calls it once)."""
    global _command
    _command = [str(a) for a in argv]


def description() -> str | None:
    """The run description for this process (markdown: the command line in a code block), or None
    outside the CLI."""
    if _command is None:
        return None
    return "```\nibcli " + shlex.join(_command) + "\n```"


def train_run_name(settings: dict) -> str:
    """`mlp-tanh-adam-s0` from a train configuration (a TrainConfig as dict, or run params)."""
    parts = [settings.get("model", "?"), settings.get("activation", "?"), settings.get("optimizer", "?")]
    if settings.get("dataset", "mnist") != "mnist":
        parts.append(settings["dataset"])
    return "-".join(map(str, parts)) + f"-s{settings.get('seed', 0)}"


def sweep_run_name(settings: dict) -> str:
    """`sweep-mlp-tanh-adam` (a train name without the seed)."""
    return "sweep-" + train_run_name(settings).rsplit("-s", 1)[0]


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ",".join(_shown(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def mi_run_name(estimator, params: dict) -> str:
    """`mi-kde-s2=0.1`: the method, its first parameter, and every other parameter set away from
    its default (params: `estimator.check_params(...)`'s output)."""
    parts = [f"mi-{estimator.name}"]
    for i, p in enumerate(estimator.params):
        value = params.get(p.name)
        default = (p.default,) if p.multiple and not isinstance(p.default, tuple) else p.default
        if value is None or (i > 0 and value == default):
            continue
        parts.append(f"{'s2' if p.name == 'noise_var' else p.name}={_shown(value)}")
    return "-".join(parts)


def settings_labels(runs_params: list[dict], run_ids: list[str] | None = None) -> list[str]:
    """One short label per train run for legends: the settings that differ between the runs
    ("tanh" / "relu", "lr=0.001" / "lr=0.01"; a single run gets its train name). Runs that the
    settings cannot tell apart get their id prefix added ("tanh (3f2a91bc)"), or are "run 1",
    "run 2" without ids."""
    if len(runs_params) == 1:
        return [train_run_name(runs_params[0])]
    differing = [k for k in SETTINGS if len({str(p.get(k)) for p in runs_params}) > 1]
    short = {"activation", "model", "optimizer", "dataset"}  # their values name themselves
    labels = [" ".join(str(p.get(k)) if k in short else f"{k}={p.get(k)}" for k in differing) for p in runs_params]
    repeated = {label for label in labels if not label or labels.count(label) > 1}
    for i, label in enumerate(labels):
        if label in repeated:
            tag = run_ids[i][:8] if run_ids else f"run {i + 1}"
            labels[i] = f"{label} ({tag})" if label else tag
    return labels


def compare_run_name(labels: list[str]) -> str:
    """`compare-tanh-vs-relu` from the runs' labels."""
    return "compare-" + "-vs-".join(label.replace(" ", "-") for label in labels)
