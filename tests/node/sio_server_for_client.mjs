// Node's socket.io 4.8 server running the app that tests/test_client_interop.py drives with
// txsio's client (the same app runs on txsio.Server in the test and on python-socketio in
// tests/peers/pysio_server.py).
//
//   node sio_server_for_client.mjs '{"port":0,"pingInterval":500,"pingTimeout":500,
//                                     "transports":["polling","websocket"],"recovery":false}'
//
// Prints one JSON object per line on stdout (binary values as {"$bytes": [...]}):
//   {"event":"listening","port":N}
//   {"event":"connection","nsp":...,"id":...,"auth":{...},"recovered":bool}
//   {"event":"record","nsp":...,"args":[...]}
//   {"event":"disconnect","nsp":...,"id":...,"reason":...}
// Exits when stdin closes (the parent went away) or on SIGTERM.
//
// The app: namespaces "/", "/chat" and "/private"; "/private" refuses any auth.token but
// "secret" with "not authorized", data {code: 401, reason: "bad token"}. On connection the
// server emits hello(nsp). Events a client may send (ack = the callback's arguments):
//   echo(...args)                  ack(...args)
//   echo-event(...args)            emit("echo", ...args) back; ack("sent")
//   whoami()                       ack({nsp, id, recovered})
//   ask({event, args, timeout})    socket.timeout(s).emit(event, ...args, cb) →
//                                  ack({answer: [...answers]}) or ack({error: "timeout"})
//   record(...args)                print a "record" event; ack("recorded") if asked
//   disconnect-me()                socket.disconnect()
//   drop()                         close the underlying connection, then 20 ms later
//                                  io.emit("missed", "while-away") (connection state recovery)
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
  transports: options.transports ?? ["polling", "websocket"],
  // "parser":"msgpack": npm socket.io-msgpack-parser (the client must use it too)
  ...(options.parser === "msgpack" ? { parser: require("socket.io-msgpack-parser") } : {}),
  ...(options.recovery
    ? { connectionStateRecovery: { maxDisconnectionDuration: 60000, skipMiddlewares: true } }
    : {}),
});

function split(args) {
  if (args.length && typeof args[args.length - 1] === "function") {
    return [args.slice(0, -1), args[args.length - 1]];
  }
  return [args, null];
}

function setup(socket) {
  const name = socket.nsp.name;
  emit({ event: "connection", nsp: name, id: socket.id, auth: socket.handshake.auth,
         recovered: socket.recovered });
  const on = (event, handler) => socket.on(event, (...raw) => {
    const [args, ack] = split(raw);
    handler(args, ack ?? (() => {}), ack !== null);
  });
  on("echo", (args, ack) => ack(...args));
  on("echo-event", (args, ack) => {
    socket.emit("echo", ...args);
    ack("sent");
  });
  on("whoami", (args, ack) => ack({ nsp: name, id: socket.id, recovered: socket.recovered }));
  on("ask", ([request], ack) => {
    const args = fromJson(request.args ?? []);
    socket.timeout(Math.round(request.timeout * 1000)).emit(request.event, ...args,
      (err, ...answers) => ack(err ? { error: "timeout" } : { answer: answers }));
  });
  on("record", (args, ack, asked) => {
    emit({ event: "record", nsp: name, args });
    if (asked) ack("recorded");
  });
  on("disconnect-me", () => socket.disconnect());
  on("drop", () => {
    socket.conn.close();
    setTimeout(() => io.emit("missed", "while-away"), 20);
  });
  socket.on("disconnect", (reason) => emit({ event: "disconnect", nsp: name, id: socket.id, reason }));
  socket.emit("hello", name);
}

io.on("connection", setup);
io.of("/chat").on("connection", setup);
const priv = io.of("/private");
priv.use((socket, next) => {
  if (socket.handshake.auth?.token === "secret") return next();
  const err = new Error("not authorized");
  err.data = { code: 401, reason: "bad token" };
  next(err);
});
priv.on("connection", setup);

httpServer.listen(options.port ?? 0, "127.0.0.1", () => {
  emit({ event: "listening", port: httpServer.address().port });
});

function stop() {
  io.close();
  httpServer.closeAllConnections?.();
  process.exit(0);
}
process.stdin.on("end", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
