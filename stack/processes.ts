// Starting and stopping the real components (Redis, HAProxy, the IdP, idgate) for the demo and the tests.
// Every child is tracked so that a test run or Ctrl-C leaves nothing behind.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pause, waitUntil } from './wait.js';

/** The repository root, whether this file runs from stack/ (tests) or dist/stack/ (compiled). */
export const REPO_ROOT = findRepoRoot(path.dirname(fileURLToPath(import.meta.url)));

function findRepoRoot(from: string): string {
  for (let dir = from; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'haproxy-conf', 'haproxy.cfg')) && fs.existsSync(path.join(dir, 'package.json'))) return dir;
  }
  throw new Error(`cannot find the idgate repository above ${from}`);
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago, chosen by the kernel. Another process can take it
 * before its user binds it: use it only inside a startOnFreePort start (a taken port is then tried again
 * on another), for a child whose port must be written into its configuration. Servers of ours listen on
 * port 0 (listenOnAnyPort); Node children bind port 0 and report the port they got.
 */
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

/**
 * Makes `server` (one of ours: http, net, the SPOE agent) listen on a port of the kernel's choosing on
 * `host` (default 127.0.0.1); resolves with that port. Nothing can take it between a pick and the bind.
 */
export function listenOnAnyPort(server: net.Server, host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

/**
 * A port where nothing answers, which no other process can take while it is held: a server of ours on
 * port 0 that drops every connection as it comes (an unreachable IdP, an idgate that is down). `close()`
 * frees it.
 */
export async function startDeadEnd(): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer((socket) => socket.destroy());
  const port = await listenOnAnyPort(server);
  return { port, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/**
 * A port that must be known before the server that answers on it exists (an in-process idgate whose
 * public URL the IdP must know before idgate, which needs the IdP's issuer, can be made): the socket is
 * bound and listening now, and `handOver(server)` makes `server` listen on that very socket
 * (server.listen(handle)), so no other process can take the port in between. Nothing may connect
 * before the hand-over: the placeholder answers nobody. `release()` closes it instead.
 *
 * A child that is not ours (HAProxy) takes the socket itself: start it with `passFds: [held.fd]` (it
 * gets the socket as fd 3; HAProxy binds it with `bind fd@3`), then `release()` our copy, so that only
 * the child accepts on it.
 */
export async function holdPort(host = '127.0.0.1'): Promise<{ port: number; fd: number; handOver(server: net.Server): Promise<void>; release(): Promise<void> }> {
  const placeholder = net.createServer();
  const port = await listenOnAnyPort(placeholder, host);
  return {
    port,
    // Node has no public way to give a listening socket to a child that is not Node: the handle's fd.
    fd: (placeholder as unknown as { _handle: { fd: number } })._handle.fd,
    /** Closes the port without handing it over (a start that failed before the server was made). */
    release: () => new Promise<void>((resolve) => placeholder.close(() => resolve())),
    handOver: (server) =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(placeholder, () => {
          server.off('error', reject);
          resolve();
        });
      }),
  };
}

/** How a child says its port was taken: redis-server "Address already in use", HAProxy "cannot bind socket". */
const PORT_TAKEN = /address already in use|cannot bind socket|is already in use/i;

/** Whether a start failed because its port was taken (the error carries the child's output). */
export function portTaken(err: unknown): boolean {
  return err instanceof Error && PORT_TAKEN.test(err.message);
}

/**
 * For children that cannot bind port 0 and report the port (redis-server: `--port 0` turns TCP off;
 * HAProxy): a port picked by freePort can be taken by another process before the child binds it, so a
 * start that fails that way (`start` rejects with the child's output) is tried again on a new port, up
 * to `attempts` (default 5) times. Any other failure is thrown at once.
 */
export async function startOnFreePort<T>(start: (port: number) => Promise<T>, attempts = 5): Promise<{ port: number; started: T }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return { port, started: await start(port) };
    } catch (err) {
      if (attempt >= attempts || !portTaken(err)) throw err;
    }
  }
}

/** Resolves once something accepts TCP connections on host:port; rejects after timeoutMs (default 10000). */
export async function waitForPort(port: number, host = '127.0.0.1', timeoutMs = 10_000): Promise<void> {
  const accepts = () =>
    new Promise<boolean>((resolve) => {
      const socket = net.connect({ port, host });
      socket.once('connect', () => { socket.destroy(); resolve(true); });
      socket.once('error', () => resolve(false));
    });
  await waitUntil(`something listening on ${host}:${port}`, accepts, { timeoutMs, everyMs: 50 });
}

