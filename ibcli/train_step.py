"""The training step as a fixed sequence of device operations, replayable as a CUDA graph.

On a GPU the default MLP's step is launch-bound: forward, backward, Adam and the gradient
statistics are a few hundred small kernels whose launches take longer than their arithmetic.
`StaticStep` writes the step so that it needs nothing from the host per batch: the epoch's
permutation sits in a device buffer, a device counter says where the batch starts, loss and
hits are summed into device scalars, and gradients (zeroed in place, never set to None),
optimizer state and gradient statistics live in tensors allocated once. Such a step can be
recorded once as a CUDA graph and replayed for every batch of the same shape, which launches
the whole step at once (PyTorch's "whole-network capture",
https://pytorch.org/docs/stable/notes/cuda.html#cuda-graphs). Each (batch rows, first batch
of the epoch) pair is one graph: the full batches, the epoch's first (it sets the gradient
statistics' shift) and a shorter last batch. Each runs eagerly on a side stream a few times
before its capture (the warm-up the notes ask for: lazy state, cuBLAS workspaces); those are
real training steps, so the run's numbers do not depend on when capture happens.

Without graphs (any device) the same code runs eagerly; on a CPU it computes exactly what
the plain loop in `ibcli.training` computes, which is how the tests check it.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

# Eager runs of each step shape before it is captured.
WARMUP = 3


class StaticStep:
    """One optimizer step on the next batch of the epoch, with no host synchronisation.

    Args:
        model, loss_fn, optimizer: the network, a mean loss over the batch, and an optimizer
            whose ``step()`` has no host synchronisation (with ``graphs``: Adam with
            ``capturable=True``, or SGD).
        x, y: the whole training set, on the model's device (batches are gathered there).
        batch_size: rows per batch; the epoch's last batch may be shorter.
        grad_stats: a `ibcli.gradient_stats.DeviceGradientStats` of the model's
            parameters, or None.
        graphs: capture each step shape as a CUDA graph after ``warmup`` eager runs
            (CUDA only); if a capture fails, the step stays eager (``fallback`` says why).

    Raises:
        ValueError: ``graphs`` on a device that is not CUDA.
    """

    def __init__(self, model: nn.Module, loss_fn, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                 batch_size: int, grad_stats=None, graphs: bool = False, warmup: int = WARMUP):
        device = x.device
        if graphs and device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, the data is on {device}")
        self.model, self.loss_fn, self.optimizer, self.grad_stats = model, loss_fn, optimizer, grad_stats
        self.x, self.y = x, y
        self.batch_size, self.warmup = batch_size, warmup
        n = len(x)
        # Static state: every captured graph reads and writes these very tensors.
        self.order = torch.zeros(n, dtype=torch.int64, device=device)
        self.offset = torch.zeros((), dtype=torch.int64, device=device)
        self.arange = torch.arange(min(batch_size, n), dtype=torch.int64, device=device)
        self.loss_sum = torch.zeros((), device=device)  # sum over the epoch's batches of loss * rows
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.graphs = graphs
        self.fallback: str | None = None  # why capture was given up, if it was
        self._captured: dict[tuple[int, bool], torch.cuda.CUDAGraph] = {}
        self._eager_runs: dict[tuple[int, bool], int] = {}
        self._side = torch.cuda.Stream(device) if graphs else None

    @property
    def captured(self) -> int:
        """Number of captured step graphs."""
        return len(self._captured)

    @torch.no_grad()
    def start_epoch(self, order: torch.Tensor) -> None:
        """Begin an epoch whose batches follow ``order`` ((n,) int64 permutation, any device):
        copy it to the device, zero the epoch's sums and the gradient statistics."""
        self.order.copy_(order)
        self.offset.zero_()
        self.loss_sum.zero_()
        self.correct.zero_()
        if self.grad_stats is not None:
            self.grad_stats.reset()

    def __call__(self, rows: int, first: bool) -> None:
        """Train on the next ``rows`` samples of the epoch's order; ``first``: the epoch's first batch."""
        key = (rows, first)
        graph = self._captured.get(key)
        if graph is not None:
            graph.replay()
            return
        if not self.graphs:
            if self._side is not None:  # capture failed earlier: eager, as in the warm-up
                self._on_side_stream(rows, first)
            else:
                self._step(rows, first)
            return
        runs = self._eager_runs.get(key, 0)
        if runs < self.warmup:
            self._eager_runs[key] = runs + 1
            self._on_side_stream(rows, first)
            return
        graph = self._capture(rows, first)
        if graph is None:
            self._on_side_stream(rows, first)
        else:
            graph.replay()

    def _step(self, rows: int, first: bool) -> None:
        """The step itself: only device operations, the same for every batch of this shape."""
        positions = self.offset + self.arange[:rows]
        idx = self.order.index_select(0, positions)
        xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
        logits = self.model(xb)
        loss = self.loss_fn(logits, yb)
        # In place, not None: the gradients keep their addresses (0 + g is exactly g).
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward()
        if self.grad_stats is not None:
            self.grad_stats.update(first=first)
        self.optimizer.step()
        with torch.no_grad():
            self.loss_sum.add_(loss.detach() * rows)
            self.correct.add_((logits.detach().argmax(1) == yb).sum())
            self.offset.add_(rows)

    def _on_side_stream(self, rows: int, first: bool) -> None:
        current = torch.cuda.current_stream()
        self._side.wait_stream(current)
        with torch.cuda.stream(self._side), warnings.catch_warnings():
            # A capturable optimizer warns once when stepped outside a capture: here it is meant.
            warnings.filterwarnings("ignore", message=".*capturable=True.*", category=UserWarning)
            self._step(rows, first)
        current.wait_stream(self._side)

    def _capture(self, rows: int, first: bool):
        """Record the step as a graph (nothing runs yet); None, and eager from now on, if that fails."""
        graph = torch.cuda.CUDAGraph()
        try:
            # thread_local: the writer thread may copy and synchronise meanwhile (on its own streams).
            with torch.cuda.graph(graph, stream=self._side, capture_error_mode="thread_local"):
                self._step(rows, first)
        except RuntimeError as exc:
            self.graphs = False
            self.fallback = f"{type(exc).__name__}: {exc}".splitlines()[0]
            warnings.warn(f"capturing the training step as a CUDA graph failed ({self.fallback}); training eagerly",
                          RuntimeWarning, stacklevel=3)
            torch.cuda.synchronize()
            return None
        self._captured[(rows, first)] = graph
        return graph
