"""Scores: ``metrics`` (pixel, object and probability-map scores), ``evaluate`` (a model's scores on
files), ``baseline`` (Otsu + watershed, the floor a model must beat)."""
