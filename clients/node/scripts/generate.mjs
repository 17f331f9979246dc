// Generates src/generated/ from protos/ with ts-proto: the one generation command for the Node client.
//
// `npm run generate` rewrites src/generated; `npm run generate:check` generates into a temporary
// folder and fails when the committed files differ. protoc is the one grpcio-tools ships in the
// repository's Python venv (override with PYTHON=/path/to/python), and the google/api and
// google/rpc protos come from the googleapis-common-protos installed there: nothing is downloaded
// and no copy of a google proto is committed.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const packageRoot = resolve(here, "..");
const repoRoot = resolve(packageRoot, "../..");
const python = process.env.PYTHON ?? join(repoRoot, ".venv", "bin", "python");
const plugin = join(packageRoot, "node_modules", ".bin", "protoc-gen-ts_proto");
const committed = join(packageRoot, "src", "generated");

const PROTOS = ["chainrule/v1/chainrule.proto", "google/rpc/status.proto", "google/rpc/error_details.proto"];
const OPTIONS = [
  "outputServices=grpc-js",
  "env=node",
  "esModuleInterop=true",
  "forceLong=number",
  "outputJsonMethods=false",
  "useDate=false",
  "importSuffix=.js",
].join(",");

function includeDirs() {
  const probe = [
    "import pathlib, google.api, grpc_tools",
    "print(pathlib.Path(next(iter(google.api.__path__))).parent.parent)",
    "print(pathlib.Path(next(iter(grpc_tools.__path__))) / '_proto')",
  ].join("; ");
  const found = execFileSync(python, ["-c", probe], { encoding: "utf8" }).trim().split("\n");
  return [join(repoRoot, "protos"), ...found];
}

function generate(outDir) {
  const args = ["-m", "grpc_tools.protoc", ...includeDirs().map((d) => `-I${d}`)];
  args.push(`--plugin=protoc-gen-ts_proto=${plugin}`, `--ts_proto_out=${outDir}`, `--ts_proto_opt=${OPTIONS}`);
  execFileSync(python, [...args, ...PROTOS], { stdio: "inherit" });
}

function listFiles(root, dir = root) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? listFiles(root, path) : [relative(root, path)];
  });
}

function stale(fresh) {
  const want = listFiles(fresh).sort();
  const have = existsSync(committed) ? listFiles(committed).sort() : [];
  const differ = want.filter((f) => !have.includes(f) || !readFileSync(join(fresh, f)).equals(readFileSync(join(committed, f))));
  return [...differ, ...have.filter((f) => !want.includes(f))];
}

if (process.argv.includes("--check")) {
  const fresh = mkdtempSync(join(tmpdir(), "chainrule-ts-"));
  try {
    generate(fresh);
    const changed = stale(fresh);
    if (changed.length > 0) {
      console.error(`src/generated is stale (run \`npm run generate\`): ${changed.join(", ")}`);
      process.exit(1);
    }
    console.log("src/generated is up to date");
  } finally {
    rmSync(fresh, { recursive: true, force: true });
  }
} else {
  rmSync(committed, { recursive: true, force: true });
  mkdirSync(committed, { recursive: true });
  generate(committed);
}
