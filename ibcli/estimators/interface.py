"""The estimator protocol: what every information-plane method declares and provides.

A method is one module in `ibcli/estimators/` holding its functions (the science) and one
`Estimator` subclass (the adapter), plus one line in `registry.py`. From the declarations
here the rest of ibcli derives everything else: the `ibcli mi` options (one per `Param`,
with its help text, default and checks), the `mi.parquet` columns (every `Param` with
`column=True` and every declared `Column`), the labels of the plots, and the dispatch of
`mutual_information` / `entropy` / `information_plane`.

This module imports nothing else from ibcli but the error type, so an estimator module
can import it without pulling in the package (the shape of bmi's `interface` module,
Czyż et al. 2023).

Units: every information an estimator returns is in NATS. The mi stage converts to bits
for files and plots (`units.nats_to_bits`), and only fields declared with `nats=True`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from .errors import EstimatorInputError

__all__ = ["Param", "Column", "PlanePoint", "LayerValues", "Estimator", "NOISE_VAR", "SE_COLUMNS", "SD_COLUMNS",
           "BASELINE_COLUMNS", "FLAG_COLUMN"]


@dataclass(frozen=True)
class Param:
    """One parameter of an estimator, declared once.

    name: Python name, `ibcli mi` option (`--` + name with `-` for `_`) and, when
        `column` is true, the `mi.parquet` column.
    type: int, float, str or bool.
    default: the value when not given; None means "chosen from the data" (say how in `help`).
    help: one line for `ibcli mi --help`, with the unit (e.g. "in T's units squared").
    choices: the allowed values of a str parameter.
    multiple: a repeatable option (`--noise-var 0.1 --noise-var 0.01`); the estimator gets a
        tuple and returns one point per value, and the column holds that point's value
        (the point reports it in `PlanePoint.params`).
    low, high: inclusive bounds of a number; `low_open`: the lower bound is exclusive (> low).
    column: store the value per row in `mi.parquet`.
    affects_result: the value changes the numbers (True for every parameter of the science).
        False for options that only change speed (workers, chunk sizes): `ibcli mi` leaves
        those out of the key by which it reuses a finished mi run with the same settings.
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple = ()
    multiple: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    column: bool = True
    affects_result: bool = True

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def dtype(self) -> str:
        """The pandas dtype of its `mi.parquet` column (nullable: other methods leave it empty)."""
        return {int: "Int64", float: "float64", bool: "boolean"}.get(self.type, "string")

    def check(self, value):
        """`value` (a tuple for `multiple`) if allowed, else EstimatorInputError naming the option.

        Raises:
            EstimatorInputError: wrong type, outside [low, high], not finite, not in `choices`,
                or an empty tuple for a `multiple` parameter.
        """
        if self.multiple:
            values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
            if not values:
                raise EstimatorInputError(f"{self.flag} needs at least one value")
            return tuple(self._check_one(v) for v in values)
        return self._check_one(value)

    def _check_one(self, v):
        if v is None and self.default is None:
            return None
        if self.type is bool:
            if not isinstance(v, (bool, np.bool_)):
                raise EstimatorInputError(f"{self.flag} must be true or false, got {v!r}")
            return bool(v)
        if self.type is str:
            if not isinstance(v, str) or (self.choices and v not in self.choices):
                raise EstimatorInputError(f"{self.flag} must be one of {', '.join(self.choices)}, got {v!r}")
            return v
        if self.type is int and (isinstance(v, bool) or not isinstance(v, (int, np.integer))):
            raise EstimatorInputError(f"{self.flag} must be an integer, got {v!r}")
        if not isinstance(v, (int, float, np.integer, np.floating)) or isinstance(v, bool) or not math.isfinite(v):
            raise EstimatorInputError(f"{self.flag} must be a finite number, got {v!r}")
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            need = ("positive" if self.low == 0 else f"> {self.low:g}") if self.low_open else f"at least {self.low:g}"
            raise EstimatorInputError(f"{self.flag} must be {need}, got {v!r}")
        if self.high is not None and v > self.high:
            raise EstimatorInputError(f"{self.flag} must be <= {self.high:g}, got {v!r}")
        return self.type(v)


@dataclass(frozen=True)
class Column:
    """A result column an estimator adds to `mi.parquet` beyond I(X;T) and I(T;Y).

    name: the column name; information in bits ends in `_bits`.
    dtype: pandas dtype ("float64", "Int64", "boolean", "string").
    help: what it holds, for the README's schema table.
    nats: the point carries the value in nats (key = name without `_bits`); stored in bits.
    """

    name: str
    dtype: str
    help: str
    nats: bool = False

    @property
    def key(self) -> str:
        """The key of this value in `PlanePoint.values`."""
        return self.name.removesuffix("_bits") if self.nats else self.name


@dataclass
class PlanePoint:
    """One layer at one record, for one setting of a `multiple` parameter, in nats.

    i_xt_nats, i_ty_nats: I(X;T) and I(T;Y) as the method defines them (the README says what
        each method's number is, e.g. kde's KL upper bound).
    values: the method's declared `Column`s, keyed by `Column.key` (nats where `nats=True`).
    params: the per-point value of each `multiple` parameter, e.g. {"noise_var": 0.1}.
    """

    i_xt_nats: float
    i_ty_nats: float
    values: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)


class LayerValues(Protocol):
    """What `Estimator.prepare` may read of one layer across ALL recorded epochs."""

    def value_range(self, layer: str) -> tuple[float, float]:
        """(min, max) of the layer's activations over every record."""

    def sample(self, layer: str, per_record: int, seed: int) -> np.ndarray:
        """A random sample of the layer's values pooled over every record, flat float32."""


