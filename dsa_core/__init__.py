"""DSA Video: streaming autoregressive video diffusion with dynamic step allocation."""

__version__ = "0.1.0"
