"""The localization family: one object per image as (class, centre x, centre y, width,
height), normalised to the image (the survey's equation 3)."""
