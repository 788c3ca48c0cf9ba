"""Where independent tasks run: in this process, or on Dask (dask.distributed).

`ibcli mi --jobs N` runs its (record, layer) tasks in a `LocalCluster` of N worker
processes on this machine, each running one task at a time with cores // N BLAS/torch
threads; `--scheduler tcp://HOST:8786` sends them to a running cluster (e.g. dask-jobqueue's
SLURM cluster). Without either, tasks run here, one after another. Results come back in
the order of the tasks, so the caller assembles the same table whichever way they ran.

A task that raises is retried by Dask (`retries`), and so is a task whose worker died
(Dask reschedules it, up to its `allowed-failures`); a task that still fails stops the
run with one line naming the task and the reason.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from ibcli.errors import UserError

# torch, threadpoolctl and distributed are imported where used: `ibcli mi` without --jobs never loads Dask.

#: Dask retries of a task that raised (a worker lost mid-task is rescheduled by Dask itself).
RETRIES = 2
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


class TaskFailed(UserError):
    """A task failed on every try; the message names it and says why."""


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask, else os.cpu_count())."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass
class Executor:
    """Runs `fn(*args, item)` for each item and returns the results in item order.

    client: a dask.distributed Client, or None to run in this process.
    description: for notes and the mi run's params ("serial", "local dask: 2 workers x 1 thread", ...).
    """

    client: object = None
    description: str = "serial"

    def map(self, fn: Callable, items: Sequence, labels: Sequence[str], *args, progress=None, task=None,
            retries: int = RETRIES, pure: bool = False) -> list:
        """[fn(*args, item) for item in items], in this process or on the cluster.

        labels: one per item, naming it in errors (e.g. "epoch 3 (step 1407), layer layer2").
        progress, task: a rich Progress and its task id, advanced once per finished item.

        Raises:
            UserError: an item's UserError as it is (it names the item already).
            TaskFailed: an item failed otherwise on every try (message: its label and the reason).
        """
        if self.client is None:
            out = []
            for item, label in zip(items, labels):
                out.append(fn(*args, item))
                if progress is not None:
                    progress.update(task, advance=1, info=label)
            return out
        return self._map_dask(fn, items, labels, args, progress, task, retries, pure)

    def _map_dask(self, fn, items, labels, args, progress, task, retries, pure) -> list:
        from distributed import as_completed
        from distributed.client import FutureCancelledError

        futures = [self.client.submit(fn, *args, item, retries=retries, pure=pure) for item in items]
        label_of = {f.key: label for f, label in zip(futures, labels)}
        try:
            for future in as_completed(futures):
                if future.status == "error":
                    exc = future.exception()
                    label = label_of[future.key]
                    if isinstance(exc, UserError):
                        raise exc
                    raise TaskFailed(f"{label}: {_why(exc)}")
                if progress is not None:
                    progress.update(task, advance=1, info=label_of[future.key])
            return [f.result() for f in futures]
        except FutureCancelledError as exc:
            raise TaskFailed(f"a task was cancelled on the cluster ({exc})") from None
        finally:
            for f in futures:
                if not f.done():
                    f.cancel()


def _why(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "KilledWorker":
        return f"its worker died on every try ({exc}): out of memory? see the worker logs"
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{name}: {first}" if first else name


def allowed_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def core_slot(threads: int, slot: int) -> set[int]:
    """The slot-th group of `threads` allowed cores (wrapping around when slots outnumber them)."""
    cores = allowed_cores()
    start = (slot * threads) % len(cores)
    return {cores[(start + i) % len(cores)] for i in range(min(threads, len(cores)))}


@contextmanager
def limit_threads(threads: int | None) -> Iterator[None]:
    """This thread on the first `threads` allowed cores (where the OS lets us pin) with torch and
    BLAS on `threads` threads; restored afterwards. None: no change.

    Pinning makes every library that sizes its pool from the CPU affinity (torch, BLAS, the kde
    estimator's own workers) agree on `threads`, so a run with `--threads k` does the same
    arithmetic as a Dask worker with k threads.
    """
    if threads is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    before = set(allowed_cores())
    mine = core_slot(threads, 0)
    pinned = hasattr(os, "sched_setaffinity")
    if pinned:
        os.sched_setaffinity(0, mine)
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(prev)
        if pinned:
            os.sched_setaffinity(0, before)


def thread_ids() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


@contextmanager
def open_executor(jobs: int | None = None, scheduler: str | None = None, threads: int | None = None) -> Iterator[Executor]:
    """An Executor: in this process (neither given), a LocalCluster of `jobs` processes on
    127.0.0.1 (`threads` each, default cores // jobs), or the cluster at `scheduler`.

    Raises:
        UserError: both or a bad value given, dask not installed, no scheduler at that address.
    """
    if jobs is not None and scheduler:
        raise UserError("pass --jobs N (workers on this machine) or --scheduler ADDRESS (a running cluster), not both")
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    if threads is not None and scheduler:
        raise UserError("--threads sizes this machine's processes; a --scheduler cluster's workers keep their own threads")
    if jobs is None and not scheduler:
        with limit_threads(threads):
            yield Executor(description="serial" + (f", {threads} threads" if threads else ""))
        return
    try:
        import distributed  # optional (ibcli[dask]), and dask_worker imports this module

        from ibcli.dask_worker import PinWorker
    except ImportError:
        raise UserError("--jobs and --scheduler need Dask: pip install 'ibcli[dask]'") from None
    if scheduler:
        try:
            client = distributed.Client(scheduler, timeout="15s")
        except (OSError, TimeoutError) as exc:
            raise UserError(f"no Dask scheduler answers at {scheduler} ({type(exc).__name__}): start one "
                            f"(`dask scheduler`, dask-jobqueue) or fix --scheduler") from None
        try:
            n = len(client.scheduler_info().get("workers", {}))
            yield Executor(client, f"dask cluster {scheduler} ({n} workers)")
        finally:
            client.close()
        return
    threads = threads or max(1, available_cores() // jobs)
    env = {var: str(threads) for var in THREAD_VARS}
    # Workers are processes (the estimators hold the GIL in places), each running one task at a
    # time with `threads` BLAS/torch threads: the serial run's arithmetic with the same threads.
    cluster = distributed.LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, env=env, silence_logs=40)
    try:
        client = distributed.Client(cluster)
        client.register_plugin(PinWorker(threads))
        try:
            yield Executor(client, f"local dask: {jobs} workers x {threads} threads")
        finally:
            client.close()
    finally:
        cluster.close()
