"""The segmentation family: a class per pixel, scored inside a field of view."""
