"""Per-layer gradient statistics over an epoch's mini-batches (drift vs diffusion).

Shwartz-Ziv & Tishby (2017, "Opening the black box of deep neural networks via
information", arXiv:1703.00810, Fig. 4) plot, for each layer and epoch, the norm of
the mean of the mini-batch gradients and the norm of their standard deviation. Early
in training the mean dominates (high signal-to-noise ratio, "drift" phase); later the
fluctuations dominate (low SNR, "diffusion" phase), which they relate to compression.

Usage in a training loop::

    stats = GradientStats({name: [layer.weight] for name, layer in model.hidden_layers()})
    for epoch in ...:
        stats.reset()
        for xb, yb in loader:
            opt.zero_grad(); loss_fn(model(xb), yb).backward()
            stats.update()          # after backward, before or after opt.step()
            opt.step()
        rows = stats.summary()      # one dict per layer, log as metrics

Conventions:

- The standard deviation is the *population* one (ddof=0, divide by the number of
  mini-batches B), as ``np.std`` in the paper's code (github.com/ravidziv/IDNNs).
- Accumulation is shifted, on the parameters' device, with no host transfer per
  batch. The first gradient of the epoch, c, is kept; every batch
  then adds d_b = g_b - c to a running sum (a vector in the gradient's dtype) and
  ||d_b||^2 to a float64 scalar. Since the variance does not move with a shift,
  ||std||^2 = sum of the per-element variances = (1/B) sum_b ||d_b||^2 - ||mean(d)||^2
  and mean = c + mean(d). Because c is itself one of the gradients, it lies about
  one std from the mean: ||mean(d)||^2 is about ||std||^2 and (1/B) sum_b ||d_b||^2
  about twice that, whatever the signal-to-noise ratio, so the subtraction cancels
  about half (one bit) and float32 sums keep the std norm right to about 1e-5
  relative (tested at SNR 1000 against a float64 two-pass reference: 1e-7 measured,
  where unshifted float32 sums were off by 6e-3).
  Float64 gradients accumulate in float64.
  Cost per batch, float32 on a CPU: one fused pass per parameter (a small
  single-threaded numba kernel: read g and c, update the sum, add ||d||^2 in
  float64). Inside the default MLP's training loop on the 2-core CPU (803k weights
  in layer 1, caches cold from the step) that is 0.95 ms per batch, against about
  1.4 ms for three torch ops (subtract, add, dot) and 2 ms for the float64 sums
  used before; ``hold=4`` (what the trainer uses on a CPU) adds four batches per
  pass and costs 0.47 ms. Single-threaded so that no second OpenMP pool spins
  beside torch's. Otherwise (without numba, on a GPU, float64 or half-precision
  gradients, non-contiguous ones, or a parameter with no gradient at the epoch's
  first batch): the three torch ops, with ||d||^2 taken in float64.
  ``summary()`` syncs once (a few ``.item()`` calls per layer).
- On a GPU the trainer uses `DeviceGradientStats`: the same sums in tensors allocated
  once, a few multi-tensor kernels per batch, no host synchronisation, so that its
  ``update()`` can be captured in a CUDA graph with the training step.
- A layer given as a list of parameters (e.g. ``[weight, bias]``) is treated as the
  one vector of all their elements: norms are taken over the concatenation. Pass
  ``[layer.weight]`` (or the weight alone) for the paper's weights-only statistics.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = ["DeviceGradientStats", "GradientStats", "preload_kernel"]


def _layer_lists(layer_params) -> dict[str, list[torch.Tensor]]:
    """{layer: [parameter, ...]} from the constructors' argument, checked (see GradientStats)."""
    if not isinstance(layer_params, Mapping) or len(layer_params) == 0:
        raise ValueError("layer_params must be a non-empty dict {layer_name: parameter(s)}")
    layers: dict[str, list[torch.Tensor]] = {}
    for name, params in layer_params.items():
        plist = [params] if isinstance(params, torch.Tensor) else list(params)
        if not plist:
            raise ValueError(f"layer {name!r} has no parameters")
        for p in plist:
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"layer {name!r}: expected torch tensors/Parameters, got {type(p).__name__}")
        layers[str(name)] = plist
    return layers

