"""The one error type the estimators raise for bad input."""


class EstimatorInputError(ValueError):
    """Input an estimator cannot use: wrong shape or length, NaN/inf, too few samples.

    The message is one line that says what was expected and what came, so the CLI
    can print it as is and exit with code 2.
    """
