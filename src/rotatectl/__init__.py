"""rotatectl: rotate API keys and other credentials with zero downtime."""

__version__ = "0.1.0"
