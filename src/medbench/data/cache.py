"""The project's cache folder, as the data sources reach it (:mod:`medbench.cache`)."""

from medbench.cache import cache_dir, cache_root

__all__ = ["cache_dir", "cache_root"]
