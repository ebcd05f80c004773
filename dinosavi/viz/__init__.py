"""Visualisation: overlays of segmentations on frames and mask grids for TensorBoard."""