class GradientStats:
    """Running mean and standard deviation of each layer's gradient across mini-batches.

    Args:
        layer_params: ``{layer_name: parameter}`` or ``{layer_name: [parameter, ...]}``
            (``torch.nn.Parameter`` or any tensor whose ``.grad`` autograd fills).
            Order is kept in ``summary()``.
        hold: 1 (default) or 4. With 4, float32 CPU gradients are kept (by
            reference, no copy) and added four at a time in one pass, which reads
            the shift and the running sum a quarter as often: 0.47 instead of 0.95 ms
            per batch for the default MLP on the 2-core CPU. The caller must then not
            write into a gradient after ``update()``: clear gradients with
            ``zero_grad(set_to_none=True)`` (PyTorch's default) and use an optimizer
            that leaves ``.grad`` alone (``torch.optim.Adam`` and ``SGD`` without
            Nesterov momentum do), and clip or unscale before ``update()``. A held
            gradient written in place afterwards (``zero_grad(set_to_none=False)``,
            clipping) is detected by its version counter and raises. Other devices
            and dtypes are added at once.

    Raises:
        ValueError: ``layer_params`` is empty, a layer has no parameters, or
            ``hold`` is not 1 or 4.
        TypeError: a value is not a tensor or a sequence of tensors.
    """

    def __init__(
        self,
        layer_params: Mapping[str, torch.Tensor | Sequence[torch.Tensor]],
        hold: int = 1,
    ) -> None:
        if hold not in (1, 4):
            raise ValueError(f"hold must be 1 or 4, got {hold!r}")
        self._hold = hold
        self._layers = _layer_lists(layer_params)
        self._scratch: dict[tuple, torch.Tensor] = {}  # (device, dtype) -> buffer for g - c, reused
        self.reset()

    @property
    def layers(self) -> list[str]:
        """Layer names, in the order given to the constructor."""
        return list(self._layers)

    @property
    def batches(self) -> int:
        """Number of ``update()`` calls since the last ``reset()``."""
        return self._count

    def reset(self) -> None:
        """Forget all accumulated gradients (call at the start of each epoch)."""
        self._count = 0
        # Per layer, one accumulator per parameter, filled at the first update.
        self._acc: dict[str, list[_Accumulator]] = {
            name: [_Accumulator(p, self._hold) for p in ps] for name, ps in self._layers.items()
        }
        self._flat = [a for accs in self._acc.values() for a in accs]

    @torch.no_grad()
    def update(self) -> None:
        """Add the current ``.grad`` of every tracked parameter as one mini-batch.

        Call after ``loss.backward()`` (and before ``zero_grad``); with AMP's
        ``GradScaler``, after ``scaler.unscale_(optimizer)``. A parameter whose
        ``.grad`` is ``None`` (it did not take part in this loss) counts as a zero
        gradient for this batch.

        Cost: one fused pass per parameter element on a CPU (float32, numba; with
        ``hold=4`` one pass per four calls), else three (subtract, add, dot), on
        the parameter's device.

        Raises:
            RuntimeError: no tracked parameter has a gradient (``update()`` called
                before ``backward()``), a gradient changed size, or with ``hold=4``
                a held gradient was written in place. After this error the epoch's
                statistics are incomplete: call ``reset()``.
        """
        flat = self._flat
        if all(a.param.grad is None for a in flat):
            raise RuntimeError(
                "GradientStats.update(): no tracked parameter has a .grad; call it after loss.backward()"
            )
        self._count += 1
        if self._count == 1:
            for a in flat:
                a.start(self._scratch)
            return
        for a in flat:
            a.add(a.param.grad)

    @torch.no_grad()
    def summary(self) -> list[dict]:
        """Per-layer statistics of the mini-batch gradients since the last ``reset()``.

        Returns:
            One dict per layer, in constructor order, with keys

            - ``layer`` (str): the layer name.
            - ``grad_mean_norm`` (float): L2 norm of the per-element mean gradient
              over the B mini-batches.
            - ``grad_std_norm`` (float): L2 norm of the per-element population
              standard deviation (ddof=0) across the B mini-batches; 0.0 when B == 1.
            - ``snr`` (float): ``grad_mean_norm / grad_std_norm``; ``inf`` when the
              std norm is 0 and the mean norm is not, ``nan`` when both are 0.
            - ``weight_norm`` (float): L2 norm of the layer's current parameters
              (all elements of the layer's list), at the time of the call.
            - ``batches`` (int): B, the number of ``update()`` calls.

            With B == 0 the three gradient values are ``nan``.

        Raises:
            RuntimeError: with ``hold=4``, a gradient still held was written in place.
            Units: those of the gradient (loss units per parameter unit); norms are
            over all elements of the layer's parameters.
        """
        for a in self._flat:
            a.flush()
        rows = []
        n = self._count
        for name, ps in self._layers.items():
            weight_sq = sum(float(p.detach().to(torch.float64).square().sum()) for p in ps)
            mean_sq = shifted_sq = sq_mean = 0.0
            if n > 0:
                for a in self._acc[name]:
                    mean_d = a.total.to(torch.float64) / n
                    mean_sq += float((a.shift.to(torch.float64) + mean_d).square().sum())
                    shifted_sq += float(mean_d.square().sum())
                    sq_mean += float(a.sq) / n
            rows.append(_row(name, n, mean_sq, shifted_sq, sq_mean, weight_sq))
        return rows


