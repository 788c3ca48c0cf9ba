"""The torch device of an estimator's kernels, and float32 matrix products without TF32.

kde, kraskov, sp and mine run the same torch code on the CPU and on a CUDA device; these two
helpers are what they share about devices.
"""

from __future__ import annotations

from contextlib import contextmanager

from .errors import EstimatorInputError

# torch is imported inside the functions that use it (deferred on purpose): the registry loads
# this module for `ibcli --help` and the CLI's options, which start without torch.

__all__ = ["torch_device", "is_cpu", "ieee_float32"]


def torch_device(device):
    """`device` ("cpu", "cuda", "cuda:1", or a torch.device) as a torch.device.

    Raises:
        EstimatorInputError: not a torch device, a kind other than cpu or cuda (the kernels are
            float64 where the CPU path is), or cuda without a GPU visible to torch.
    """
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise EstimatorInputError(f"device must be a torch device such as 'cpu' or 'cuda'; got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise EstimatorInputError(f"device must be 'cpu' or 'cuda' (float64 kernels); got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EstimatorInputError(f"device {device!r} asked for, but CUDA is not available here; use 'cpu'")
    return dev


def is_cpu(device) -> bool:
    """True for "cpu" (and None): the methods' own CPU paths; anything else is a torch device."""
    return device is None or str(device).split(":")[0] == "cpu"


@contextmanager
def ieee_float32():
    """float32 matrix products in full float32 (TF32 off) on CUDA while the block runs; the
    previous setting is restored after. TF32 rounds the inputs to 10 mantissa bits, which would
    move a float32 result far from the CPU's (the same numbers on every device: issue 14).
    The legacy flag sets PyTorch's new per-backend precision too; when a caller has mixed the
    two APIs (the legacy getter then raises), the new one is used alone."""
    import torch

    matmul = torch.backends.cuda.matmul
    try:
        prev = matmul.allow_tf32
    except RuntimeError:  # a mix of the legacy and the new TF32 APIs
        prev = None
    if prev is not None:
        matmul.allow_tf32 = False
        try:
            yield
        finally:
            matmul.allow_tf32 = prev
        return
    prev_precision = matmul.fp32_precision
    matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        matmul.fp32_precision = prev_precision
