// ChainruleClient against a live chainrule server: every call, argument forms, arrays and errors.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  ChainruleClient,
  DeadlineExceededError,
  InvalidArgumentError,
  LimitExceededError,
  MissingVariableError,
  ParseError,
  ResourceExhaustedError,
  UnknownFunctionError,
} from "../src/index.js";
import { type RunningServer, startServer } from "./server.js";

let server: RunningServer;
let client: ChainruleClient;

before(async () => {
  server = await startServer();
  client = new ChainruleClient(server.target);
});

after(async () => {
  client?.close();
  await server?.stop();
});

function close(actual: number | undefined, expected: number, tolerance = 1e-12): void {
  assert.ok(actual !== undefined && Math.abs(actual - expected) <= tolerance * (1 + Math.abs(expected)), `${actual} != ${expected}`);
}

describe("differentiate", () => {
  // [expression, derivative as a function of x, why]
  const seed: Array<[string, (x: number) => number, string]> = [
    ["(3x + 1)²", (x) => 6 * (3 * x + 1), "outer power, inner linear"],
    ["sin(x²)", (x) => 2 * x * Math.cos(x * x), "outer derivative at the inner function"],
    ["(sin x)³", (x) => 3 * Math.sin(x) ** 2 * Math.cos(x), "power of a function"],
    ["sin(cos x)", (x) => -Math.sin(x) * Math.cos(Math.cos(x)), "function of a function"],
    ["e^(2x)", (x) => 2 * Math.exp(2 * x), "exponential of a linear function"],
  ];
  for (const [expression, expected, why] of seed) {
    test(`${expression}: ${why}`, async () => {
      const result = await client.differentiate(expression);
      assert.deepEqual(result.variables, ["x"]);
      assert.equal(result.latex, undefined);
      for (const x of [-0.7, 0.3, 1.1]) {
        close((await client.evaluate(result.derivative, { point: { x } })).value, expected(x));
      }
    });
  }

  test("every wrt form gives the same mixed partial", async () => {
    const forms = [{ x: 2, y: 1 }, [["x", 2], ["y", 1]] as const, [["x", 2], "y"] as const];
    for (const wrt of forms) {
      const result = await client.differentiate("x^3 y^2", { wrt });
      close((await client.evaluate(result.derivative, { point: { x: 1.5, y: -2 } })).value, -36); // 12xy
    }
  });

  test("latex on request", async () => {
    const result = await client.differentiate("sin(x^2)", { wrt: "x", latex: true, simplification: "full" });
    assert.match(result.latex ?? "", /\\cos/);
  });

  test("explain, verify and code on request", async () => {
    const result = await client.differentiate("sin(x^2)", {
      explain: true,
      verify: true,
      formats: ["mathml", "javascript"],
    });
    const last = result.steps?.at(-1);
    assert.equal(last?.rule, "chain");
    assert.equal(last?.result.text, result.derivative);
    assert.equal(last?.chain?.outerDerivative.text, "cos(x^2)");
    assert.equal(last?.chain?.innerDerivative.text, "2*x");
    assert.equal(result.check?.verdict, "ok");
    assert.ok((result.check?.maxRelativeError ?? 1) < 1e-8);
    assert.match(result.mathml ?? "", /^<mrow>/);
    const code = result.code?.[0];
    assert.equal(code?.format, "javascript");
    // The generated function, run here, agrees with Evaluate.
    const derivative = new Function(`${code?.source}; return ${code?.functionName};`)() as (x: number) => number;
    close(derivative(0.7), (await client.evaluate(result.derivative, { point: { x: 0.7 } })).value ?? NaN);
    const info = await client.serverInfo();
    assert.ok(info.formatSupport.c?.includes("erf") && !info.formatSupport.javascript?.includes("erf"));
  });
});

describe("evaluate", () => {
  test("one point, zero included", async () => {
    assert.deepEqual(await client.evaluate("x*y + 1", { point: { x: 2, y: 3 } }), { value: 7, nonfiniteCount: 0 });
    assert.equal((await client.evaluate("x - 1", { point: { x: 1 } })).value, 0);
  });

  test("lists in, lists out, with broadcasting and non-finite values counted", async () => {
    const result = await client.evaluate("a*x + b", { points: { x: [0, 1, 2], a: 2, b: [1] } });
    assert.deepEqual(result.values, [1, 3, 5]);
    const logs = await client.evaluate("log(x)", { points: { x: [-1, 1, 0] } });
    assert.equal(logs.nonfiniteCount, 2);
    assert.deepEqual(logs.values, [NaN, 0, -Infinity]);
  });

  test("Float64Array in, Float64Array out (raw f64le)", async () => {
    const x = Float64Array.from({ length: 100_000 }, (_, i) => -2 + (4 * i) / 100_000);
    const result = await client.evaluate("sin(x) * x^2", { points: { x } });
    assert.ok(result.values instanceof Float64Array);
    assert.equal(result.values.length, x.length);
    for (let i = 0; i < x.length; i += 997) close(result.values[i], Math.sin(x[i]!) * x[i]! ** 2);
  });

  test("a derivative at many points", async () => {
    const result = await client.evaluate("x^3", { points: { x: [1, 2] }, wrt: { x: 2 } });
    assert.deepEqual(result.values, [6, 12]);
  });
});

