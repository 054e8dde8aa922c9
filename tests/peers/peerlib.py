"""What the Python peer scripts share: the ``{"$bytes": [...]}`` notation for binary values,
one JSON event per stdout line, and a deadline that ends a stuck peer.

The peers run as scripts (``python tests/peers/pysio_client.py ...``), so they import this
module from their own directory; ``tests/support.py`` uses the same notation.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])

_print_lock = threading.Lock()


def to_json(value: Any) -> Any:
    """``bytes`` anywhere in *value* as ``{"$bytes": [...]}``."""
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": list(value)}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def from_json(value: Any) -> Any:
    """``{"$bytes": [...]}`` anywhere in *value* as ``bytes``."""
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, dict):
        if list(value) == ["$bytes"]:
            return bytes(value["$bytes"])
        return {k: from_json(v) for k, v in value.items()}
    return value


def emit(event: dict[str, Any]) -> None:
    """Print one event as a JSON line (bytes in the ``$bytes`` notation), thread-safely."""
    with _print_lock:
        sys.stdout.write(json.dumps(to_json(event)) + "\n")
        sys.stdout.flush()


def start_deadline(seconds: float) -> None:
    """After *seconds*, print a ``timeout`` event and exit with status 3, whatever is stuck."""

    def expire() -> None:
        emit({"event": "timeout"})
        os._exit(3)

    watchdog = threading.Timer(seconds, expire)
    watchdog.daemon = True
    watchdog.start()


def on(client: Any, event: str, **kwargs: Any) -> Callable[[_F], _F]:
    """``client.on(event, **kwargs)``, the decorator that registers a handler, typed.

    python-socketio and python-engineio ship no annotations, so their own ``on`` would leave
    the decorated handler untyped; this returns the same decorator with a type.
    """
    decorate: Callable[[_F], _F] = client.on(event, **kwargs)
    return decorate
