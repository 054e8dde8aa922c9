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

from ..cluster import ClusterAdapter, PeerMessageError
from .errors import RedisError
from .wire import decode_message, shape_problem

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
                         counters=factory.counters, limits=factory.limits)
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
        # A JSON or msgpack message that must be a map within the limits (else
        # PeerMessageError: the factory drops it); None once the adapter is closed.
        if self._closed:
            return None
        try:
            message = decode_message(data)
        except ValueError as e:
            raise PeerMessageError("malformed", f"a {what} that is neither JSON nor msgpack "
                                                f"({e})") from None
        if not isinstance(message, dict):
            raise PeerMessageError("malformed", f"a {what} that is not a map")
        self._check_shape(message)
        return message

    def _check_shape(self, message: Any) -> None:
        # Depth and binary values of a decoded message (its size was checked before).
        limits = self.limits
        problem = shape_problem(message, max_depth=limits.max_depth, max_items=limits.max_items)
        if problem is not None:
            raise PeerMessageError(problem, f"nested deeper than {limits.max_depth} or more "
                                            f"than {limits.max_items} binary values")
