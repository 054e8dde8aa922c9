"""The benchmark's txsio server (``txsio_server.py``) with logging begun, as in a deployment
(``twistd`` or ``txsio`` do it): warnings and errors to stderr.

Until a program begins logging, Twisted keeps every log event, debug ones included, in a
buffer of up to 65,536 events, and an idle connection's debug events (a session opened...)
then count as its memory.  ``idle_memory.py --logging`` measures with this server.

Usage: python idle_logging_server.py <port>.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

globalLogBeginner.beginLoggingTo([FilteringLogObserver(
    textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(LogLevel.warn)])])
runpy.run_path(str(Path(__file__).with_name("txsio_server.py")), run_name="__main__")
