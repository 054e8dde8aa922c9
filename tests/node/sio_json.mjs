// JSON notation for binary values, shared by the Socket.IO peers and the reference server.
//
// A Buffer / ArrayBuffer / typed array is written as {"$bytes": [0, 1, ...]}, anywhere in a
// value; toJson and fromJson convert between that notation and Buffers.

function isBinary(value) {
  return Buffer.isBuffer(value) || value instanceof ArrayBuffer || ArrayBuffer.isView(value);
}

export function toJson(value) {
  if (value === undefined) return null;
  if (isBinary(value)) {
    const view = value instanceof ArrayBuffer
      ? new Uint8Array(value)
      : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    return { $bytes: Array.from(view) };
  }
  if (Array.isArray(value)) return value.map(toJson);
  if (value && typeof value === "object") {
    if (value instanceof Set) return [...value].sort().map(toJson);
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = toJson(v);
    return out;
  }
  return value;
}

export function fromJson(value) {
  if (isBinary(value)) return value;
  if (Array.isArray(value)) return value.map(fromJson);
  if (value && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === "$bytes") return Buffer.from(value.$bytes);
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = fromJson(v);
    return out;
  }
  return value;
}

export function errorText(err) {
  if (err === undefined || err === null) return null;
  if (typeof err === "string" || typeof err === "number") return err;
  if (err instanceof Error) return err.message;
  try {
    return JSON.parse(JSON.stringify(err));
  } catch {
    return String(err);
  }
}
