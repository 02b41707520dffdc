// Writing runs-table queries: field names and string literals as the query language reads
// them.

const BARE = /^[\p{L}\p{N}_/-]+$/u;
const SUFFIXES = new Set(["last", "min", "max", "count", "last_step"]);

/** `config.lr`, or `metrics.\`val.acc\`` for a name the language would not read bare. */
export function field(kind, name) {
  const bare = BARE.test(name) && !SUFFIXES.has(name);
  return `${kind}.${bare ? name : `\`${name.replaceAll("`", "``")}\``}`;
}

/** A string literal: single quotes, a quote inside written twice. */
export function quote(value) {
  return `'${String(value).replaceAll("'", "''")}'`;
}
