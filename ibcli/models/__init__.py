"""The networks ibcli trains, by name, and the choices that go with them.

This module is torch-free, so the CLI lists the choices at once: each model is a line
"name": "module:builder", and the builder (which needs torch) is imported when a model
is built. A builder takes (activation, input_shape, num_classes) and returns a
`nets.RecordedNet`, whose recorded layers have stable names.
"""

from __future__ import annotations

import importlib

from ibcli.errors import UserError

MODELS = {
    "mlp": "ibcli.models.nets:build_mlp",
    "cnn": "ibcli.models.nets:build_cnn",
    "ib": "ibcli.models.nets:build_ib",
}
MODEL_ALIASES = {"tishby": "ib"}
ACTIVATIONS = ("tanh", "relu", "sigmoid", "elu")
OPTIMIZERS = ("sgd", "adam")


def build_model(name: str, activation: str, input_shape: tuple[int, ...], num_classes: int):
    """Build model `name` (or an alias) for inputs of `input_shape` and `num_classes` classes.

    mlp: d-1024-20-20-20-20-classes with d the flattened input size; cnn: images C x H x W
    with H, W >= 4 (1x28x28, 3x32x32); ib: d-10-7-5-4-3-classes, i.e. 12-10-7-5-4-3-2 on
    the 12-bit task (Shwartz-Ziv & Tishby 2017).

    Raises:
        UserError: unknown model or activation, or a model that does not fit the data.
    """
    key = MODEL_ALIASES.get(name, name)
    if key not in MODELS:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(MODELS)} (alias {', '.join(MODEL_ALIASES)})")
    module, builder = MODELS[key].split(":")
    # Imported here, not at the top: it imports torch, which `ibcli --help` must not wait for.
    return getattr(importlib.import_module(module), builder)(activation, tuple(input_shape), num_classes)
