"""CNN designs from the survey of Sarvamangala & Kulkarni (2022), one module per design."""

from medbench.models.survey import (  # noqa: F401
    bayesian,
    cvr_net,
    dilated,
    multicrop,
    six_layer,
    small_kernel,
    two_stream,
    vessel_fcn,
)
