import pytest

from medbench.errors import ConfigError
from medbench.registry import Registry


def test_duplicate_names_raise():
    registry = Registry("thing")
    registry.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(lambda: 2)


def test_unknown_name_suggests_close_ones():
    registry = Registry("model")
    registry.register("resnet18")(lambda: 1)
    with pytest.raises(ConfigError, match="unknown model 'resnt18'; did you mean 'resnet18'"):
        registry.get("resnt18")
