"""medbench: a research benchmark framework for CNNs in medical image understanding."""

import os

__version__ = "0.1.0"

# albumentations asks PyPI for its latest version when imported (a network call at run time,
# up to 2 s per process where the index is out of reach): off unless the user set it
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