/**
 * Resolves with what `parse` finds in the first line of `proc`'s output it accepts: how the launcher learns
 * the port a child bound (port 0, so no other process can take it between a pick and a bind). Rejects,
 * with the output, if the child exits first or after timeoutMs (default 60000: a start on a loaded machine
 * is slow, and a child that fails exits, which ends the wait at once).
 */
/** How long a started child may take to report its port: a liveness limit, generous for a loaded machine. */
const START_LIMIT_MS = 60_000;

export function waitForReport<T>(proc: ManagedProcess, parse: (line: string) => T | undefined, timeoutMs = START_LIMIT_MS): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const scan = () => {
      for (const line of proc.output().split('\n')) {
        const found = parse(line);
        if (found !== undefined) return done(() => resolve(found));
      }
      if (proc.child.exitCode !== null || proc.child.signalCode !== null) done(() => reject(new Error(`${proc.name} exited before reporting its port:\n${proc.output()}`)));
    };
    const timer = setTimeout(() => done(() => reject(new Error(`${proc.name} reported no port after ${timeoutMs} ms:\n${proc.output()}`))), timeoutMs);
    let settled = false;
    const done = (settle: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      proc.child.stdout?.off('data', later);
      proc.child.stderr?.off('data', later);
      proc.child.off('close', scan);
      settle();
    };
    // After the launcher's own listener has kept the chunk (it was added first, at spawn).
    const later = () => setImmediate(scan);
    proc.child.stdout?.on('data', later);
    proc.child.stderr?.on('data', later);
    proc.child.once('close', scan);
    scan();
  });
}

/**
 * waitForReport for a child that writes its lines to `file` (idgate with IDGATE_LOG_FILE), from byte
 * `from` on (what was there before it started is not its): the file is read again every 50 ms, as no
 * event says it grew. Rejects if the child exits first or after timeoutMs (default 60000).
 */
export async function waitForFileReport<T>(proc: ManagedProcess, file: string, from: number, parse: (line: string) => T | undefined, timeoutMs = START_LIMIT_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let text = '';
    try {
      text = fs.readFileSync(file).subarray(from).toString();
    } catch {
      // not written yet
    }
    for (const line of text.split('\n')) {
      const found = parse(line);
      if (found !== undefined) return found;
    }
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) throw new Error(`${proc.name} exited before reporting its port:\n${proc.output()}`);
    if (Date.now() > deadline) throw new Error(`${proc.name} reported no port in ${file} after ${timeoutMs} ms:\n${proc.output()}`);
    await pause(50);
  }
}

/** The port in a JSON log line whose msg starts with `prefix` (idgate's "idgate listening on", "SPOE agent listening on"). */
export function loggedPort(prefix: string): (line: string) => number | undefined {
  return (line) => {
    if (!line.includes(prefix)) return undefined;
    try {
      const record = JSON.parse(line) as { msg?: unknown; port?: unknown };
      return typeof record.msg === 'string' && record.msg.startsWith(prefix) && typeof record.port === 'number' ? record.port : undefined;
    } catch {
      return undefined;
    }
  };
}

/** The line stack/idp-main.ts prints once it listens: its issuer and the port it bound. */
export function idpListening(line: string): { issuer: string; port: number } | undefined {
  const m = /^idp listening on (\S+) \(port (\d+)\)$/.exec(line);
  return m ? { issuer: m[1]!, port: Number(m[2]) } : undefined;
}

/** The port in the line stack/upstream-main.ts prints once it listens. */
export function upstreamListening(line: string): number | undefined {
  const m = /^upstream listening on http:\/\/\S+:(\d+)$/.exec(line);
  return m ? Number(m[1]) : undefined;
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
  /** Open file descriptors of ours the child gets as fd 3, 4, … (a held port's socket: holdPort). */
  passFds?: number[];
  /** An IPC channel to the child (after the passed fds), for messages: the test clock's (test-clock.ts). */
  ipc?: boolean;
}

export function startProcess(name: string, command: string, args: string[], options: StartOptions = {}): ManagedProcess {
  const child = spawn(command, args, {
    env: options.env ?? process.env,
    cwd: options.cwd,
    stdio: ['ignore', 'pipe', 'pipe', ...(options.passFds ?? []), ...(options.ipc ? ['ipc' as const] : [])],
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
