"""The few-shot classifiers' one error type."""


class ClassifierError(ValueError):
    """A classifier file that cannot be used (message names the file and the fix)."""
