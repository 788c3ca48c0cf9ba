"""The range every seed option takes (train, mi, sweep), checked before anything runs."""

from __future__ import annotations

from ibcli.errors import UserError

#: The largest seed: torch's generators take 64-bit seeds and NumPy's only non-negative ones.
MAX_SEED = 2**63 - 1


def check_seed(seed: int, option: str = "--seed") -> int:
    """`seed` if 0 <= seed <= 2^63-1.

    Raises:
        UserError: a negative seed or one too large for torch's generators (one line, exit 2).
    """
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"{option} must be between 0 and 2^63-1, got {seed}")
    return seed
