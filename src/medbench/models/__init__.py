"""Model zoo: every family module is imported here, once, so its models register."""

from medbench.models import (  # noqa: F401
    cnn_lstm,
    detection,
    ensemble,
    lenet,
    localization,
    segmentation,
    signals,
    survey,
    timm_families,
    torchvision_classics,
    volumes,
    zfnet,
)
from medbench.models.registry import MODELS, check_input_size, create_model, register_model

__all__ = ["MODELS", "check_input_size", "create_model", "register_model"]
