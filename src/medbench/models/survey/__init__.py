"""CNN designs from the survey of Sarvamangala & Kulkarni (2022), one module per design."""

from medbench.models.survey import (  # noqa: F401
    bayesian,
    cuda_convnet,
    cvr_net,
    dilated,
    fused_2d_3d,
    multicrop,
    neighbouring_ensemble,
    paired_conv,
    patch_segmenters,
    pyramid,
    six_layer,
    small_kernel,
    two_stream,
    vessel_fcn,
    volume_segmenters,
)
