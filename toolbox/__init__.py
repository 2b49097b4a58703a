"""toolbox: run command-line tools from OCI images as if they were installed."""

__version__ = "0.1.0"
