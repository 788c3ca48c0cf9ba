"""Input checks shared by the estimators: validation at the door.

Every check raises :class:`~ibcli.estimators.errors.EstimatorInputError` with a
one-line message that says what was expected and what came, so the CLI can print
it as is (exit code 2). Nothing here imports torch.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import EstimatorInputError

__all__ = ["as_2d_float", "as_int", "as_labels", "check_same_length", "check_finite", "is_discrete_dtype",
           "noise_variances"]


def _as_array(a, name: str) -> np.ndarray:
    """np.asarray that turns conversion failures into EstimatorInputError."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # a torch tensor: no torch import needed
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise EstimatorInputError(
            f"{name} must be a numeric array; could not convert it ({type(exc).__name__})"
        ) from None
    return arr


def is_discrete_dtype(a) -> bool:
    """True for integer, unsigned and boolean arrays (values read as symbols)."""
    return np.asarray(a).dtype.kind in "iub"


def _check_numeric(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind not in "iubf":
        raise EstimatorInputError(
            f"{name} must hold real numbers (int, bool or float); got dtype {arr.dtype}"
        )


def as_2d_float(a, name: str = "x", *, keep_float32: bool = False) -> np.ndarray:
    """Return `a` as a finite 2-d float array of shape (n, d).

    Parameters
    ----------
    a : array-like, shape (n,) or (n, d)
        Samples in rows. A 1-d array of n values is read as n samples of one
        feature, shape (n, 1). Integer and boolean inputs are cast to float.
    name : str
        The argument's name, used in error messages.
    keep_float32 : bool
        If True a float32 input stays float32 (for the fast torch paths);
        everything else becomes float64.

    Returns
    -------
    np.ndarray, shape (n, d), dtype float64 (or float32, see `keep_float32`),
    C-contiguous.

    Raises
    ------
    EstimatorInputError
        non-numeric dtype, 0-d or more than 2-d input, no rows or no columns,
        NaN or inf values.
    """
    arr = _as_array(a, name)
    _check_numeric(arr, name)
    if arr.ndim == 0:
        raise EstimatorInputError(f"{name} must be an array of shape (n,) or (n, d); got a scalar")
    if arr.ndim > 2:
        raise EstimatorInputError(
            f"{name} must be an array of shape (n,) or (n, d); got {arr.ndim} dimensions "
            f"{tuple(arr.shape)} (flatten each sample to one row first)"
        )
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    n, d = arr.shape
    if n == 0:
        raise EstimatorInputError(f"{name} must have at least one sample (row); got shape {(n, d)}")
    if d == 0:
        raise EstimatorInputError(f"{name} must have at least one feature (column); got shape {(n, d)}")
    dtype = np.float32 if (keep_float32 and arr.dtype == np.float32) else np.float64
    arr = np.ascontiguousarray(arr, dtype=dtype)
    check_finite(arr, name)
    return arr


def as_labels(y, name: str = "y") -> np.ndarray:
    """Return discrete labels as class codes 0..K-1, shape (n,), dtype int64.

    Parameters
    ----------
    y : array-like, shape (n,) or (n, k)
        Class labels. Any numeric dtype: labels read back from a file as floats
        (3.0, 7.0) are still labels. With k > 1 columns each distinct row is
        one symbol.
    name : str
        The argument's name, used in error messages.

    Returns
    -------
    np.ndarray, shape (n,), int64: the index of each sample's label among the
    sorted distinct labels (np.unique's inverse), so codes are 0..K-1.

    Raises
    ------
    EstimatorInputError
        non-numeric dtype, scalar or > 2-d input, no samples, NaN or inf.
    """
    arr = _as_array(y, name)
    _check_numeric(arr, name)
    if arr.ndim == 0:
        raise EstimatorInputError(f"{name} must be labels of shape (n,); got a scalar")
    if arr.ndim > 2:
        raise EstimatorInputError(
            f"{name} must be labels of shape (n,) or (n, k); got {arr.ndim} dimensions {tuple(arr.shape)}"
        )
    if arr.shape[0] == 0:
        raise EstimatorInputError(f"{name} must have at least one sample; got shape {tuple(arr.shape)}")
    if arr.dtype.kind == "f":
        check_finite(arr, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 1:
        _, codes = np.unique(arr, return_inverse=True)
    else:
        if arr.shape[1] == 0:
            raise EstimatorInputError(f"{name} must have at least one column; got shape {tuple(arr.shape)}")
        _, codes = np.unique(arr, axis=0, return_inverse=True)
    return np.asarray(codes, dtype=np.int64).reshape(-1)


def check_same_length(*named_arrays) -> int:
    """Check that paired samples have the same number of rows; return that number.

    Parameters
    ----------
    *named_arrays : (name, array) pairs, e.g. ``("x", x), ("y", y)``.
        Arrays (or anything with ``len``/``shape``); None entries are skipped.

    Raises
    ------
    EstimatorInputError
        "x has 100 rows but y has 99; they must be paired samples".
    """
    first_name, first_n = None, None
    for name, arr in named_arrays:
        if arr is None:
            continue
        n = int(np.shape(arr)[0]) if np.ndim(arr) > 0 else 1
        if first_n is None:
            first_name, first_n = name, n
        elif n != first_n:
            raise EstimatorInputError(
                f"{first_name} has {first_n} rows but {name} has {n}; they must be paired samples"
            )
    return 0 if first_n is None else first_n


def as_int(value, name: str, low: int = 1) -> int:
    """`value` as a Python int if it is an integer (not a bool) >= low.

    Raises
    ------
    EstimatorInputError
        "chunk_size must be an integer >= 1; got 0".
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise EstimatorInputError(f"{name} must be an integer >= {low}; got {value!r}")
    return int(value)


def noise_variances(noise_vars) -> list[float]:
    """One noise variance s2 or a sequence of them as a list of floats (each > 0 and finite).

    Raises
    ------
    EstimatorInputError
        a value that is not a positive finite number, or an empty sequence.
    """
    if np.ndim(noise_vars) == 0:
        noise_vars = [noise_vars]
    out = []
    for v in noise_vars:
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise EstimatorInputError(f"noise variances must be positive numbers; got {v!r}") from None
        if not (math.isfinite(f) and f > 0):
            raise EstimatorInputError(f"noise variances must be positive and finite; got {v!r}")
        out.append(f)
    if not out:
        raise EstimatorInputError("noise_vars must hold at least one noise variance; got none")
    return out


def check_finite(a, name: str = "x") -> None:
    """Raise if a numeric array holds NaN or +-inf.

    Raises
    ------
    EstimatorInputError
        "t has 3 NaN and 1 inf values out of 2000; estimators need finite numbers".
    """
    arr = np.asarray(a)
    if arr.dtype.kind not in "fc" or arr.size == 0:
        return
    # Fast path: NaN and inf propagate into a sum, so a finite sum proves all values
    # finite (one pass, no temporary). A sum that overflows falls through to the full check.
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(arr.sum()):
            return
    if np.isfinite(arr).all():
        return
    n_nan = int(np.isnan(arr).sum())
    n_inf = int(np.isinf(arr).sum())
    raise EstimatorInputError(
        f"{name} has {n_nan} NaN and {n_inf} inf values out of {arr.size}; "
        "estimators need finite numbers"
    )
