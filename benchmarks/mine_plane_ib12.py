"""MINE's noisy information plane against the exact one on the 12-bit task (full size).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/mine_plane_ib12.py [--epochs 2] [--seeds 3] [--json out.json]

Trains the ib net (12-10-7-5-4-3-2, tanh; Adam 1e-3, batch 128, 85 % split) for `--epochs`
epochs in-process, then for every layer and s2 in {0.01, 0.1, 1} prints, in bits: the truth
by sample propagation (`sp_information_plane`, Goldfeld et al. 2019, 4 draws per input, with
its se), `mine_information_plane` with its defaults (mean and sd over the seeds, flag), and
whether the point meets the issue's tolerance: within max(0.4 bits, 15 %) where the truth is
<= 4 bits, never above truth + 0.4 bits. A measurement, not a test (tests/test_mine_plane.py
checks a small version).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_mine_plane import ib12_layers  # noqa: E402

from ibcli.estimators.mine import mine_information_plane  # noqa: E402
from ibcli.estimators.sp import sp_information_plane  # noqa: E402

BIT = math.log(2.0)
NOISE_VARS = (0.01, 0.1, 1.0)


def verdict(est_bits: float, truth_bits: float) -> str:
    if est_bits > truth_bits + 0.4:
        return "ABOVE"
    if truth_bits > 4:
        return "ok (lower)"
    return "ok" if abs(est_bits - truth_bits) <= max(0.4, 0.15 * truth_bits) else "OFF"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--layers", nargs="*", help="only these layers")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    layers, y = ib12_layers(args.epochs)
    rows = []
    print(f"# ib12, {args.epochs} epochs, N = {len(y)}, mine seeds = {args.seeds}; bits")
    print(f"{'layer':7s} {'s2':>5s} | {'I(X;T) sp':>10s} {'mine':>14s} {'':10s} | {'I(T;Y) sp':>10s} {'mine':>14s} {'':10s} | {'s':>5s} flag")
    for name, t in layers.items():
        if args.layers and name not in args.layers:
            continue
        truth = sp_information_plane(t, y, NOISE_VARS, noise_samples=4)
        points = mine_information_plane(t, y, NOISE_VARS, seeds=args.seeds)
        for tr, p in zip(truth, points):
            r = dict(layer=name, noise_var=p.noise_var, xt_true=tr.i_xt / BIT, xt_true_se=tr.i_xt_se / BIT,
                     xt=p.i_xt_nats / BIT, xt_sd=p.i_xt_sd_nats / BIT, ty_true=tr.i_ty / BIT,
                     ty_true_se=tr.i_ty_se / BIT, ty=p.i_ty_nats / BIT, ty_sd=p.i_ty_sd_nats / BIT,
                     seconds=p.seconds, flag=p.flag)
            r["xt_verdict"], r["ty_verdict"] = verdict(r["xt"], r["xt_true"]), verdict(r["ty"], r["ty_true"])
            rows.append(r)
            print(f"{name:7s} {p.noise_var:5g} | {r['xt_true']:10.3f} {r['xt']:7.3f} ±{r['xt_sd']:5.3f} {r['xt_verdict']:10s} | "
                  f"{r['ty_true']:10.3f} {r['ty']:7.3f} ±{r['ty_sd']:5.3f} {r['ty_verdict']:10s} | {p.seconds:5.1f} {p.flag or ''}",
                  flush=True)
    bad = [r for r in rows if "ok" not in r["xt_verdict"] or "ok" not in r["ty_verdict"]]
    print(f"# {len(rows) - len(bad)} of {len(rows)} points within tolerance")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
