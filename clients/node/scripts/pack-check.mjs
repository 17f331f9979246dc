// Tests the package as a user gets it: `npm pack`, install the tarball into an empty project,
// load it with require() and with import, type-check a TypeScript consumer of each kind, and call a
// live chainrule server from both (started as the client tests start it, from CHAINRULE_SERVER).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
const tsc = require.resolve("typescript/bin/tsc");
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
function run(command, args, cwd) {
  try {
    return execFileSync(command, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  } catch (error) {
    process.stderr.write(error.stdout ?? ""); // tsc reports on stdout
    throw error;
  }
}

// A consumer of each module kind: the same calls, printed as one JSON line.
const CALLS = `
const client = new ChainruleClient(process.env.TARGET);
try {
  const d = await client.differentiate("sin(x^2)");
  const e = await client.evaluate("x*y + 1", { point: { x: 2, y: 3 } });
  let position = -1;
  try {
    await client.differentiate("(x + 1))");
  } catch (error) {
    if (error instanceof ParseError) position = error.position;
  }
  console.log(JSON.stringify({ derivative: d.derivative, value: e.value, position }));
} finally {
  client.close();
}`;
const CONSUMERS = {
  "consumer.cjs": `const { ChainruleClient, ParseError } = require("@chainrule/client");\n(async () => {${CALLS}\n})();\n`,
  "consumer.mjs": `import { ChainruleClient, ParseError } from "@chainrule/client";\n${CALLS}\n`,
};
// Types as a TypeScript user sees them, through the `exports` map's `types` conditions.
const TYPED = {
  "typed.cts": `import { ChainruleClient, type Column } from "@chainrule/client";\nconst c: ChainruleClient = new ChainruleClient("127.0.0.1:1");\nconst v: Column | undefined = undefined;\nvoid v;\nc.close();\n`,
  "typed.mts": `import { ChainruleClient, ParseError, Simplification } from "@chainrule/client";\nconst c = new ChainruleClient("127.0.0.1:1");\nconst position = (error: unknown): number | undefined => (error instanceof ParseError ? error.position : undefined);\nvoid position; void Simplification.SIMPLIFICATION_FULL;\nc.close();\n`,
};

const work = mkdtempSync(join(tmpdir(), "chainrule-pack-"));
let server;
try {
  // prepare builds dist/ first; the tarball's name is the last line npm prints
  const tarball = run(npm, ["pack", "--silent", "--pack-destination", work], root).trim().split("\n").pop();
  const listed = run("tar", ["-tzf", join(work, tarball)], work).trim().split("\n").map((path) => path.replace(/^package\//, ""));
  for (const wanted of ["dist/cjs/index.js", "dist/cjs/index.d.ts", "dist/esm/index.mjs", "dist/esm/index.d.mts", "README.md"]) {
    assert.ok(listed.includes(wanted), `the tarball lacks ${wanted}`);
  }
  assert.ok(!listed.some((path) => path.startsWith("src/") || path.startsWith("test/")), "sources or tests shipped");

  const project = join(work, "project");
  mkdirSync(project);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true }));
  run(npm, ["install", "--no-audit", "--no-fund", "--prefer-offline", "--silent", join(work, tarball)], project);
  for (const [name, text] of Object.entries({ ...CONSUMERS, ...TYPED })) writeFileSync(join(project, name), text);
  writeFileSync(
    join(project, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: { module: "node16", moduleResolution: "node16", target: "ES2022", strict: true, noEmit: true, types: [], skipLibCheck: true },
      files: Object.keys(TYPED),
    }),
  );
  run(process.execPath, [tsc, "-p", join(project, "tsconfig.json")], project);

  const { startServer } = require(join(root, "build", "test", "server.js"));
  server = await startServer();
  for (const name of Object.keys(CONSUMERS)) {
    const out = execFileSync(process.execPath, [name], { cwd: project, encoding: "utf8", env: { ...process.env, TARGET: server.target } });
    assert.deepEqual(JSON.parse(out), { derivative: "2*x*cos(x^2)", value: 7, position: 7 }, name);
    console.log(`pack-check: ${name} installed from ${tarball} and called ${server.target}: ok`);
  }
  console.log(`pack-check: ${Object.keys(TYPED).join(", ")} type-check against the packed types: ok`);
} finally {
  await server?.stop();
  rmSync(work, { recursive: true, force: true });
}
