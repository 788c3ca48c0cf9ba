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
- Accumulation uses Welford's update per element in float64, on the parameters'
  device, with in-place torch ops: no host transfer per batch. ``summary()`` syncs
  once (a few ``.item()`` calls per layer).
- A layer given as a list of parameters (e.g. ``[weight, bias]``) is treated as the
  one vector of all their elements: norms are taken over the concatenation. Pass
  ``[layer.weight]`` (or the weight alone) for the paper's weights-only statistics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

__all__ = ["GradientStats"]


class GradientStats:
    """Running mean and standard deviation of each layer's gradient across mini-batches.

    Args:
        layer_params: ``{layer_name: parameter}`` or ``{layer_name: [parameter, ...]}``
            (``torch.nn.Parameter`` or any tensor whose ``.grad`` autograd fills).
            Order is kept in ``summary()``.

    Raises:
        ValueError: ``layer_params`` is empty or a layer has no parameters.
        TypeError: a value is not a tensor or a sequence of tensors.
    """

    def __init__(
        self,
        layer_params: Mapping[str, torch.Tensor | Sequence[torch.Tensor]],
    ) -> None:
        if not isinstance(layer_params, Mapping) or len(layer_params) == 0:
            raise ValueError("layer_params must be a non-empty dict {layer_name: parameter(s)}")
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
        # Per layer, per parameter: (mean, m2) float64 tensors, created lazily on the
        # gradient's device at the first update.
        self._mean: dict[str, list[torch.Tensor | None]] = {
            name: [None] * len(ps) for name, ps in self._layers.items()
        }
        self._m2: dict[str, list[torch.Tensor | None]] = {
            name: [None] * len(ps) for name, ps in self._layers.items()
        }

    @torch.no_grad()
    def update(self) -> None:
        """Add the current ``.grad`` of every tracked parameter as one mini-batch.

        Call after ``loss.backward()`` (and before ``zero_grad``); with AMP's
        ``GradScaler``, after ``scaler.unscale_(optimizer)``. A parameter whose
        ``.grad`` is ``None`` (it did not take part in this loss) counts as a zero
        gradient for this batch.

        Cost: a few elementwise float64 ops per parameter element, on its device.

        Raises:
            RuntimeError: no tracked parameter has a gradient (``update()`` called
                before ``backward()``).
        """
        if all(p.grad is None for ps in self._layers.values() for p in ps):
            raise RuntimeError(
                "GradientStats.update(): no tracked parameter has a .grad; call it after loss.backward()"
            )
        self._count += 1
        inv_n = 1.0 / self._count
        for name, ps in self._layers.items():
            means, m2s = self._mean[name], self._m2[name]
            for i, p in enumerate(ps):
                if p.grad is None:
                    g = torch.zeros(p.shape, dtype=torch.float64, device=p.device)
                else:
                    g = p.grad.detach().to(dtype=torch.float64, copy=True)
                if means[i] is None:
                    # First batch of this epoch: mean so far is zero for 0 previous
                    # batches; the Welford step below then sets mean = g, m2 = 0.
                    means[i] = torch.zeros_like(g)
                    m2s[i] = torch.zeros_like(g)
                mean, m2 = means[i], m2s[i]
                delta = g - mean  # g - mean_{n-1}
                mean.add_(delta, alpha=inv_n)  # mean_n
                g.sub_(mean)  # g - mean_n
                m2.addcmul_(delta, g)  # m2_n = m2_{n-1} + (g - mean_{n-1})(g - mean_n)

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
            Units: those of the gradient (loss units per parameter unit); norms are
            over all elements of the layer's parameters.
        """
        rows = []
        n = self._count
        for name, ps in self._layers.items():
            weight_sq = sum(float(p.detach().to(torch.float64).square().sum()) for p in ps)
            if n == 0:
                mean_norm = std_norm = snr = math.nan
            else:
                mean_sq = 0.0
                var_sum = 0.0
                for mean, m2 in zip(self._mean[name], self._m2[name]):
                    mean_sq += float(mean.square().sum())
                    # ||std||^2 = sum of per-element variances; clamp rounding below 0.
                    var_sum += float(m2.clamp_min(0.0).sum()) / n
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
