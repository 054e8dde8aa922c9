"""Shared helpers for the integration tests: servers on loopback, real peers as subprocesses.

- :func:`serve` listens a twisted.web resource tree on ``127.0.0.1`` port 0 and can later
  close every connection it accepted, so a test ends with a clean reactor.
- :func:`run_process`, :func:`run_node` and :func:`run_python` run a peer (one JSON object per
  line on stdout) and fire with a :class:`ProcessResult`; :func:`spawn` starts a long-lived
  one whose events are handed over as they arrive.
- :func:`start_echo_server` starts the Engine.IO echo app the interop tests talk to: txsio's
  ``EngineServer`` by default, or Node's reference ``engine.io`` server when the environment
  sets ``TXSIO_INTEROP_SERVER=node`` (to check that a scenario's expectations are right).
- :func:`start_socketio_server` does the same for a Socket.IO app: on ``txsio.Server``, or on
  Node's ``socket.io`` server running the same app (``tests/node/sio_reference_server.mjs``);
  what the app sees goes to an :class:`EventLog`.

Every wait is bounded with :meth:`Deferred.addTimeout`; a process that outlives its bound is
killed. Nothing here sleeps.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.address import IPv4Address
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorProcess,
    IReactorTCP,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Factory
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site

from .peers import peerlib

#: The peers' ``{"$bytes": [...]}`` notation for binary values, for the tests to share.
bytes_from_json = peerlib.from_json
bytes_to_json = peerlib.to_json

TESTS_DIR = Path(__file__).resolve().parent
NODE_DIR = TESTS_DIR / "node"
PEERS_DIR = TESTS_DIR / "peers"

#: Which server the interop tests run against: "txsio" (default) or "node" (the reference).
INTEROP_SERVER = os.environ.get("TXSIO_INTEROP_SERVER", "txsio")


def _reactor(reactor: Any = None) -> Any:
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    return reactor


class PeerSetupError(RuntimeError):
    """A peer program cannot run: a tool or the npm dependencies are missing."""


def require_node() -> str:
    """Return the path of ``node``, or raise :class:`PeerSetupError` saying how to fix it.

    The interop tests are not skipped when Node is missing: a missing peer is an error.
    """
    node = shutil.which("node")
    if node is None:
        raise PeerSetupError("node is not on PATH: install Node.js 20+ to run the interop tests")
    if not (NODE_DIR / "node_modules").is_dir():
        raise PeerSetupError(f"{NODE_DIR / 'node_modules'} is missing: run `npm ci` in tests/node")
    return node


# -- processes ------------------------------------------------------------------------------


@dataclass
class ProcessResult:
    """What a finished peer process did."""

    argv: list[str]
    #: the exit code, or None when a signal ended the process
    exit_code: int | None
    signal: int | None
    #: the JSON objects the process printed, one per stdout line, in order
    events: list[dict[str, Any]]
    stderr: str
    #: stdout lines that were not JSON objects
    other_output: list[str] = field(default_factory=list)

    def named(self, name: str) -> list[dict[str, Any]]:
        """The events whose ``"event"`` is *name*."""
        return [e for e in self.events if e.get("event") == name]

    def first(self, name: str) -> dict[str, Any]:
        """The first event named *name*; :class:`AssertionError` (with the output) if none."""
        for event in self.events:
            if event.get("event") == name:
                return event
        raise AssertionError(f"no {name!r} event\n{self.describe()}")

    def names(self) -> list[str]:
        """The sequence of event names."""
        return [e.get("event", "?") for e in self.events]

    def describe(self) -> str:
        """A readable account of the run, for assertion messages."""
        lines = [
            f"process: {' '.join(self.argv)}",
            f"exit code: {self.exit_code}, signal: {self.signal}",
            "events:",
        ]
        for event in self.events:
            text = json.dumps(event, ensure_ascii=False)
            lines.append("  " + (text if len(text) <= 300 else text[:300] + "…"))
        lines.extend("  (not JSON) " + line[:300] for line in self.other_output)
        if self.stderr.strip():
            lines.append("stderr (tail):")
            lines.extend("  " + line for line in self.stderr.strip().splitlines()[-30:])
        return "\n".join(lines)


class ProcessTimeout(AssertionError):
    """A peer process did not end within its bound; it has been killed."""

    def __init__(self, timeout: float, result: ProcessResult) -> None:
        super().__init__(f"process still running after {timeout} s, killed\n{result.describe()}")
        self.result = result


class _CollectingProtocol(protocol.ProcessProtocol):
    """Collects a peer's stdout as JSON lines, and its stderr.

    Twisted calls ``outReceived``, ``errReceived`` and ``processEnded``; :class:`PeerProcess`
    reads ``ended`` (fired with the :class:`ProcessResult`, unless a timeout consumed it) and
    ``reaped`` (fired, with None, once the process is gone, whatever happened).
    """

    def __init__(self, argv: list[str], on_event: Callable[[dict[str, Any]], None] | None) -> None:
        self.argv = argv
        self.on_event = on_event
        self.events: list[dict[str, Any]] = []
        self.other_output: list[str] = []
        self._buffer = b""
        self._stderr: list[bytes] = []
        self.exit_code: int | None = None
        self.signal: int | None = None
        self.ended: defer.Deferred[ProcessResult] = defer.Deferred()
        self.reaped: defer.Deferred[None] = defer.Deferred()
        self.finished = False

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._line(line)

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            return
        try:
            event = json.loads(text)
        except ValueError:
            self.other_output.append(text)
            return
        if not isinstance(event, dict):
            self.other_output.append(text)
            return
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def errReceived(self, data: bytes) -> None:
        self._stderr.append(data)

    def result(self) -> ProcessResult:
        return ProcessResult(
            argv=self.argv,
            exit_code=self.exit_code,
            signal=self.signal,
            events=list(self.events),
            stderr=b"".join(self._stderr).decode("utf-8", "replace"),
            other_output=list(self.other_output),
        )

    def processEnded(self, reason: Failure) -> None:
        if self._buffer:
            self._line(self._buffer)
            self._buffer = b""
        if reason.check(ProcessDone):
            self.exit_code = 0
        else:
            self.exit_code = getattr(reason.value, "exitCode", None)
            self.signal = getattr(reason.value, "signal", None)
        self.finished = True
        if not self.ended.called:
            self.ended.callback(self.result())
        self.reaped.callback(None)


class PeerProcess:
    """A running peer process (see :func:`spawn`)."""

    def __init__(self, proto: _CollectingProtocol, transport: Any, clock: IReactorTime) -> None:
        self._protocol = proto
        self._transport = transport
        self._clock = clock

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events printed so far."""
        return self._protocol.events

    def result(self) -> ProcessResult:
        """What the process did so far."""
        return self._protocol.result()

    def close_stdin(self) -> None:
        """Close the process's stdin (a peer may take that as "the test went away")."""
        if not self._protocol.finished:
            self._transport.closeStdin()

    def kill(self, signal: str = "KILL") -> None:
        """Send *signal* unless the process is gone already."""
        if self._protocol.finished:
            return
        try:
            self._transport.signalProcess(signal)
        except ProcessExitedAlready:
            pass

    def wait(self, timeout: float) -> defer.Deferred[ProcessResult]:
        """Fire with the :class:`ProcessResult` when the process ends by itself.

        Past *timeout* seconds the process is killed and the Deferred fails with
        :class:`ProcessTimeout` (once the process is reaped, itself bounded).
        """
        waiting = self._protocol.ended
        waiting.addTimeout(timeout, self._clock)

        def timed_out(failure: Failure) -> Any:
            failure.trap(defer.TimeoutError)
            self.kill()
            reaped = self._protocol.reaped
            reaped.addTimeout(5, self._clock)

            def report(_: object) -> Failure:
                return Failure(ProcessTimeout(timeout, self._protocol.result()))

            return reaped.addBoth(report)

        return waiting.addErrback(timed_out)

    def stop(self, timeout: float = 5.0) -> defer.Deferred[ProcessResult]:
        """Close the process's stdin, send SIGTERM, and wait (bounded) for it to end."""
        if self._protocol.finished:
            return defer.succeed(self._protocol.result())
        self.close_stdin()
        self.kill("TERM")
        return self.wait(timeout)


