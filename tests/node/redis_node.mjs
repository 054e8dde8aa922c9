// A Node peer for the Redis cluster tests, driven over stdin: one JSON command per line,
// `{"id": n, "cmd": "...", ...}`, answered by `{"event": "reply", "id": n, "result": ...}`
// (or `"error": message` and `"responses"` for a timed-out collective ack). Unsolicited
// events are printed too, one JSON object per line:
//   {"event": "received", "who", "name", "args"}   a client got an event
//   {"event": "disconnect", "who", "reason"}        a client was disconnected
//   {"event": "server-event", "node", "name", "args"} a server-side event reached this node
//
// Commands:
//   start-server {redis, key?, node, sharded?, subscriptionMode?}   a socket.io 4.8 server with
//       @socket.io/redis-adapter 8.3 (classic pub/sub, or createShardedAdapter with `sharded`;
//       node-redis 4 clients) on 127.0.0.1, port 0; result {url}. Its
//       connection handler joins auth.rooms and sets socket.data = {node, name: auth.name};
//       io.on("ping") answers {node, echo}, io.on("notify") is reported.
//   connect {who, url, nsp?, auth?, transports?, withCredentials?}   a socket.io-client 4.8
//       (WebSocket only unless transports says otherwise; withCredentials keeps cookies, for
//       sticky load balancers); result {id}.
//       Every event is reported; an event with an ack callback is answered with
//       {from: who, payload: first argument}.
//   leave-client {who}                 the client disconnects.
//   emit {nsp?, rooms?, except?, event, args, local?}   io.of(nsp).to(..).except(..).emit(..)
//   emit-with-ack {nsp?, rooms?, event, args, ackTimeout}  result: the responses (ms)
//   fetch {nsp?, rooms?}               result: [{id, rooms, data, handshake}] sorted by id
//   sockets-join / sockets-leave {nsp?, rooms?, room}, disconnect-sockets {nsp?, rooms?, close}
//   server-side-emit {event, args}, server-side-emit-with-ack {event, args}
//   all-rooms {nsp?}, server-count {nsp?}
//   emitter {op, nsp?, rooms?, except?, event?, args?, room?, close?}   the same through
//       @socket.io/redis-emitter 5.1 (op: emit, sockets-join, sockets-leave,
//       disconnect-sockets, server-side-emit)
// Binary values use the {"$bytes": [...]} notation of sio_json.mjs. Closing stdin ends it.
import { once } from "node:events";
import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { Server } from "socket.io";
import { io as connect } from "socket.io-client";
import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";
import { errorText, fromJson, toJson } from "./sio_json.mjs";

function print(obj) {
  process.stdout.write(JSON.stringify(toJson(obj)) + "\n");
}

const clients = new Map();
const redisClients = [];
let io = null;
let node = null;
let emitter = null;
let httpServer = null;

function redisClient(url) {
  // Reconnect quickly, as the tests restart Redis.
  const client = createClient({ url, socket: { reconnectStrategy: (n) => Math.min(50 * (n + 1), 500) } });
  client.on("error", () => {});
  redisClients.push(client);
  return client;
}

function operator(msg) {
  let op = io.of(msg.nsp ?? "/");
  if (msg.rooms?.length) op = op.to(msg.rooms);
  if (msg.except?.length) op = op.except(msg.except);
  if (msg.local) op = op.local;
  return op;
}