class DeviceGradientStats:
    """The statistics of `GradientStats`, summed on the parameters' device in tensors allocated
    once, with no host synchronisation per batch: ``update()`` may be captured in a CUDA graph.

    Same definitions, shift and ``summary()`` rows as `GradientStats` (population std; the
    epoch's first gradient c as the shift; d_b = g_b - c summed in the gradient's dtype and
    ||d_b||^2 in float64, see the module docstring). Per batch: multi-tensor ops over all
    tracked parameters at once (subtract, add, float64 norms, their squares added) and a
    count, all on the device; on a GPU the whole update is about six kernels (or none to
    launch, inside a captured graph). ``reset()`` zeroes the sums in place, so the tensors
    keep their addresses and a captured ``update()`` stays valid; the batch count is a
    device tensor; ``summary()`` synchronises once. On a CPU `GradientStats` (its fused
    kernel) is faster.

    Usage: as `GradientStats`. Inside a captured CUDA graph the Python code of ``update()``
    runs only once, at capture: capture the epoch's first batch (``update(first=True)``) and
    the others (``update(first=False)``) as separate graphs.

    Args:
        layer_params: ``{layer_name: parameter}`` or ``{layer_name: [parameter, ...]}``, all
            on one device; a list is one vector (norms over all its elements), as in `GradientStats`.

    Raises:
        ValueError: ``layer_params`` is empty, a layer has no parameters, or the parameters
            sit on more than one device.
        TypeError: a value is not a tensor or a sequence of tensors.
    """

    def __init__(self, layer_params: Mapping[str, torch.Tensor | Sequence[torch.Tensor]]) -> None:
        self._layers = _layer_lists(layer_params)
        self._params = [p for ps in self._layers.values() for p in ps]
        devices = {p.device for p in self._params}
        if len(devices) != 1:
            raise ValueError(f"DeviceGradientStats needs all parameters on one device, got {sorted(map(str, devices))}")
        device = devices.pop()
        self._shifts = [torch.zeros(p.numel(), dtype=_accumulation_dtype(p.dtype), device=device) for p in self._params]
        self._totals = [torch.zeros_like(c) for c in self._shifts]
        self._sq = torch.zeros(len(self._params), dtype=torch.float64, device=device)  # sum_b ||d_b||^2 per parameter
        self._sq_slots = list(self._sq.unbind())  # 0-d views, one per parameter
        self._live = [i for i, p in enumerate(self._params) if p.numel() > 0]
        self._count = torch.zeros((), dtype=torch.int64, device=device)
        self._first = True

    @property
    def layers(self) -> list[str]:
        """Layer names, in the order given to the constructor."""
        return list(self._layers)

    @property
    def batches(self) -> int:
        """Number of ``update()`` calls (or replays) since the last ``reset()`` (synchronises)."""
        return int(self._count)

    @torch.no_grad()
    def reset(self) -> None:
        """Forget the accumulated gradients, in place (call at the start of each epoch)."""
        for t in self._totals:
            t.zero_()
        self._sq.zero_()
        self._count.zero_()
        self._first = True

    @torch.no_grad()
    def update(self, first: bool | None = None) -> None:
        """Add the current ``.grad`` of every tracked parameter as one mini-batch.

        Args:
            first: whether this is the epoch's first batch (its gradient becomes the shift);
                None: the first call since ``reset()`` is. Pass it when capturing.

        Raises:
            RuntimeError: a tracked parameter has no ``.grad`` (call after ``loss.backward()``;
                every tracked parameter must take part in the loss), or a gradient changed size.
        """
        grads = [p.grad for p in self._params]
        if any(g is None for g in grads):
            raise RuntimeError(
                "DeviceGradientStats.update(): a tracked parameter has no .grad; call it after loss.backward()"
            )
        if first is None:
            first = self._first
        self._first = False
        for g, c in zip(grads, self._shifts):
            if g.numel() != c.numel():
                raise RuntimeError(
                    f"DeviceGradientStats: a gradient changed size ({c.numel()} -> {g.numel()} elements); "
                    "build a new one after replacing a parameter"
                )
        # Empty parameters add nothing (and multi-tensor norms leave their results unset on a GPU).
        live = self._live
        flat = [grads[i].detach().reshape(-1).to(self._shifts[i].dtype) for i in live]
        shifts = [self._shifts[i] for i in live]
        self._count.add_(1)
        if first:  # d = g - c = 0 for the shift itself: nothing to add
            for c, g in zip(shifts, flat):
                c.copy_(g)
            return
        if not live:
            return
        d = torch._foreach_sub(flat, shifts)
        torch._foreach_add_([self._totals[i] for i in live], d)
        # Multi-tensor norms summed in float64 (the accumulator type follows `dtype`), squared
        # into each parameter's slot of the float64 sums.
        norms = torch._foreach_norm(d, 2, dtype=torch.float64)
        torch._foreach_addcmul_([self._sq_slots[i] for i in live], norms, norms)

    @torch.no_grad()
    def summary(self) -> list[dict]:
        """Per-layer statistics since the last ``reset()``: the rows of `GradientStats.summary`
        (``layer``, ``grad_mean_norm``, ``grad_std_norm``, ``snr``, ``weight_norm``, ``batches``),
        computed in float64 on the device and read back in one transfer."""
        count = self._count.to(torch.float64)
        n_div = count.clamp(min=1.0)
        parts = [count.reshape(1), self._sq / n_div]
        for c, t, p in zip(self._shifts, self._totals, self._params):
            mean_d = t.to(torch.float64) / n_div
            parts.append(torch.stack([
                (c.to(torch.float64) + mean_d).square().sum(),  # ||mean||^2 = ||c + mean(d)||^2
                mean_d.square().sum(),  # ||mean(d)||^2
                p.detach().to(torch.float64).square().sum(),  # ||w||^2
            ]))
        values = torch.cat(parts).tolist()
        n = int(values[0])
        k = len(self._params)
        sq_mean, per_param = values[1 : 1 + k], values[1 + k :]
        rows, i = [], 0
        for name, ps in self._layers.items():
            mean_sq = shifted_sq = layer_sq_mean = weight_sq = 0.0
            for _ in ps:
                mean_sq += per_param[3 * i]
                shifted_sq += per_param[3 * i + 1]
                weight_sq += per_param[3 * i + 2]
                layer_sq_mean += sq_mean[i]
                i += 1
            rows.append(_row(name, n, mean_sq if n else 0.0, shifted_sq, layer_sq_mean, weight_sq))
        return rows


