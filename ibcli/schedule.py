"""When to record: epoch and step schedules parsed from `--log-epochs` / `--log-steps`."""

from __future__ import annotations

import numpy as np

from ibcli.errors import UserError


def log_spaced(upper: int, count: int) -> set[int]:
    """Up to `count` distinct integers in [1, upper], log-spaced (dense early), always with 1 and upper."""
    if upper < 1 or count < 1:
        return set()
    points = np.unique(np.round(np.geomspace(1, upper, num=min(count, upper))).astype(int))
    out = {int(p) for p in points}
    # Rounding merges early points; top up with the smallest missing integers so `count` holds.
    candidate = 1
    while len(out) < min(count, upper):
        out.add(candidate)
        candidate += 1
    return out | {upper}


def parse_epoch_schedule(spec: str, epochs: int) -> set[int]:
    """Epochs (1..epochs) after which to record; epoch 0 (before training) is always recorded.

    spec: "all"; "every:K" or "K" (every K-th epoch, plus the last); "log" or "log:N"
    (N log-spaced epochs, default 30, which is every epoch when epochs <= N);
    "none"; or a comma list "1,2,5,10".

    Raises:
        UserError: a spec that is none of these, or K/N < 1.
    """
    spec = spec.strip().lower()
    try:
        if spec == "all":
            return set(range(1, epochs + 1))
        if spec == "none":
            return set()
        if spec.startswith("every:") or spec.isdigit():
            k = int(spec.split(":")[-1])
            if k < 1:
                raise ValueError
            return set(range(k, epochs + 1, k)) | ({epochs} if epochs else set())
        if spec.startswith("log"):
            n = int(spec.split(":")[1]) if ":" in spec else 30
            if n < 1:
                raise ValueError
            return log_spaced(epochs, n)
        chosen = {int(p) for p in spec.split(",") if p.strip()}
    except ValueError:
        raise UserError(f"bad --log-epochs {spec!r}: use all, every:K, log, log:N, none or a list like 1,2,5,10") from None
    bad = sorted(e for e in chosen if not 0 <= e <= epochs)
    if bad:
        raise UserError(f"--log-epochs lists epochs {bad} outside 0..{epochs}")
    return chosen - {0}


def parse_step_schedule(spec: str, steps_per_epoch: int) -> set[int]:
    """Optimizer steps inside the first epochs at which to record (besides the epoch ends).

    spec: "none" (default); "log:N" (N log-spaced steps within the first epoch) or
    "log:N:E" (within the first E epochs); or a comma list of steps "1,2,5,10,50".
    Steps that fall on an epoch end are left to the epoch schedule.

    Raises:
        UserError: a spec that is none of these.
    """
    spec = spec.strip().lower()
    try:
        if spec in ("none", ""):
            return set()
        if spec.startswith("log:"):
            parts = spec.split(":")
            n = int(parts[1])
            first_epochs = int(parts[2]) if len(parts) > 2 else 1
            if n < 1 or first_epochs < 1:
                raise ValueError
            steps = log_spaced(first_epochs * steps_per_epoch, n)
        else:
            steps = {int(p) for p in spec.split(",") if p.strip()}
            if any(s < 1 for s in steps):
                raise ValueError
    except (ValueError, IndexError):
        raise UserError(f"bad --log-steps {spec!r}: use none, log:N, log:N:E or a list of steps like 1,2,5,10") from None
    return {s for s in steps if s % steps_per_epoch != 0}
