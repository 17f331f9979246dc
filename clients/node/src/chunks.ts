/**
 * One batch as several calls (`chunkPoints`): past the server's message limit, with the wire and the
 * compute overlapped. Columns are sliced into consecutive slices of at most `chunkPoints` points,
 * at most `inFlight` calls run at a time, and the answers are joined in order.
 */
import type { Column, ColumnInput } from "./arrays.js";
import type { Points } from "./client.js";

export interface Chunking {
  /** Send `points` as calls of at most this many points, joined in order (each call gets `timeoutMs`). */
  chunkPoints?: number;
  /** How many of those calls may run at once (default 2). */
  inFlight?: number;
}

function length(column: ColumnInput): number | undefined {
  return typeof column === "number" ? undefined : column.length;
}

/** `points` as consecutive slices of at most `chunkPoints` points (columns of one value broadcast). */
export function split(points: Points, chunkPoints: number): Array<Record<string, ColumnInput>> {
  if (!Number.isInteger(chunkPoints) || chunkPoints < 1) {
    throw new RangeError(`chunkPoints must be a whole number of at least 1, got ${chunkPoints}`);
  }
  const sizes = new Set(
    Object.values(points)
      .map(length)
      .filter((n): n is number => n !== undefined && n !== 1),
  );
  // One call: the server's error names the column, as it does unchunked (a RangeError here was
  // another error than the same call's unchunked).
  if (sizes.size > 1) return [{ ...points }];
  // Columns of no values are one call of no points (no call at all would have no answer to join).
  const total = Math.max(sizes.size === 1 ? [...sizes][0] : 1, 1);
  const slices: Array<Record<string, ColumnInput>> = [];
  for (let start = 0; start < total; start += chunkPoints) {
    const slice: Record<string, ColumnInput> = {};
    for (const [name, column] of Object.entries(points)) {
      slice[name] = typeof column === "number" || column.length === 1 ? column : column.slice(start, start + chunkPoints);
    }
    slices.push(slice);
  }
  return slices;
}

/** One column from consecutive parts, as the parts are (Float64Array or number[]). */
export function concatenate(parts: Column[], asFloat64Array: boolean): Column {
  if (!asFloat64Array) return parts.flatMap((part) => [...part]);
  const out = new Float64Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Run `tasks` with at most `inFlight` pending at a time; results in task order. The first failure
 * is raised as it is, and no task starts after it. */
export async function inOrder<T>(tasks: Array<() => Promise<T>>, inFlight: number): Promise<T[]> {
  if (!Number.isInteger(inFlight) || inFlight < 1) {
    throw new RangeError(`inFlight must be a whole number of at least 1, got ${inFlight}`);
  }
  const results: T[] = new Array(tasks.length);
  let next = 0;
  let failed = false;
  async function worker(): Promise<void> {
    while (!failed && next < tasks.length) {
      const index = next++;
      try {
        results[index] = await tasks[index]();
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(inFlight, tasks.length) }, worker));
  return results;
}
