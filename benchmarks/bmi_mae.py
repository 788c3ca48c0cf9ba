"""Mean absolute error of an ibcli estimator on the 40 tasks of Czyz et al. 2023 (project venv).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bmi_mae.py --method kraskov --param k=3 --seeds 0 1 2

For every cached (task, seed) sample (see bmi_samples.py) it runs
`ibcli.estimators.mutual_information(x, y, method=..., discrete_y=False, **params)` and prints one
line per task: truth, ibcli's estimate, the benchmark's own KSG (neighborhoods=(3,)) on the same
sample, all in nats. Then, per seed, the MAE (mean over tasks of |estimate - truth|) of ibcli and of
bmi's KSG, and their mean and spread (sd, ddof=1) over seeds. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bmi_tasks import DEFAULT_CACHE, load_tasks, read_index  # noqa: E402

from ibcli.errors import UserError  # noqa: E402
from ibcli.estimators import mutual_information  # noqa: E402
from ibcli.estimators.errors import EstimatorInputError  # noqa: E402


def parse_param(text: str) -> tuple[str, object]:
    """'k=3' -> ('k', 3); values are Python literals (int, float, bool, None, tuple), else strings."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise UserError(f"--param takes NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and spread (sd, ddof=1; nan for a single value) over seeds."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", required=True, help="ibcli method: kraskov, mine, ...")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="estimator parameter, repeatable (e.g. --param k=3 --param steps=2000)")
    parser.add_argument("--seeds", type=int, nargs="+", help="sampling seeds (default: all in the cache)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help=f"cache folder (default {DEFAULT_CACHE}; $BMI_CACHE overrides)")
    parser.add_argument("--tasks", help="only tasks whose id or name contains this (case-insensitive)")
    parser.add_argument("--json", type=Path, help="also write every row and the summary to this file")
    args = parser.parse_args(argv)
    try:
        params = dict(parse_param(p) for p in args.param)
        seeds = args.seeds if args.seeds is not None else read_index(args.cache)["seeds"]
        samples = load_tasks(args.cache, seeds=seeds, tasks=args.tasks)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    print(f"# method={args.method} params={params} seeds={list(seeds)} tasks={len(samples) // len(seeds)} "
          f"cache={args.cache}")
    rows = []
    for seed in seeds:
        print(f"## seed {seed}")
        print(f"{'task':52s} {'true':>8s} {'ibcli':>8s} {'bmi KSG':>8s} {'s':>6s}")
        for s in (s for s in samples if s.seed == seed):
            t0 = time.perf_counter()
            try:
                est = float(mutual_information(s.x, s.y, method=args.method, discrete_y=False, **params))
            except EstimatorInputError as err:
                print(f"error: {s.task_name} seed {seed}: {err}", file=sys.stderr)
                return 2
            seconds = time.perf_counter() - t0
            rows.append({"task_id": s.task_id, "task_name": s.task_name, "seed": seed,
                         "mi_true_nats": s.mi_true_nats, "ibcli_nats": est,
                         "ksg_bmi_nats": s.ksg_bmi_nats, "seconds": seconds})
            print(f"{s.task_name:52s} {s.mi_true_nats:8.4f} {est:8.4f} {s.ksg_bmi_nats:8.4f} {seconds:6.1f}",
                  flush=True)

    def mae(seed: int, key: str) -> float:
        return float(np.mean([abs(r[key] - r["mi_true_nats"]) for r in rows if r["seed"] == seed]))

    per_seed = {seed: {"ibcli": mae(seed, "ibcli_nats"), "bmi_ksg": mae(seed, "ksg_bmi_nats")} for seed in seeds}
    print("## MAE, nats (mean over tasks of |estimate - truth|)")
    for seed, m in per_seed.items():
        print(f"seed {seed}: ibcli {args.method} {m['ibcli']:.4f}   bmi KSG(k=3) {m['bmi_ksg']:.4f}")
    summary = {}
    for key, label in (("ibcli", f"ibcli {args.method}"), ("bmi_ksg", "bmi KSG(k=3)")):
        mean, sd = mean_sd([m[key] for m in per_seed.values()])
        summary[key] = {"mean": mean, "sd": sd}
        spread = f", spread (sd over {len(seeds)} seeds) {sd:.4f}" if len(seeds) > 1 else " (1 seed, no spread)"
        print(f"{label}: MAE mean {mean:.4f}{spread}")
    print(f"# estimating time {sum(r['seconds'] for r in rows):.0f} s for {len(rows)} samples")

    if args.json:
        args.json.write_text(json.dumps(
            {"method": args.method, "params": params, "seeds": list(seeds), "rows": rows,
             "mae_per_seed": {str(k): v for k, v in per_seed.items()}, "summary": summary},
            indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
