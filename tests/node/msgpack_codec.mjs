// The codec of npm socket.io-msgpack-parser 3.0.2, for tests/test_interop_msgpack.py.
//
//   node msgpack_codec.mjs '[{"type":2,"nsp":"/","data":[...],"id":null,"encoded":{"$bytes":[...]}}, ...]'
//
// For each packet (binary values as {"$bytes": [...]}, see sio_json.mjs): decodes "encoded"
// (what txsio's parser wrote) with the npm Decoder, which also checks it, and encodes the
// packet {type, data, nsp, id} with the npm Encoder, as socket.io builds it (data undefined
// when null, id only when set). Prints one line per packet:
//   {"event":"packet","decoded":{...},"encoded":{"$bytes":[...]}}
// then what the npm Encoder writes for values only JavaScript has (a Date, a typed array,
// undefined, socket.io-client's "options" key):
//   {"event":"extras","encoded":{"$bytes":[...]}}
// and {"event":"done"}. Exit code 1 (with {"event":"error","message":...}) if a packet fails.
import { createRequire } from "node:module";
import { fromJson, toJson } from "./sio_json.mjs";

const require = createRequire(import.meta.url);
const { Encoder, Decoder } = require("socket.io-msgpack-parser");

function emit(obj) {
  process.stdout.write(JSON.stringify(toJson(obj)) + "\n");
}

try {
  const encoder = new Encoder();
  for (const item of JSON.parse(process.argv[2] || "[]").map(fromJson)) {
    let decoded = null;
    const decoder = new Decoder();
    decoder.on("decoded", (packet) => { decoded = packet; });
    decoder.add(item.encoded);
    if (decoded === null) throw new Error("nothing decoded");
    const packet = { type: item.type, data: item.data ?? undefined, nsp: item.nsp };
    if (item.id !== null) packet.id = item.id;
    const [encoded] = encoder.encode(packet);
    emit({ event: "packet", decoded, encoded });
  }
  const [extras] = encoder.encode({
    type: 2,
    data: ["extras", new Date(Date.UTC(2024, 0, 31, 12, 0, 0, 5)), new Uint8Array([1, 2, 3]),
           undefined, { u: undefined, n: null }],
    options: { compress: true },
    nsp: "/",
  });
  emit({ event: "extras", encoded: extras });
  emit({ event: "done" });
} catch (err) {
  emit({ event: "error", message: String(err && err.stack || err) });
  process.exitCode = 1;
}
