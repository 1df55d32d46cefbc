"""Datamodule registry: a data config names its source by ``source: <name>``."""

from medbench.registry import Registry

DATAMODULES = Registry("data source")
register_datamodule = DATAMODULES.register