def _row(name: str, n: int, mean_sq: float, shifted_sq: float, sq_mean: float, weight_sq: float) -> dict:
    """One summary row from a layer's shifted sums over n batches: ``mean_sq`` = ||c + mean(d)||^2
    (the mean gradient), ``shifted_sq`` = ||mean(d)||^2, ``sq_mean`` = (1/n) sum_b ||d_b||^2."""
    if n == 0:
        mean_norm = std_norm = snr = math.nan
    else:
        # ||std||^2 = sum of per-element variances; clamp rounding below 0
        # (one batch has no spread at all).
        var_sum = max(sq_mean - shifted_sq, 0.0) if n > 1 else 0.0
        mean_norm = math.sqrt(mean_sq)
        std_norm = math.sqrt(var_sum)
        if std_norm > 0.0:
            snr = mean_norm / std_norm
        elif mean_norm > 0.0:
            snr = math.inf
        else:
            snr = math.nan
    return {
        "layer": name,
        "grad_mean_norm": mean_norm,
        "grad_std_norm": std_norm,
        "snr": snr,
        "weight_norm": math.sqrt(weight_sq),
        "batches": n,
    }


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 gradients accumulate in float64; float32 and narrower ones in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class _Accumulator:
    """One parameter's shifted sums over an epoch: the shift c (its first gradient,
    flattened), the sum of d = g - c and the float64 sum of ||d||^2. With the fused
    kernel and ``hold == 4``, gradients wait (by reference) until four are there."""

    __slots__ = ("param", "shift", "total", "sq", "_hold", "_held", "_np", "_scratch")

    # _held: (gradient, its version when held) pairs; autograd's version counter
    # moves with every in-place write, so a changed one means the data is not the batch's.

    def __init__(self, param: torch.Tensor, hold: int) -> None:
        self.param = param
        self.shift = self.total = None
        self.sq = 0.0
        self._hold = hold
        self._held: list[tuple[torch.Tensor, int]] = []
        self._np = None  # (shift, total) as NumPy views when the fused kernel applies

    def start(self, scratch: dict) -> None:
        """Take the current gradient as the shift (a missing one counts as zero)."""
        p, g = self.param, self.param.grad
        dtype = _accumulation_dtype(p.dtype)
        flat_g = None if g is None else g.detach().reshape(-1)
        self.shift = torch.zeros(p.numel(), dtype=dtype, device=p.device) if g is None else flat_g.to(dtype, copy=True)
        self.total = torch.zeros(p.numel(), dtype=dtype, device=p.device)
        if flat_g is not None and _fusable(flat_g, self.total) and _fused_kernel() is not None:
            self._np = (self.shift.numpy(), self.total.numpy())
        else:  # torch ops; the running ||d||^2 stays on the device (no sync per batch)
            self.sq = torch.zeros((), dtype=torch.float64, device=p.device)
        self._scratch = scratch

    def add(self, g: torch.Tensor | None) -> None:
        """Add one mini-batch gradient (None counts as zero)."""
        if g is not None and g.numel() != self.total.numel():
            raise RuntimeError(
                f"GradientStats: a gradient changed size within the epoch ({self.total.numel()} -> {g.numel()} "
                "elements); call reset() after replacing a parameter"
            )
        if self._np is not None and g is not None and _fusable(g, self.total):
            if self._hold == 1:
                self.sq += _FUSED(g.detach().numpy().reshape(-1), *self._np)
                return
            self._held.append((g.detach(), g._version))
            if len(self._held) == 4:
                self.sq += _FUSED4(*self._held_views(), *self._np)
                self._held.clear()
            return
        self._add_torch(g)

    def flush(self) -> None:
        """Add the gradients still held (fewer than four), one by one."""
        for view in self._held_views():
            self.sq += _FUSED(view, *self._np)
        self._held.clear()

    def _held_views(self) -> list:
        for h, version in self._held:
            if h._version != version:
                self._held.clear()
                raise RuntimeError(
                    "GradientStats(hold=4): a held gradient was written in place after update() "
                    "(zero_grad(set_to_none=False), clipping or unscaling after update()?); "
                    "clear gradients with set_to_none=True, clip before update(), or use hold=1"
                )
        return [h.numpy().reshape(-1) for h, _ in self._held]

    def _add_torch(self, g: torch.Tensor | None) -> None:
        if g is None:  # a zero gradient: d = -c
            self.total.sub_(self.shift)
            self.sq += torch.linalg.vector_norm(self.shift, dtype=torch.float64).square()
            return
        g = g.detach().reshape(-1)
        key = (g.device, self.total.dtype)
        buf = self._scratch.get(key)
        if buf is None or buf.numel() < g.numel():
            buf = self._scratch[key] = torch.empty(g.numel(), dtype=self.total.dtype, device=g.device)
        d = buf[: g.numel()]
        torch.sub(g, self.shift, out=d)
        self.total.add_(d)
        self.sq += torch.linalg.vector_norm(d, dtype=torch.float64).square()  # float64: no overflow


