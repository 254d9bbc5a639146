// Starting and stopping the real components (Redis, HAProxy, the IdP, idgate) for the demo and the tests.
// Every child is tracked so that a test run or Ctrl-C leaves nothing behind.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, whether this file runs from demo/ (tests) or dist/demo/ (compiled). */
export const REPO_ROOT = findRepoRoot(path.dirname(fileURLToPath(import.meta.url)));

function findRepoRoot(from: string): string {
  for (let dir = from; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'haproxy-conf', 'haproxy.cfg')) && fs.existsSync(path.join(dir, 'package.json'))) return dir;
  }
  throw new Error(`cannot find the idgate repository above ${from}`);
}

/** A free TCP port on 127.0.0.1, chosen by the kernel. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on host:port; rejects after timeoutMs (default 10000). */
export async function waitForPort(port: number, host = '127.0.0.1', timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ port, host });
      socket.once('connect', () => { socket.destroy(); resolve(true); });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** SIGTERM, then SIGKILL after graceMs (default 3000). Resolves when the process has exited. */
  stop(graceMs?: number): Promise<void>;
}

const running = new Set<ManagedProcess>();

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Copy the child's output to our stdout, prefixed with its name (the demo does; tests don't). */
  echo?: boolean;
}

export function startProcess(name: string, command: string, args: string[], options: StartOptions = {}): ManagedProcess {
  const child = spawn(command, args, {
    env: options.env ?? process.env,
    cwd: options.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let captured = '';
  const onData = (chunk: Buffer) => {
    const text = chunk.toString();
    // Bounded, so a chatty process cannot grow the test runner's memory without limit.
    captured = (captured + text).slice(-200_000);
    if (options.echo) {
      for (const line of text.split('\n')) if (line) process.stdout.write(`[${name}] ${line}\n`);
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Tests set IDGATE_LOG_CAPTURE_DIR: every process's output is kept there, for the scan for leaked
  // secrets that `make test` runs over the whole suite's logs.
  const captureDir = process.env.IDGATE_LOG_CAPTURE_DIR;
  if (captureDir) {
    child.once('close', () => {
      try {
        fs.mkdirSync(captureDir, { recursive: true });
        fs.appendFileSync(path.join(captureDir, `${name}.log`), captured);
      } catch {
        // capturing is best effort; the scan reports a missing directory
      }
    });
  }
  child.once('error', (err) => { captured += `\nspawn error: ${err.message}\n`; });
  const managed: ManagedProcess = {
    name,
    child,
    output: () => captured,
    async stop(graceMs = 3000) {
      running.delete(managed);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  running.add(managed);
  return managed;
}

/** Stops every process started by this module that is still running. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((p) => p.stop()));
}
