"""``python -m medbench``: the same as the ``medbench`` command."""

import sys

from medbench.cli import main

sys.exit(main())
