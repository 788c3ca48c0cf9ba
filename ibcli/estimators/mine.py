"""MINE (Belghazi et al. 2018): mutual information from a trained statistics network, in nats.

A network T(x, y) (an MLP on the concatenation [x, y], two hidden layers of width
`hidden`, ReLU) is trained to maximise the Donsker-Varadhan lower bound

    I(X;Y) >= E_P[T] - ln E_{P_X P_Y}[e^T]

with joint pairs (x_i, y_i) from P and product-of-marginals pairs made by shuffling
y within the batch. The gradient of the log term is bias-corrected as in the paper:
its denominator E[e^T] is replaced by an exponential moving average (weight
`ema_decay` on the newest batch), so the minibatch gradient is not biased by the
log of a minibatch mean.

The reported number is the bound evaluated on a held-out split that the network
never trained on: E_P[T] over all held-out pairs, and ln-mean-exp (torch.logsumexp)
over many shuffled held-out pairs. It is never the training maximum, which
overstates I (the network can memorise its training pairs).

x and y are z-scored with the training split's mean and standard deviation, so the
defaults work across scales. Seeded: the same inputs, seed and device give the same
number (up to the device's own nondeterminism; CPU is deterministic). On CPU the
run uses one torch thread (restored afterwards): T is small, and intra-op threads
cost more than they give.

Defaults (400 steps of 512 pairs, hidden 128, Adam 1e-3) estimate 1-d Gaussian
pairs (n = 5000, I from 0.5 to 2 nats) within 3%, in a few seconds of one CPU
core; high-dimensional inputs (e.g. 784-pixel images) need more steps to get
near their ceiling: pass `steps`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ._validation import as_2d_float, as_labels
from .errors import EstimatorInputError
from .interface import NOISE_VAR, Estimator, Param, PlanePoint

__all__ = ["mine_mi", "mine_mi_with_info", "MineResult", "DEFAULTS", "MINEEstimator"]

DEFAULTS = dict(hidden=128, lr=1e-3, steps=400, batch_size=512, ema_decay=0.01, holdout_fraction=0.5)
# Shuffled pairs for the held-out ln E[e^T]: this many permutations of the held-out
# set, capped at _MAX_MARGINAL_PAIRS pairs.
_MARGINAL_PERMUTATIONS = 40
_MAX_MARGINAL_PAIRS = 100_000


@dataclass
class MineResult:
    """What one MINE run gives.

    estimate_nats: the DV bound on the held-out split (the number mine_mi returns).
    train_estimate_nats: the DV bound on the training split after training (it
        overstates I when the network memorises; shown for diagnosis only; NaN
        when not asked for).
    train_curve: (step, DV bound on that step's batch) every `curve_every` steps.
    steps, seconds, n_train, n_holdout, n_marginal_pairs: what was run.
    """

    estimate_nats: float
    train_estimate_nats: float
    steps: int
    seconds: float
    n_train: int
    n_holdout: int
    n_marginal_pairs: int
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
    arr = arr.astype(np.float32)
    bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise EstimatorInputError(f"mine_mi: {name} must be finite (and fit float32), got {bad} NaN/inf value(s)")
    return arr


def _check_params(n, hidden, lr, steps, batch_size, ema_decay, holdout_fraction):
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not is_int(hidden) or hidden < 1:
        raise EstimatorInputError(f"mine_mi: hidden must be an integer >= 1, got {hidden!r}")
    if not is_int(steps) or steps < 1:
        raise EstimatorInputError(f"mine_mi: steps must be an integer >= 1, got {steps!r}")
    if not is_int(batch_size) or batch_size < 2:
        raise EstimatorInputError(f"mine_mi: batch_size must be an integer >= 2, got {batch_size!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise EstimatorInputError(f"mine_mi: lr must be a number > 0, got {lr!r}")
    if not (isinstance(ema_decay, (int, float)) and 0 < ema_decay <= 1):
        raise EstimatorInputError(f"mine_mi: ema_decay must be in (0, 1], got {ema_decay!r}")
    if not (isinstance(holdout_fraction, (int, float)) and 0 < holdout_fraction < 1):
        raise EstimatorInputError(f"mine_mi: holdout_fraction must be in (0, 1), got {holdout_fraction!r}")
    n_hold = int(round(n * holdout_fraction))
    if n_hold < 2 or n - n_hold < 2:
        raise EstimatorInputError(
            f"mine_mi: needs at least 2 training and 2 held-out samples, got n={n} with holdout_fraction={holdout_fraction}"
        )
    return n_hold


def _network(d_in: int, hidden: int):
    import torch.nn as nn

    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, 1),
    )


def _heldout_bound(net, xh, yh, gen, device) -> tuple[float, int]:
    """DV bound on held-out pairs: mean T over all joint pairs, ln-mean-exp of T over
    shuffled pairs (several permutations of the held-out set). The first layer acts
    on [x, y] linearly, so it is computed once per sample and summed per pair."""
    import torch

    lin1 = net[0]
    dx = xh.shape[1]
    with torch.no_grad():
        hx = xh @ lin1.weight[:, :dx].T + lin1.bias  # (n, hidden)
        hy = yh @ lin1.weight[:, dx:].T

        def head(h):
            return net[1:](h).squeeze(1)

        t_joint = head(hx + hy)
        n = xh.shape[0]
        reps = max(1, min(_MARGINAL_PERMUTATIONS, _MAX_MARGINAL_PAIRS // n))
        lse = []
        for _ in range(reps):
            perm = torch.randperm(n, generator=gen).to(device)
            lse.append(torch.logsumexp(head(hx + hy[perm]).double(), dim=0))
        total = torch.logsumexp(torch.stack(lse), dim=0) - math.log(reps * n)
        return float(t_joint.double().mean() - total), reps * n


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
    seed: int = 0,
    device: str = "cpu",
    curve_every: int = 50,
    train_estimate: bool = True,
) -> MineResult:
    """MINE with its diagnostics; see `mine_mi` for the parameters.

    curve_every: record the minibatch DV bound every this many steps (0: never).
    train_estimate: also evaluate the bound on the training split (costs one more
    evaluation pass).
    """
    import torch

    xa, ya = _as_2d(x, "x"), _as_2d(y, "y")
    if xa.shape[0] != ya.shape[0]:
        raise EstimatorInputError(
            f"mine_mi: x and y must have the same number of samples, got {xa.shape[0]} and {ya.shape[0]}"
        )
    n = xa.shape[0]
    n_hold = _check_params(n, hidden, lr, steps, batch_size, ema_decay, holdout_fraction)
    try:
        dev = torch.device(device)
        torch.empty(1, device=dev)
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise EstimatorInputError(f"mine_mi: device {device!r} is not available here ({exc})".replace("\n", " ")) from exc

    threads = torch.get_num_threads()
    if dev.type == "cpu":
        # T is small: intra-op threads cost more than they give (2 threads on a busy
        # 2-core machine ran 12x slower than 1); restored below.
        torch.set_num_threads(1)
    try:
        return _run(xa, ya, n_hold, hidden, lr, steps, batch_size, ema_decay, seed, dev, curve_every, train_estimate)
    finally:
        torch.set_num_threads(threads)


def _run(xa, ya, n_hold, hidden, lr, steps, batch_size, ema_decay, seed, dev, curve_every, train_estimate) -> MineResult:
    import torch

    n = xa.shape[0]
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    hold_idx, train_idx = order[:n_hold], order[n_hold:]

    def zscore(a):
        mu = a[train_idx].mean(axis=0, dtype=np.float64)
        sd = a[train_idx].std(axis=0, dtype=np.float64)
        return ((a - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)

    xs, ys = zscore(xa), zscore(ya)
    xt = torch.from_numpy(xs[train_idx]).to(dev)
    yt = torch.from_numpy(ys[train_idx]).to(dev)
    xh = torch.from_numpy(xs[hold_idx]).to(dev)
    yh = torch.from_numpy(ys[hold_idx]).to(dev)
    n_train = xt.shape[0]
    b = min(batch_size, n_train)

    gen = torch.Generator().manual_seed(int(seed))  # CPU generator: same draws on any device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = _network(xt.shape[1] + yt.shape[1], hidden)
    net = net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    log_b = math.log(b)
    log_ema = None
    log_keep = math.log1p(-ema_decay) if ema_decay < 1 else -math.inf
    log_new = math.log(ema_decay)
    curve = []
    net.train()
    for step in range(1, steps + 1):
        idx = torch.randint(0, n_train, (b,), generator=gen).to(dev)
        perm = torch.randperm(b, generator=gen).to(dev)
        xb, yb = xt[idx], yt[idx]
        # one pass over the b joint pairs and the b shuffled (product-of-marginals) pairs
        t_all = net(torch.cat([torch.cat([xb, yb], dim=1), torch.cat([xb, yb[perm]], dim=1)])).squeeze(1)
        t_joint, t_marg = t_all[:b], t_all[b:]
        lme = torch.logsumexp(t_marg, dim=0) - log_b  # ln mean e^T on the batch
        lme_now = float(lme.detach())
        log_ema = lme_now if log_ema is None else float(np.logaddexp(log_keep + log_ema, log_new + lme_now))
        # d/dtheta of exp(lme - log_ema) = (d mean e^T / dtheta) / EMA[mean e^T]: the
        # bias-corrected gradient of the log term; its value is about 1.
        loss = -(t_joint.mean() - torch.exp(lme - log_ema))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if curve_every and (step % curve_every == 0 or step == steps):
            curve.append((step, float(t_joint.detach().mean()) - lme_now))

    net.eval()
    estimate, n_pairs = _heldout_bound(net, xh, yh, gen, dev)
    train_value = _heldout_bound(net, xt, yt, gen, dev)[0] if train_estimate else math.nan
    return MineResult(
        estimate_nats=estimate,
        train_estimate_nats=train_value,
        steps=steps,
        seconds=time.perf_counter() - start,
        n_train=n_train,
        n_holdout=n_hold,
        n_marginal_pairs=n_pairs,
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
    seed: int = 0,
    device: str = "cpu",
) -> float:
    """Mutual information I(X;Y) in nats by MINE, evaluated on a held-out split.

    Parameters
    ----------
    x : array-like, shape (n, d_x) or (n,), real, finite (used as float32).
    y : array-like, shape (n, d_y) or (n,), real, finite (e.g. one-hot labels).
    hidden : width of the two hidden layers of T.
    lr : Adam learning rate.
    steps : optimisation steps (one minibatch each).
    batch_size : pairs per step (capped at the training-split size); the
        product-of-marginals pairs are the same batch with y shuffled.
    ema_decay : weight of the newest minibatch in the moving average of E[e^T]
        that replaces the denominator of the log term's gradient (0.01 as in the paper).
    holdout_fraction : share of the samples held out for the reported estimate;
        both splits need at least 2 samples.
    seed : seeds the split, the initial weights, the minibatches and the shuffles.
    device : torch device string ("cpu", "cuda", "cuda:1", ...).

    Returns
    -------
    float, nats: E_P[T] - ln E_{P_X P_Y}[e^T] on held-out data. A lower bound in
    expectation (up to the sampling error of the held-out averages); it can be
    slightly negative for independent data.

    Raises
    ------
    EstimatorInputError: wrong shapes or lengths, NaN/inf, too few samples, bad
        parameters, unavailable device.
    """
    return mine_mi_with_info(
        x, y, hidden=hidden, lr=lr, steps=steps, batch_size=batch_size, ema_decay=ema_decay,
        holdout_fraction=holdout_fraction, seed=seed, device=device, curve_every=0,
        train_estimate=False,
    ).estimate_nats


# --------------------------------------------------------------------------- adapter
class MINEEstimator(Estimator):
    """`ibcli mi --method mine`: held-out MINE on the noisy layer, I(X; T+Z) and I(T+Z; Y) (one-hot Y).

    The noise Z ~ N(0, s2 I) is one standard-normal draw seeded with `seed`, scaled by
    sqrt(s2) for each s2; `seed` also seeds MINE's split, weights and batches.
    """

    name = "mine"
    title = "MINE, held-out Donsker-Varadhan bound on T+Z (Belghazi et al. 2018)"
    params = (
        NOISE_VAR,
        Param("mine_steps", int, 1000, "training steps of the statistics network", low=1),
        Param("mine_batch_size", int, DEFAULTS["batch_size"], "pairs per training step", low=2),
        Param("mine_hidden", int, DEFAULTS["hidden"], "width of the statistics network's hidden layers", low=1),
        Param("mine_lr", float, DEFAULTS["lr"], "Adam learning rate", low=0.0, low_open=True),
    )
    needs_x = True
    uses_device = True

    def points(self, t, labels, *, x, params, context=None, seed=0, device="cpu"):
        t64 = t.astype(np.float64, copy=False)
        z = np.random.default_rng(seed).standard_normal(t64.shape)
        onehot = np.eye(int(labels.max()) + 1, dtype=np.float64)[labels]
        kw = dict(steps=params["mine_steps"], batch_size=params["mine_batch_size"], hidden=params["mine_hidden"],
                  lr=params["mine_lr"], seed=seed, device=device)
        out = []
        for s2 in params["noise_var"]:
            tz = t64 + math.sqrt(s2) * z
            out.append(PlanePoint(mine_mi(x, tz, **kw), mine_mi(tz, onehot, **kw), params={"noise_var": s2}))
        return out

    def mutual_information(self, x, y, y_discrete: bool, *, hidden: int = DEFAULTS["hidden"], lr: float = DEFAULTS["lr"],
                           steps: int = DEFAULTS["steps"], batch_size: int = DEFAULTS["batch_size"],
                           ema_decay: float = DEFAULTS["ema_decay"], holdout_fraction: float = DEFAULTS["holdout_fraction"],
                           seed: int = 0, device: str = "cpu") -> float:
        """Held-out Donsker-Varadhan estimate (Belghazi et al. 2018), nats; labels are one-hot encoded
        (see `mine_mi` for the parameters)."""
        if y_discrete:
            codes = as_labels(y, "y")
            ya = np.eye(int(codes.max()) + 1, dtype=np.float64)[codes]
        else:
            ya = as_2d_float(y, "y")
        return float(mine_mi(as_2d_float(x, "x"), ya, hidden=hidden, lr=lr, steps=steps, batch_size=batch_size,
                             ema_decay=ema_decay, holdout_fraction=holdout_fraction, seed=seed, device=device))
