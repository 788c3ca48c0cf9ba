"""How each estimator's time grows with the probe size N on one layer (the growth lines).

Shared by `bench.py` (CPU) and `bench_gpu.py` (GPU): each estimator runs through its
`ibcli mi` adapter (`Estimator.points`, as `ibcli mi` calls it) on the first N rows of one
recorded layer, N = 2 500 to 20 000 (rows beyond the probe set's 10 000 are its rows again,
moved by 1e-3 of the layer's sd so that no two coincide), and the log-log slope of seconds
against N is printed beside the exponent the algorithm implies. Context lines (`#`), no
targets: the issue names none, and a slope from four sizes moves by about 0.1 between runs.
"""

from __future__ import annotations

import time

import numpy as np

from ibcli.estimators import registry
from ibcli.estimators.knn import KDTREE_MAX_DIM_COUNT, KDTREE_MAX_DIM_KNN
from ibcli.estimators.ksg import _REFERENCE_CACHE

SIZES = (2500, 5000, 10000, 20000)


def layer_rows(t, labels, n: int, seed: int = 0):
    """(n, d) float32 rows and their labels: the layer's rows in a fixed random order, repeated
    past len(t) with a jitter of 1e-3 sd per repetition (distinct points, same spread)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(t))
    reps = -(-n // len(t))
    parts, labs = [], []
    sd = float(t.std()) or 1.0
    for r in range(reps):
        part = t[order].astype(np.float32)
        if r:
            part = part + (1e-3 * sd * rng.standard_normal(part.shape)).astype(np.float32)
        parts.append(part)
        labs.append(labels[order])
    return np.concatenate(parts)[:n], np.concatenate(labs)[:n]


def exponent(sizes, seconds) -> float:
    """The least-squares slope of ln(seconds) against ln(N)."""
    return float(np.polyfit(np.log(np.asarray(sizes, float)), np.log(np.asarray(seconds, float)), 1)[0])


def cases(device: str, light: bool, d: int) -> list[tuple[str, dict, str]]:
    """(method, params, what the algorithm implies) per growth line, for a layer of d units.
    light: the CPU's cheaper settings (sp with 4 draws per sample, MINE 100 steps); else the
    CLI's defaults, except one kraskov repeat and one MINE seed (time is proportional to both)."""
    mine_steps = 100 if light else 600
    if device != "cpu":
        knn = "2: brute force, N^2 pairs per neighbour search"
    elif d <= KDTREE_MAX_DIM_COUNT:
        knn = "about 1-1.5: kd-trees for the k-th neighbours and the counts (N log N to N^1.5)"
    elif d <= KDTREE_MAX_DIM_KNN:
        knn = ("1-2: kd-tree k-th neighbours (N log N to N^1.5), the strict counts by brute force "
               "with early exits (N^2)")
    else:
        knn = "2: brute force (numba, early exits per pair), N^2 pairs per neighbour search"
    return [
        ("kde", {"noise_var": (0.1,)}, "2: N^2 pairwise distances and exponentials (O(N^2 d))"),
        ("sp", {"noise_var": (0.1,), "noise_samples": 4 if light else 8},
         "2: M N draws against N samples (O(M N^2 d))"),
        ("kraskov", {"noise_var": (0.1,), "repeats": 1, "ksg_draws": 1}, knn),
        ("mine", {"noise_var": (0.1,), "mine_seeds": 1, "mine_steps": mine_steps},
         f"0 for the {mine_steps} training steps (fixed batch), 2 for the held-out bound's exact product "
         "term over N inputs (max(N, 4096) draws x N): between 0 and 2 by their shares"),
    ]


def growth_lines(t, labels, layer: str, device: str, note, sizes=SIZES, light: bool = False,
                 methods=None) -> dict:
    """Print one growth line per estimator; returns {method: (sizes, seconds, exponent)}.

    t, labels: one recorded layer (N0, d) and the probe labels; device: "cpu" or "cuda".
    """
    out = {}
    for method, given, implied in cases(device, light, t.shape[1]):
        if methods and method not in methods:
            continue
        est = registry.get(method)
        params = est.check_params(given)
        seconds = []
        for n in sizes:
            tn, yn = layer_rows(t, labels, n)
            _REFERENCE_CACHE.clear()  # kraskov: the noise's own entropy, as at a new record
            sync(device)
            start = time.perf_counter()
            est.points(tn, yn, x=None, params=params, seed=1, device=device)
            sync(device)
            seconds.append(time.perf_counter() - start)
        slope = exponent(sizes, seconds)
        shown = ", ".join(f"{k}={v}" for k, v in given.items() if k != "noise_var")
        note(f"growth {method} ({shown or 'defaults'}, s2=0.1) on {layer} (d={t.shape[1]}), {device}: "
             + ", ".join(f"N={n} {s:.3g} s" for n, s in zip(sizes, seconds))
             + f"; fitted exponent {slope:.2f} (algorithm: {implied})")
        out[method] = (list(sizes), seconds, slope)
    return out


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def warm_up(device: str) -> float:
    """One small call of each method on `device` (CUDA context, cuBLAS, the Triton kernel's
    compilation, numba's cached kernels); seconds."""
    rng = np.random.default_rng(0)
    t = np.tanh(rng.standard_normal((300, 12))).astype(np.float32)
    y = np.arange(300) % 10
    start = time.perf_counter()
    for method, given, _ in cases(device, True, t.shape[1]):
        est = registry.get(method)
        params = est.check_params({**given, **({"mine_steps": 5} if method == "mine" else {})})
        est.points(t, y, x=None, params=params, seed=0, device=device)
    sync(device)
    return time.perf_counter() - start


def fmt_seconds(s: float) -> str:
    return f"{s:.2f} s" if s < 100 else f"{s / 60:.1f} min"

