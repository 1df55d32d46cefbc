"""Leaderboards: survey tables of our runs beside the papers' figures, with their statistics."""
