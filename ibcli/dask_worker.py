"""What a Dask worker of `ibcli mi --jobs N` sets up before its first task (imports dask)."""

from __future__ import annotations

import os

from distributed import WorkerPlugin

from ibcli.executor import core_slot, thread_ids


class PinWorker(WorkerPlugin):
    """Worker i of a LocalCluster runs on its own `threads` cores with torch on `threads` threads,
    so N workers share the machine's cores without oversubscribing them."""

    name = "ibcli-threads"

    def __init__(self, threads: int):
        self.threads = threads

    def setup(self, worker) -> None:
        import torch

        mine = core_slot(self.threads, int(worker.name) if str(worker.name).isdigit() else 0)
        if hasattr(os, "sched_setaffinity"):
            # Every thread of the worker process; threads started later inherit it.
            for tid in thread_ids():
                try:
                    os.sched_setaffinity(tid, mine)
                except OSError:
                    pass
        torch.set_num_threads(self.threads)
