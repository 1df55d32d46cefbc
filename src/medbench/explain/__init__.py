"""Saliency maps of trained models (``grad-cam`` for 2D images, MONAI for signals and volumes),
their randomisation sanity check and a faithfulness score; ``medbench explain <run id>`` logs
them to the run."""
