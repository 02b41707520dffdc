// The API's JSON, decoded: the server tags what plain JSON cannot carry (NaN and ±inf,
// datetimes, big ints, and columns of numbers as base64 of their little-endian bytes).

const FLOATS = { nan: NaN, "-nan": NaN, inf: Infinity, "-inf": -Infinity };

export function fromWire(value) {
  if (Array.isArray(value)) return value.map(fromWire);
  if (value === null || typeof value !== "object") return value;
  const keys = Object.keys(value);
  if (keys.length === 1 && keys[0][0] === "$" && keys[0][1] !== "$") {
    return untag(keys[0], value[keys[0]]);
  }
  const out = {};
  for (const key of keys) out[key.startsWith("$$") ? key.slice(1) : key] = fromWire(value[key]);
  return out;
}

function untag(key, inner) {
  switch (key) {
    case "$f": return FLOATS[inner];
    case "$t": return new Date(inner);
    case "$i": return Number(inner);
    case "$a": return column(inner[0], inner[1]);
    default: throw new Error(`unknown wire tag ${key}`);
  }
}

const TYPED = {
  b: Int8Array, B: Uint8Array, h: Int16Array, H: Uint16Array, i: Int32Array,
  I: Uint32Array, f: Float32Array, d: Float64Array,
};

/** A column as a Float64Array (64-bit ints become doubles: steps stay exact below 2**53). */
function column(code, base64) {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  if (code === "d") return new Float64Array(bytes.buffer);
  const source = code === "q" ? new BigInt64Array(bytes.buffer)
    : code === "Q" ? new BigUint64Array(bytes.buffer) : new TYPED[code](bytes.buffer);
  const out = new Float64Array(source.length);
  for (let i = 0; i < source.length; i++) out[i] = Number(source[i]);
  return out;
}
