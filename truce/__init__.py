"""Truce: one serving and deployment gateway for PyTorch and TensorFlow models."""

__version__ = "0.1.0"
