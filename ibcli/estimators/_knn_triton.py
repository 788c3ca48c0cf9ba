"""One Triton kernel: a block of exact float64 k-NN distances on a GPU, for `knn`'s torch path.

torch has no fused max-norm distance worth the name (`torch.cdist(p=inf)` runs one thread
block per pair), and composing it from elementwise operations reads and writes every pair
once per coordinate. This kernel keeps a BM x BN tile of pairs in registers while it walks
the coordinates (read column-major, so neighbouring threads load neighbouring values), and
writes each distance once:

- max-norm:          max_t |q_t - a_t|                                   (exact in any order);
- squared Euclidean: max over the variables' blocks of sum_{t in block} (q_t - a_t)^2, summed
                     in column order with separate multiply and add (fp fusion off), as the
                     numba kernels and the torch path sum it.

So every path gives the same float64 distances. Imported only where it runs (a CUDA device,
or the CPU under TRITON_INTERPRET=1, which is how tests/test_gpu_estimators.py checks it
without a GPU). `distances` returns None when Triton cannot be used here.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["distances"]

_BM, _BN, _WARPS = 64, 64, 4


@triton.jit
def _distance_block(q_ptr, a_ptr, starts_ptr, ends_ptr, out_ptr, m, n, d, nb, q_row, q_col, a_row, a_col, o_row,
                    SQUARED: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):  # pragma: no cover - compiled
    rm = tl.program_id(0) * BM + tl.arange(0, BM)
    rn = tl.program_id(1) * BN + tl.arange(0, BN)
    in_m = rm < m
    in_n = rn < n
    acc = tl.zeros((BM, BN), dtype=tl.float64)
    if SQUARED:
        for b in range(0, nb):
            start = tl.load(starts_ptr + b)
            end = tl.load(ends_ptr + b)
            s = tl.zeros((BM, BN), dtype=tl.float64)
            for t in range(start, end):
                qv = tl.load(q_ptr + rm * q_row + t * q_col, mask=in_m, other=0.0)
                av = tl.load(a_ptr + rn * a_row + t * a_col, mask=in_n, other=0.0)
                v = qv[:, None] - av[None, :]
                s = s + v * v
            acc = tl.maximum(acc, s)
    else:
        for t in range(0, d):
            qv = tl.load(q_ptr + rm * q_row + t * q_col, mask=in_m, other=0.0)
            av = tl.load(a_ptr + rn * a_row + t * a_col, mask=in_n, other=0.0)
            acc = tl.maximum(acc, tl.abs(qv[:, None] - av[None, :]))
    tl.store(out_ptr + rm[:, None] * o_row + rn[None, :], acc, mask=in_m[:, None] & in_n[None, :])


def distances(a, q, starts, ends, squared: bool):
    """(m, n) float64 distances of the queries q (m, d) to the rows a (n, d), both float64
    tensors on one device; starts, ends: int64 tensors there, each variable's columns. The
    kernel reads column-major copies (each coordinate's values side by side: coalesced loads).
    """
    import torch

    m, n, d = q.shape[0], a.shape[0], a.shape[1]
    out = torch.empty((m, n), dtype=torch.float64, device=a.device)
    at, qt = a.t().contiguous(), q.t().contiguous()  # (d, n), (d, m)
    grid = (triton.cdiv(m, _BM), triton.cdiv(n, _BN))
    _distance_block[grid](qt, at, starts, ends, out, m, n, d, starts.shape[0], 1, m, 1, n, n,
                          SQUARED=squared, BM=_BM, BN=_BN, num_warps=_WARPS, enable_fp_fusion=False)
    return out