def _fusable(g: torch.Tensor, total: torch.Tensor) -> bool:
    """Whether the fused CPU kernel applies: float32 on the CPU, contiguous, a plain
    (not negated) view, so that ``.numpy()`` shares its memory."""
    return (g.device.type == "cpu" and g.dtype == torch.float32 and total.dtype == torch.float32
            and g.is_contiguous() and not g.is_neg())


_FUSED = None  # the compiled kernel once loaded; False when numba is unavailable
_FUSED4 = None  # its four-gradient form
_FUSED_LOCK = threading.Lock()


def _fused_kernel():
    """``kernel(g, c, total) -> float``: ``total += g - c`` and the float64 sum of
    ``(g - c)**2``, in one pass over three float32 1-d arrays; None without numba.
    Compiled on first use (about 1 s), then loaded from numba's on-disk cache (about
    0.8 s, mostly numba's imports); see ``preload_kernel``."""
    global _FUSED, _FUSED4
    if _FUSED is None:
        with _FUSED_LOCK:
            if _FUSED is None:
                try:
                    _FUSED4, _FUSED = _compile_fused_kernels()
                except ImportError:  # no numba: torch ops
                    _FUSED = False
                except Exception as exc:  # a numba that fails to load or compile: torch ops, said once
                    warnings.warn(f"gradient statistics: numba kernel unavailable ({exc!r}); using torch ops", RuntimeWarning)
                    _FUSED = False
    return _FUSED or None


