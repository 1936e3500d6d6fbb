"""V2A Bridge daemon: the local inference service that owns the GPU."""

__version__ = "0.1.0"
