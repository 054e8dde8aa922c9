// Reference: Node's socket.io 4.8 echo-with-ack server. Usage: node node_server.mjs <port>
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const { Server } = require(process.env.NODE_PATH ? `${process.env.NODE_PATH}/socket.io` : "socket.io");
const io = new Server(Number(process.argv[2]), { transports: ["websocket", "polling"] });
const news = { text: "hello world, this is a broadcast message", n: 42 };
io.on("connection", (socket) => {
  socket.on("echo", (data, ack) => ack(data));
  socket.on("burst", (n) => { for (let i = 0; i < n; i++) io.emit("news", news); });
});
console.log("ready");
