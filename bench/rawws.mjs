// A minimal WebSocket client (RFC 6455, client side) over node:net, for the benchmark's load
// generators: far cheaper per message than the `ws` package, so that a scenario is bound by the
// server it measures, not by its load.
//
// What it does, and what it leaves out on purpose:
// - the opening handshake: GET <path> with Upgrade, Connection, Sec-WebSocket-Key (16 random
//   bytes, base64, one key per process) and Sec-WebSocket-Version 13; the answer must be
//   "101" with Upgrade: websocket, Connection: Upgrade and the Sec-WebSocket-Accept of that
//   key (computed once), and no extension or subprotocol (none is offered);
// - server frames parsed incrementally: frames split across reads and several per read,
//   7/16/64-bit lengths, text, binary and continuation frames, ping (answered with a pong of
//   the same payload), pong (ignored) and close (answered with a close, then the TCP end);
//   a masked server frame, a reserved bit, an unknown opcode or a bad control frame is a
//   protocol error.  Text is not checked for valid UTF-8 (a benchmark's peer is trusted);
// - client frames masked as the RFC requires (mask bit set, a 4-byte key) with ONE key chosen
//   at random when the process starts, every byte of it non-zero.  Reusing the key is what
//   lets a constant frame (a ping's answer, CONNECT, a binary attachment) be masked once and
//   written many times; the server still unmasks every byte (Node's ws skips unmasking only
//   for an all-zero key, which is never used here).  RFC 6455 asks for a fresh key per frame
//   so that an intermediary cannot be steered by the payload: irrelevant on loopback to a
//   benchmark server, and the reason this client is for benchmarks only;
// - TCP_NODELAY on, as `ws` sets it; reads go to one shared buffer (net's `onread`), so a
//   message handed to `onmessage` is a view valid only until the handler returns (copy what
//   you keep).
import crypto from "node:crypto";
import net from "node:net";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
//: the Sec-WebSocket-Key of every connection of this process, and the accept it must get back
export const KEY = crypto.randomBytes(16).toString("base64");
export const ACCEPT = crypto.createHash("sha1").update(KEY + GUID).digest("base64");
//: the masking key of every client frame: random, no byte of it zero
export const MASK = Buffer.from(crypto.randomBytes(4).map((b) => b || 1));

//: the largest server message accepted (a benchmark peer sends at most a few MB)
const MAX_MESSAGE = 64 * 1024 * 1024;
const MAX_HEAD = 16 * 1024;
//: net's `onread` buffer, shared by every socket: each read is handled before the next one
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

const OP_CONT = 0x0, OP_TEXT = 0x1, OP_BINARY = 0x2, OP_CLOSE = 0x8, OP_PING = 0x9, OP_PONG = 0xa;

// A masked client frame of `opcode` carrying `payload` (a Buffer or a string, as UTF-8).
export function clientFrame(opcode, payload) {
  const text = typeof payload === "string";
  const length = text ? Buffer.byteLength(payload) : payload.length;
  const header = length < 126 ? 6 : length < 65536 ? 8 : 14;
  const frame = Buffer.allocUnsafe(header + length);
  frame[0] = 0x80 | opcode;
  if (length < 126) {
    frame[1] = 0x80 | length;
  } else if (length < 65536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    frame.writeUInt32BE(length >>> 0, 6);
  }
  MASK.copy(frame, header - 4);
  if (text) frame.write(payload, header);
  else payload.copy(frame, header);
  const m0 = MASK[0], m1 = MASK[1], m2 = MASK[2], m3 = MASK[3];
  let i = header;
  const end = header + length, end4 = end - ((end - header) & 3);
  for (; i < end4; i += 4) {
    frame[i] ^= m0; frame[i + 1] ^= m1; frame[i + 2] ^= m2; frame[i + 3] ^= m3;
  }
  for (let j = 0; i < end; i++, j++) frame[i] ^= MASK[j];
  return frame;
}

export const textFrame = (text) => clientFrame(OP_TEXT, text);
export const binaryFrame = (bytes) => clientFrame(OP_BINARY, bytes);
const CLOSE_NORMAL = clientFrame(OP_CLOSE, Buffer.from([0x03, 0xe8]));  // 1000

