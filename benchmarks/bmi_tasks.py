"""Read the cached samples of the 40 tasks of Czyz et al. 2023 on the project side (numpy only).

The cache is written by `benchmarks/bmi_samples.py` (which runs `bmi_generate.py` in the benchmark's
own venv): `index.json` plus one `<task_id>__seed<seed>.npz` per (task, seed). Nothing here imports
the benchmark's package.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ibcli.errors import UserError

#: Where bmi_samples.py puts the cache by default: <repo>/.cache/bmi, or $BMI_CACHE when set.
DEFAULT_CACHE = Path(os.environ.get("BMI_CACHE") or Path(__file__).resolve().parent.parent / ".cache" / "bmi")


@dataclass(frozen=True)
class BmiSample:
    """One task's sample for one seed.

    x: (n, dim_x) float64; y: (n, dim_y) float64 (n = 5000 in the paper's setting);
    mi_true_nats: the task's true I(X;Y) in nats; ksg_bmi_nats: the benchmark's own KSG
    (`KSGEnsembleFirstEstimator(neighborhoods=(3,))`, euclidean, standardised) on this very sample.
    """

    task_id: str
    task_name: str
    seed: int
    x: np.ndarray
    y: np.ndarray
    mi_true_nats: float
    ksg_bmi_nats: float


def sample_path(cache_dir: Path, task_id: str, seed: int) -> Path:
    """The file of one (task, seed); the same naming as bmi_generate.py."""
    return Path(cache_dir) / f"{task_id}__seed{seed}.npz"


def read_index(cache_dir: str | os.PathLike = DEFAULT_CACHE) -> dict:
    """The cache's `index.json` (tasks in the paper's order, dims, true MI, seeds, versions).

    Raises UserError when the cache has no index (run benchmarks/bmi_samples.py first).
    """
    path = Path(cache_dir) / "index.json"
    if not path.is_file():
        raise UserError(f"no bmi cache at {cache_dir} (no index.json): run benchmarks/bmi_samples.py first")
    return json.loads(path.read_text())


def load_tasks(
    cache_dir: str | os.PathLike = DEFAULT_CACHE, seeds=(0,), tasks: str | None = None
) -> list[BmiSample]:
    """Load the cached samples, in the paper's task order, seeds in the order given within each task.

    Parameters
    ----------
    cache_dir : folder written by bmi_samples.py / bmi_generate.py.
    seeds : iterable of int, the sampling seeds wanted (each must be cached).
    tasks : optional case-insensitive substring; only tasks whose id or name contains it.

    Returns
    -------
    list of BmiSample (40 x len(seeds) without a filter).

    Raises
    ------
    UserError : no cache, a wanted (task, seed) file missing, or a filter matching no task.
    """
    cache_dir = Path(cache_dir)
    index = read_index(cache_dir)
    wanted = [t for t in index["tasks"]
              if tasks is None or tasks.lower() in t["task_id"].lower() or tasks.lower() in t["task_name"].lower()]
    if not wanted:
        raise UserError(f"no bmi task id or name contains {tasks!r}")
    samples = []
    for task in wanted:
        for seed in seeds:
            path = sample_path(cache_dir, task["task_id"], int(seed))
            if not path.is_file():
                raise UserError(f"{path} missing: run benchmarks/bmi_samples.py --seeds {int(seed)}")
            with np.load(path) as f:
                samples.append(BmiSample(
                    task_id=str(f["task_id"]), task_name=str(f["task_name"]), seed=int(f["seed"]),
                    x=f["x"], y=f["y"], mi_true_nats=float(f["mi_true_nats"]),
                    ksg_bmi_nats=float(f["ksg_bmi_nats"]),
                ))
    return samples
