"""Evaluation: slot inference on video (lock-on), and the DAVIS evaluation runner."""