def spawn(
    argv: list[str],
    *,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
    reactor: Any = None,
) -> PeerProcess:
    """Start *argv* (``argv[0]`` looked up on PATH); its JSON stdout lines go to *on_event*.

    stdin stays open (a pipe) until :meth:`PeerProcess.stop`, so a peer can watch it to
    notice that the test went away.
    """
    reactor = _reactor(reactor)
    assert IReactorProcess.providedBy(reactor) and IReactorTime.providedBy(reactor)
    executable = shutil.which(argv[0]) or argv[0]
    proto = _CollectingProtocol(argv, on_event)
    transport = reactor.spawnProcess(
        proto,
        executable,
        argv,
        env=os.environ.copy() if env is None else env,
        path=None if cwd is None else str(cwd),
    )
    return PeerProcess(proto, transport, reactor)


def run_process(
    argv: list[str],
    timeout: float = 15.0,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
    reactor: Any = None,
) -> defer.Deferred[ProcessResult]:
    """Run *argv* to its end and fire with its :class:`ProcessResult`.

    Fails with :class:`ProcessTimeout` (the process killed) after *timeout* seconds.
    """
    peer = spawn(argv, env=env, cwd=cwd, reactor=reactor)
    peer.close_stdin()
    return peer.wait(timeout)


def _arg(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def run_node(script: str, *args: Any, timeout: float = 15.0) -> defer.Deferred[ProcessResult]:
    """Run ``node tests/node/<script> args...``; dict and list arguments are passed as JSON.

    Raises :class:`PeerSetupError` when Node or ``tests/node/node_modules`` is missing.
    """
    node = require_node()
    return run_process([node, str(NODE_DIR / script), *map(_arg, args)], timeout, cwd=NODE_DIR)


def run_python(script: str, *args: Any, timeout: float = 15.0) -> defer.Deferred[ProcessResult]:
    """Run ``python tests/peers/<script> args...`` with this interpreter."""
    return run_process([sys.executable, str(PEERS_DIR / script), *map(_arg, args)], timeout)


def _first_error_unwrapped(failure: Failure) -> Failure:
    """The failure inside gatherResults' ``FirstError``; any other *failure* as it is."""
    if failure.check(defer.FirstError):
        error = failure.value
        assert isinstance(error, defer.FirstError)
        return error.subFailure
    return failure


def gather(*deferreds: defer.Deferred[Any]) -> defer.Deferred[list[Any]]:
    """Fire with every result in order, or with the first failure unwrapped."""
    return defer.gatherResults(list(deferreds), consumeErrors=True).addErrback(
        _first_error_unwrapped
    )


# -- serving over loopback ------------------------------------------------------------------


def listen_loopback(reactor: IReactorTCP, port: int, factory: Factory[Any]) -> IListeningPort:
    """``reactor.listenTCP(port, factory)`` on 127.0.0.1."""
    # Twisted annotates listenTCP's factory as a ServerFactory, but any protocol factory
    # serves: the tests listen with a WrappingFactory, which is a ClientFactory.
    return reactor.listenTCP(port, factory, interface="127.0.0.1")  # type: ignore[arg-type]


def abort_connection(connection: protocol.Protocol) -> None:
    """Abort *connection*, a connection accepted over TCP, without waiting to flush."""
    # Protocol.transport is an ITransport, which has no abortConnection: a TCP one does.
    transport = connection.transport
    assert ITCPTransport.providedBy(transport)
    transport.abortConnection()


class _TrackedConnection(ProtocolWrapper):
    """Passes everything through, and tells its factory when the connection is gone."""

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        try:
            super().connectionLost(reason)
        finally:
            lost = self.factory.lost.pop(self, None)
            if lost is not None:
                lost.callback(None)


class _TrackingFactory(WrappingFactory):
    """Remembers every live connection, so :meth:`LoopbackSite.stop` can close them all.

    Autobahn's WebSocket takeover knows :class:`ProtocolWrapper` and swaps the wrapped
    protocol, so WebSocket connections stay tracked.
    """

    protocol = _TrackedConnection

    def __init__(self, wrapped: Factory[Any]) -> None:
        super().__init__(wrapped)
        self.lost: dict[_TrackedConnection, defer.Deferred[None]] = {}

    def registerProtocol(self, p: _TrackedConnection) -> None:
        super().registerProtocol(p)
        self.lost[p] = defer.Deferred()


@dataclass
class LoopbackSite:
    """A twisted.web site listening on 127.0.0.1 (see :func:`serve`)."""

    port: int
    url: str
    site: Site
    _listening: Any
    _factory: _TrackingFactory
    _clock: IReactorTime

    def connection_count(self) -> int:
        """How many accepted connections are still open."""
        return len(self._factory.lost)

    def stop(self, timeout: float = 5.0) -> defer.Deferred[None]:
        """Stop listening, close every accepted connection and wait until they are gone."""
        return defer.Deferred.fromCoroutine(self._stop(timeout))

    async def _stop(self, timeout: float) -> None:
        await self._listening.stopListening()
        waiting = list(self._factory.lost.values())
        for connection in list(self._factory.lost):
            connection.loseConnection()
        if not waiting:
            return
        gone = defer.DeferredList(waiting)
        gone.addTimeout(timeout, self._clock)
        try:
            await gone
        except defer.TimeoutError:
            for connection in list(self._factory.lost):
                abort_connection(connection)
            last = defer.DeferredList(list(self._factory.lost.values()))
            await last.addTimeout(timeout, self._clock)


def serve(root: IResource, *, reactor: Any = None) -> LoopbackSite:
    """Listen ``Site(root)`` on 127.0.0.1, port 0; the URL is ``http://127.0.0.1:<port>``."""
    reactor = _reactor(reactor)
    assert IReactorTCP.providedBy(reactor) and IReactorTime.providedBy(reactor)
    site = Site(root)
    factory = _TrackingFactory(site)
    listening = listen_loopback(reactor, 0, factory)
    address = listening.getHost()
    assert isinstance(address, IPv4Address)
    port = address.port
    return LoopbackSite(port, f"http://127.0.0.1:{port}", site, listening, factory, reactor)


# -- the Engine.IO echo app -----------------------------------------------------------------


@dataclass
class SessionRecord:
    """What the server saw of one Engine.IO session."""

    sid: str
    protocol: int
    #: every message received, as handed over: ``str`` for text, ``bytes`` for binary
    messages: list[str | bytes] = field(default_factory=list)
    close_reason: str | None = None


class _Observations:
    """Observations that tests wait for: :meth:`wait_for` fires once a check passes."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._waiters: list[tuple[Callable[[], Any], defer.Deferred[Any]]] = []

    def _changed(self) -> None:
        for entry in list(self._waiters):
            check, waiting = entry
            value = check()
            if value is not None:
                self._waiters.remove(entry)
                waiting.callback(value)

    def wait_for(
        self, check: Callable[[], Any], what: str, timeout: float = 5.0
    ) -> defer.Deferred[Any]:
        """Fire with ``check()`` once it is not None; fail with AssertionError after *timeout*."""
        value = check()
        if value is not None:
            return defer.succeed(value)
        waiting: defer.Deferred[Any] = defer.Deferred()
        entry = (check, waiting)
        self._waiters.append(entry)

        def timed_out(failure: Failure) -> Failure:
            failure.trap(defer.TimeoutError)
            if entry in self._waiters:
                self._waiters.remove(entry)
            return Failure(
                AssertionError(f"server side: {what} not seen within {timeout} s\n{self!r}")
            )

        return waiting.addTimeout(timeout, self._clock).addErrback(timed_out)


class EchoRecord(_Observations):
    """Server-side observations, with bounded waits for the ones still to come."""

    def __init__(self, clock: IReactorTime) -> None:
        super().__init__(clock)
        #: the sessions by id, in the order they connected
        self.sessions: dict[str, SessionRecord] = {}

    def connected(self, sid: str, protocol: int) -> None:
        self.sessions[sid] = SessionRecord(sid, protocol)
        self._changed()

    def received(self, sid: str, data: str | bytes) -> None:
        self.sessions[sid].messages.append(data)
        self._changed()

    def closed(self, sid: str, reason: str) -> None:
        record = self.sessions[sid]
        if record.close_reason is None:
            record.close_reason = reason
        self._changed()

    def session(self, sid: str, timeout: float = 5.0) -> defer.Deferred[SessionRecord]:
        """Fire with the record of session *sid* once the server has seen it connect."""
        return self.wait_for(lambda: self.sessions.get(sid), f"connection of {sid}", timeout)

    def close_reason(self, sid: str, timeout: float = 5.0) -> defer.Deferred[str]:
        """Fire with the reason the server gave when session *sid* closed."""

        def check() -> str | None:
            record = self.sessions.get(sid)
            return None if record is None else record.close_reason

        return self.wait_for(check, f"close of {sid}", timeout)

    def open_sessions(self) -> list[str]:
        return [s.sid for s in self.sessions.values() if s.close_reason is None]

    def __repr__(self) -> str:
        parts = [
            f"{s.sid}(v{s.protocol}, {len(s.messages)} messages, close={s.close_reason!r})"
            for s in self.sessions.values()
        ]
        return "sessions: [" + ", ".join(parts) + "]"


class EchoServer:
    """An Engine.IO echo app on loopback: echoes every message; on the text message
    ``"close-me"`` echoes it, then closes the session.

    ``url`` is the base URL (``http://127.0.0.1:<port>``); the endpoint is ``/engine.io/``.
    ``record`` holds what the server saw. ``stop()`` closes what is left and waits for it.
    """

    url: str
    port: int
    record: EchoRecord
    kind: str

    def stop(self) -> defer.Deferred[None]:
        """Close what is left (sessions, connections, processes) and wait for it to go."""
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        raise NotImplementedError


class TxsioEchoServer(EchoServer):
    """The echo app on txsio's ``EngineServer``, in this process."""

    kind = "txsio"

    def __init__(self, reactor: Any = None, **options: Any) -> None:
        from txsio.engineio import EngineServer

        reactor = _reactor(reactor)
        self.record = EchoRecord(reactor)
        self.engine = EngineServer(clock=reactor, **options)
        self._sessions: dict[str, Any] = {}
        self.engine.on("connection", self._connected)
        root = Resource()
        root.putChild(b"engine.io", self.engine.resource())
        self.site = serve(root, reactor=reactor)
        self.url, self.port = self.site.url, self.site.port

    def _connected(self, session: Any) -> None:
        sid = session.id
        self._sessions[sid] = session
        self.record.connected(sid, session.protocol)

        def on_message(data: str | bytes) -> None:
            self.record.received(sid, data)
            session.send(data)
            if isinstance(data, str) and data == "close-me":
                session.close()

        session.on("message", on_message)
        session.on("close", lambda reason, *_: self.record.closed(sid, reason))

    async def _stop(self) -> None:
        for sid in self.record.open_sessions():
            self._sessions[sid].close()
        await self.site.stop()


class NodeEchoServer(EchoServer):
    """The same echo app on Node's reference ``engine.io`` server, in a subprocess."""

    kind = "node"

    def __init__(self, reactor: Any = None, **options: Any) -> None:
        reactor = _reactor(reactor)
        self._clock = reactor
        self.record = EchoRecord(reactor)
        self.listening: defer.Deferred[int] = defer.Deferred()
        node_options = {
            "pingInterval": round(options.pop("ping_interval", 25.0) * 1000),
            "pingTimeout": round(options.pop("ping_timeout", 20.0) * 1000),
            "maxHttpBufferSize": options.pop("max_http_buffer_size", 1_000_000),
            "transports": list(options.pop("transports", ["polling", "websocket"])),
            "allowEIO3": options.pop("allow_eio3", False),
        }
        if options:
            raise TypeError(f"options the Node reference server does not take: {options}")
        node = require_node()
        self.process = spawn(
            [node, str(NODE_DIR / "reference_server.mjs"), json.dumps(node_options)],
            on_event=self._event,
            cwd=NODE_DIR,
            reactor=reactor,
        )

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "listening":
            self.port = event["port"]
            self.url = f"http://127.0.0.1:{self.port}"
            self.listening.callback(self.port)
        elif kind == "connection":
            self.record.connected(event["sid"], event["protocol"])
        elif kind == "message":
            data = event["data"]
            self.record.received(event["sid"], bytes(data) if event["binary"] else data)
        elif kind == "close":
            self.record.closed(event["sid"], event["reason"])

    async def started(self) -> NodeEchoServer:
        waiting = self.listening
        waiting.addTimeout(10, self._clock)
        try:
            await waiting
        except defer.TimeoutError:
            await self.process.stop()
            raise AssertionError(
                f"the reference server did not start\n{self.process.result().describe()}"
            ) from None
        return self

    async def _stop(self) -> None:
        await self.process.stop()


async def start_echo_server(reactor: Any = None, **options: Any) -> EchoServer:
    """Start the Engine.IO echo app (see :class:`EchoServer`) with ``EngineServer`` options.

    txsio's server unless ``TXSIO_INTEROP_SERVER=node`` selects Node's reference server.
    The caller must ``await server.stop()`` (e.g. ``self.addCleanup(server.stop)``).
    """
    if INTEROP_SERVER == "node":
        return await NodeEchoServer(reactor, **options).started()
    if INTEROP_SERVER != "txsio":
        raise PeerSetupError(f"TXSIO_INTEROP_SERVER must be txsio or node, not {INTEROP_SERVER!r}")
    return TxsioEchoServer(reactor, **options)


def start_engineio_echo_server(reactor: Any = None, **options: Any) -> tuple[str, int, EchoServer]:
    """Start txsio's echo app on 127.0.0.1, port 0; return ``(url, port, server)``."""
    server = TxsioEchoServer(reactor, **options)
    return server.url, server.port, server


def messages_to_wire(messages: Iterable[dict[str, Any]]) -> list[str | bytes]:
    """``[{"text": ...} | {"bytes": [...]}]`` (the peers' notation) as Python values."""
    return [m["text"] if "text" in m else bytes(m["bytes"]) for m in messages]


def event_data(event: dict[str, Any]) -> str | bytes:
    """The payload of a peer's ``message`` event as a Python value (``bytes`` if binary)."""
    return bytes(event["data"]) if event.get("binary") else event["data"]


# -- Socket.IO servers ----------------------------------------------------------------------


class EventLog(_Observations):
    """Observations as dicts (``{"event": name, ...}``) in order, with bounded waits."""

    def __init__(self, clock: IReactorTime) -> None:
        super().__init__(clock)
        self.events: list[dict[str, Any]] = []

    def add(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self._changed()

    def where(self, event: str, **match: Any) -> list[dict[str, Any]]:
        """The events named *event* whose fields equal *match*."""
        return [
            e
            for e in self.events
            if e.get("event") == event and all(e.get(k) == v for k, v in match.items())
        ]

    def first(self, event: str, timeout: float = 5.0, **match: Any) -> defer.Deferred[Any]:
        """Fire with the first event named *event* matching *match*, once there is one."""
        found = lambda: next(iter(self.where(event, **match)), None)  # noqa: E731
        return self.wait_for(found, f"{event} {match}", timeout)

    def __repr__(self) -> str:
        lines = ["server events:"]
        for event in self.events:
            text = json.dumps(bytes_to_json(event), ensure_ascii=False)
            lines.append("  " + (text if len(text) <= 300 else text[:300] + "…"))
        return "\n".join(lines)


class SocketIOServer:
    """A Socket.IO app on loopback: ``url`` (``http://127.0.0.1:<port>``, the endpoint at
    ``/socket.io/``), ``log`` (the :class:`EventLog` the app writes to), ``io`` (the
    ``txsio.Server``, None for Node's). ``stop()`` closes what is left and waits for it."""

    url: str
    port: int
    log: EventLog
    io: Any = None
    kind: str

    def stop(self) -> defer.Deferred[None]:
        """Close what is left (connections, processes) and wait for it to go."""
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        raise NotImplementedError


class TxsioSocketIOServer(SocketIOServer):
    """An app on ``txsio.Server``, in this process."""

    kind = "txsio"

    def __init__(
        self, app_setup: Callable[[Any, EventLog], Any], reactor: Any = None, **options: Any
    ) -> None:
        import txsio

        reactor = _reactor(reactor)
        self.log = EventLog(reactor)
        self.io = txsio.Server(clock=reactor, **options)
        app_setup(self.io, self.log)
        root = Resource()
        root.putChild(b"socket.io", self.io.resource())
        self.site = serve(root, reactor=reactor)
        self.url, self.port = self.site.url, self.site.port

    async def _stop(self) -> None:
        try:
            self.io.close()
        finally:
            await self.site.stop()


class NodeSocketIOServer(SocketIOServer):
    """The same app on Node's reference ``socket.io`` server, in a subprocess printing the
    events of its :class:`EventLog`."""

    kind = "node"

    def __init__(self, script: str, reactor: Any = None, **options: Any) -> None:
        reactor = _reactor(reactor)
        self._clock = reactor
        self.log = EventLog(reactor)
        self.listening: defer.Deferred[int] = defer.Deferred()
        node_options: dict[str, Any] = {
            "pingInterval": round(options.pop("ping_interval", 25.0) * 1000),
            "pingTimeout": round(options.pop("ping_timeout", 20.0) * 1000),
            "connectTimeout": round(options.pop("connect_timeout", 45.0) * 1000),
            "allowEIO3": options.pop("allow_eio3", False),
        }
        parser = options.pop("parser", "default")
        if parser != "default":
            node_options["parser"] = parser
        recovery = options.pop("connection_state_recovery", None)
        if recovery:
            recovery = {} if recovery is True else dict(recovery)
            node_options["connectionStateRecovery"] = {
                "maxDisconnectionDuration": round(
                    recovery.get("max_disconnection_duration", 120.0) * 1000
                ),
                "skipMiddlewares": recovery.get("skip_middlewares", True),
            }
        if options:
            raise TypeError(f"options the Node reference server does not take: {options}")
        node = require_node()
        self.process = spawn(
            [node, str(NODE_DIR / script), json.dumps(node_options)],
            on_event=self._event,
            cwd=NODE_DIR,
            reactor=reactor,
        )

    def _event(self, event: dict[str, Any]) -> None:
        if event.get("event") == "listening":
            self.port = event["port"]
            self.url = f"http://127.0.0.1:{self.port}"
            self.listening.callback(self.port)
        else:
            self.log.add(bytes_from_json(event))

    async def started(self) -> NodeSocketIOServer:
        waiting = self.listening
        waiting.addTimeout(10, self._clock)
        try:
            await waiting
        except defer.TimeoutError:
            await self.process.stop()
            raise AssertionError(
                f"the reference server did not start\n{self.process.result().describe()}"
            ) from None
        return self

    async def _stop(self) -> None:
        await self.process.stop()


async def start_socketio_server(
    app_setup: Callable[[Any, EventLog], Any],
    *,
    node_app: str = "sio_reference_server.mjs",
    reactor: Any = None,
    **options: Any,
) -> SocketIOServer:
    """Start a Socket.IO app on 127.0.0.1, port 0, with ``txsio.Server`` options.

    txsio: ``app_setup(io, log)`` installs the app on a new ``txsio.Server``, writing what
    it sees to ``log`` (an :class:`EventLog`). With ``TXSIO_INTEROP_SERVER=node``, the same
    app runs on Node's reference server instead: ``tests/node/<node_app>``, which prints
    those events. The caller must ``await server.stop()`` (e.g. ``addCleanup``).
    """
    if INTEROP_SERVER == "node":
        return await NodeSocketIOServer(node_app, reactor, **options).started()
    if INTEROP_SERVER != "txsio":
        raise PeerSetupError(f"TXSIO_INTEROP_SERVER must be txsio or node, not {INTEROP_SERVER!r}")
    return TxsioSocketIOServer(app_setup, reactor, **options)


def self_signed() -> tuple[bytes, bytes]:
    """A throwaway certificate for 127.0.0.1 and its key, PEM."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def self_signed_files(directory: Path) -> tuple[Path, Path]:
    """:func:`self_signed` written to *directory* (created if need be): key path, cert path."""
    cert_pem, key_pem = self_signed()
    directory.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(key_pem)
    cert_path.write_bytes(cert_pem)
    return key_path, cert_path
