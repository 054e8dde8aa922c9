// Reference: Node's socket.io 4.8 echo-with-ack server. Usage: node node_server.mjs <port>
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const { Server } = require(process.env.NODE_PATH ? `${process.env.NODE_PATH}/socket.io` : "socket.io");
const io = new Server(Number(process.argv[2]), { transports: ["websocket", "polling"] });
io.on("connection", (socket) => { socket.on("echo", (data, ack) => ack(data)); });
console.log("ready");
