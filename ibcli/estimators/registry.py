"""Every information-plane method ibcli knows, one line each, and what follows from them.

Adding a method is one module with its `Estimator` subclass (see `interface.py`) and one
line in `ESTIMATORS`; `ibcli mi --method`, its options, the `mi.parquet` columns and the
plot labels all come from here.
"""

from __future__ import annotations

from .binning import BinningEstimator
from .errors import EstimatorInputError
from .interface import Column, Estimator, Param
from .kde import KDEEstimator
from .ksg import KSGEstimator
from .mine import MINEEstimator
from .renyi import RenyiEstimator
from .sp import SampleNoiseEstimator

__all__ = ["ESTIMATORS", "METHODS", "ALIASES", "get", "canonical_method", "all_params", "result_columns"]

ESTIMATORS: tuple[Estimator, ...] = (
    BinningEstimator(),
    KDEEstimator(),
    KSGEstimator(),
    MINEEstimator(),
    RenyiEstimator(),
    SampleNoiseEstimator(),
)

METHODS: tuple[str, ...] = tuple(e.name for e in ESTIMATORS)
ALIASES: dict[str, str] = {alias: e.name for e in ESTIMATORS for alias in e.aliases}
_BY_NAME = {e.name: e for e in ESTIMATORS}


def canonical_method(name) -> str:
    """The canonical name of a method ("ksg" -> "kraskov"); case and surrounding blanks are ignored.

    Raises:
        EstimatorInputError: unknown name (the message lists the valid ones).
    """
    key = name.strip().lower() if isinstance(name, str) else None
    key = ALIASES.get(key, key)
    if key not in _BY_NAME:
        aliases = ", ".join(f"{a} = {b}" for a, b in ALIASES.items())
        raise EstimatorInputError(f"unknown estimator method {name!r}; valid methods: {', '.join(METHODS)} (alias: {aliases})")
    return key


def get(name) -> Estimator:
    """The estimator called `name` (or an alias of it).

    Raises:
        EstimatorInputError: unknown name.
    """
    return _BY_NAME[canonical_method(name)]


def _merged(items, what: str) -> dict:
    """{name: (declaration, [methods])}; a name must mean one thing in every method that declares it."""
    out: dict = {}
    for est, decl in items:
        if decl.name in out and out[decl.name][0] != decl:
            raise RuntimeError(f"{what} {decl.name!r} is declared differently by {out[decl.name][1]} and {est.name}")
        out.setdefault(decl.name, (decl, []))[1].append(est.name)
    return out


def all_params() -> dict[str, tuple[Param, list[str]]]:
    """Every method parameter, once: {name: (Param, [methods that take it])}, in declaration order."""
    return _merged(((e, p) for e in ESTIMATORS for p in e.params), "parameter")


def result_columns() -> dict[str, str]:
    """The method-specific `mi.parquet` columns and their dtypes: every stored parameter, then
    every declared result column, in declaration order."""
    params = {name: p.dtype for name, (p, _) in all_params().items() if p.column}
    columns = {name: c.dtype for name, (c, _) in _merged(((e, c) for e in ESTIMATORS for c in e.columns), "column").items()}
    clash = set(params) & set(columns)
    if clash:
        raise RuntimeError(f"{sorted(clash)} is both a parameter and a result column")
    return {**params, **columns}


def column_declarations() -> dict[str, Column]:
    """Every declared result column by name (for the README's schema and unit conversion)."""
    return {name: c for name, (c, _) in _merged(((e, c) for e in ESTIMATORS for c in e.columns), "column").items()}
