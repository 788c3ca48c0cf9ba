"""`--device auto|cpu|cuda` -> the torch device a stage runs on."""

from __future__ import annotations

from ibcli.errors import UserError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> str:
    """"auto" -> "cuda" when a GPU is visible, else "cpu"; "cpu" and "cuda" as given.

    Raises:
        UserError: "cuda" without a GPU visible to torch, or an unknown name.
    """
    import torch  # here, not at the top: the CLI reads DEVICES and must start without torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA GPU is visible to torch here: use --device cpu or auto")
    if name not in DEVICES:
        raise UserError(f"unknown device {name!r}: choose auto, cpu or cuda")
    return name