describe("gradient", () => {
  test("one point with the Hessian", async () => {
    const result = await client.gradient("x^2*y", { point: { x: 1, y: 2 }, hessian: true });
    assert.deepEqual(result, {
      variables: ["x", "y"],
      nonfiniteCount: 0,
      value: 2,
      gradient: [4, 1],
      hessian: [
        [4, 2],
        [2, 0],
      ],
    });
  });

  test("many points, in the caller's variable order", async () => {
    const x = Float64Array.from([1, 2]);
    const result = await client.gradient("x*y", { points: { x, y: [3, 4] }, variables: ["y", "x"], hessian: true });
    assert.deepEqual(result.variables, ["y", "x"]);
    assert.deepEqual(result.values, Float64Array.from([3, 8]));
    assert.deepEqual(result.gradients, [Float64Array.from([1, 2]), Float64Array.from([3, 4])]);
    assert.deepEqual(result.hessians?.[0]?.[1], Float64Array.from([1, 1]));
  });
});

describe("chunkPoints", () => {
  const xs = Array.from({ length: 101 }, (_, i) => i / 7 - 3); // 101 points: no chunk size below divides it

  test("lists in chunks join to exactly the single call, broadcasts included", async () => {
    const points = { x: xs, a: 2, b: [1.5] };
    const whole = await client.evaluate("a*sin(x) + b", { points });
    for (const [chunkPoints, inFlight] of [[10, 1], [10, 3], [50, 2], [500, 2]]) {
      const chunked = await client.evaluate("a*sin(x) + b", { points, chunkPoints, inFlight });
      assert.deepEqual(chunked.values, whole.values, `chunkPoints ${chunkPoints}, inFlight ${inFlight}`);
      assert.equal(chunked.nonfiniteCount, 0);
    }
  });

  test("Float64Array gradients and Hessians in chunks, counts added up", async () => {
    const x = Float64Array.from(xs);
    const y = Float64Array.from(xs, (v) => v / 2);
    const whole = await client.gradient("log(x) + x^2*y", { points: { x, y }, hessian: true });
    const chunked = await client.gradient("log(x) + x^2*y", { points: { x, y }, hessian: true, chunkPoints: 25 });
    assert.ok(chunked.values instanceof Float64Array);
    assert.deepEqual(chunked.values, whole.values);
    assert.deepEqual(chunked.gradients, whole.gradients);
    assert.deepEqual(chunked.hessians, whole.hessians);
    assert.equal(chunked.nonfiniteCount, whole.nonfiniteCount);
    assert.ok(whole.nonfiniteCount > 0);
  });

  test("a batch whose reply is over the server's limit goes through in chunks", async () => {
    // 8 variables with Hessian: 73 columns; 120,000 points reply 70 MB, over the default 64 MiB.
    const names = ["v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7"];
    const points = Object.fromEntries(names.map((name, k) => [name, Float64Array.from({ length: 120_000 }, (_, i) => (i % 97) / 10 + k)]));
    const expression = "v0*v1 + v2*v3 + v4*v5 + v6*v7";
    await assert.rejects(client.gradient(expression, { points, hessian: true }), (error: Error) => {
      assert.ok(error instanceof LimitExceededError);
      assert.equal(error.metadata["limit"], "response_bytes");
      return true;
    });
    const chunked = await client.gradient(expression, { points, hessian: true, chunkPoints: 40_000 });
    assert.equal(chunked.gradients?.length, 8);
    assert.deepEqual(chunked.gradients?.[0], points["v1"]); // d/dv0 = v1, at every point
    assert.equal(chunked.hessians?.length, 8); // 8 rows of 8 columns
    assert.equal(chunked.hessians?.[0]?.[1]?.length, 120_000);
  });

  test("a failing slice rejects with its own error", async () => {
    const small = new ChainruleClient(server.target, { maxMessageBytes: 20_000 });
    try {
      const x = Array.from({ length: 10_001 }, (_, i) => i); // 5,000-value slices are over the limit
      await assert.rejects(small.evaluate("x", { points: { x }, chunkPoints: 5_000 }), ResourceExhaustedError);
    } finally {
      small.close();
    }
  });

  test("bad chunking is refused before any call", async () => {
    await assert.rejects(client.evaluate("x", { points: { x: xs }, chunkPoints: 0 }), RangeError);
    await assert.rejects(client.evaluate("x", { points: { x: xs }, chunkPoints: 10, inFlight: 0 }), RangeError);
  });

  test("columns of different lengths are the server's error, chunked or not", async () => {
    const points = { x: xs, y: [1, 2] };
    const whole = await client.evaluate("x*y", { points }).catch((error: unknown) => error);
    const chunked = await client.evaluate("x*y", { points, chunkPoints: 10 }).catch((error: unknown) => error);
    assert.ok(whole instanceof InvalidArgumentError);
    assert.deepEqual(chunked, whole);
  });
});

