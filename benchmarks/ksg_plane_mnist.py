#!/usr/bin/env python
"""kraskov on a train run's recorded activations (e.g. the MNIST MLP): values, truth, time.

For each chosen record and layer and one noise variance it prints, in bits:
- `ksg_information_plane` with its defaults (5 repeats; 2 draws, 1 for a layer flagged too
  wide): I(X;T+Z) and I(T+Z;Y) with their se, the flag, and its seconds at the first record of
  a width (`s first`: it computes the entropy estimates of the noise draws alone) and at the
  later ones (`s later`: those are memoised per process and width);
- with --truth, sample propagation's values (`sp_information_plane`, the exact noisy plane)
  and the errors;
- with --before, the recipe this replaced (issue 11), timed on the same data: one noise draw,
  KSG algorithm 1 on (X, T+Z) with the max-norm (each space divided by its RMS coordinate
  spread) and Ross's estimator on T+Z, raw coordinates; and the time ratio.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/ksg_plane_mnist.py RUN_ARTIFACTS/activations \\
        --steps 1407 --layers layer2,output --truth --before

Times are only meaningful on a quiet machine (the first line prints the load average).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ibcli.activations import read_matrix
from ibcli.estimators.ksg import ksg_information_plane, ksg_mi, ksg_mixed_mi

BIT = math.log(2.0)


def before(t, x, labels, s2, k=3, seed=0):
    """The replaced recipe (one draw; see the module docstring), nats."""
    def unit(a):
        spread = math.sqrt(float(np.mean(a.var(axis=0))))
        return a / spread if spread > 0 else a

    tz = t.astype(np.float64) + math.sqrt(s2) * np.random.default_rng(seed).standard_normal(t.shape)
    kw = dict(k=k, norm="max", standardize=False)
    return ksg_mi(unit(x.astype(np.float64)), unit(tz), **kw), ksg_mixed_mi(tz, labels, **kw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("activations", type=Path, help="a train run's artifacts/activations folder")
    ap.add_argument("--steps", default=None, help="comma-separated recorded steps (default: all)")
    ap.add_argument("--layers", default=None, help="comma-separated layers (default: all)")
    ap.add_argument("--noise-var", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--truth", action="store_true", help="also sample propagation (slow at width 1024)")
    ap.add_argument("--before", action="store_true", help="also time the replaced recipe")
    args = ap.parse_args()

    manifest = json.loads((args.activations / "manifest.json").read_text())
    probe = args.activations / "probe.parquet"
    labels = pq.read_table(probe).column("label").to_numpy().astype(np.int64)
    x = read_matrix(probe, "x") if args.before else None
    records = manifest["records"]
    if args.steps:
        wanted = {int(s) for s in args.steps.split(",")}
        records = [r for r in records if int(r["step"]) in wanted]
    print(f"# load average {os.getloadavg()[0]:.1f}; N = {len(labels)}; s2 = {args.noise_var}")
    print("| step | layer | width | I(X;T) | I(T;Y) | flag | s first | s later | truth I(X;T) | I(T;Y) | errors "
          "| before: I(X;T) | I(T;Y) | s | time ratio (later / before) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for rec in records:
        layers = [l["name"] for l in manifest["layers"]]
        if args.layers:
            layers = [l for l in layers if l in args.layers.split(",")]
        for layer in layers:
            t = read_matrix(args.activations.parent / rec["files"][layer])  # paths are relative to the artifacts root
            t0 = time.perf_counter()
            (p,) = ksg_information_plane(t, labels, args.noise_var, repeats=args.repeats)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            (again,) = ksg_information_plane(t, labels, args.noise_var, repeats=args.repeats)
            sec = time.perf_counter() - t0
            assert again == p
            row = (f"| {rec['step']} | {layer} | {t.shape[1]} | {p.i_xt / BIT:.2f} ± {1.96 * (p.i_xt_se or 0) / BIT:.2f} "
                   f"| {p.i_ty / BIT:.2f} ± {1.96 * (p.i_ty_se or 0) / BIT:.2f} | {'too wide' if p.flag else ''} "
                   f"| {first:.0f} | {sec:.0f} |")
            if args.truth:
                from ibcli.estimators.sp import sp_information_plane

                (tr,) = sp_information_plane(t, labels, args.noise_var)
                row += (f" {tr.i_xt / BIT:.2f} | {tr.i_ty / BIT:.2f} | {(p.i_xt - tr.i_xt) / BIT:+.2f}, "
                        f"{(p.i_ty - tr.i_ty) / BIT:+.2f} |")
            else:
                row += " | | |"
            if args.before:
                t0 = time.perf_counter()
                bx, by = before(t, x, labels, args.noise_var)
                old = time.perf_counter() - t0
                row += f" {bx / BIT:.2f} | {by / BIT:.2f} | {old:.0f} | {sec / old:.2f} |"
            else:
                row += " | | | |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
