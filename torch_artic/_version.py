"""The one place the version lives (read by setuptools and by the package)."""

__version__ = "0.1.0"
