// Node's own engine.io server running the same echo app as the txsio interop tests.
//
// Used only to validate the interop scenarios (TXSIO_INTEROP_SERVER=node): whatever the
// tests expect of txsio must first hold against the reference implementation.
//
//   node reference_server.mjs '{"pingInterval":300,"pingTimeout":200,"allowEIO3":false}'
//
// Prints one JSON object per line on stdout:
//   {"event":"listening","port":N}
//   {"event":"connection","sid":...,"protocol":4,"transport":"polling"}
//   {"event":"message","sid":...,"data":"text"|[bytes],"binary":bool}
//   {"event":"close","sid":...,"reason":"transport close"}
// Echoes every message; on the text message "close-me" echoes it, then closes the session.
// Exits when stdin closes (the parent went away) or on SIGTERM.
import http from "node:http";
import { Server } from "engine.io";

const options = JSON.parse(process.argv[2] || "{}");

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const httpServer = http.createServer();
const engine = new Server({
  pingInterval: options.pingInterval ?? 300,
  pingTimeout: options.pingTimeout ?? 200,
  maxHttpBufferSize: options.maxHttpBufferSize ?? 1e6,
  transports: options.transports ?? ["polling", "websocket"],
  allowEIO3: options.allowEIO3 ?? false,
});
engine.attach(httpServer, { path: "/engine.io" });

engine.on("connection", (socket) => {
  emit({
    event: "connection",
    sid: socket.id,
    protocol: socket.protocol,
    transport: socket.transport.name,
  });
  socket.on("message", (data) => {
    const binary = typeof data !== "string";
    emit({
      event: "message",
      sid: socket.id,
      data: binary ? Array.from(new Uint8Array(data)) : data,
      binary,
    });
    socket.send(data);
    if (data === "close-me") {
      socket.close();
    }
  });
  socket.on("close", (reason) => {
    emit({ event: "close", sid: socket.id, reason });
  });
});

httpServer.listen(0, "127.0.0.1", () => {
  emit({ event: "listening", port: httpServer.address().port });
});

function shutdown() {
  engine.close();
  httpServer.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on("SIGTERM", shutdown);
process.stdin.on("end", shutdown);
process.stdin.resume();
