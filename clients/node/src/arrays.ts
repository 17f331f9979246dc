/**
 * Columns of float64 values on the wire: `Float64Array`s go as raw little-endian bytes (`f64le`),
 * plain `number[]` as the repeated `values` field. Replies mirror the request's encoding.
 */
import type { Array as ArrayMessage } from "./generated/chainrule/v1/chainrule.js";

/** One variable's values: a number (broadcast), a list of numbers or a Float64Array. */
export type ColumnInput = number | readonly number[] | Float64Array;
/** One column of results: a Float64Array when the request sent one, a list of numbers otherwise. */
export type Column = number[] | Float64Array;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Encode one column: Float64Array -> f64le bytes; numbers -> values. Anything else (a string,
 * a list holding one) is a TypeError naming the column: `Number("abc")` would send NaN. */
export function encodeColumn(column: ColumnInput, name = "column"): ArrayMessage {
  if (column instanceof Float64Array) {
    return { values: [], f64le: toLittleEndianBytes(column) };
  }
  if (typeof column === "number") {
    return { values: [column], f64le: Buffer.alloc(0) };
  }
  if (!Array.isArray(column) || !column.every((value) => typeof value === "number")) {
    throw new TypeError(`points.${name} must be a number, a list of numbers or a Float64Array`);
  }
  return { values: [...column], f64le: Buffer.alloc(0) };
}

/** A point's values as the request takes them: numbers only (a string, null or boolean was
 * converted on the wire without a word: "abc" became NaN, null 0, "0x10" 16). */
export function encodePoint(point: Record<string, number> | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, value] of Object.entries(point ?? {})) {
    if (typeof value !== "number") throw new TypeError(`point.${name} must be a number, not ${typeof value}`);
    out[name] = value;
  }
  return out;
}

/** `value` if it is a string (an expression, a variable's name). */
export function checkedText(value: unknown, field: string): string {
  if (typeof value !== "string") throw new TypeError(`${field} must be a string, not ${typeof value}`);
  return value;
}

/** `values` if they are a list of strings: a string of several characters was split into them. */
export function checkedTexts(values: readonly string[] | undefined, field: string): string[] {
  if (values === undefined) return [];
  if (!Array.isArray(values)) throw new TypeError(`${field} must be a list of strings, not ${typeof values}`);
  return values.map((value, index) => checkedText(value, `${field}[${index}]`));
}

function toLittleEndianBytes(column: Float64Array): Buffer {
  if (LITTLE_ENDIAN) {
    return Buffer.from(column.buffer, column.byteOffset, column.byteLength);
  }
  const out = Buffer.alloc(column.length * 8);
  column.forEach((v, i) => out.writeDoubleLE(v, i * 8));
  return out;
}

/** Decode one column into a Float64Array (when asked for) or a list of numbers. */
export function decodeColumn(column: ArrayMessage | undefined, asFloat64Array: boolean): Column {
  const raw = column?.f64le ?? Buffer.alloc(0);
  const values = column?.values ?? [];
  if (raw.length === 0) {
    return asFloat64Array ? Float64Array.from(values) : [...values];
  }
  let decoded: Float64Array;
  if (LITTLE_ENDIAN) {
    // copy into a fresh, 8-byte-aligned buffer: the message's bytes may sit at any offset
    decoded = new Float64Array(Uint8Array.from(raw).buffer);
  } else {
    decoded = new Float64Array(raw.length / 8);
    for (let i = 0; i < decoded.length; i++) decoded[i] = raw.readDoubleLE(i * 8);
  }
  return asFloat64Array ? decoded : Array.from(decoded);
}
