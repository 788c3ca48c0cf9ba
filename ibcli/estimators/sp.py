"""Sample propagation: Monte Carlo I(X; T+Z) and I(T+Z; Y) on the exact noisy mixture, in nats.

Goldfeld, van den Berg, Greenewald, Melnyk, Nguyen, Kingsbury & Polyanskiy (2019),
"Estimating Information Flow in Deep Neural Networks", ICML, section 4 ("sample
propagation"): with X uniform over the N probe samples and T = f(X) deterministic,
U = T + Z, Z ~ N(0, s2 I_d), is the Gaussian mixture

    p(u)     = (1/N)   sum_j          phi(u - t_j)        phi = the N(0, s2 I_d) density
    p(u | i) =                        phi(u - t_i)        (X = i)
    p(u | y) = (1/N_y) sum_{j: y_j=y} phi(u - t_j)        (Y = y, N_y samples of class y)

so, with u = t_i + z drawn from p(u | i),

    I(X; U) = E_{i,z} [ln p(u | i)   - ln p(u)]                                     (1)
    I(U; Y) = E_{i,z} [ln p(u | y_i) - ln p(u)]                                     (2)

Each is estimated DIRECTLY as a Monte Carlo mean of the log-ratio, never as a difference of
separately estimated entropies h(U) - h(Z): in d = 1024 each entropy's per-sample terms
spread by about sqrt(d/2) ~ 23 nats, the log-ratio's by 0 to about 2 nats (measured on the
MNIST MLP's layers).

The stable form. Write z = sqrt(s2) e, e ~ N(0, I_d), D_ij = ||t_i - t_j||^2. Then

    ln phi(u - t_j) - ln phi(u - t_i) = -(||t_i - t_j + z||^2 - ||z||^2) / (2 s2)
                                      = -D_ij / (2 s2) - e.(t_i - t_j) / sqrt(s2)  =: a_ij   (3)

(the Gaussian normalisation and the large ||z||^2 cancel analytically and are never
computed), a_ii = 0 exactly, and (1), (2) become per-draw terms

    xt(i, e) = ln N         - LSE_j a_ij                                           (4)
    ty(i, e) = ln(N / N_yi) + LSE_{j: y_j = y_i} a_ij - LSE_j a_ij                 (5)

(LSE = log-sum-exp with its max shift; both sums contain a_ii = 0, so xt <= ln N and
ty <= ln(N / N_yi)). The estimate is stratified over i, with antithetic draws: per probe
sample i, K = M/2 independent e_ik and their twins -e_ik (same distribution; the linear part
of (3) changes sign, which cuts the variance by 0-60 % on MNIST layers). With w_ik the mean
of the terms at e_ik and -e_ik, m_i = mean_k w_ik and v_i = var_k w_ik (ddof 1),

    I_hat = (1/N) sum_i m_i,      se = (1/N) sqrt(sum_i v_i / K)                   (6)

(X is exactly uniform, so the stratified mean has no between-sample variance; the w_ik are
independent, so se is the honest standard error). I_hat is unbiased for (1) and (2); it is
NOT clipped to [0, ln N].

Computation, in float64 with torch on any device: t is centred and its rows sorted by class
(so each class is a contiguous run of columns); per block of strata, D from a matrix
product (||t_i||^2 + ||t_j||^2 - 2 t_i.t_j, clamped at 0, exact 0 at j = i) and e.t_j from a
second one are shared by every noise variance, whose exponents (3) then cost O(N) per draw.
The noise e is drawn on the CPU by NumPy (`np.random.default_rng(seed)`) in the classes'
order, one draw block after the other, so a seed gives the same numbers on every device and
for every chunk size and worker count; only the first M/2 draws of a block travel to the
device, their antithetic twins are negated there. On the CPU the blocks are shared out to worker
threads with single-threaded kernels (as in `kde`); on a GPU one thread draws the next block's
noise while the device computes the current one. Memory: about 4 * chunk_size * N float64
per worker (the exponents of one block of draws against all N samples) + 8 N d bytes for t;
never N x N.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from ._device import torch_device as _torch_device
from ._threads import single_threaded_kernels, workers as _workers
from ._validation import as_2d_float, as_int, as_labels, check_same_length, noise_variances
from .errors import EstimatorInputError
from .interface import NOISE_VAR, SE_COLUMNS, Estimator, Param, PlanePoint

# torch is imported inside the functions that use it (deferred on purpose): the registry loads
# this module for `ibcli --help` and the CLI's options, which start without torch.

__all__ = [
    "SPPlaneResult",
    "sp_information_plane",
    "sp_terms",
    "SampleNoiseEstimator",
    "DEFAULT_NOISE_SAMPLES",
    "DEFAULT_CHUNK_SIZE",
    "CUDA_CHUNK_SIZE",
]

#: Noise draws per probe sample (M, four antithetic pairs). Chosen on the MNIST MLP (N = 10 000,
#: tanh, layers 1024-20-20-20-20-10, before and after training, s2 from 0.001 to 30): the
#: per-draw spread of the terms reached 2.2 nats, and M = 8 kept every se <= 0.0082 bits
#: (M = 4: up to 0.0107 bits).
DEFAULT_NOISE_SAMPLES = 8
#: Draws (query rows) per block on the CPU; memory about 4 * chunk_size * N * 8 bytes per worker.
DEFAULT_CHUNK_SIZE = 512
#: The same on a CUDA device (one stream, so fewer, larger blocks): about 2.6 GB at N = 10 000.
CUDA_CHUNK_SIZE = 8192


@dataclass(frozen=True)
class SPPlaneResult:
    """One layer at one noise variance, in nats (Goldfeld et al. 2019, sample propagation).

    i_xt, i_ty: the Monte Carlo estimates (6) of I(X; T+Z) and I(T+Z; Y).
    i_xt_se, i_ty_se: their standard errors (stratified, from the within-sample variances
        of the antithetic pair means).
    i_xt_sd, i_ty_sd: the per-draw spread of the terms (4), (5): their within-sample
        standard deviation pooled over the samples (from the M/2 independent draws), so
        M independent draws would give se = sd / sqrt(N M); the antithetic pairs gave 0-60 %
        less variance on MNIST layers.
    noise_samples: M, the draws per probe sample; n: N, the probe samples.
    """

    noise_var: float
    i_xt: float
    i_xt_se: float
    i_ty: float
    i_ty_se: float
    i_xt_sd: float
    i_ty_sd: float
    noise_samples: int
    n: int


# --------------------------------------------------------------------------- checks
# --------------------------------------------------------------------------- kernel
class _Mixture:
    """t centred, in float64 on the device, rows sorted by class; what every block needs."""

    def __init__(self, t: np.ndarray, codes: np.ndarray, dev):
        import torch

        n = t.shape[0]
        self.n = n
        self.order = np.argsort(codes, kind="stable")
        sorted_codes = codes[self.order]
        # Class runs [start, stop) in sorted order, and each sorted row's run.
        bounds = np.concatenate([[0], np.flatnonzero(np.diff(sorted_codes)) + 1, [n]])
        self.runs = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        self.run_of = np.repeat(np.arange(len(self.runs)), np.diff(bounds))
        counts = np.diff(bounds).astype(np.float64)
        self.log_ratio = math.log(n) - np.log(counts)[self.run_of]  # ln(N / N_y), per sorted row
        tc = t[self.order].astype(np.float64)
        tc -= t.mean(axis=0, dtype=np.float64)  # centring: smaller |t|^2 in D's matrix product
        self.t = torch.from_numpy(tc).to(dev)
        self.sq = (self.t * self.t).sum(dim=1)
        self.dev = dev


def _block_terms(mix: _Mixture, r0: int, r1: int, e, noise_vars: list[float]):
    """Terms (4), (5) for sorted rows [r0, r1) and their draws e, shape (B, M, d) float64 tensor.

    Returns (xt, ty), each a float64 NumPy array of shape (S, B, M), S = len(noise_vars).
    Peak memory: about 4 B M N float64 (g, one exponent array, and logsumexp's temporaries).
    """
    import torch

    t, n = mix.t, mix.n
    b, m, d = e.shape
    tb = t[r0:r1]
    rows = torch.arange(b, device=t.device)
    cols = rows + r0
    # D_ij = ||t_i||^2 + ||t_j||^2 - 2 t_i.t_j, >= 0, exactly 0 at j = i.
    dist = torch.addmm(mix.sq[None, :], tb, t.T, beta=1.0, alpha=-2.0)
    dist.add_(mix.sq[r0:r1, None]).clamp_(min=0.0)
    dist[rows, cols] = 0.0
    # g_imj = e_im.(t_i - t_j) = e_im.t_i - e_im.t_j
    g = torch.matmul(e.reshape(b * m, d), t.T).view(b, m, n)
    g.neg_().add_((e * tb[:, None, :]).sum(dim=2)[:, :, None])
    xt = np.empty((len(noise_vars), b, m))
    ty = np.empty((len(noise_vars), b, m))
    run_of = mix.run_of[r0:r1]
    class_rows = []  # the block's rows of one class (contiguous: rows are sorted by class)
    for run in np.unique(run_of):
        sel = np.flatnonzero(run_of == run)
        class_rows.append((int(sel[0]), int(sel[-1]) + 1, *mix.runs[run]))
    lr = torch.from_numpy(mix.log_ratio[r0:r1]).to(t.device)[:, None]
    for k, s2 in enumerate(noise_vars):
        # a_ij = -D_ij / (2 s2) - g_ij / sqrt(s2), eq. (3); a_ii = 0 exactly
        a = torch.add((dist * (-0.5 / s2))[:, None, :], g, alpha=-1.0 / math.sqrt(s2))
        a[rows, :, cols] = 0.0
        own = torch.empty((b, m), dtype=torch.float64, device=t.device)
        for q0, q1, c0, c1 in class_rows:  # LSE over the columns of the rows' own class
            own[q0:q1] = torch.logsumexp(a[q0:q1, :, c0:c1], dim=2)
        # LSE over all columns, in place (a is not needed afterwards)
        top = a.amax(dim=2, keepdim=True)
        full = a.sub_(top).exp_().sum(dim=2).log_().add_(top[:, :, 0])
        xt[k] = (math.log(n) - full).cpu().numpy()
        ty[k] = (lr + own - full).cpu().numpy()
        del a
    return xt, ty


def _blocks(n: int, m: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """Strata blocks [r0, r1): about chunk_size draws each (at least one stratum)."""
    step = max(1, chunk_size // m)
    for r0 in range(0, n, step):
        yield r0, min(r0 + step, n)


def _run(t: np.ndarray, codes: np.ndarray, noise_vars: list[float], m: int,
         draw: Callable[[np.ndarray], np.ndarray], chunk_size: int, device, workers: int,
         antithetic: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """All terms (S, N, M) in the ORIGINAL row order; draw(original rows) -> (B, M, d) noise, or
    with `antithetic` (B, M/2, d), whose negatives are draws M/2..M-1 (made on the device).

    On the CPU, `workers` threads take the blocks in turn, each with single-threaded kernels
    (torch's own threads wait on each other at every operation, which stalls badly when
    other processes share the cores; one kernel thread also makes the sums independent of
    the worker count). Blocks and their draws are handed out in order under a lock, so the
    k-th block always gets the k-th draws. On a GPU (and with one CPU worker) the blocks are
    computed in turn while another thread draws the next block's noise.
    """
    import torch

    dev = _torch_device(device)
    mix = _Mixture(t, codes, dev)
    n = t.shape[0]
    xt = np.empty((len(noise_vars), n, m))
    ty = np.empty((len(noise_vars), n, m))
    blocks = _blocks(n, m, chunk_size)
    lock = threading.Lock()

    def next_job():
        with lock:
            r0, r1 = next(blocks, (None, None))
            if r0 is None:
                return None
            rows = mix.order[r0:r1]
            return r0, r1, rows, np.ascontiguousarray(draw(rows), dtype=np.float64)

    def compute(job) -> None:
        r0, r1, rows, e = job
        e = torch.from_numpy(e).to(dev)
        if antithetic:
            e = torch.cat([e, -e], dim=1)  # draw m + M/2 is the antithetic twin of draw m
        bx, by = _block_terms(mix, r0, r1, e, noise_vars)
        xt[:, rows], ty[:, rows] = bx, by  # each block owns its rows

    def work() -> None:
        with torch.no_grad():
            while (job := next_job()) is not None:
                compute(job)

    def pipelined() -> None:
        """One thread: NumPy draws the next block (without the GIL) while this one computes."""
        with torch.no_grad(), ThreadPoolExecutor(1) as pool:
            ahead = pool.submit(next_job)
            while (job := ahead.result()) is not None:
                ahead = pool.submit(next_job)
                compute(job)

    if dev.type != "cpu":
        pipelined()
        return xt, ty
    n_workers = max(1, min(workers, -(-n // max(1, chunk_size // m))))
    with single_threaded_kernels():
        if n_workers == 1:
            pipelined()
        else:
            with ThreadPoolExecutor(n_workers) as pool:
                for f in [pool.submit(work) for _ in range(n_workers)]:
                    f.result()
    return xt, ty


def _prepare(t, labels, noise_vars, chunk_size, workers, device):
    arr = as_2d_float(t, "t", keep_float32=True)  # float32 stays until the one cast to float64
    check_same_length(("t", arr), ("labels", labels))
    codes = as_labels(labels, "labels")
    nv = noise_variances(noise_vars)
    if chunk_size is None:
        cs = CUDA_CHUNK_SIZE if str(device).startswith("cuda") else DEFAULT_CHUNK_SIZE
    else:
        cs = as_int(chunk_size, "chunk_size")
    return arr, codes, nv, cs, _workers(workers)


# --------------------------------------------------------------------------- public
def sp_terms(t, labels, noise, noise_vars=(0.1,), *, chunk_size: int | None = None,
             device: str = "cpu", workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The per-draw terms (4), (5) of sample propagation for GIVEN standard-normal draws, in nats.

    For probe sample i and draw e = noise[i, m], with u = t_i + sqrt(s2) e:
    xt = ln p(u | x_i) - ln p(u) and ty = ln p(u | y_i) - ln p(u), p the Gaussian mixture
    (1/N) sum_j N(t_j, s2 I_d) (Goldfeld et al. 2019, section 4; module docstring, eqs. (3)-(5)).
    Their means are I(X; T+Z) and I(T+Z; Y); `sp_information_plane` draws the noise itself.

    Parameters
    ----------
    t : array-like, shape (N, d) (or (N,)), float, finite: the layer's activations.
    labels : array-like, shape (N,): class labels (ints, or floats holding ints).
    noise : array-like, shape (N, M, d), float: standard-normal draws e (NOT scaled by
        sqrt(s2); every noise variance uses the same draws).
    noise_vars : float or sequence of floats > 0: noise variances s2 (T's units squared).
    chunk_size : int, optional: draws per block (default 512 on the CPU, 8192 on CUDA);
        memory about 4 * chunk_size * N float64 per worker.
    device : str: torch device, "cpu" (default) or "cuda" ("cuda:k"); computed in float64.
    workers : int, optional: CPU threads that share the blocks (default: the CPUs this
        process may use), each with single-threaded kernels; ignored on other devices.

    Returns
    -------
    (xt, ty): two float64 arrays of shape (S, N, M), S = len(noise_vars), in nats.

    Raises
    ------
    EstimatorInputError
        t / labels / noise of mismatched shapes, NaN or inf, bad noise variances,
        bad chunk_size, unknown or unavailable device.
    """
    arr, codes, nv, cs, nw = _prepare(t, labels, noise_vars, chunk_size, workers, device)
    try:
        eps = np.asarray(noise.detach().cpu() if hasattr(noise, "detach") else noise, dtype=np.float64)
    except (TypeError, ValueError):
        raise EstimatorInputError("noise must be a numeric array of shape (N, M, d)") from None
    if eps.ndim != 3 or eps.shape[0] != arr.shape[0] or eps.shape[2] != arr.shape[1] or eps.shape[1] < 1:
        raise EstimatorInputError(
            f"noise must have shape (N, M, d) = ({arr.shape[0]}, M >= 1, {arr.shape[1]}); got {tuple(eps.shape)}")
    if not np.isfinite(eps).all():
        raise EstimatorInputError("noise has NaN or inf values; it must be finite standard-normal draws")
    return _run(arr, codes, nv, eps.shape[1], lambda rows: eps[rows], cs, device, nw)


def sp_information_plane(t, labels, noise_vars=(0.1,), *, noise_samples: int = DEFAULT_NOISE_SAMPLES,
                         seed: int = 0, chunk_size: int | None = None,
                         device: str = "cpu", workers: int | None = None) -> list[SPPlaneResult]:
    """I(X; T+Z) and I(T+Z; Y), Z ~ N(0, s2 I_d), by sample propagation, with standard errors, in nats.

    Goldfeld et al. (2019), "Estimating Information Flow in Deep Neural Networks", section 4:
    X uniform over the N probe samples, T = f(X) (row i of t), so T+Z is the mixture
    (1/N) sum_i N(t_i, s2 I_d). Each information is the stratified Monte Carlo mean (6) of the
    exact log-density ratios (4), (5) over M draws per probe sample, M/2 antithetic pairs
    (e, -e) (module docstring), with se = sqrt(sum_i v_i / (M/2)) / N from the within-sample
    variances v_i of the pair means. All noise variances share the draws (common random
    numbers) and the pairwise products. This is the reference the other noisy-plane methods
    (kde bounds, kraskov, mine) are tested against.

    Parameters
    ----------
    t : array-like, shape (N, d) (or (N,)), float32 or float64, finite: the layer's
        activations on the N probe samples (computed in float64).
    labels : array-like, shape (N,): the probe samples' class labels.
    noise_vars : float or sequence of floats > 0: noise variances s2 (T's units squared).
    noise_samples : int, even, >= 4: M, the noise draws per probe sample, M/2 antithetic pairs
        (default 8; M/2 >= 2 so that the within-sample variance, and so
        the se, exists). Cost O(M N^2 d); se about sd / sqrt(N M) or less.
    seed : int >= 0: seeds the draws (`np.random.default_rng(seed)`, drawn on the CPU): the same
        seed gives the same numbers on every device and for every chunk_size (to rounding).
    chunk_size : int, optional: draws per block (default 512 on the CPU, 8192 on CUDA);
        memory about 4 * chunk_size * N * 8 bytes per worker + 8 N d bytes (t in float64).
        Does not change the result.
    device : str: torch device, "cpu" (default) or "cuda" ("cuda:k"); computed in float64.
    workers : int, optional: CPU threads that share the blocks (default: the CPUs this
        process may use), each with single-threaded kernels; does not change the result;
        ignored on other devices.

    Returns
    -------
    list of SPPlaneResult, one per noise variance in the given order (N = 1 gives zeros).

    Raises
    ------
    EstimatorInputError
        t / labels of different lengths, NaN/inf, wrong shapes, bad noise variances,
        noise_samples odd or < 4, bad seed, chunk_size or workers, unknown or unavailable device.
    """
    arr, codes, nv, cs, nw = _prepare(t, labels, noise_vars, chunk_size, workers, device)
    m = as_int(noise_samples, "noise_samples", low=4)
    if m % 2:
        raise EstimatorInputError(f"noise_samples must be even (antithetic pairs e, -e); got {m}")
    seed = as_int(seed, "seed", low=0)
    n, d = arr.shape
    rng = np.random.default_rng(seed)
    half = m // 2

    def draw(rows: np.ndarray) -> np.ndarray:
        # The blocks come in sorted-row order, so the k-th block always gets the same numbers;
        # `_run` appends their antithetic twins -e.
        return rng.standard_normal((len(rows), half, d))

    xt, ty = _run(arr, codes, nv, m, draw, cs, device, nw, antithetic=True)
    out = []
    for k, s2 in enumerate(nv):
        (ix, sx, dx), (iy, sy, dy) = _stratified(xt[k]), _stratified(ty[k])
        out.append(SPPlaneResult(s2, ix, sx, iy, sy, dx, dy, m, n))
    return out


def _stratified(terms: np.ndarray) -> tuple[float, float, float]:
    """(estimate, se, per-draw sd) from terms (N, M) whose draws m and m + M/2 are antithetic twins.

    The units of stratum i are the M/2 pair means w_ik (independent); eq. (6) on them:
    estimate = (1/N) sum_i mean_k w_ik, se = (1/N) sqrt(sum_i var_k(w_ik) / (M/2)).
    The per-draw sd is pooled over the strata from the first M/2 (independent) draws.
    """
    n, m = terms.shape
    half = m // 2
    pairs = 0.5 * (terms[:, :half] + terms[:, half:])
    v = pairs.var(axis=1, ddof=1)
    sd = math.sqrt(float(terms[:, :half].var(axis=1, ddof=1).mean()))
    return float(pairs.mean()), float(math.sqrt(v.sum() / half) / n), sd


# --------------------------------------------------------------------------- adapter
NOISE_SAMPLES = Param(
    "noise_samples", int, DEFAULT_NOISE_SAMPLES,
    "noise draws per probe sample, even (antithetic pairs); se ~ 1/sqrt(N x this), cost ~ this", low=4)


class SampleNoiseEstimator(Estimator):
    """`--method sp`: the Monte Carlo reference for I(X; T+Z) and I(T+Z; Y), with standard errors."""

    name = "sp"
    title = "Sample propagation on the noisy mixture T+Z, Monte Carlo (Goldfeld et al. 2019)"
    params = (NOISE_VAR, NOISE_SAMPLES)
    columns = SE_COLUMNS
    uses_device = True

    def check_params(self, given: dict) -> dict:
        """As `Estimator.check_params`, and --noise-samples even: refused with the other option
        checks, before any run exists (not by `sp_information_plane` in the middle of a run).

        Raises:
            EstimatorInputError: as `Estimator.check_params`; an odd noise_samples.
        """
        params = super().check_params(given)
        if params["noise_samples"] % 2:
            raise EstimatorInputError(f"{NOISE_SAMPLES.flag} must be even (antithetic pairs e, -e), got {params['noise_samples']}")
        return params

    def points(self, t, labels, *, x=None, params: dict, context=None, seed: int = 0,
               device: str = "cpu") -> list[PlanePoint]:
        """One point per noise variance: I(X; T+Z), I(T+Z; Y) and their se, in nats.

        Raises:
            EstimatorInputError: as `sp_information_plane`.
        """
        res = sp_information_plane(t, labels, params["noise_var"], noise_samples=params["noise_samples"],
                                   seed=seed, device=device)
        return [PlanePoint(r.i_xt, r.i_ty, {"i_xt_se": r.i_xt_se, "i_ty_se": r.i_ty_se},
                           {"noise_var": r.noise_var}) for r in res]
