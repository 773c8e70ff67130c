"""Sub-commands of the ``cropcore`` CLI, one module each (see :mod:`cropcore.cli`)."""

#: In the order the CLI lists them.
__all__ = ["catalog", "search", "predict", "train", "evaluate", "study", "bench"]  # noqa: RUF022