const commands = {
  async "start-server"(msg) {
    node = msg.node;
    const pub = redisClient(msg.redis);
    const sub = pub.duplicate();
    sub.on("error", () => {});
    redisClients.push(sub);
    await Promise.all([pub.connect(), sub.connect()]);
    httpServer = createServer();
    const adapter = msg.sharded
      ? createShardedAdapter(pub, sub, { channelPrefix: msg.key ?? "socket.io",
        subscriptionMode: msg.subscriptionMode ?? "dynamic" })
      : createAdapter(pub, sub, { key: msg.key ?? "socket.io" });
    io = new Server(httpServer, { adapter });
    const onConnection = (socket) => {
      const auth = socket.handshake.auth ?? {};
      socket.data = { node, name: auth.name ?? null };
      for (const room of auth.rooms ?? []) socket.join(room);
    };
    io.on("connection", onConnection);
    io.of("/chat").on("connection", onConnection);
    io.on("ping", (arg, cb) => cb({ node, echo: arg }));
    io.on("notify", (...args) => print({ event: "server-event", node, name: "notify", args }));
    httpServer.listen(0, "127.0.0.1");
    await once(httpServer, "listening");
    return { url: `http://127.0.0.1:${httpServer.address().port}` };
  },

  async connect(msg) {
    const nsp = msg.nsp ?? "/";
    const socket = connect(msg.url + (nsp === "/" ? "" : nsp), {
      auth: msg.auth ?? {},
      transports: msg.transports ?? ["websocket"],
      withCredentials: Boolean(msg.withCredentials),
      forceNew: true,
      reconnection: false,
    });
    socket.onAny((name, ...args) => {
      const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
      print({ event: "received", who: msg.who, name, args });
      if (ack) ack({ from: msg.who, payload: args[0] ?? null });
    });
    socket.on("disconnect", (reason) => print({ event: "disconnect", who: msg.who, reason }));
    clients.set(msg.who, socket);
    await new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", reject);
    });
    return { id: socket.id };
  },

  async "leave-client"(msg) {
    clients.get(msg.who)?.disconnect();
    return null;
  },

  async emit(msg) {
    operator(msg).emit(msg.event, ...fromJson(msg.args ?? []));
    return null;
  },

  async "emit-with-ack"(msg) {
    return operator(msg).timeout(msg.ackTimeout).emitWithAck(msg.event, ...fromJson(msg.args ?? []));
  },

  async fetch(msg) {
    const sockets = await operator(msg).fetchSockets();
    return sockets
      .map((s) => ({ id: s.id, rooms: [...s.rooms].sort(), data: s.data, handshake: s.handshake }))
      .sort((a, b) => (a.id < b.id ? -1 : 1));
  },

  async "sockets-join"(msg) {
    operator(msg).socketsJoin(msg.room);
    return null;
  },

  async "sockets-leave"(msg) {
    operator(msg).socketsLeave(msg.room);
    return null;
  },

  async "disconnect-sockets"(msg) {
    operator(msg).disconnectSockets(Boolean(msg.close));
    return null;
  },

  async "server-side-emit"(msg) {
    io.serverSideEmit(msg.event, ...fromJson(msg.args ?? []));
    return null;
  },

  async "server-side-emit-with-ack"(msg) {
    return io.serverSideEmitWithAck(msg.event, ...fromJson(msg.args ?? []));
  },

  async "all-rooms"(msg) {
    return [...(await io.of(msg.nsp ?? "/").adapter.allRooms())].sort();
  },

  async "server-count"(msg) {
    return io.of(msg.nsp ?? "/").adapter.serverCount();
  },

  async emitter(msg) {
    if (!emitter) {
      const client = redisClient(msg.redis);
      await client.connect();
      emitter = new Emitter(client, { key: msg.key ?? "socket.io" });
    }
    let op = emitter.of(msg.nsp ?? "/");
    if (msg.rooms?.length) op = op.to(msg.rooms);
    if (msg.except?.length) op = op.except(msg.except);
    const args = fromJson(msg.args ?? []);
    if (msg.op === "emit") op.emit(msg.event, ...args);
    else if (msg.op === "sockets-join") op.socketsJoin(msg.room);
    else if (msg.op === "sockets-leave") op.socketsLeave(msg.room);
    else if (msg.op === "disconnect-sockets") op.disconnectSockets(Boolean(msg.close));
    else if (msg.op === "server-side-emit") emitter.of(msg.nsp ?? "/").serverSideEmit(msg.event, ...args);
    else throw new Error(`unknown emitter op ${msg.op}`);
    return null;
  },
};

async function shutdown() {
  for (const socket of clients.values()) socket.disconnect();
  if (io) io.close();
  await Promise.allSettled(redisClients.map((c) => c.disconnect()));
  process.exit(0);
}

const lines = createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  if (!line.trim()) return;
  const msg = JSON.parse(line);
  const handler = commands[msg.cmd];
  try {
    if (!handler) throw new Error(`unknown command ${msg.cmd}`);
    const result = await handler(msg);
    print({ event: "reply", id: msg.id, result: result ?? null });
  } catch (err) {
    print({ event: "reply", id: msg.id, error: errorText(err), responses: err?.responses ?? null });
  }
});
lines.on("close", shutdown);
process.on("SIGTERM", shutdown);
