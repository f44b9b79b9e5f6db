"""The package version (kept in one place; read by pyproject and ``bgcache --version``)."""

__version__ = "0.1.0"
