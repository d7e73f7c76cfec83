"""The package version (one place: the package facade and the demo's cache keys read it)."""

__version__ = "0.1.0"
