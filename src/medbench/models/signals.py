"""1D CNNs for signals such as ECG beats: inputs (N, C, L).

- ``kiranyaz_cnn1d``: the patient-specific 1D CNN of Kiranyaz, Ince and Gabbouj (IEEE Trans
  Biomed Eng 63(3):664-675, 2016; survey 4.5.1), written from the paper (no library has it).
  From the paper: three 1D convolutional layers then two fully connected (MLP) layers, the
  convolutional layers followed by sub-sampling until the last one gives one value per
  feature map, hidden layers of 32 and 16 convolutional neurons and 10 MLP neurons, kernels of
  15 samples, sub-sampling by 3, tanh activations, 5 outputs (the AAMI classes), trained by
  back-propagation on the common beats plus a patient's first 5 minutes. Chosen here: the third
  convolutional layer also has 16 maps; max-pooling for sub-sampling and an adaptive max-pool
  to one value per map after the third layer (so any window of at least 191 samples fits);
  the input is one beat window of the chosen lead(s), not the paper's beat plus "beat-trio"
  pair down-sampled to 64 or 128 samples; optimiser and schedule come from the runner config
  (the paper's learning-rate adaptation is not reproduced).
- ``resnet1d_18`` / ``resnet1d_34``: MONAI's ResNet with ``spatial_dims=1`` (basic blocks, a
  7-sample stride-2 stem and max-pool, global average pooling).
"""

from __future__ import annotations

from torch import nn

from medbench.models.registry import register_model


@register_model(architecture="kiranyaz_cnn1d", source="paper", min_input_size=191,
                spatial_dims=1)
def kiranyaz_cnn1d(in_chans: int = 1, num_classes: int = 5, widths: tuple[int, ...] = (32, 16, 16),
                   hidden: int = 10, kernel_size: int = 15, pool: int = 3) -> nn.Module:
    """Three tanh convolutions (valid, ``kernel_size``) with max-pool sub-sampling, then
    ``hidden`` tanh units and the output layer."""
    if len(widths) != 3:
        raise ValueError(f"kiranyaz_cnn1d: expected 3 convolution widths, got {widths}")
    layers: list[nn.Module] = []
    channels = in_chans
    for i, width in enumerate(widths):
        layers += [nn.Conv1d(channels, width, kernel_size), nn.Tanh(),
                   nn.MaxPool1d(pool) if i < len(widths) - 1 else nn.AdaptiveMaxPool1d(1)]
        channels = width
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels, hidden), nn.Tanh(),
                         nn.Linear(hidden, num_classes))


def _monai_resnet(depth: int, in_chans: int, num_classes: int) -> nn.Module:
    from monai.networks import nets

    builder = {18: nets.resnet18, 34: nets.resnet34}[depth]
    return builder(spatial_dims=1, n_input_channels=in_chans, num_classes=num_classes,
                   conv1_t_size=7, conv1_t_stride=2)


@register_model(architecture="resnet1d", source="monai", spatial_dims=1)
def resnet1d_18(in_chans: int = 1, num_classes: int = 5) -> nn.Module:
    """MONAI ResNet-18 over 1D signals."""
    return _monai_resnet(18, in_chans, num_classes)


@register_model(architecture="resnet1d", source="monai", spatial_dims=1)
def resnet1d_34(in_chans: int = 1, num_classes: int = 5) -> nn.Module:
    """MONAI ResNet-34 over 1D signals."""
    return _monai_resnet(34, in_chans, num_classes)
