"""Sub-commands of the ``cropcore`` CLI, one module each (see :mod:`cropcore.cli`)."""
