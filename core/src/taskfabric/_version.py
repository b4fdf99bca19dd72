"""The core's version: one place, below every layer, so any module can read it without
importing the package face (which imports the SDK). core/pyproject.toml reads it too."""

__version__ = "0.1.0"
