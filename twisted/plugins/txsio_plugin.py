"""The ``twistd sio`` plugin: a Socket.IO server (the logic is in :mod:`txsio.tap`).

This file names its module lazily, so ``twistd --help`` imports nothing of txsio.  This
directory has no ``__init__.py``: Twisted skips a plugin directory that is a package.
"""

from twisted.application.service import ServiceMaker

serviceMaker = ServiceMaker("txsio", "txsio.tap", "Socket.IO server", "sio")
