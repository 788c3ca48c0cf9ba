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

__all__ = ["GradientStats", "preload_kernel"]

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
        if not isinstance(layer_params, Mapping) or len(layer_params) == 0:
            raise ValueError("layer_params must be a non-empty dict {layer_name: parameter(s)}")
        if hold not in (1, 4):
            raise ValueError(f"hold must be 1 or 4, got {hold!r}")
        self._hold = hold
        self._layers: dict[str, list[torch.Tensor]] = {}
        for name, params in layer_params.items():
            plist = [params] if isinstance(params, torch.Tensor) else list(params)
            if not plist:
                raise ValueError(f"layer {name!r} has no parameters")
            for p in plist:
                if not isinstance(p, torch.Tensor):
                    raise TypeError(
                        f"layer {name!r}: expected torch tensors/Parameters, got {type(p).__name__}"
                    )
            self._layers[str(name)] = plist
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
            if n == 0:
                mean_norm = std_norm = snr = math.nan
            else:
                mean_sq = 0.0  # ||mean||^2 = ||c + mean(d)||^2
                shifted_sq = 0.0  # ||mean(d)||^2
                sq_mean = 0.0  # (1/B) sum_b ||d_b||^2
                for a in self._acc[name]:
                    mean_d = a.total.to(torch.float64) / n
                    mean_sq += float((a.shift.to(torch.float64) + mean_d).square().sum())
                    shifted_sq += float(mean_d.square().sum())
                    sq_mean += float(a.sq) / n
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
            rows.append(
                {
                    "layer": name,
                    "grad_mean_norm": mean_norm,
                    "grad_std_norm": std_norm,
                    "snr": snr,
                    "weight_norm": math.sqrt(weight_sq),
                    "batches": n,
                }
            )
        return rows


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
