// Starting and stopping the real components (Redis, HAProxy, the IdP, idgate) for the demo and the tests.
// Every child is tracked so that a test run or Ctrl-C leaves nothing behind.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, whether this file runs from stack/ (tests) or dist/stack/ (compiled). */
export const REPO_ROOT = findRepoRoot(path.dirname(fileURLToPath(import.meta.url)));

function findRepoRoot(from: string): string {
  for (let dir = from; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'haproxy-conf', 'haproxy.cfg')) && fs.existsSync(path.join(dir, 'package.json'))) return dir;
  }
  throw new Error(`cannot find the idgate repository above ${from}`);
}

/** A free TCP port on 127.0.0.1, chosen by the kernel. */
export async function freePort(): Promise<number> {
  // A port is free once we release it, so the next call may get it again before its user binds it:
  // never hand out the same port twice from one process.
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = net.createServer();
      server.unref();
      server.on('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const { port } = server.address() as net.AddressInfo;
        server.close(() => resolve(port));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

const handedOut = new Set<number>();

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

// If this process ends without stopping its children (a crash, an uncaught error), they go with it
// rather than linger on their ports.
process.once('exit', () => {
  for (const p of running) p.child.kill('SIGKILL');
});

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
  // The last ~200 kB of output, kept as chunks (no copying per chunk: a benchmark's idgate writes a
  // line per request), so a chatty process cannot grow our memory or CPU use without limit.
  const chunks: string[] = [];
  let kept = 0;
  const captured = () => chunks.join('');
  // Tests set IDGATE_LOG_CAPTURE_DIR: every process's whole output is kept there, for the scan for
  // leaked secrets that `make test` runs over the whole suite's logs.
  const captureDir = process.env.IDGATE_LOG_CAPTURE_DIR;
  const captureFile = captureDir ? path.join(captureDir, `${name}.log`) : undefined;
  if (captureDir) fs.mkdirSync(captureDir, { recursive: true });
  const onData = (chunk: Buffer) => {
    const text = chunk.toString();
    if (captureFile) fs.appendFileSync(captureFile, text);
    chunks.push(text);
    kept += text.length;
    while (kept > 200_000 && chunks.length > 1) kept -= chunks.shift()!.length;
    if (options.echo) {
      for (const line of text.split('\n')) if (line) process.stdout.write(`[${name}] ${line}\n`);
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', (err) => { chunks.push(`\nspawn error: ${err.message}\n`); });
  const managed: ManagedProcess = {
    name,
    child,
    output: captured,
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

/** Polls `condition` every 100 ms until it holds (an error counts as not yet); rejects after timeoutMs. */
export async function waitUntil(what: string, condition: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
