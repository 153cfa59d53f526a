"""Synthetic inputs with ground truth for demos and tests."""
