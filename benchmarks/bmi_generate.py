"""Sample the 40 tasks of Czyz et al. 2023 with the benchmark's own package (RUNS INSIDE THE bmi VENV).

"Beyond Normal: On the Evaluation of Mutual Information Estimators" (NeurIPS 2023), PyPI
`benchmark-mi`, import `bmi`. Its package pins jax 0.4.x and numpy 1.26, so it is never an ibcli
dependency: `benchmarks/bmi_samples.py` makes a separate Python 3.11 venv for it and runs this
script there. This script imports nothing from ibcli.

For every task of `bmi.benchmark.BENCHMARK_TASKS` (the paper's main-table list,
`bmi/benchmark/task_list.py`, 40 tasks) and every seed it writes `<task_id>__seed<seed>.npz` with

    x (n, dim_x) float64, y (n, dim_y) float64   -- `task.sample(n, seed)`, the task's own sampler
                                                    (drawn in jax's default float32, cast exactly)
    mi_true_nats                                  -- the task's true MI, nats
    task_id, task_name, seed
    ksg_bmi_nats                                  -- bmi's KSGEnsembleFirstEstimator(neighborhoods=(3,))
                                                    on exactly these samples, nats

and, at the end, `index.json` (tasks in the paper's order with dims and true MI, seeds, n,
package versions). Files already present are kept (written atomically, so a present file is
complete); `--force` redoes them.

    .venv-bmi/bin/python benchmarks/bmi_generate.py --out .cache/bmi --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

N_SAMPLES = 5000
KSG_NEIGHBORHOODS = (3,)


def sample_path(out: Path, task_id: str, seed: int) -> Path:
    return out / f"{task_id}__seed{seed}.npz"


def _save_atomic(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=N_SAMPLES, help="samples per task (paper: 5000)")
    parser.add_argument("--force", action="store_true", help="redo files that already exist")
    args = parser.parse_args(argv)

    import bmi  # the benchmark's package; present only in its own venv
    from bmi.estimators import KSGEnsembleFirstEstimator

    tasks = list(bmi.benchmark.BENCHMARK_TASKS.values())
    if len(tasks) != 40:
        raise SystemExit(f"expected the paper's 40 tasks, bmi {_version('benchmark-mi')} lists {len(tasks)}")

    args.out.mkdir(parents=True, exist_ok=True)
    index_tasks = []
    started = time.perf_counter()
    for position, task in enumerate(tasks):
        mi_true = float(task.mutual_information)
        index_tasks.append(
            {"position": position, "task_id": task.id, "task_name": task.name,
             "dim_x": int(task.dim_x), "dim_y": int(task.dim_y), "mi_true_nats": mi_true}
        )
        for seed in args.seeds:
            path = sample_path(args.out, task.id, seed)
            if path.exists() and not args.force:
                continue
            t0 = time.perf_counter()
            x, y = task.sample(args.n, seed)
            x = np.asarray(x, dtype=np.float64).reshape(args.n, task.dim_x)
            y = np.asarray(y, dtype=np.float64).reshape(args.n, task.dim_y)
            ksg = float(KSGEnsembleFirstEstimator(neighborhoods=KSG_NEIGHBORHOODS).estimate(x, y))
            _save_atomic(
                path, x=x, y=y, mi_true_nats=np.float64(mi_true), task_id=np.str_(task.id),
                task_name=np.str_(task.name), seed=np.int64(seed), ksg_bmi_nats=np.float64(ksg),
            )
            print(f"{task.name:50s} seed {seed}  true {mi_true:.4f}  bmi KSG {ksg:.4f}  "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)

    index = {
        "benchmark": "Czyz et al. 2023, Beyond Normal (NeurIPS), bmi.benchmark.BENCHMARK_TASKS",
        "n_samples": args.n,
        "seeds": sorted(args.seeds),
        "file_pattern": "<task_id>__seed<seed>.npz",
        "sample_dtype_drawn": "float32 (jax default), stored as float64",
        "ksg_bmi": f"bmi.estimators.KSGEnsembleFirstEstimator(neighborhoods={KSG_NEIGHBORHOODS}) defaults "
                   "otherwise (euclidean, standardize=True)",
        "versions": {d: _version(d) for d in ("benchmark-mi", "jax", "jaxlib", "numpy", "scipy", "scikit-learn")},
        "python": platform.python_version(),
        "tasks": index_tasks,
    }
    # Merge seeds with an earlier index so a run for more seeds does not forget older ones.
    index_path = args.out / "index.json"
    if index_path.exists():
        old = json.loads(index_path.read_text())
        if old.get("n_samples") == args.n:
            index["seeds"] = sorted(set(old.get("seeds", [])) | set(args.seeds))
    tmp = index_path.with_name("index.json.tmp")
    tmp.write_text(json.dumps(index, indent=1) + "\n")
    os.replace(tmp, index_path)
    print(f"# {len(tasks)} tasks x seeds {index['seeds']} in {args.out} "
          f"({time.perf_counter() - started:.0f} s this run)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
