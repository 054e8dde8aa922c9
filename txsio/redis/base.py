"""What the two Redis formats share: the link between a namespace's adapter and its factory.

Who calls what: the factory (:mod:`txsio.redis.factory`) makes the adapter of each namespace
(:class:`~txsio.redis.RedisAdapter`, the classic format, or
:class:`~txsio.redis.ShardedRedisAdapter`), subscribes what :meth:`_subscriptions` lists and
calls the handlers listed there with each message of those channels; the adapter calls the
factory to publish, to count nodes (``PUBSUB NUMSUB``) and, sharded, to subscribe the channels
of its rooms.  Everything else — requests, answers, own echoes, timeouts — is the cluster
core's (:class:`~txsio.cluster.ClusterAdapter`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from ..cluster import ClusterAdapter
from .errors import RedisError
from .wire import decode_message

if TYPE_CHECKING:
    from twisted.python.failure import Failure

    from ..adapter import AdapterHost
    from .factory import RedisAdapterFactory

__all__ = ["Handler", "RedisClusterAdapter"]

log = Logger(namespace=__package__)  # "txsio.redis": one log source for the package

#: What handles the messages of a channel: ``handler(channel, message)``.
Handler = Callable[[bytes, bytes], None]


class RedisClusterAdapter(ClusterAdapter):
    """The Redis adapter of one namespace, in either format (made by the factory).

    :param nsp: the namespace.
    :param factory: the factory that owns the Redis connections.
    :param uid: this adapter's id on the wire.
    :ivar channel: ``P#NSP#``, the namespace's broadcast channel.
    """

    def __init__(self, nsp: AdapterHost, factory: RedisAdapterFactory, uid: str) -> None:
        super().__init__(nsp, uid=uid, requests_timeout=factory.requests_timeout,
                         counters=factory.counters)
        self.factory = factory
        self.channel = f"{factory.key}#{nsp.name}#"
        self._channel_bytes = self.channel.encode("utf-8")

    def init(self) -> Deferred[None]:
        """Subscribe this namespace's channels; fires once Redis confirmed them (or, without
        failing, when the factory is closed first)."""
        return self.factory._attach(self).addErrback(lambda _: None)

    def _subscriptions(self) -> tuple[dict[bytes, Handler], dict[bytes, Handler]]:
        """The channels and the patterns this adapter listens to, with their handlers."""
        raise NotImplementedError

    def close(self) -> Deferred[None]:
        """Unsubscribe, fail the requests still waiting, and let the factory close its
        connections when no namespace uses them any more."""
        if self._closed:
            return succeed(None)
        super().close()
        return self.factory._detach(self)

    def _publish(self, channel: str, message: bytes) -> Deferred[Any]:
        return self.factory._publish(channel, message)

    def _publish_failed(self, failure: Failure, what: str) -> None:
        self.factory._publish_failed(failure, what, self.nsp.name)

    def _closed_error(self) -> Exception:
        return RedisError(f"the Redis adapter of namespace {self.nsp.name} was closed")

    def _decode(self, data: bytes, what: str) -> dict[str, Any] | None:
        # A JSON or msgpack message that must be a map; anything else is dropped, and
        # everything once the adapter is closed.
        if self._closed:
            return None
        try:
            message = decode_message(data)
        except ValueError as e:
            log.debug("ignoring a malformed {what}: {why}", what=what, why=e)
            return None
        return message if isinstance(message, dict) else None