describe("serverInfo", () => {
  test("describes the grammar and the limits", async () => {
    const info = await client.serverInfo();
    assert.ok(info.version.length > 0);
    assert.ok(info.functions.includes("sin") && info.functions.includes("exp"));
    assert.ok(info.outputFormats.includes("latex"));
    assert.deepEqual([...info.simplifications].sort(), ["fast", "full", "none"]);
    assert.ok(info.limits.length > 0);
  });
});

describe("parse", () => {
  test("reads a text as the server does", async () => {
    const reading = await client.parse("sin x² + y");
    assert.equal(reading.error, undefined);
    assert.equal(reading.canonical, "y + sin(x^2)");
    assert.deepEqual(reading.variables, ["x", "y"]);
    assert.match(reading.latex, /\\sin/);
  });

  test("a text that does not parse is an answer with its position, not a rejection", async () => {
    const broken = await client.parse("π + (x");
    assert.equal(broken.error?.reason, "PARSE_ERROR");
    assert.equal(broken.error?.position, 4); // the '(' never closed, in code points: π is one
    assert.equal(broken.canonical, "");
    const tooLong = await client.parse("x".repeat(10_001));
    assert.equal(tooLong.error?.reason, "LIMIT_EXCEEDED");
    assert.equal(tooLong.error?.position, 10_000);
    assert.equal(tooLong.error?.metadata.limit, "expression_length");
  });
});

describe("errors", () => {
  test("a parse error carries its position and field", async () => {
    const error = await client.differentiate("(x + 1))").catch((e: unknown) => e);
    assert.ok(error instanceof ParseError, String(error));
    assert.equal(error.position, 7);
    assert.equal(error.reason, "PARSE_ERROR");
    assert.equal(error.domain, "chainrule.dev");
    assert.deepEqual(
      error.fieldViolations.map((v) => v.field),
      ["expression"],
    );
  });

  test("an unknown function is a parse error too", async () => {
    const error = await client.differentiate("2 + foo(x)").catch((e: unknown) => e);
    assert.ok(error instanceof UnknownFunctionError && error instanceof ParseError);
    assert.equal(error.position, 4);
  });

  test("a missing variable", async () => {
    const error = await client.evaluate("x*y", { point: { x: 1 } }).catch((e: unknown) => e);
    assert.ok(error instanceof MissingVariableError && error instanceof InvalidArgumentError);
    assert.match(error.message, /y/);
  });

  test("a deadline too short for the work is DEADLINE_EXCEEDED", async () => {
    // a million points cannot travel, be computed and come back within a millisecond
    const x = new Float64Array(1_000_000).fill(0.5);
    await assert.rejects(client.evaluate("sin(x) * exp(x)", { points: { x }, timeoutMs: 1 }), DeadlineExceededError);
  });

  test("arguments of the wrong type are a TypeError, not converted on the wire", async () => {
    // "abc" was sent as NaN, null as 0, "0x10" as 16, true as 1; 10n failed inside grpc (INTERNAL).
    for (const value of ["abc", null, "0x10", true, 10n]) {
      const point = { x: value } as unknown as Record<string, number>;
      await assert.rejects(client.evaluate("x", { point }), TypeError);
    }
    await assert.rejects(client.differentiate(undefined as unknown as string), TypeError);
    await assert.rejects(client.gradient("x*y", { point: { x: 1, y: 2 }, variables: "xy" as unknown as string[] }), TypeError);
    await assert.rejects(client.jacobian("x+y" as unknown as string[], { point: { x: 1, y: 2 } }), TypeError);
  });

  test("an endless timeout is no deadline, and one that is no duration is refused", async () => {
    for (const timeoutMs of [Infinity, 1e300]) {
      assert.equal((await client.evaluate("2x", { point: { x: 2 }, timeoutMs })).value, 4);
    }
    for (const timeoutMs of [NaN, -1]) {
      await assert.rejects(client.evaluate("2x", { point: { x: 2 }, timeoutMs }), RangeError);
    }
  });
});
