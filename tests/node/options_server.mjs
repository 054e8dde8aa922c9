// Node's socket.io 4.8 server with the options given as JSON, and no app: the reference for
// the behaviour of single options (CORS headers, serving the client bundle, ...), compared
// side by side with txsio's in tests/test_node_options.py.
//
//   node options_server.mjs '{"cors":{"origin":[{"$regex":"^https://a\\.example$"}]}}'
//
// {"$regex": source} anywhere in the options is a RegExp (JSON has none). Prints
// {"event":"listening","port":N} on stdout, then for each socket of "/" that goes
// {"event":"disconnect","id":...,"reason":...,"description":{"message","type","description"}
// or null}, {"event":"socket-error","id":...,"message":...} for a socket's "error", and
// {"event":"upgrade-cookie","sid":...,"cookie":...} for each WebSocket upgrade, and with
// "record": true (a test's, not an option of Node's) {"event":"message","name":...,"args":[...]}
// for each event a socket of "/" receives;
// exits when stdin closes or on SIGTERM.
import http from "node:http";
import { Server } from "socket.io";

function revive(value) {
  if (Array.isArray(value)) return value.map(revive);
  if (value && typeof value === "object") {
    if (typeof value.$regex === "string") return new RegExp(value.$regex);
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revive(v)]));
  }
  return value;
}

const { dynamic, record, ...options } = revive(JSON.parse(process.argv[2] || "{}"));
const httpServer = http.createServer();
const io = new Server(httpServer, options);
// "dynamic": a regex of dynamic namespaces (not an option of Node's: a test's), accepted.
if (dynamic) io.of(dynamic).on("connection", () => {});
// The Cookie header of each WebSocket upgrade (the client's cookie jar, on the upgrade too).
io.engine.on("headers", (headers, req) => {
  if (req._query && req._query.transport === "websocket" && req._query.sid) {
    process.stdout.write(JSON.stringify({ event: "upgrade-cookie", sid: req._query.sid,
                                          cookie: req.headers.cookie ?? null }) + "\n");
  }
});
io.on("connection", (socket) => {
  if (record) {
    socket.onAny((name, ...args) => {
      process.stdout.write(JSON.stringify({ event: "message", name, args }) + "\n");
    });
  }
  socket.on("error", (error) => {
    process.stdout.write(JSON.stringify({ event: "socket-error", id: socket.id,
                                          message: String(error && error.message) }) + "\n");
  });
  socket.on("disconnect", (reason, description) => {
    const detail = description === undefined ? null : {
      message: description.message, type: description.type ?? null,
      description: description.description ?? null,
    };
    process.stdout.write(JSON.stringify({ event: "disconnect", id: socket.id, reason,
                                          description: detail }) + "\n");
  });
});

httpServer.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ event: "listening", port: httpServer.address().port }) + "\n");
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
process.on("SIGTERM", () => process.exit(0));
