"""The log of ``twistd sio``: its level, its format, and its guards against a flooding peer.

:func:`txsio.tap.makeService` builds a :class:`TapLogObserver` under twistd (unless twistd's
own ``--logger`` names an observer: that one then gets every event) and
:class:`txsio._service.SocketIOService` gives it to twistd as the application's
``ILogObserver`` component, which twistd logs to instead of its default observer.  Where the
lines go stays twistd's choice (:func:`twistd_output`): ``--logfile`` (``-`` for stdout),
stdout with ``--nodaemon``, else ``twistd.log``; ``--syslog``.

Every event goes through, in order:

1. the level filter (``--log-level``, default ``info``: debug lines are off);
2. the repeat limiter (:class:`RepeatLimiter`): a line of txsio's own modules (the connection
   lines of ``txsio.tap`` excepted: one per connection, each of bounded size) logged more than
   :data:`BURST` times in :data:`WINDOW` seconds for the same peer (its ``sid``; or for any
   peer, when the line names none) is replaced by one notice, then dropped until the window
   ends; the next line after it says how many were dropped.  A peer that makes the server
   refuse it as fast as it can sends therefore costs a few lines a minute;
3. clipping (:func:`clip_fields`): the text of every field longer than :data:`FIELD_LIMIT`
   characters is cut (a peer's URI, origin, namespace or event name may be kilobytes), and a
   line written to stdout (or the access log) at :data:`IO_LIMIT`;
4. the output: twistd's text lines (``--log-format text``) or one JSON object per line
   (``json``: :func:`json_line`).
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LegacyLogObserverWrapper,
    LogEvent,
    LogLevel,
    formatEvent,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile
from zope.interface import implementer

#: ``--log-level`` values, lowest first.
LEVELS: dict[str, LogLevel] = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}
#: ``--log-format`` values.
FORMATS = ("text", "json")
#: The longest text of one field of a log event; longer is cut.
FIELD_LIMIT = 200
#: The longest line written to stdout (print, the access log) that is logged whole.
IO_LIMIT = 2000
#: How many lines of one kind for one peer are logged in :data:`WINDOW` seconds.
BURST = 10
#: The repeat limiter's window, in seconds.
WINDOW = 60.0
#: How many (line, peer) windows the limiter remembers at most.
MAX_KEYS = 10_000


def clip(text: str, limit: int = FIELD_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more]"


def clip_fields(event: LogEvent) -> LogEvent:
    """``event``, or a copy with its long texts cut (:data:`FIELD_LIMIT`, :data:`IO_LIMIT`).

    Strings, bytes and exceptions (their text) are cut; Twisted's own ``log_*`` keys (the
    format, the failure...) are kept, except ``log_io``, a line written to stdout.
    """
    clipped: dict[str, Any] | None = None
    for key, value in event.items():
        if key == "log_io":
            limit = IO_LIMIT
        elif key.startswith("log_"):
            continue
        else:
            limit = FIELD_LIMIT
        cut: object
        if isinstance(value, str):
            if len(value) <= limit:
                continue
            cut = clip(value, limit)
        elif isinstance(value, (bytes, bytearray)):
            if len(value) <= limit:
                continue
            cut = bytes(value[:limit]) + b"..."
        elif isinstance(value, BaseException):
            text = str(value)
            if len(text) <= limit:
                continue
            cut = clip(text, limit)
        else:
            continue
        if clipped is None:
            clipped = dict(event)
        clipped[key] = cut
    return event if clipped is None else clipped


# -- the repeat limiter -----------------------------------------------------------------------


@dataclass
class _Window:
    start: float
    count: int = 1
    dropped: int = 0


class RepeatLimiter:
    """At most ``burst`` lines of one kind for one key in ``window`` seconds.

    :class:`TapLogObserver` asks :meth:`admit` for every event its limit applies to.

    :param burst: the lines admitted in a window.
    :param window: the window, in seconds (it starts with the first line of its key).
    :param max_keys: the windows remembered at most; past that the ended ones are forgotten
        (their dropped counts unsaid), and if that is not enough, all of them.
    """

    #: :meth:`admit`'s verdicts
    PASS = "pass"
    NOTICE = "notice"
    DROP = "drop"

    def __init__(self, burst: int = BURST, window: float = WINDOW,
                 max_keys: int = MAX_KEYS) -> None:
        self.burst = burst
        self.window = window
        self.max_keys = max_keys
        self._windows: dict[object, _Window] = {}

    def admit(self, key: object, now: float) -> tuple[str, int]:
        """Count a line of ``key`` at ``now``.

        :returns: the verdict (:attr:`PASS`; :attr:`NOTICE` for the first line past the
            burst, which the caller replaces by a notice; :attr:`DROP`), and how many lines
            of ``key`` the window that just ended dropped (to be said before this one).
        """
        current = self._windows.get(key)
        if current is None or now - current.start >= self.window:
            dropped = current.dropped if current is not None else 0
            if current is None and len(self._windows) >= self.max_keys:
                self._forget(now)
            self._windows[key] = _Window(now)
            return self.PASS, dropped
        current.count += 1
        if current.count <= self.burst:
            return self.PASS, 0
        current.dropped += 1
        return (self.NOTICE if current.dropped == 1 else self.DROP), 0

    def _forget(self, now: float) -> None:
        ended = [k for k, w in self._windows.items() if now - w.start >= self.window]
        for key in ended:
            del self._windows[key]
        if len(self._windows) >= self.max_keys:
            self._windows.clear()


def _limited(event: LogEvent) -> tuple[object, ...] | None:
    """The repeat limiter's key for ``event``, or ``None`` when the limit does not apply."""
    namespace = str(event.get("log_namespace") or "")
    if namespace == "txsio.tap" or not (namespace == "txsio" or namespace.startswith("txsio.")):
        return None
    sid = event.get("sid")
    return namespace, event.get("log_format"), None if sid is None else clip(str(sid), 64)


