// Node's own socket.io 4.8 server running the same test app as tests/test_interop_socketio.py.
//
// Used only to validate the Socket.IO interop scenarios (TXSIO_INTEROP_SERVER=node): what
// the tests expect of txsio must first hold against the reference implementation.
//
//   node sio_reference_server.mjs '{"pingInterval":500,"pingTimeout":500,"allowEIO3":false,
//                                   "connectionStateRecovery":{...}}'
//
// Prints one JSON object per line on stdout (binary values as {"$bytes": [...]}):
//   {"event":"listening","port":N}
//   {"event":"middleware","which":"root"|"private","nsp":...,"id":...,"auth":{...}}
//   {"event":"connection","nsp":...,"id":...,"auth":{...},"recovered":bool}
//   {"event":"client-event","nsp":...,"id":...,"name":...,"args":[...]}
//   {"event":"answer","nsp":...,"id":...,"question":...,"result":{...}}
//   {"event":"answers","nsp":...,"id":...,"result":{...}}
//   {"event":"disconnect","nsp":...,"id":...,"reason":...}
// Exits when stdin closes (the parent went away) or on SIGTERM.
//
// The app (the same in Python): namespaces "/", "/chat", /^\/dyn-\d+$/ and "/private".
// io.use refuses a client whose auth has "refuse" ("refused by root", data {why}); "/private"
// has an asynchronous middleware refusing any token but "secret" ("not authorized",
// data {code: 401, reason: "bad token"}) and setting socket.data.user otherwise. Events a
// client may send (ack = the callback's arguments):
//   echo(...args)                         ack(...args)
//   echo-event(...args)                   emit("echo", ...args) back; ack("sent")
//   whoami()                              ack({nsp, id, auth, tag: query.tag, recovered, rooms, data})
//   ask({event, args, timeout})           socket.timeout(s).emitWithAck → ack(result), where
//                                         result = {answer, count} | {error: "timeout"}
//   ask-all({event, timeout})             nsp.timeout(s).emit with ack → ack({answers}) sorted
//   join(room) / leave(room)              ack(sorted rooms)
//   to-room(room, event, ...args)         socket.to(room).emit(event, ...args); ack(true)
//   server-to({to, except}, event, ...)   nsp.to(to).except(except).emit(...); ack(true)
//   broadcast(event, ...args)             socket.broadcast.emit(...); ack(true)
//   server-emit(event, ...args)           nsp.emit(...); ack(true)
//   fetch(room)                           ack(sorted ids of nsp.in(room).fetchSockets())
//   sockets-join(room, other)             nsp.in(room).socketsJoin(other); ack(true)
//   volatile({event, count})              count volatile emits event(i), then emit("volatile-done", count)
//   disconnect-me({close})                socket.disconnect(close)
//   kick-room(room)                       nsp.in(room).disconnectSockets(); ack(true)
//   await-gone(id)                        ack(true) once socket id of this namespace disconnected
import http from "node:http";
import { createRequire } from "node:module";
import { Server } from "socket.io";
import { fromJson, toJson } from "./sio_json.mjs";

const require = createRequire(import.meta.url);
const options = JSON.parse(process.argv[2] || "{}");

function emit(obj) {
  process.stdout.write(JSON.stringify(toJson(obj)) + "\n");
}

const httpServer = http.createServer();
const io = new Server(httpServer, {
  pingInterval: options.pingInterval ?? 500,
  pingTimeout: options.pingTimeout ?? 500,
  connectTimeout: options.connectTimeout ?? 45000,
  allowEIO3: options.allowEIO3 ?? false,
  ...(options.connectionStateRecovery ? { connectionStateRecovery: options.connectionStateRecovery } : {}),
  // options.parser "msgpack": npm socket.io-msgpack-parser (the clients must use it too)
  ...(options.parser === "msgpack" ? { parser: require("socket.io-msgpack-parser") } : {}),
});

const gone = new Map(); // nsp name -> Set of ids
const goneWaiters = new Map(); // "nsp id" -> [resolve]

function markGone(nsp, id) {
  if (!gone.has(nsp)) gone.set(nsp, new Set());
  gone.get(nsp).add(id);
  for (const resolve of goneWaiters.get(`${nsp} ${id}`) ?? []) resolve();
  goneWaiters.delete(`${nsp} ${id}`);
}

function whenGone(nsp, id) {
  if (gone.get(nsp)?.has(id)) return Promise.resolve();
  return new Promise((resolve) => {
    const key = `${nsp} ${id}`;
    goneWaiters.set(key, [...(goneWaiters.get(key) ?? []), resolve]);
  });
}

// Splits a handler's arguments into (args, ack); ack is a no-op when the client asked none.
function split(args) {
  if (args.length && typeof args[args.length - 1] === "function") {
    return [args.slice(0, -1), args[args.length - 1]];
  }
  return [args, () => {}];
}

