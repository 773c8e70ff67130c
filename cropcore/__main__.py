"""``python -m cropcore``."""

import sys

from cropcore.cli import main

sys.exit(main())
