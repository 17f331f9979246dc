// Starts a real `chainrule serve` on free loopback ports for the tests, and stops it afterwards.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const REPO = resolve(__dirname, "..", "..", "..", "..");
const START_TIMEOUT_MS = 60_000;

export interface RunningServer {
  target: string;
  stop(): Promise<void>;
}

export async function startServer(): Promise<RunningServer> {
  const executable = process.env["CHAINRULE_SERVER"] ?? join(REPO, ".venv", "bin", "chainrule");
  if (!existsSync(executable)) throw new Error(`no chainrule server at ${executable}: set CHAINRULE_SERVER`);
  const dir = mkdtempSync(join(tmpdir(), "chainrule-node-"));
  const readyFile = join(dir, "ready.json");
  // one server process: these tests exercise the client, not the multi-process server
  const args = ["serve", "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0", "--workers", "1", "--ready-file", readyFile];
  const child = spawn(executable, args, { stdio: ["ignore", "ignore", "pipe"] });
  let log = ""; // the server log's tail, shown only when start-up fails
  child.stderr?.on("data", (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-8192);
  });
  try {
    const ports = await waitReady(child, readyFile).catch((error: Error) => {
      throw new Error(`${error.message}\n${log}`);
    });
    return { target: `127.0.0.1:${ports.grpc_port}`, stop: () => stop(child, dir) };
  } catch (error) {
    await stop(child, dir);
    throw error;
  }
}

async function waitReady(child: ChildProcess, readyFile: string): Promise<{ grpc_port: number }> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`chainrule serve exited with ${child.exitCode}`);
    if (existsSync(readyFile)) {
      try {
        return JSON.parse(readFileSync(readyFile, "utf8")) as { grpc_port: number };
      } catch {
        // written but not complete yet
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`chainrule serve was not ready within ${START_TIMEOUT_MS} ms`);
}

async function stop(child: ChildProcess, dir: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(timer);
  }
  rmSync(dir, { recursive: true, force: true });
}
