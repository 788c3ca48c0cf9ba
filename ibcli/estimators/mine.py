"""MINE (Belghazi et al. 2018): mutual information from a trained statistics network, in nats.

A statistics network T(x, y) is trained to maximise the Donsker-Varadhan (DV) lower bound
(Belghazi et al. 2018, eq. 4-5)

    I(X;Y) >= E_P[T] - ln E_{P_X P_Y}[e^T]

on joint pairs from P and on product-of-marginals pairs. The gradient of the log term is
bias-corrected as in the paper (section 3.2): its denominator E[e^T] is replaced by an
exponential moving average (weight `ema_decay` on the newest batch). The reported number
is the bound evaluated on data the network never trained on, never the training maximum.

Two entry points:

`mine_mi(x, y)` / `mine_mi_with_info`: I(X;Y) from n paired samples. T is an MLP on the
concatenation [x, y] (two hidden ReLU layers of width `hidden`); product pairs come from
shuffling y. Half of the samples are held out for the reported estimate. Each coordinate
of x and y is first mapped by a monotone transform, which leaves I(X;Y) unchanged:
`transform="rank"` (default) replaces every value by the standard-normal quantile of its
rank (a copula / rank-Gaussian transform), so heavy tails cannot blow up the exponential
in the log term (a Student-t with 1 degree of freedom gave -433 nats with z-scoring only);
"asinh" compresses tails (asinh of the median/IQR-scaled value); "zscore" only centres
and scales.

`mine_information_plane(t, labels, noise_vars)`: I(X; T+Z) and I(T+Z; Y) of one layer on
the probe set, Z ~ N(0, s2 I) (the noisy information plane, Goldfeld et al. 2019). Here
P is known exactly: X is uniform over the N probe inputs, Y is the input's label and Z is
fresh Gaussian noise, so

- every training step draws fresh noise (no finite sample of Z to memorise), and the
  held-out estimate uses further fresh draws; no probe input needs to be held out,
  because the probe set IS the distribution of X;
- the statistics network sees X through t_x, the layer's clean activation on that
  input. T = f(X) and T+Z depends on X only through T, so I(X; T+Z) = I(T; T+Z)
  exactly. Raw pixels would make the network relearn f (the old pixel-input MINE gave
  -5.5 bits on MNIST); an index would share nothing between inputs;
- the product-of-marginals term is exact over the finite marginals instead of shuffled:
  for I(X; T+Z), T(x, v) = g(t_x) . h(v) is separable (two MLPs with a linear skip, so
  the Gaussian channel's bilinear v . t / s2 is in reach), which turns E_X[e^T(X, v)] over
  all N inputs into one matrix product (training uses all b(b-1) off-diagonal pairs of a
  batch); for I(T+Z; Y), T(v, y) = h(v)_y has one output per class and E_Y is the sum
  over the K classes weighted by the label frequencies. With the exact X-term the
  estimate can never exceed ln N. T is capped smoothly (c - softplus(c - T)) at the
  largest value the optimal critic takes, c = ln N (ln p(v|x)/p(v) <= ln N) and
  c = -ln p(y), so the class still holds the optimum while pairs the training never met
  cannot blow up e^T in the exact product term (uncapped, MNIST's 1024-wide layer gave
  -544 nats);
- a run is repeated over seeds (default 3) and reported as mean, sd and se, with an
  optional bias baseline on independent pairs and a flag for a negative mean or a
  training run that did not settle (`SETTLE_RULE`).

Reading the plane's numbers. Each value is the DV bound of a trained critic on fresh draws,
so it is a lower bound up to its sampling error: where the signal-to-noise ratio is high
(var(T)/s2 >> 1, e.g. s2 = 0.01 on a wide tanh layer) the critic climbs slowly and the value
stays well below the truth (the run is then often flagged unsettled). A negative value is
kept as computed, never clipped to 0 (so means over seeds and epochs stay unbiased), and
flagged "i_xt negative" / "i_ty negative". On independent data (truth 0) the estimate
scatters around 0 and mostly just below it: a critic that learnt only noise of variance v
scores about -v/2, and with the exact product term an I(X; T+Z) critic that ignores X scores
mean(a) - ln mean(e^a) <= 0. So a small negative value (within about 2 se of 0) reads as "no
information detected", consistent with 0; a value far below 0 means the training failed.

Seeded: the same inputs, seed and device give the same number (CPU is deterministic).
On CPU the runs use one torch thread (restored afterwards): the networks are small.

On a GPU (`device="cuda"`) the plane's training runs the same torch code, with TF32 off
(`_device.ieee_float32`); its draws still come from the CPU generator (the same numbers on
every device), drawn `_DRAW_CHUNK` steps at a time by a second thread while the device
trains, and the moving average of E[e^T] stays on the device (no wait for the GPU at every
step). A GPU's float32 products round differently from the CPU's, and training amplifies
such differences: the numbers agree to the training's own spread, not to float rounding
(tests/test_gpu_estimators.py says what is checked).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

from ._device import ieee_float32
from ._validation import as_2d_float, as_labels, check_same_length
from .errors import EstimatorInputError
from .interface import BASELINE_COLUMNS, FLAG_COLUMN, NOISE_VAR, SD_COLUMNS, SE_COLUMNS, Estimator, Param, PlanePoint

# torch is imported inside the functions that use it (deferred on purpose): the registry loads
# this module for `ibcli --help` and the CLI's options, which start without torch.

__all__ = [
    "mine_mi", "mine_mi_with_info", "MineResult", "DEFAULTS", "TRANSFORMS", "marginal_transform",
    "mine_information_plane", "MinePlanePoint", "PLANE_DEFAULTS", "settle_gap", "is_settled", "SETTLE_RULE",
    "MINEEstimator",
]

DEFAULTS = dict(hidden=128, lr=1e-3, steps=400, batch_size=512, ema_decay=0.01, holdout_fraction=0.5,
                transform="rank")
TRANSFORMS = ("rank", "asinh", "zscore")
PLANE_DEFAULTS = dict(seeds=3, hidden=64, lr=1e-3, steps=600, batch_size=256, ema_decay=0.01, eval_draws=1,
                      baseline=0)

#: When a training run counts as settled: the held-out DV bound averaged over the checkpoints in
#: the last 10 % of steps differs from its mean over the preceding 10 % by at most
#: max(0.05 nats, 5 % of the last value). Checkpoints are at 85, 90, 95 and 100 % of the steps.
SETTLE_RULE = dict(abs_nats=0.05, rel=0.05, checkpoints=(0.85, 0.9, 0.95, 1.0))

# Shuffled pairs for mine_mi's held-out ln E[e^T]: this many permutations of the held-out
# set, capped at _MAX_MARGINAL_PAIRS pairs; the settle checkpoints use _MONITOR_PERMUTATIONS.
_MARGINAL_PERMUTATIONS = 40
_MAX_MARGINAL_PAIRS = 100_000
_MONITOR_PERMUTATIONS = 4
# The plane's held-out bound: at least this many fresh draws; its settle checkpoints use the first
# _MONITOR_DRAWS of them.
_MIN_EVAL_DRAWS = 4096
_MONITOR_DRAWS = 2048
# The plane's training draws are made this many steps at a time, ahead of the training.
_DRAW_CHUNK = 32


# ------------------------------------------------------------------------------ shared pieces
def settle_gap(curve, steps: int) -> tuple[float, float]:
    """(mean over the last 10 % of steps, mean over the preceding 10 %) of a held-out curve.

    curve: [(step, value in nats), ...] evaluated at `SETTLE_RULE["checkpoints"]` of `steps`.
    Returns NaNs when a window holds no checkpoint (fewer than 10 steps).
    """
    last = [v for s, v in curve if s > 0.9 * steps]
    prev = [v for s, v in curve if 0.8 * steps < s <= 0.9 * steps]
    return (float(np.mean(last)) if last else math.nan, float(np.mean(prev)) if prev else math.nan)


def is_settled(last: float, prev: float) -> bool:
    """True when |last - prev| <= max(0.05 nats, 5 % of |last|) (`SETTLE_RULE`); False for NaN."""
    if not (math.isfinite(last) and math.isfinite(prev)):
        return False
    return abs(last - prev) <= max(SETTLE_RULE["abs_nats"], SETTLE_RULE["rel"] * abs(last))


def _checkpoint_steps(steps: int) -> set[int]:
    return {max(1, math.ceil(f * steps)) for f in SETTLE_RULE["checkpoints"]}


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_common(where: str, hidden, lr, steps, batch_size, ema_decay) -> None:
    if not _is_int(hidden) or hidden < 1:
        raise EstimatorInputError(f"{where}: hidden must be an integer >= 1, got {hidden!r}")
    if not _is_int(steps) or steps < 1:
        raise EstimatorInputError(f"{where}: steps must be an integer >= 1, got {steps!r}")
    if not _is_int(batch_size) or batch_size < 2:
        raise EstimatorInputError(f"{where}: batch_size must be an integer >= 2, got {batch_size!r}")
    if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0):
        raise EstimatorInputError(f"{where}: lr must be a number > 0, got {lr!r}")
    if not (isinstance(ema_decay, (int, float)) and not isinstance(ema_decay, bool) and 0 < ema_decay <= 1):
        raise EstimatorInputError(f"{where}: ema_decay must be in (0, 1], got {ema_decay!r}")


def _torch_device(where: str, device: str):
    import torch

    try:
        dev = torch.device(device)
        torch.empty(1, device=dev)
    except (RuntimeError, AssertionError, ValueError, TypeError) as exc:
        raise EstimatorInputError(f"{where}: device {device!r} is not available here ({exc})".replace("\n", " ")) from exc
    return dev


class _OneThreadOnCpu:
    """One torch thread while a CPU run lasts (the networks are small: 2 threads on a busy
    2-core machine ran 12x slower than 1); the setting is restored on exit."""

    def __init__(self, dev):
        self.cpu = dev.type == "cpu"

    def __enter__(self):
        import torch

        self.threads = torch.get_num_threads()
        if self.cpu:
            torch.set_num_threads(1)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.threads)


def _mlp(d_in: int, hidden: int, d_out: int):
    import torch.nn as nn

    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, d_out))


class _Ema:
    """The moving average of E[e^T] (in logs) behind the bias-corrected DV gradient.

    on_device: keep it as a float64 tensor beside lme (no host sync per step; a GPU's path),
    else as a Python float (the CPU's numbers). The two differ by float64 rounding only."""

    def __init__(self, decay: float, on_device: bool = False):
        self.log = None
        self.keep = math.log1p(-decay) if decay < 1 else -math.inf
        self.new = math.log(decay)
        self.on_device = on_device

    def loss(self, t_joint_mean, lme):
        """-(E_P[T] - e^(lme - log EMA)): its gradient is the bias-corrected DV gradient
        (d E[e^T] / dtheta divided by the moving average); lme = ln mean e^T of the batch."""
        import torch

        if self.on_device:
            now = lme.detach().double()
            self.log = now if self.log is None else torch.logaddexp(self.keep + self.log, self.new + now)
            return -(t_joint_mean - torch.exp(lme - self.log.to(lme.dtype)))
        now = float(lme.detach())
        self.log = now if self.log is None else float(np.logaddexp(self.keep + self.log, self.new + now))
        return -(t_joint_mean - torch.exp(lme - self.log))


# ------------------------------------------------------------------------------ mine_mi
@dataclass
class MineResult:
    """What one MINE run gives.

    estimate_nats: the DV bound on the held-out split (the number mine_mi returns).
    train_estimate_nats: the DV bound on the training split after training (it overstates I
        when the network memorises; for diagnosis only; NaN when not asked for).
    settled: the held-out bound settled by the end of training (`SETTLE_RULE`).
    heldout_curve: (step, held-out DV bound) at the settle checkpoints (fewer shuffled pairs
        than the final estimate, the same ones at every checkpoint).
    train_curve: (step, DV bound on that step's batch) every `curve_every` steps.
    steps, seconds, n_train, n_holdout, n_marginal_pairs, transform: what was run.
    """

    estimate_nats: float
    train_estimate_nats: float
    steps: int
    seconds: float
    n_train: int
    n_holdout: int
    n_marginal_pairs: int
    settled: bool = True
    transform: str = "rank"
    heldout_curve: list = field(default_factory=list)
    train_curve: list = field(default_factory=list)


def _as_2d(a, name: str) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiub":
        raise EstimatorInputError(f"mine_mi: {name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim != 2:
        raise EstimatorInputError(f"mine_mi: {name} must be 1-d (n,) or 2-d (n, d), got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise EstimatorInputError(f"mine_mi: {name} must have at least one column, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise EstimatorInputError(f"mine_mi: {name} must be finite, got {bad} NaN/inf value(s)")
    return arr


def marginal_transform(a: np.ndarray, kind: str = "rank") -> np.ndarray:
    """Map each column of `a` by a monotone function (so mutual information is unchanged).

    a: (n, d) float array. kind: "rank": the standard-normal quantile of the value's rank,
    Phi^-1((rank - 1/2) / n), ties sharing their average rank (the Gaussian copula
    transform; every column becomes N(0, 1)-distributed, whatever its tails); "asinh":
    asinh((a - median) / s), s = IQR / 1.349 (the sd for Gaussian data; 1 when 0), then
    z-scored; "zscore": (a - mean) / sd (sd 0 left unscaled).
    Returns (n, d) float32.

    Raises:
        EstimatorInputError: unknown kind.
    """
    from scipy.special import ndtri
    from scipy.stats import rankdata

    if kind not in TRANSFORMS:
        raise EstimatorInputError(f"mine_mi: transform must be one of {', '.join(TRANSFORMS)}, got {kind!r}")
    a = np.asarray(a, dtype=np.float64)
    if kind == "rank":
        return ndtri((rankdata(a, axis=0, method="average") - 0.5) / a.shape[0]).astype(np.float32)
    if kind == "asinh":
        q25, med, q75 = np.percentile(a, [25, 50, 75], axis=0)
        s = (q75 - q25) / 1.349
        a = np.arcsinh((a - med) / np.where(s > 0, s, 1.0))
    sd = a.std(axis=0)
    return ((a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def _check_params(n, hidden, lr, steps, batch_size, ema_decay, holdout_fraction, transform):
    _check_common("mine_mi", hidden, lr, steps, batch_size, ema_decay)
    if not (isinstance(holdout_fraction, (int, float)) and 0 < holdout_fraction < 1):
        raise EstimatorInputError(f"mine_mi: holdout_fraction must be in (0, 1), got {holdout_fraction!r}")
    if transform not in TRANSFORMS:
        raise EstimatorInputError(f"mine_mi: transform must be one of {', '.join(TRANSFORMS)}, got {transform!r}")
    n_hold = int(round(n * holdout_fraction))
    if n_hold < 2 or n - n_hold < 2:
        raise EstimatorInputError(
            f"mine_mi: needs at least 2 training and 2 held-out samples, got n={n} with holdout_fraction={holdout_fraction}"
        )
    return n_hold


def _heldout_bound(net, xh, yh, perms) -> float:
    """DV bound on held-out pairs: mean T over all joint pairs, ln-mean-exp of T over the
    shuffled pairs given by `perms`. The first layer acts on [x, y] linearly, so it is
    computed once per sample and summed per pair."""
    import torch

    lin1 = net[0]
    dx = xh.shape[1]
    with torch.no_grad():
        hx = xh @ lin1.weight[:, :dx].T + lin1.bias  # (n, hidden)
        hy = yh @ lin1.weight[:, dx:].T
        head = net[1:]
        t_joint = head(hx + hy).squeeze(1)
        lse = torch.stack([torch.logsumexp(head(hx + hy[p]).squeeze(1).double(), dim=0) for p in perms])
        total = torch.logsumexp(lse, dim=0) - math.log(len(perms) * xh.shape[0])
        return float(t_joint.double().mean() - total)


def mine_mi_with_info(
    x,
    y,
    *,
    hidden: int = DEFAULTS["hidden"],
    lr: float = DEFAULTS["lr"],
    steps: int = DEFAULTS["steps"],
    batch_size: int = DEFAULTS["batch_size"],
    ema_decay: float = DEFAULTS["ema_decay"],
    holdout_fraction: float = DEFAULTS["holdout_fraction"],
    transform: str = DEFAULTS["transform"],
    seed: int = 0,
    device: str = "cpu",
    curve_every: int = 50,
    train_estimate: bool = True,
) -> MineResult:
    """MINE with its diagnostics; see `mine_mi` for the parameters.

    curve_every: record the minibatch DV bound every this many steps (0: never).
    train_estimate: also evaluate the bound on the training split (one more evaluation pass).
    """
    xa, ya = _as_2d(x, "x"), _as_2d(y, "y")
    if xa.shape[0] != ya.shape[0]:
        raise EstimatorInputError(
            f"mine_mi: x and y must have the same number of samples, got {xa.shape[0]} and {ya.shape[0]}"
        )
    n_hold = _check_params(xa.shape[0], hidden, lr, steps, batch_size, ema_decay, holdout_fraction, transform)
    dev = _torch_device("mine_mi", device)
    with _OneThreadOnCpu(dev), (ieee_float32() if dev.type == "cuda" else nullcontext()):
        return _run(marginal_transform(xa, transform), marginal_transform(ya, transform), n_hold, hidden, lr,
                    steps, batch_size, ema_decay, seed, dev, curve_every, train_estimate, transform)


def _run(xs, ys, n_hold, hidden, lr, steps, batch_size, ema_decay, seed, dev, curve_every, train_estimate,
         transform) -> MineResult:
    import torch

    n = xs.shape[0]
    start = time.perf_counter()
    order = np.random.default_rng(seed).permutation(n)
    hold_idx, train_idx = order[:n_hold], order[n_hold:]
    xt = torch.from_numpy(xs[train_idx]).to(dev)
    yt = torch.from_numpy(ys[train_idx]).to(dev)
    xh = torch.from_numpy(xs[hold_idx]).to(dev)
    yh = torch.from_numpy(ys[hold_idx]).to(dev)
    n_train = xt.shape[0]
    b = min(batch_size, n_train)

    gen = torch.Generator().manual_seed(int(seed))  # CPU generator: same draws on any device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = _mlp(xt.shape[1] + yt.shape[1], hidden, 1)
    net = net.to(dev)
    reps = max(1, min(_MARGINAL_PERMUTATIONS, _MAX_MARGINAL_PAIRS // n_hold))
    perms = [torch.randperm(n_hold, generator=gen).to(dev) for _ in range(reps)]
    monitor = perms[:_MONITOR_PERMUTATIONS]
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    ema = _Ema(ema_decay)
    log_b = math.log(b)
    checkpoints = _checkpoint_steps(steps)
    curve, heldout = [], []
    for step in range(1, steps + 1):
        net.train()
        idx = torch.randint(0, n_train, (b,), generator=gen).to(dev)
        perm = torch.randperm(b, generator=gen).to(dev)
        xb, yb = xt[idx], yt[idx]
        # one pass over the b joint pairs and the b shuffled (product-of-marginals) pairs
        t_all = net(torch.cat([torch.cat([xb, yb], dim=1), torch.cat([xb, yb[perm]], dim=1)])).squeeze(1)
        t_joint, t_marg = t_all[:b], t_all[b:]
        lme = torch.logsumexp(t_marg, dim=0) - log_b  # ln mean e^T on the batch
        loss = ema.loss(t_joint.mean(), lme)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if curve_every and (step % curve_every == 0 or step == steps):
            curve.append((step, float(t_joint.detach().mean()) - float(lme.detach())))
        if step in checkpoints:
            net.eval()
            heldout.append((step, _heldout_bound(net, xh, yh, monitor)))

    net.eval()
    estimate = _heldout_bound(net, xh, yh, perms)
    train_value = math.nan
    if train_estimate:
        tperms = [torch.randperm(n_train, generator=gen).to(dev) for _ in range(max(1, min(_MARGINAL_PERMUTATIONS, _MAX_MARGINAL_PAIRS // n_train)))]
        train_value = _heldout_bound(net, xt, yt, tperms)
    return MineResult(
        estimate_nats=estimate,
        train_estimate_nats=train_value,
        steps=steps,
        seconds=time.perf_counter() - start,
        n_train=n_train,
        n_holdout=n_hold,
        n_marginal_pairs=reps * n_hold,
        settled=is_settled(*settle_gap(heldout, steps)),
        transform=transform,
        heldout_curve=heldout,
        train_curve=curve,
    )


def mine_mi(
    x,
    y,
    *,
    hidden: int = DEFAULTS["hidden"],
    lr: float = DEFAULTS["lr"],
    steps: int = DEFAULTS["steps"],
    batch_size: int = DEFAULTS["batch_size"],
    ema_decay: float = DEFAULTS["ema_decay"],
    holdout_fraction: float = DEFAULTS["holdout_fraction"],
    transform: str = DEFAULTS["transform"],
    seed: int = 0,
    device: str = "cpu",
) -> float:
    """Mutual information I(X;Y) in nats by MINE (Belghazi et al. 2018), on a held-out split.

    Parameters
    ----------
    x : array-like, shape (n, d_x) or (n,), real, finite.
    y : array-like, shape (n, d_y) or (n,), real, finite (e.g. one-hot labels).
    hidden : width of the two hidden layers of T.
    lr : Adam learning rate.
    steps : optimisation steps (one minibatch each).
    batch_size : pairs per step (capped at the training-split size); the product-of-marginals
        pairs are the same batch with y shuffled.
    ema_decay : weight of the newest minibatch in the moving average of E[e^T] that replaces
        the denominator of the log term's gradient (0.01 as in the paper).
    holdout_fraction : share of the samples held out for the reported estimate; both splits
        need at least 2 samples.
    transform : per-coordinate monotone map applied to x and y first (I(X;Y) is invariant
        under it): "rank" (default, rank-Gaussian: robust to any tails), "asinh" or "zscore";
        see `marginal_transform`.
    seed : seeds the split, the initial weights, the minibatches and the shuffles.
    device : torch device string ("cpu", "cuda", "cuda:1", ...).

    Returns
    -------
    float, nats: E_P[T] - ln E_{P_X P_Y}[e^T] on held-out data. A lower bound in expectation
    (up to the sampling error of the held-out averages); it can be slightly negative for
    independent data (see `mine_information_plane` for how the plane flags that).

    Raises
    ------
    EstimatorInputError: wrong shapes or lengths, NaN/inf, too few samples, bad parameters,
        unavailable device.
    """
    return mine_mi_with_info(
        x, y, hidden=hidden, lr=lr, steps=steps, batch_size=batch_size, ema_decay=ema_decay,
        holdout_fraction=holdout_fraction, transform=transform, seed=seed, device=device, curve_every=0,
        train_estimate=False,
    ).estimate_nats


# ------------------------------------------------------------------------------ the noisy plane
@dataclass
class MinePlanePoint:
    """MINE's information-plane point of one layer at one noise variance, in nats.

    i_xt_nats, i_ty_nats: I(X; T+Z) and I(T+Z; Y), the mean of the held-out DV bounds over
        the seeds.
    i_xt_sd_nats, i_ty_sd_nats: their sd over the seeds (ddof 1; NaN for one seed).
    i_xt_se_nats, i_ty_se_nats: sd / sqrt(seeds), the standard error of the mean.
    i_xt_baseline_nats, i_xt_baseline_q95_nats (and i_ty_...): with `baseline` > 0, the mean
        and the 95 % quantile (numpy's linear interpolation) of the same estimator on
        independent pairs (truth 0); None otherwise.
    flag: None when the point can be read as is; else "; "-joined reasons, each
        "i_xt negative" / "i_ty negative" (mean below 0) or "i_xt unsettled (k of R seeds)"
        (k runs broke `SETTLE_RULE`).
    i_xt_seeds, i_ty_seeds: the per-seed values; settled_xt, settled_ty: per seed.
    ceiling_nats: ln N, the most I(X; T+Z) can be (the estimate never exceeds it).
    seconds: wall time of all runs for this noise variance.
    """

    noise_var: float
    i_xt_nats: float
    i_ty_nats: float
    i_xt_sd_nats: float
    i_ty_sd_nats: float
    i_xt_se_nats: float
    i_ty_se_nats: float
    flag: str | None
    ceiling_nats: float
    seconds: float
    i_xt_seeds: tuple = ()
    i_ty_seeds: tuple = ()
    settled_xt: tuple = ()
    settled_ty: tuple = ()
    i_xt_baseline_nats: float | None = None
    i_xt_baseline_q95_nats: float | None = None
    i_ty_baseline_nats: float | None = None
    i_ty_baseline_q95_nats: float | None = None

    def values(self) -> dict:
        """The values of the shared columns of `ibcli.estimators.interface` (SE_COLUMNS,
        SD_COLUMNS, BASELINE_COLUMNS, FLAG_COLUMN), keyed by their `Column.key`, in nats."""
        return {
            "i_xt_se": self.i_xt_se_nats, "i_ty_se": self.i_ty_se_nats,
            "i_xt_sd": self.i_xt_sd_nats, "i_ty_sd": self.i_ty_sd_nats,
            "i_xt_baseline": self.i_xt_baseline_nats, "i_xt_baseline_q95": self.i_xt_baseline_q95_nats,
            "i_ty_baseline": self.i_ty_baseline_nats, "i_ty_baseline_q95": self.i_ty_baseline_q95_nats,
            "flag": self.flag,
        }


def _cap(raw, c):
    """c - softplus(c - raw): raw where raw << c, never above c (smoothly)."""
    import torch.nn.functional as F

    return c - F.softplus(c - raw)


def _zero_output(net) -> None:
    import torch.nn as nn

    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)


class _Separable:
    """T(x, v) = g(t_x) . h(v): g and h are MLPs (two hidden ReLU layers) plus a linear skip,
    so the Gaussian channel's bilinear term t . v / s2 is in reach of a linear map."""

    def __init__(self, d: int, hidden: int, dev):
        import torch.nn as nn

        k = hidden
        self.g_mlp, self.g_lin = _mlp(d, hidden, k).to(dev), nn.Linear(d, k, bias=False).to(dev)
        self.h_mlp, self.h_lin = _mlp(d, hidden, k).to(dev), nn.Linear(d, k, bias=False).to(dev)
        self.modules = [self.g_mlp, self.g_lin, self.h_mlp, self.h_lin]
        # h starts at 0, so T = 0 and the bound 0 at the start: random bilinear scores of
        # 64-d outputs would start it tens of nats below 0, to be unlearnt first
        _zero_output(self.h_mlp)
        nn.init.zeros_(self.h_lin.weight)

    def parameters(self):
        return [p for m in self.modules for p in m.parameters()]

    def g(self, t):
        return self.g_mlp(t) + self.g_lin(t)

    def h(self, v):
        return self.h_mlp(v) + self.h_lin(v)


def _plane_run(kind: str, tx, tc, codes, s2: float, inv_v, log_py, *, independent: bool, hidden, lr, steps,
               batch_size, ema_decay, eval_draws, seed: int, dev, ema_on_device: bool | None = None
               ) -> tuple[float, bool]:
    """One training run of the plane's I(X; T+Z) (kind "xt") or I(T+Z; Y) ("ty"), one noise
    variance; returns (held-out DV bound in nats, settled).

    tx: (N, d) the critic's view of X (t standardised); tc: (N, d) t centred (noise is added
    in T's units, v = (tc + sqrt(s2) z) * inv_v); codes: (N,) labels 0..K-1; log_py: (K,).
    independent: pair X (or Y) with the noisy activation of an independently drawn input
    (truth 0: the bias baseline). ema_on_device: `_Ema`'s mode (default: on any device but
    the CPU)."""
    import torch

    n, d = tc.shape
    gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if kind == "xt":
            critic = _Separable(d, hidden, dev)
            params = critic.parameters()
        else:
            net = _mlp(d, hidden, log_py.shape[0]).to(dev)
            _zero_output(net)
            params = list(net.parameters())
    sd = math.sqrt(s2)
    b = min(batch_size, n)
    # T is capped smoothly at the largest value of the optimal critic ln p(v|x)/p(v) <= ln N
    # (ln p(y|v)/p(y) <= -ln p(y)): the capped class still holds the optimum, and no pair the
    # training never met can make e^T explode in the exact product term
    log_n = math.log(n)
    cap_y = -log_py.float()

    def cpu_draws(m: int, i=None):
        """m joint draws from the CPU generator: the input index of X (or Y) (uniform, or `i`),
        the index of the input whose activation is observed, the standard-normal noise."""
        i = torch.randint(0, n, (m,), generator=gen) if i is None else i
        j = torch.randint(0, n, (m,), generator=gen) if independent else i
        return i, j, torch.randn((m, d), generator=gen)

    def noisy(i, j, z):
        """(i, v) on the device: v = the noisy, scaled activation of input j."""
        i, j = i.to(dev), j.to(dev)
        return i, (tc[j] + sd * z.to(dev)) * inv_v

    def draw(m: int, i=None):
        return noisy(*cpu_draws(m, i))

    def training_draws():
        """The b-draws of every step, in the order the generator makes them, drawn (and sent
        to the device) `_DRAW_CHUNK` steps at a time by another thread, one chunk ahead."""
        def chunk(c: int):
            parts = [cpu_draws(b) for _ in range(c)]
            return tuple(torch.stack(col).to(dev) for col in zip(*parts))

        sizes = [min(_DRAW_CHUNK, steps - s0) for s0 in range(0, steps, _DRAW_CHUNK)]
        with ThreadPoolExecutor(1) as pool:
            ahead = pool.submit(chunk, sizes[0])
            for k, c in enumerate(sizes):
                ii, jj, zz = ahead.result()
                if k + 1 < len(sizes):
                    ahead = pool.submit(chunk, sizes[k + 1])
                for q in range(c):
                    yield noisy(ii[q], jj[q], zz[q])

    # held-out draws, fresh noise, every input equally often (stratified: exactly uniform X);
    # the first `monitor` of them (a random order) serve the settle checkpoints
    reps = max(eval_draws, math.ceil(_MIN_EVAL_DRAWS / n))
    stratified = torch.arange(n).repeat(reps)[torch.randperm(n * reps, generator=gen)]
    hi, hv = draw(n * reps, stratified)
    monitor = min(n * reps, _MONITOR_DRAWS)

    def bound(i, v) -> float:
        """The DV bound of the current critic on draws (i, v), the product term exact."""
        with torch.no_grad():
            if kind == "xt":
                g_all = critic.g(tx)  # (N, k)
                joint, lse = [], []
                for s in range(0, v.shape[0], 1024):
                    hv_ = critic.h(v[s:s + 1024])
                    joint.append(_cap((g_all[i[s:s + 1024]] * hv_).sum(1), log_n).double())
                    lse.append(torch.logsumexp(_cap(hv_ @ g_all.T, log_n), dim=1).double() - log_n)
            else:
                out = _cap(net(v), cap_y).double()
                joint = [out.gather(1, codes[i][:, None]).squeeze(1)]
                lse = [torch.logsumexp(out + log_py, dim=1)]
            joint, lse = torch.cat(joint), torch.cat(lse)
            return float(joint.mean() - (torch.logsumexp(lse, dim=0) - math.log(lse.shape[0])))

    opt = torch.optim.Adam(params, lr=lr)
    ema = _Ema(ema_decay, on_device=dev.type != "cpu" if ema_on_device is None else ema_on_device)
    checkpoints = _checkpoint_steps(steps)
    off_diag = ~torch.eye(b, dtype=torch.bool, device=dev)
    log_pairs = math.log(b * (b - 1))
    heldout = []
    for step, (i, v) in enumerate(training_draws(), start=1):
        if kind == "xt":
            scores = _cap(critic.g(tx[i]) @ critic.h(v).T, log_n)  # (b, b): row = x, column = v
            t_joint = scores.diagonal()
            lme = torch.logsumexp(scores[off_diag], dim=0) - log_pairs  # all b(b-1) product pairs
        else:
            out = _cap(net(v), cap_y)
            t_joint = out.gather(1, codes[i][:, None]).squeeze(1)
            lme = torch.logsumexp(out + log_py.float(), dim=(0, 1)) - math.log(b)  # exact over the K labels
        loss = ema.loss(t_joint.mean(), lme)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step in checkpoints:
            heldout.append((step, bound(hi[:monitor], hv[:monitor])))
    return bound(hi, hv), is_settled(*settle_gap(heldout, steps))


def _check_plane(seeds, hidden, lr, steps, batch_size, ema_decay, eval_draws, baseline):
    where = "mine_information_plane"
    _check_common(where, hidden, lr, steps, batch_size, ema_decay)
    if not _is_int(seeds) or seeds < 1:
        raise EstimatorInputError(f"{where}: seeds must be an integer >= 1, got {seeds!r}")
    if not _is_int(eval_draws) or eval_draws < 1:
        raise EstimatorInputError(f"{where}: eval_draws must be an integer >= 1, got {eval_draws!r}")
    if not _is_int(baseline) or baseline < 0:
        raise EstimatorInputError(f"{where}: baseline must be an integer >= 0 (0: none), got {baseline!r}")


def _flag(name: str, mean: float, settled: list[bool]) -> list[str]:
    reasons = []
    if mean < 0:
        reasons.append(f"{name} negative")
    bad = settled.count(False)
    if bad:
        reasons.append(f"{name} unsettled ({bad} of {len(settled)} seeds)")
    return reasons


def mine_information_plane(
    t,
    labels,
    noise_vars=(0.1,),
    *,
    seeds: int = PLANE_DEFAULTS["seeds"],
    seed: int = 0,
    hidden: int = PLANE_DEFAULTS["hidden"],
    lr: float = PLANE_DEFAULTS["lr"],
    steps: int = PLANE_DEFAULTS["steps"],
    batch_size: int = PLANE_DEFAULTS["batch_size"],
    ema_decay: float = PLANE_DEFAULTS["ema_decay"],
    eval_draws: int = PLANE_DEFAULTS["eval_draws"],
    baseline: int = PLANE_DEFAULTS["baseline"],
    device: str = "cpu",
) -> list[MinePlanePoint]:
    """I(X; T+Z) and I(T+Z; Y) of one layer by MINE, Z ~ N(0, s2 I), with spread and flags, in nats.

    X is uniform over the N probe inputs, T = f(X) the layer's activations (row i of `t`),
    Y the label of X (Goldfeld et al. 2019's noisy plane). Each quantity is the held-out
    Donsker-Varadhan bound of a statistics network trained with the moving-average gradient
    correction (Belghazi et al. 2018), on fresh noise every step; X enters as t_x
    (I(X; T+Z) = I(T; T+Z) since T = f(X)), the product-of-marginals term is exact over the N
    inputs and the K labels (module docstring). Each run is repeated for `seeds` seeds.

    Parameters
    ----------
    t : array-like, shape (N, d) or (N,), float, finite: the layer on the N probe samples.
    labels : array-like, shape (N,): the probe samples' class labels.
    noise_vars : float or sequence of floats > 0: s2 (T's units squared); one point each.
        All values share the seeds' noise draws (z scaled by sqrt(s2)).
    seeds : runs per quantity and noise variance (their mean is reported, with sd and se).
    seed : base seed; run r of quantity q uses the seeds derived from (seed, q, r).
    hidden : width of the statistics networks' hidden layers (and of g, h's output).
    lr, steps, batch_size, ema_decay : Adam learning rate, optimisation steps, draws per step,
        weight of the newest batch in the moving average of E[e^T].
    eval_draws : fresh noise draws per probe input for the held-out bound (every input
        equally often, at least 4096 draws in all; the settle checkpoints use 2048 of them).
    baseline : 0 (default) for none; else that many runs of the same estimator on
        independent pairs (X, or Y, paired with the noisy activation of another, independently
        drawn input; truth 0), reported as their mean and 95 % quantile.
    device : torch device ("cpu", "cuda", ...); seeded draws are made on the CPU.

    Returns
    -------
    list of MinePlanePoint, one per noise variance, in the given order.

    Raises
    ------
    EstimatorInputError: t / labels of different lengths, NaN/inf, wrong shapes, fewer than
        2 probe samples, bad noise variances or parameters, unavailable device.
    """
    import torch

    arr = as_2d_float(t, "t")
    check_same_length(("t", arr), ("labels", labels))
    codes_np = as_labels(labels, "labels")
    if arr.shape[0] < 2:
        raise EstimatorInputError(f"mine_information_plane: needs at least 2 probe samples, got {arr.shape[0]}")
    nv = _plane_noise_vars(noise_vars)
    _check_plane(seeds, hidden, lr, steps, batch_size, ema_decay, eval_draws, baseline)
    dev = _torch_device("mine_information_plane", device)
    n = arr.shape[0]
    mean, var = arr.mean(axis=0), arr.var(axis=0)
    tc_np = arr - mean
    tx_np = tc_np / np.where(var > 0, np.sqrt(var), 1.0)
    py = np.bincount(codes_np) / n
    tx = torch.from_numpy(tx_np.astype(np.float32)).to(dev)
    tc = torch.from_numpy(tc_np.astype(np.float32)).to(dev)
    codes = torch.from_numpy(codes_np).to(dev)
    log_py = torch.from_numpy(np.log(py)).to(dev)

    def run_seed(role: int, rep: int) -> int:
        return int(np.random.SeedSequence((int(seed), role, rep)).generate_state(1)[0])

    out = []
    with _OneThreadOnCpu(dev), (ieee_float32() if dev.type == "cuda" else nullcontext()):
        for s2 in nv:
            start = time.perf_counter()
            inv_v = torch.from_numpy((1.0 / np.sqrt(var + s2)).astype(np.float32)).to(dev)
            kw = dict(hidden=hidden, lr=lr, steps=steps, batch_size=batch_size, ema_decay=ema_decay,
                      eval_draws=eval_draws, dev=dev)
            res = {}
            for role, kind, independent, reps in ((0, "xt", False, seeds), (1, "ty", False, seeds),
                                                  (2, "xt", True, baseline), (3, "ty", True, baseline)):
                res[role] = [_plane_run(kind, tx, tc, codes, s2, inv_v, log_py, independent=independent,
                                        seed=run_seed(role, r), **kw) for r in range(reps)]
            out.append(_plane_point(s2, res, seeds, math.log(n), time.perf_counter() - start))
    return out


def _plane_noise_vars(noise_vars) -> list[float]:
    values = list(noise_vars) if isinstance(noise_vars, (list, tuple, np.ndarray)) else [noise_vars]
    if not values:
        raise EstimatorInputError("mine_information_plane: noise_vars needs at least one value")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not (math.isfinite(v) and v > 0):
            raise EstimatorInputError(f"mine_information_plane: noise variances must be finite numbers > 0, got {v!r}")
    return [float(v) for v in values]


def _plane_point(s2: float, res: dict, seeds: int, ceiling: float, seconds: float) -> MinePlanePoint:
    def stats(runs):
        vals = np.array([v for v, _ in runs])
        sd = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
        return float(vals.mean()), sd, sd / math.sqrt(len(vals)) if len(vals) > 1 else math.nan

    def base(runs):
        if not runs:
            return None, None
        vals = np.array([v for v, _ in runs])
        return float(vals.mean()), float(np.quantile(vals, 0.95))

    (mx, sx, ex), (my, sy, ey) = stats(res[0]), stats(res[1])
    settled_xt, settled_ty = [s for _, s in res[0]], [s for _, s in res[1]]
    reasons = _flag("i_xt", mx, settled_xt) + _flag("i_ty", my, settled_ty)
    bx, by = base(res[2]), base(res[3])
    return MinePlanePoint(
        noise_var=s2, i_xt_nats=mx, i_ty_nats=my, i_xt_sd_nats=sx, i_ty_sd_nats=sy, i_xt_se_nats=ex,
        i_ty_se_nats=ey, flag="; ".join(reasons) or None, ceiling_nats=ceiling, seconds=seconds,
        i_xt_seeds=tuple(v for v, _ in res[0]), i_ty_seeds=tuple(v for v, _ in res[1]),
        settled_xt=tuple(settled_xt), settled_ty=tuple(settled_ty),
        i_xt_baseline_nats=bx[0], i_xt_baseline_q95_nats=bx[1], i_ty_baseline_nats=by[0],
        i_ty_baseline_q95_nats=by[1],
    )


# --------------------------------------------------------------------------- adapter
class MINEEstimator(Estimator):
    """`ibcli mi --method mine`: `mine_information_plane` (I(X; T+Z) and I(T+Z; Y), mean over
    seeds, sd, se, optional shuffled-pairing baseline, flag); `mutual_information` is `mine_mi`."""

    name = "mine"
    title = "MINE, held-out Donsker-Varadhan bound on T+Z, mean over seeds (Belghazi et al. 2018)"
    params = (
        NOISE_VAR,
        Param("mine_seeds", int, PLANE_DEFAULTS["seeds"], "MINE runs per point; their mean is reported, with sd and se", low=1),
        Param("mine_steps", int, PLANE_DEFAULTS["steps"], "training steps of each statistics network", low=1),
        Param("mine_batch_size", int, PLANE_DEFAULTS["batch_size"], "noise draws per training step", low=2),
        Param("mine_hidden", int, PLANE_DEFAULTS["hidden"], "width of the statistics networks' hidden layers", low=1),
        Param("mine_lr", float, PLANE_DEFAULTS["lr"], "Adam learning rate", low=0.0, low_open=True),
        Param("mine_baseline", int, PLANE_DEFAULTS["baseline"],
              "runs on independent pairs (truth 0) for the bias baseline columns; 0: none", low=0),
    )
    columns = SE_COLUMNS + SD_COLUMNS + BASELINE_COLUMNS + (FLAG_COLUMN,)
    uses_device = True

    def points(self, t, labels, *, x=None, params, context=None, seed=0, device="cpu"):
        pts = mine_information_plane(
            t, labels, params["noise_var"], seeds=params["mine_seeds"], seed=seed, steps=params["mine_steps"],
            batch_size=params["mine_batch_size"], hidden=params["mine_hidden"], lr=params["mine_lr"],
            baseline=params["mine_baseline"], device=device)
        return [PlanePoint(p.i_xt_nats, p.i_ty_nats, {k: v for k, v in p.values().items() if v is not None},
                           {"noise_var": p.noise_var}) for p in pts]

    def mutual_information(self, x, y, y_discrete: bool, *, hidden: int = DEFAULTS["hidden"], lr: float = DEFAULTS["lr"],
                           steps: int = DEFAULTS["steps"], batch_size: int = DEFAULTS["batch_size"],
                           ema_decay: float = DEFAULTS["ema_decay"], holdout_fraction: float = DEFAULTS["holdout_fraction"],
                           transform: str = DEFAULTS["transform"], seed: int = 0, device: str = "cpu") -> float:
        """Held-out Donsker-Varadhan estimate (Belghazi et al. 2018), nats; labels are one-hot encoded
        (see `mine_mi` for the parameters)."""
        if y_discrete:
            codes = as_labels(y, "y")
            ya = np.eye(int(codes.max()) + 1, dtype=np.float64)[codes]
        else:
            ya = as_2d_float(y, "y")
        return float(mine_mi(as_2d_float(x, "x"), ya, hidden=hidden, lr=lr, steps=steps, batch_size=batch_size,
                             ema_decay=ema_decay, holdout_fraction=holdout_fraction, transform=transform, seed=seed,
                             device=device))
