"""The package version, in a module of its own: read by setup.cfg and by every module that records it, without
importing (and running) ``aptnn/__init__``."""
__version__ = "0.1.0"
