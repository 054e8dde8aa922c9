// Reference: Node's socket.io 4.8 running the benchmark's app. Usage: node node_server.mjs <port>
// "echo" acks its argument (JSON or binary); "join" puts the socket in the room "room";
// "fanout" emits one "news" to that room; "burst" (n) emits n "news" to every socket.
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const { Server } = require(process.env.NODE_PATH ? `${process.env.NODE_PATH}/socket.io` : "socket.io");
const io = new Server(Number(process.argv[2]), { transports: ["websocket", "polling"] });
const news = { text: "hello world, this is a broadcast message", n: 42 };
io.on("connection", (socket) => {
  socket.on("echo", (data, ack) => ack(data));
  socket.on("join", (ack) => { socket.join("room"); ack(true); });
  socket.on("fanout", () => { io.to("room").emit("news", news); });
  socket.on("burst", (n) => { for (let i = 0; i < n; i++) io.emit("news", news); });
});
console.log("ready");
