"""Node's spelling of an optional feature's option, read once: ``false`` (off), ``true`` (on,
with its defaults) or its settings.

Called by the servers when they read their options (``connection_state_recovery``,
``http_compression``, ``per_message_deflate``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["feature_settings"]

_S = TypeVar("_S")


def feature_settings(kind: type[_S], value: bool | Mapping[str, Any] | _S | None) -> _S | None:
    """The settings ``value`` stands for: ``None`` for ``None`` / ``False``, ``kind()`` (its
    defaults) for ``True``, ``value`` itself when it is a ``kind``, else ``kind(**value)``.

    :raises TypeError: for a mapping naming a field ``kind`` does not have.
    """
    if value is None or value is False:
        return None
    if value is True:
        return kind()
    if isinstance(value, kind):
        return value
    assert isinstance(value, Mapping)
    return kind(**dict(value))
