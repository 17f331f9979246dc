// Without a server: status-detail decoding, wrt forms, array encoding and bounded retries.
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { test } from "node:test";

import { status } from "@grpc/grpc-js";

import { decodeColumn, encodeColumn } from "../src/arrays.js";
import { split } from "../src/chunks.js";
import {
  ChainruleClient,
  ChainruleError,
  LimitExceededError,
  ParseError,
  ResourceExhaustedError,
  UnavailableError,
  decodeStatusDetails,
  errorFromStatus,
  wrtMessages,
} from "../src/index.js";
import { BadRequest, ErrorInfo, RetryInfo } from "../src/generated/google/rpc/error_details.js";
import { retryDelay } from "../src/retry.js";
import { Status } from "../src/generated/google/rpc/status.js";

function packed(typeName: string, bytes: Uint8Array): { typeUrl: string; value: Buffer } {
  return { typeUrl: `type.googleapis.com/google.rpc.${typeName}`, value: Buffer.from(bytes) };
}

test("rich status details decode into the right class", () => {
  const raw = Status.encode({
    code: status.INVALID_ARGUMENT,
    message: "unexpected ')' at 7",
    details: [
      packed("BadRequest", BadRequest.encode({ fieldViolations: [{ field: "expression", description: "bad", reason: "", localizedMessage: undefined }] }).finish()),
      packed("ErrorInfo", ErrorInfo.encode({ reason: "PARSE_ERROR", domain: "chainrule.dev", metadata: { position: "7" } }).finish()),
      { typeUrl: "type.googleapis.com/google.rpc.Unknown", value: Buffer.from([1, 2]) },
    ],
  }).finish();
  const error = errorFromStatus(status.INVALID_ARGUMENT, "unexpected ')' at 7", decodeStatusDetails(raw));
  assert.ok(error instanceof ParseError);
  assert.equal(error.position, 7);
  assert.deepEqual(error.fieldViolations, [{ field: "expression", description: "bad" }]);
});

test("reasons and codes pick classes; RetryInfo becomes retryAfterMs", () => {
  assert.ok(errorFromStatus(status.INVALID_ARGUMENT, "m", { reason: "LIMIT_EXCEEDED" }) instanceof LimitExceededError);
  const raw = Status.encode({
    code: status.RESOURCE_EXHAUSTED,
    message: "busy",
    details: [packed("RetryInfo", RetryInfo.encode({ retryDelay: { seconds: 1, nanos: 500_000_000 } }).finish())],
  }).finish();
  const busy = errorFromStatus(status.RESOURCE_EXHAUSTED, "busy", decodeStatusDetails(raw));
  assert.ok(busy instanceof ResourceExhaustedError);
  assert.equal(busy.retryAfterMs, 1500);
  const internal = errorFromStatus(status.INTERNAL, "bug", decodeStatusDetails(Buffer.from([0xff, 0xff])));
  assert.equal(internal.constructor, ChainruleError);
});

test("wrt forms", () => {
  const expected = [
    { variable: "x", order: 2 },
    { variable: "y", order: 1 },
  ];
  assert.deepEqual(wrtMessages({ x: 2, y: 1 }), expected);
  assert.deepEqual(wrtMessages([["x", 2], "y"]), expected);
  assert.deepEqual(wrtMessages("x"), [{ variable: "x", order: 1 }]);
  assert.throws(() => wrtMessages({ x: 1.5 }), TypeError);
  assert.throws(() => wrtMessages({ x: -1 }), TypeError);
  // Past a uint32 the message would not serialise (INTERNAL "serialization failure", a tester).
  assert.throws(() => wrtMessages({ x: 2 ** 32 }), TypeError);
  assert.deepEqual(wrtMessages({ x: 2 ** 32 - 1 }), [{ variable: "x", order: 2 ** 32 - 1 }]);
});

test("columns: Float64Array <-> f64le, lists <-> values", () => {
  const column = encodeColumn(Float64Array.from([1, -0.5, Infinity]));
  assert.equal(column.f64le.length, 24);
  assert.deepEqual(decodeColumn(column, true), Float64Array.from([1, -0.5, Infinity]));
  assert.deepEqual(decodeColumn(column, false), [1, -0.5, Infinity]);
  assert.deepEqual(encodeColumn([1, 2]).values, [1, 2]);
  assert.deepEqual(encodeColumn(3).values, [3]);
  // A string is no column: Number("abc") sent NaN for every character (a tester).
  assert.throws(() => encodeColumn("abc" as unknown as number[], "x"), /points\.x must be a number/);
  assert.throws(() => encodeColumn([1, "2"] as unknown as number[], "x"), TypeError);
});

test("columns of no values are one call of no points, chunked or not", () => {
  assert.deepEqual(split({ x: [], y: 2 }, 5), [{ x: [], y: 2 }]);
  assert.deepEqual(split({ x: [1, 2, 3] }, 2), [{ x: [1, 2] }, { x: [3] }]);
});

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

test("a server that is down is UNAVAILABLE after bounded retries, quickly", async () => {
  const client = new ChainruleClient(`127.0.0.1:${await freePort()}`, {
    retry: { maxAttempts: 3, initialBackoffMs: 10, maxBackoffMs: 50 },
    timeoutMs: 5000,
  });
  const started = Date.now();
  try {
    await assert.rejects(client.evaluate("x", { point: { x: 1 } }), UnavailableError);
  } finally {
    client.close();
  }
  assert.ok(Date.now() - started < 4000);
});

test("overload with a retry delay is retried after it; without one, or past the deadline, not", () => {
  const policy = { maxAttempts: 3, initialBackoffMs: 10, maxBackoffMs: 50, multiplier: 2 };
  const busy = errorFromStatus(status.RESOURCE_EXHAUSTED, "busy", { retryAfterMs: 1000 });
  const overBudget = errorFromStatus(status.RESOURCE_EXHAUSTED, "over its budget", { reason: "COMPUTE_BUDGET_EXCEEDED" });
  const half = () => 0.5;
  assert.equal(retryDelay(policy, busy, 1, undefined, 0, half), 1005); // the delay plus the jitter
  assert.equal(retryDelay(policy, busy, 2, undefined, 0, half), 1010);
  assert.equal(retryDelay(policy, busy, 3, undefined, 0, half), undefined); // attempts are bounded
  assert.equal(retryDelay(policy, busy, 1, 500, 0, half), undefined); // the deadline comes first
  assert.equal(retryDelay(policy, overBudget, 1, undefined, 0, half), undefined);
  const down = errorFromStatus(status.UNAVAILABLE, "down", {});
  assert.equal(retryDelay(policy, down, 1, undefined, 0, half), 5);
  assert.equal(retryDelay(policy, errorFromStatus(status.INVALID_ARGUMENT, "bad", {}), 1, undefined, 0, half), undefined);
});
