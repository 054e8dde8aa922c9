"""txsio: Socket.IO and Engine.IO for Twisted."""

from ._version import __version__

__all__ = ["__version__"]