function handshakeRequest(host, port, path) {
  return Buffer.from(
    `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\n` +
    `Connection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    "latin1");
}

// The reason a handshake answer `head` (the text before the blank line) is refused, or "".
function refusal(head) {
  const lines = head.split("\r\n");
  if (!/^HTTP\/1\.1 101( |$)/.test(lines[0])) return `handshake answered "${lines[0]}"`;
  let upgrade = "", connection = "", accept = "", extra = "";
  for (let i = 1; i < lines.length; i++) {
    const colon = lines[i].indexOf(":");
    if (colon < 0) return `bad header line "${lines[i]}"`;
    const name = lines[i].slice(0, colon).trim().toLowerCase();
    const value = lines[i].slice(colon + 1).trim();
    if (name === "upgrade") upgrade = value.toLowerCase();
    else if (name === "connection") connection = value.toLowerCase();
    else if (name === "sec-websocket-accept") accept = value;
    else if (name === "sec-websocket-extensions" || name === "sec-websocket-protocol") extra = name;
  }
  if (upgrade !== "websocket") return `Upgrade: "${upgrade}"`;
  if (!connection.split(",").some((token) => token.trim() === "upgrade")) {
    return `Connection: "${connection}"`;
  }
  if (accept !== ACCEPT) return `Sec-WebSocket-Accept "${accept}", expected "${ACCEPT}"`;
  if (extra) return `${extra} answered, none offered`;
  return "";
}

// One client connection to ws://host:port<path>.  Set `onmessage(data, isBinary)` (data: a
// Buffer view valid during the call), `onerror(error)` (then the socket is destroyed) and
// `onclose()` (the TCP connection is closed; `closing` says whether close() or terminate()
// asked for it).
export class RawWebSocket {
  constructor(host, port, path) {
    this.onmessage = null;
    this.onerror = null;
    this.onclose = null;
    this.open = false;
    this.closeSent = false;
    this.closeReceived = false;
    this.closing = false;     // close() or terminate() called: an end this side asked for
    this._head = null;        // handshake bytes so far
    this._pending = null;     // an incomplete frame header (a copy)
    this._body = null;        // the payload being filled across reads
    this._filled = 0;
    this._b0 = 0;             // the first byte of the frame whose payload is being filled
    this._fragments = null;   // a fragmented message's parts so far (copies)
    this._fragmentsOp = 0;
    this._fragmentsSize = 0;
    this._failed = false;
    this.socket = net.connect({
      host, port, noDelay: true,
      onread: { buffer: READ_BUFFER, callback: (n, buf) => { this._read(buf.subarray(0, n)); } },
    });
    // Written once connected (net queues it); anything sent later goes after it.
    this.socket.write(handshakeRequest(host, port, path));
    this.socket.on("error", (e) => this._fail(e));
    this.socket.on("close", () => { this.open = false; if (this.onclose) this.onclose(); });
  }

  // Write `frame` (a prebuilt client frame, see textFrame/binaryFrame) or a string (sent as
  // one text frame); with `then`, write both in one go.
  send(frame, then) {
    const first = typeof frame === "string" ? textFrame(frame) : frame;
    if (then === undefined) { this.socket.write(first); return; }
    this.socket.cork();
    this.socket.write(first);
    this.socket.write(typeof then === "string" ? textFrame(then) : then);
    this.socket.uncork();
  }

  // The closing handshake: a close frame (1000); the TCP connection ends once the server's
  // close frame comes back (or the server ends it).
  close() {
    this.closing = true;
    if (this.closeSent || this.socket.destroyed) return;
    this.closeSent = true;
    this.socket.write(CLOSE_NORMAL);
    if (this.closeReceived) this.socket.end();
  }

  terminate() { this.closing = true; this.socket.destroy(); }

  _fail(error) {
    if (this._failed) return;
    this._failed = true;
    this.socket.destroy();
    if (this.onerror) this.onerror(error);
  }

  _read(chunk) {
    if (!this.open) {
      this._head = this._head ? Buffer.concat([this._head, chunk]) : Buffer.from(chunk);
      const end = this._head.indexOf("\r\n\r\n");
      if (end < 0) {
        if (this._head.length > MAX_HEAD) this._fail(new Error("handshake answer too long"));
        return;
      }
      const why = refusal(this._head.toString("latin1", 0, end));
      if (why) { this._fail(new Error(why)); return; }
      const rest = this._head.subarray(end + 4);
      this._head = null;
      this.open = true;
      if (rest.length) this._frames(rest);
      return;
    }
    this._frames(chunk);
  }

  // Parse `data` (valid only during this call) as the continuation of the server's frames.
  _frames(data) {
    let off = 0;
    if (this._body !== null) {
      const body = this._body;
      const n = Math.min(body.length - this._filled, data.length);
      data.copy(body, this._filled, 0, n);
      this._filled += n;
      if (this._filled < body.length) return;
      this._body = null;
      off = n;
      this._frame(this._b0, body);
    }
    if (this._pending !== null) {
      data = Buffer.concat([this._pending, data.subarray(off)]);
      this._pending = null;
      off = 0;
    }
    const size = data.length;
    while (off < size && !this._failed) {
      const avail = size - off;
      if (avail < 2) break;
      const b0 = data[off], b1 = data[off + 1];
      if (b1 & 0x80) { this._fail(new Error("masked frame from the server")); return; }
      let length = b1 & 0x7f, start = off + 2;
      if (length === 126) {
        if (avail < 4) break;
        length = data.readUInt16BE(off + 2);
        start = off + 4;
      } else if (length === 127) {
        if (avail < 10) break;
        length = data.readUInt32BE(off + 2) * 2 ** 32 + data.readUInt32BE(off + 6);
        start = off + 10;
      }
      if (length > MAX_MESSAGE) { this._fail(new Error(`frame of ${length} bytes`)); return; }
      if (size - start >= length) {
        off = start + length;
        this._frame(b0, data.subarray(start, off));
        continue;
      }
      // The payload continues in later reads: gather it in its own buffer.
      this._body = Buffer.allocUnsafe(length);
      data.copy(this._body, 0, start);
      this._filled = size - start;
      this._b0 = b0;
      return;
    }
    if (off < size && !this._failed) this._pending = Buffer.from(data.subarray(off));
  }

  _frame(b0, payload) {
    const fin = (b0 & 0x80) !== 0, opcode = b0 & 0x0f;
    if (b0 & 0x70) { this._fail(new Error("reserved bits set (no extension agreed)")); return; }
    if (opcode & 0x8) {
      if (!fin || payload.length > 125) { this._fail(new Error("bad control frame")); return; }
      if (opcode === OP_PING) {
        if (!this.closeSent) this.socket.write(clientFrame(OP_PONG, payload));
      } else if (opcode === OP_CLOSE) {
        this.closeReceived = true;
        if (!this.closeSent) {
          this.closeSent = true;
          // Echo the status code (the RFC's usual answer), or an empty close.
          this.socket.write(clientFrame(OP_CLOSE, payload.length >= 2 ? payload.subarray(0, 2)
            : Buffer.alloc(0)));
        }
        this.socket.end();
      } else if (opcode !== OP_PONG) {
        this._fail(new Error(`unknown opcode ${opcode}`));
      }
      return;
    }
    if (this.closeReceived) return;
    if (opcode === OP_CONT) {
      if (this._fragments === null) { this._fail(new Error("continuation without a start")); return; }
      this._fragmentsSize += payload.length;
      if (this._fragmentsSize > MAX_MESSAGE) { this._fail(new Error("message too large")); return; }
      this._fragments.push(Buffer.from(payload));
      if (!fin) return;
      const message = Buffer.concat(this._fragments, this._fragmentsSize);
      const isBinary = this._fragmentsOp === OP_BINARY;
      this._fragments = null;
      if (this.onmessage) this.onmessage(message, isBinary);
      return;
    }
    if (opcode !== OP_TEXT && opcode !== OP_BINARY) {
      this._fail(new Error(`unknown opcode ${opcode}`));
      return;
    }
    if (this._fragments !== null) { this._fail(new Error("new message inside a fragmented one")); return; }
    if (!fin) {
      this._fragments = [Buffer.from(payload)];
      this._fragmentsOp = opcode;
      this._fragmentsSize = payload.length;
      return;
    }
    if (this.onmessage) this.onmessage(payload, opcode === OP_BINARY);
  }
}
