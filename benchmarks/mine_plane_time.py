"""Seconds per MINE information-plane point on the MNIST MLP's shapes (N = 10 000 probe images).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/mine_plane_time.py [--layers layer1 layer2]

The probe set is the 10 000 MNIST test images (pixels / 255), the layers those of the
784-1024-20-20-20-20-10 tanh MLP at initialisation (the cost does not depend on training).
It times what `ibcli mi --method mine` runs per (record, layer) at one s2 = 0.1 with its
defaults, `information_plane(t, labels, "mine", x=pixels, noise_var=(0.1,))`: run it once with
PYTHONPATH at this checkout and once at a checkout of the code to compare with (e.g.
`git archive main ibcli | tar -x -C /tmp/old`), on the same machine at the same time. CPU,
one torch thread (as the estimators set it). Times on a busy machine are upper bounds.
"""

from __future__ import annotations

import argparse
import time

import torch

from ibcli.models import build_model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--layers", nargs="*", default=["layer1", "layer2"])
    ap.add_argument("--noise-var", type=float, default=0.1)
    args = ap.parse_args(argv)
    import ibcli
    from ibcli.estimators import information_plane

    try:
        from ibcli.datasets import load_dataset
    except ImportError:  # a checkout from before the dataset registry (to compare with)
        from ibcli.data import load_mnist

        data = load_mnist(args.data_dir)
    else:
        data = load_dataset("mnist", args.data_dir, train_fraction=None, seed=0)
    torch.manual_seed(0)
    net = build_model("mlp", "tanh", (1, 28, 28), 10)
    with torch.no_grad():
        _, rec = net.forward_with_activations(data.x_test)
    x = data.x_test.reshape(len(data.x_test), -1).numpy()
    labels = data.y_test.numpy()
    print(f"# ibcli from {ibcli.__file__}")
    for name in args.layers:
        t = rec[name].numpy()
        t0 = time.perf_counter()
        try:
            (p,) = information_plane(t, labels, "mine", x=x, noise_var=(args.noise_var,), seed=0)
        except TypeError:  # a checkout from before the registry: what its `ibcli mi` ran (1000 steps)
            (p,) = information_plane(t, labels, "mine", x=x, noise_vars=(args.noise_var,),
                                     mine_params={"steps": 1000}, seed=0)
        extra = dict(getattr(p, "values", None) or getattr(p, "extras", {}))
        print(f"{name} (width {t.shape[1]}), s2={args.noise_var}: {time.perf_counter() - t0:.1f} s; "
              f"I(X;T) {p.i_xt_nats:.3f} I(T;Y) {p.i_ty_nats:.3f} nats {extra}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