class Estimator:
    """Base of every method's adapter; subclasses set the class attributes and `points`.

    name: the `--method` value; aliases: other accepted names.
    title: one line for help and plots, with the source (e.g. "KDE pairwise-distance bounds
        (Kolchinsky & Tracey 2017)").
    quantity: the axis labels of its information plane, ("I(X;T)", "I(T;Y)") for Shannon
        mutual information; a Rényi method says so.
    params: its `Param`s (shared ones, e.g. noise_var, must be declared identically).
    columns: its extra `Column`s.
    needs_x: `points` gets the probe inputs x (N, d_x); else x is None.
    uses_device: `points` honours `device` ("cpu", "cuda", ...).
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    title: ClassVar[str]
    quantity: ClassVar[tuple[str, str]] = ("I(X;T)", "I(T;Y)")
    params: ClassVar[tuple[Param, ...]] = ()
    columns: ClassVar[tuple[Column, ...]] = ()
    needs_x: ClassVar[bool] = False
    uses_device: ClassVar[bool] = False

    def check_params(self, given: dict) -> dict:
        """Every declared parameter's value (defaults filled in), checked.

        Raises:
            EstimatorInputError: an unknown parameter, or a value its `Param` refuses.
        """
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            accepted = ", ".join(known) or "none"
            raise EstimatorInputError(f"method {self.name!r} has no parameter {unknown[0]!r}; it takes: {accepted}")
        return {name: p.check(given.get(name, p.default)) for name, p in known.items()}

    def label(self, row: dict) -> str:
        """A short label of one setting for legends, e.g. "kde (s2=0.1)"; `row` is an mi.parquet
        row (or its dict). The default names the method and its `multiple` parameters' values."""
        shown = []
        for p in self.params:
            v = row.get(p.name)
            if p.multiple and v is not None and not (isinstance(v, float) and math.isnan(v)):
                shown.append(f"{'s2' if p.name == 'noise_var' else p.name}={v:g}" if isinstance(v, (int, float)) else f"{p.name}={v}")
        return f"{self.name} ({', '.join(shown)})" if shown else self.name

    def check_sizes(self, params: dict, n: int, widths: dict) -> None:
        """Refuse parameters the data's size cannot meet, before an mi run exists: `n` probe
        samples, `widths` {layer: coordinates (None if unknown)} of the chosen layers; `params`
        is `check_params`'s output. The default checks nothing.

        Raises:
            EstimatorInputError: a parameter too large for this data (message names the option).
        """

    def prepare(self, layers: LayerValues, layer_names: list[str], params: dict, seed: int) -> dict:
        """Per-layer context computed once per mi run from all records (e.g. binning's edges).

        Returns {layer name: context}; the default has none.
        """
        return {}

    def points(self, t: np.ndarray, labels: np.ndarray, *, x: np.ndarray | None, params: dict,
               context=None, seed: int = 0, device: str = "cpu") -> list[PlanePoint]:
        """The information-plane point(s) of one layer at one record, in nats.

        t: (N, d) float32 activations on the N probe samples (finite; checked by the caller);
        labels: (N,) int64 class codes 0..K-1; x: (N, d_x) float32 probe inputs if `needs_x`;
        params: `check_params`'s output; context: this layer's `prepare` value;
        seed: seeds every random draw (same seed, same number on the same device).

        Returns one point per value of the `multiple` parameter (one point if none).

        Raises:
            EstimatorInputError: data the method cannot use (message names what and why).
        """
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Declarations several methods share: declare them once, here, and list them in `params` /
# `columns` (the registry checks that a name means one thing everywhere).

#: The Gaussian noise Z ~ N(0, s2 I) added to T by the methods that estimate I(X; T+Z) and I(T+Z; Y).
NOISE_VAR = Param("noise_var", float, 0.1, "variance s2 of the Gaussian noise Z added to T (T's units squared); repeat to sweep",
                  multiple=True, low=0.0, low_open=True)

#: Standard error of the reported I(X;T) / I(T;Y) (Monte Carlo error, or sd/sqrt(R) of a mean over R repeats).
SE_COLUMNS = (
    Column("i_xt_se_bits", "float64", "standard error of i_xt_bits", nats=True),
    Column("i_ty_se_bits", "float64", "standard error of i_ty_bits", nats=True),
)
#: Spread (sd, ddof=1) of I(X;T) / I(T;Y) over the repeats whose mean is reported (noise draws, seeds).
SD_COLUMNS = (
    Column("i_xt_sd_bits", "float64", "sd of I(X;T) over the repeats averaged in i_xt_bits", nats=True),
    Column("i_ty_sd_bits", "float64", "sd of I(T;Y) over the repeats averaged in i_ty_bits", nats=True),
)
#: Opt-in bias baseline: the same estimator on a shuffled (independent) pairing, whose truth is 0.
BASELINE_COLUMNS = (
    Column("i_xt_baseline_bits", "float64", "mean I(X;T) estimate on shuffled pairings (truth 0)", nats=True),
    Column("i_xt_baseline_q95_bits", "float64", "95 % quantile of the shuffled-pairing I(X;T) estimates", nats=True),
    Column("i_ty_baseline_bits", "float64", "mean I(T;Y) estimate on shuffled pairings (truth 0)", nats=True),
    Column("i_ty_baseline_q95_bits", "float64", "95 % quantile of the shuffled-pairing I(T;Y) estimates", nats=True),
)
#: Why a point should not be read as a plain estimate (None when it can); plots mark flagged points.
FLAG_COLUMN = Column("flag", "string", "why this point is not to be trusted as is (empty when it is)")
