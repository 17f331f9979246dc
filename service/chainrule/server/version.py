"""The server's version: the installed distribution's, declared once (pyproject.toml)."""

from importlib import metadata

VERSION = metadata.version("chainrule")
