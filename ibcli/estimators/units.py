"""Nats <-> bits: the one place the conversion happens.

The Python estimator API returns nats; files (mi.parquet) and plots use bits.
"""

import math

LN2 = math.log(2.0)


def nats_to_bits(value_nats):
    """Convert nats to bits (divide by ln 2). Accepts floats or NumPy arrays."""
    return value_nats / LN2


def bits_to_nats(value_bits):
    """Convert bits to nats (multiply by ln 2). Accepts floats or NumPy arrays."""
    return value_bits * LN2