# -- the observer -----------------------------------------------------------------------------


@implementer(ILogObserver)
class TapLogObserver:
    """The observer twistd logs to under ``twistd sio`` (see the module docstring).

    :param output: where the admitted, clipped events go.
    :param level: the lowest level logged.
    :param limiter: the repeat limiter (a new :class:`RepeatLimiter` by default).
    """

    def __init__(self, output: ILogObserver, level: LogLevel = LogLevel.info,
                 limiter: RepeatLimiter | None = None) -> None:
        self.output = output
        self.level = level
        self.limiter = limiter if limiter is not None else RepeatLimiter()

    def __call__(self, event: LogEvent) -> None:
        level = event.get("log_level")
        if level is not None and level < self.level:
            return
        key = _limited(event)
        if key is not None:
            now = event.get("log_time")
            verdict, dropped = self.limiter.admit(
                key, now if isinstance(now, (int, float)) else time.time())
            if dropped:
                self.output(self._about(
                    event, dropped, "{count} line(s) like {line!r} ({peer}) were not logged in "
                    "the {window:.0f} s before: repeated too often"))
            if verdict == RepeatLimiter.DROP:
                return
            if verdict == RepeatLimiter.NOTICE:
                self.output(self._about(
                    event, 0, "not logging lines like {line!r} ({peer}) for up to "
                    "{window:.0f} s: repeated too often"))
                return
        self.output(clip_fields(event))

    def _about(self, event: LogEvent, count: int, text: str) -> LogEvent:
        """A line about lines like ``event`` that are not logged."""
        sid = event.get("sid")
        return {
            "log_format": text,
            "log_level": event.get("log_level", LogLevel.info),
            "log_namespace": event.get("log_namespace"),
            "log_time": event.get("log_time", time.time()),
            "line": clip(str(event.get("log_format", ""))),
            "peer": "any peer" if sid is None else f"sid {clip(str(sid), 64)}",
            "window": self.limiter.window,
            "count": count,
        }


def json_line(event: LogEvent) -> str:
    """One JSON object for ``event``: ``time`` (ISO 8601, UTC), ``level``, ``namespace``,
    ``message`` (the formatted text), ``format`` (its template), ``traceback`` for a failure,
    then the event's own fields (texts for values JSON cannot carry)."""
    when = event.get("log_time")
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(
            when if isinstance(when, (int, float)) else time.time(), timezone.utc
        ).isoformat(timespec="milliseconds"),
        "level": getattr(level, "name", "info"),
        "namespace": event.get("log_namespace"),
        "message": formatEvent(event),
        # the line's template: what lines of one kind share, to count or group them by
        "format": event.get("log_format"),
    }
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["traceback"] = failure.getTraceback()
        except Exception:  # pragma: no cover - a broken failure still gets its line
            record["traceback"] = repr(failure)
    for key, value in event.items():
        if key.startswith("log_") or key in record:
            continue
        if value is None or isinstance(value, (str, bool, int)) or (
                isinstance(value, float) and math.isfinite(value)):
            record[key] = value
        else:
            record[key] = clip(str(value))
    return json.dumps(record)


def twistd_output(config: Any, log_format: str) -> ILogObserver | None:
    """The observer writing to where twistd's own would, in ``log_format``.

    :param config: twistd's options (``--logfile``, ``--nodaemon``, ``--syslog``,
        ``--prefix``).
    :param log_format: ``"text"`` or ``"json"`` (syslog takes text).
    :returns: the observer, or ``None`` where twistd itself refuses the configuration (a
        daemon logging to stdout: twistd says so and exits).
    """
    if config.get("syslog"):
        from twisted.python import syslog

        # twisted.python.syslog and logfile have no annotations.
        legacy: Any = syslog.SyslogObserver(config.get("prefix", ""))  # type: ignore[no-untyped-call]
        return LegacyLogObserverWrapper(legacy.emit)
    logfile = config.get("logfile") or ""
    out: IO[Any]
    if logfile == "-" or (not logfile and config.get("nodaemon")):
        if not config.get("nodaemon"):
            return None
        out = sys.stdout
    else:
        out = LogFile.fromFullPath(logfile or "twistd.log")  # type: ignore[no-untyped-call]
        _rotate_on_sigusr1(out)
    if log_format == "json":
        return FileLogObserver(out, lambda event: json_line(event) + "\n")
    return textFileLogObserver(out)


def _rotate_on_sigusr1(logfile: Any) -> None:
    """Rotate the log file on SIGUSR1, as twistd does with its own (unless a handler is
    set)."""
    sigusr1 = getattr(signal, "SIGUSR1", None)  # not on Windows
    if sigusr1 is None or signal.getsignal(sigusr1) not in (None, signal.SIG_DFL):
        return

    def rotate(signum: int, frame: object) -> None:
        from twisted.internet import reactor

        reactor.callFromThread(logfile.rotate)  # type: ignore[attr-defined]

    signal.signal(sigusr1, rotate)
