// Jacobian, series and implicit differentiation against a live server; UNIMPLEMENTED from an older one.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Server, ServerCredentials } from "@grpc/grpc-js";

import { ChainruleClient, ChainruleError, InvalidArgumentError, ParseError, UnimplementedError } from "../src/index.js";
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

describe("jacobian", () => {
  test("one point: values and rows of the matrix", async () => {
    const result = await client.jacobian(["x^2*y", "5x + sin(y)"], { point: { x: 1, y: 2 } });
    assert.deepEqual(result.variables, ["x", "y"]);
    assert.deepEqual(result.values, [2, 5 + Math.sin(2)]);
    assert.deepEqual(result.jacobian, [[4, 1], [5, Math.cos(2)]]);
    assert.equal(result.valueArrays, undefined);
  });

  test("many points, Float64Array in and out, in chunks equal to one call", async () => {
    const x = Float64Array.from({ length: 101 }, (_, i) => 0.5 + i / 50);
    const points = { x, y: [3] };
    const whole = await client.jacobian(["x*y", "log(x)"], { points, variables: ["x"] });
    assert.ok(whole.jacobianArrays?.[1]?.[0] instanceof Float64Array);
    assert.deepEqual(Array.from(whole.jacobianArrays[0]![0]!), Array(101).fill(3));
    const chunked = await client.jacobian(["x*y", "log(x)"], { points, variables: ["x"], chunkPoints: 10 });
    assert.deepEqual(chunked.jacobianArrays, whole.jacobianArrays);
    assert.deepEqual(chunked.valueArrays, whole.valueArrays);
  });
});

describe("series", () => {
  test("around pi/2, with LaTeX", async () => {
    const result = await client.series("sin(x)", { around: "pi/2", order: 2, latex: true });
    assert.equal(result.series, "1 - (x - pi/2)^2/2");
    assert.deepEqual(result.coefficients, ["1", "0", "-1/2"]);
    assert.equal(result.remainder, "O((x - pi/2)^3)");
    assert.ok(result.latex?.includes("\\pi"));
    assert.equal((await client.series("1/(1 - x)", { order: 3 })).series, "1 + x + x^2 + x^3");
  });

  test("no Taylor series at the point is FAILED_PRECONDITION with a reason", async () => {
    await assert.rejects(client.series("abs(x)"), (error: unknown) => {
      assert.ok(error instanceof ChainruleError);
      assert.equal(error.reason, "NO_TAYLOR_SERIES");
      assert.match(error.message, /no Taylor series at x = 0/);
      return true;
    });
  });
});

describe("implicit differentiation", () => {
  test("the circle at (3, 4)", async () => {
    const first = await client.differentiate("x^2 + y^2 = 25", { dependent: "y" });
    assert.equal(first.derivative, "-x/y");
    const second = await client.evaluate("x^2 + y^2 = 25", { dependent: "y", wrt: { x: 2 }, point: { x: 3, y: 4 } });
    assert.equal(second.value, -25 / 64);
  });

  test("an equation needs dependent; dependent must not be the wrt variable", async () => {
    await assert.rejects(client.differentiate("x^2 + y^2 = 25"), ParseError);
    await assert.rejects(client.differentiate("x^2 + y^2 = 25", { dependent: "y", wrt: "y" }), (error: unknown) => {
      assert.ok(error instanceof InvalidArgumentError);
      assert.deepEqual(error.fieldViolations.map((v) => v.field), ["dependent"]);
      return true;
    });
  });
});

describe("an older server", () => {
  test("UNIMPLEMENTED says which call and what the server needs", async () => {
    const older = new Server(); // no chainrule service at all, as a server before 0.2.0 lacks these RPCs
    const port = await new Promise<number>((resolve, reject) =>
      older.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) =>
        error ? reject(error) : resolve(bound),
      ),
    );
    const stale = new ChainruleClient(`127.0.0.1:${port}`, { timeoutMs: 5000 });
    try {
      await assert.rejects(stale.jacobian(["x"], { point: { x: 1 } }), (error: unknown) => {
        assert.ok(error instanceof UnimplementedError);
        assert.match(error.message, /does not implement Jacobian .*chainrule 0\.2\.0 or later/);
        return true;
      });
      await assert.rejects(stale.series("sin(x)"), /does not implement Series/);
    } finally {
      stale.close();
      older.forceShutdown();
    }
  });
});