function answerOf(answers) {
  if (answers.length === 0) return null;
  return answers.length === 1 ? answers[0] : answers;
}

function setup(socket) {
  const nsp = socket.nsp;
  const name = nsp.name;
  const id = socket.id;
  emit({ event: "connection", nsp: name, id, auth: socket.handshake.auth, recovered: socket.recovered });
  const on = (event, handler) => socket.on(event, (...raw) => {
    const [args, ack] = split(raw);
    handler(args, ack);
  });
  socket.onAny((event, ...raw) => {
    const [args] = split(raw);
    emit({ event: "client-event", nsp: name, id, name: event, args });
  });
  on("echo", (args, ack) => ack(...args));
  on("echo-event", (args, ack) => {
    socket.emit("echo", ...args);
    ack("sent");
  });
  on("whoami", (args, ack) => ack({
    nsp: name,
    id: socket.id,
    auth: socket.handshake.auth,
    tag: socket.handshake.query.tag ?? null,
    recovered: socket.recovered,
    rooms: [...socket.rooms].sort(),
    data: socket.data,
  }));
  on("ask", ([request], ack) => {
    const args = fromJson(request.args ?? []);
    socket.timeout(Math.round(request.timeout * 1000)).emit(request.event, ...args, (err, ...answers) => {
      const result = err ? { error: "timeout" } : { answer: answerOf(answers), count: answers.length };
      emit({ event: "answer", nsp: name, id, question: request.event, result });
      ack(result);
    });
  });
  on("ask-all", ([request], ack) => {
    nsp.timeout(Math.round(request.timeout * 1000)).emit(request.event, (err, answers) => {
      const result = err ? { error: "timeout", answers: [...answers].sort() } : { answers: [...answers].sort() };
      emit({ event: "answers", nsp: name, id, result });
      ack(result);
    });
  });
  on("join", ([room], ack) => {
    socket.join(room);
    ack([...socket.rooms].sort());
  });
  on("leave", ([room], ack) => {
    socket.leave(room);
    ack([...socket.rooms].sort());
  });
  on("to-room", ([room, event, ...args], ack) => {
    socket.to(room).emit(event, ...args);
    ack(true);
  });
  on("server-to", ([target, event, ...args], ack) => {
    nsp.to(target.to ?? []).except(target.except ?? []).emit(event, ...args);
    ack(true);
  });
  on("broadcast", ([event, ...args], ack) => {
    socket.broadcast.emit(event, ...args);
    ack(true);
  });
  on("server-emit", ([event, ...args], ack) => {
    nsp.emit(event, ...args);
    ack(true);
  });
  on("fetch", async ([room], ack) => {
    const sockets = await nsp.in(room).fetchSockets();
    ack(sockets.map((s) => s.id).sort());
  });
  on("sockets-join", ([room, other], ack) => {
    nsp.in(room).socketsJoin(other);
    ack(true);
  });
  on("volatile", ([request]) => {
    for (let i = 0; i < request.count; i++) socket.volatile.emit(request.event, i);
    socket.emit("volatile-done", request.count);
  });
  on("disconnect-me", ([request]) => {
    socket.disconnect(Boolean(request?.close));
  });
  on("kick-room", ([room], ack) => {
    nsp.in(room).disconnectSockets();
    ack(true);
  });
  on("await-gone", async ([other], ack) => {
    await whenGone(name, other);
    ack(true);
  });
  socket.on("disconnect", (reason) => {
    emit({ event: "disconnect", nsp: name, id, reason });
    markGone(name, id);
  });
}

io.use((socket, next) => {
  const auth = socket.handshake.auth;
  emit({ event: "middleware", which: "root", nsp: "/", id: socket.id, auth });
  if (auth && auth.refuse) {
    const err = new Error("refused by root");
    err.data = { why: auth.refuse };
    return next(err);
  }
  next();
});
io.on("connection", setup);
io.of("/chat").on("connection", setup);
io.of(/^\/dyn-\d+$/).on("connection", setup);
const priv = io.of("/private");
priv.use((socket, next) => {
  const auth = socket.handshake.auth;
  emit({ event: "middleware", which: "private", nsp: "/private", id: socket.id, auth });
  setTimeout(() => {
    if (auth && auth.token === "secret") {
      socket.data.user = "alice";
      next();
    } else {
      const err = new Error("not authorized");
      err.data = { code: 401, reason: "bad token" };
      next(err);
    }
  }, 10);
});
priv.on("connection", setup);

httpServer.listen(0, "127.0.0.1", () => {
  emit({ event: "listening", port: httpServer.address().port });
});

function shutdown() {
  io.close();
  httpServer.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on("SIGTERM", shutdown);
process.stdin.on("end", shutdown);
process.stdin.resume();
