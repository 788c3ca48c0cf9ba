#!/usr/bin/env python
"""Sample propagation (`ibcli.estimators.sp`) on a train run's recorded activations.

For each chosen record and layer, prints I(X; T+Z) and I(T+Z; Y) in bits with their standard
errors, the per-draw spread of the Monte Carlo terms (nats) and the seconds one call took
(all noise variances of the line share one call). This is how the default number of noise
draws was chosen (see `DEFAULT_NOISE_SAMPLES`) and how to time a point on another machine:

    python benchmarks/sp_spread.py RUN_ARTIFACTS/activations --steps 0,1407 \\
        --layers layer1,layer2 --noise-var 0.1 --noise-var 0.01 --device cuda

Times are only meaningful on a quiet machine (the first line prints the load average).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import pyarrow.parquet as pq

from ibcli.activations import read_matrix
from ibcli.estimators.sp import DEFAULT_NOISE_SAMPLES, sp_information_plane

BITS = 1 / math.log(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("activations", type=Path, help="a train run's artifacts/activations folder")
    ap.add_argument("--steps", default=None, help="comma-separated recorded steps (default: all)")
    ap.add_argument("--layers", default=None, help="comma-separated layers (default: all)")
    ap.add_argument("--noise-var", type=float, action="append", help="s2, repeatable (default 0.1)")
    ap.add_argument("--noise-samples", type=int, default=DEFAULT_NOISE_SAMPLES)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    manifest = json.loads((args.activations / "manifest.json").read_text())
    labels = pq.read_table(args.activations / "probe.parquet").column("label").to_numpy()
    layers = args.layers.split(",") if args.layers else [entry["name"] for entry in manifest["layers"]]
    steps = {int(s) for s in args.steps.split(",")} if args.steps else None
    records = [r for r in manifest["records"] if steps is None or r["step"] in steps]
    noise_vars = args.noise_var or [0.1]
    print(f"# load average {os.getloadavg()}, N = {labels.size}, M = {args.noise_samples}, device {args.device}")
    for record in records:
        step = record["step"]
        for layer in layers:
            t = read_matrix(args.activations.parent / record["files"][layer])  # paths are artifact-relative
            start = time.perf_counter()
            res = sp_information_plane(t, labels, noise_vars, noise_samples=args.noise_samples, seed=args.seed,
                                       device=args.device)
            seconds = time.perf_counter() - start
            for r in res:
                print(f"step {step} {layer} d={t.shape[1]} s2={r.noise_var:g}: "
                      f"I(X;T) {r.i_xt * BITS:.4f} se {r.i_xt_se * BITS:.4f} bits (sd {r.i_xt_sd:.3f} nats), "
                      f"I(T;Y) {r.i_ty * BITS:.4f} se {r.i_ty_se * BITS:.4f} bits (sd {r.i_ty_sd:.3f} nats), "
                      f"{seconds:.1f} s for {len(res)} s2", flush=True)


if __name__ == "__main__":
    main()
