"""medbench: a research benchmark framework for CNNs in medical image understanding."""

__version__ = "0.1.0"