def _compile_fused_kernels():
    """(four-gradient kernel, one-gradient kernel), compiled or loaded from cache."""
    from numba import njit

    # reassoc only: lets LLVM vectorize the float64 sums; NaN and inf still propagate.
    @njit(cache=True, fastmath={"reassoc"}, nogil=True)
    def shifted_update(g, c, total):  # pragma: no cover - compiled
        sq = 0.0
        for i in range(g.size):
            d = g[i] - c[i]
            total[i] += d
            sq += np.float64(d) * np.float64(d)
        return sq

    @njit(cache=True, fastmath={"reassoc"}, nogil=True)
    def shifted_update4(g1, g2, g3, g4, c, total):  # pragma: no cover - compiled
        sq = 0.0
        for i in range(g1.size):
            ci = c[i]
            d1, d2, d3, d4 = g1[i] - ci, g2[i] - ci, g3[i] - ci, g4[i] - ci
            total[i] += (d1 + d2) + (d3 + d4)
            sq += (np.float64(d1) * np.float64(d1) + np.float64(d2) * np.float64(d2)) + (
                np.float64(d3) * np.float64(d3) + np.float64(d4) * np.float64(d4)
            )
        return sq

    probe = np.zeros(1, dtype=np.float32)  # compile or load now, not mid-epoch
    shifted_update(probe, probe, probe.copy())
    shifted_update4(probe, probe, probe, probe, probe, probe.copy())
    return shifted_update4, shifted_update


def preload_kernel() -> bool:
    """Load the fused CPU kernel now rather than at the first ``update()``.

    Loading is mostly imports (numba and the registries it pulls in, about 1 s on
    the 2-core machine, compiled kernel from numba's on-disk cache); the train
    stage calls this with its other imports so that the first batch does not wait.

    Returns:
        True if the kernel is available, False without numba (torch ops are used).
    """
    return _fused_kernel() is not None
