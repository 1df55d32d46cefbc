"""Saliency maps of trained models (``grad-cam``), their randomisation sanity check and a
faithfulness score; ``medbench explain <run id>`` logs them to the run."""
