// The Lua transport's ceiling in `make bench`: a do-nothing HTTP auth backend behind the very same
// idgate.lua action and HAProxy lines. It reads nothing, checks nothing and allows every request with
// a fixed identity, so what HAProxy reaches through it is what the Lua subrequest alone allows. It runs
// as a process of its own, as idgate does (`node dist/bench/null-auth.js`, NULL_AUTH_ALLOW: JSON headers).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loggedPort, startProcess, waitForReport, type ManagedProcess } from '../stack/processes.js';

/**
 * The headers of one real allow of idgate's /auth that a constant answer repeats: the identity (X-Auth-*)
 * and the app's cookies (X-Idgate-Cookie), so that the Lua action and HAProxy do the same work with them.
 * The request id and the path are each request's own (below).
 */
export function allowHeadersFrom(headers: Headers): Record<string, string> {
  const kept: Record<string, string> = {};
  headers.forEach((value, name) => {
    if ((name.startsWith('x-auth-') && name !== 'x-auth-request-id') || name === 'x-idgate-cookie') kept[name] = value;
  });
  if (!kept['x-auth-user']) throw new Error('the answer names no user: not an allow');
  return kept;
}

export interface NullAuthBackend {
  readonly port: number;
  /** Its process (a child of ours, like idgate, so that its CPU is its own). */
  readonly process: ManagedProcess;
  close(): Promise<void>;
}

const LISTENING = 'null auth backend listening on';

/** The headers of the allow to a request with a session cookie, and to one with a bearer token (allowHeadersFrom). */
export interface NullAuthAllows {
  readonly session: Record<string, string>;
  readonly bearer: Record<string, string>;
}

/** Starts the backend as a child process, answering 200 with `allow` to everything (health checks included). */
export async function startNullAuthBackend(allow: NullAuthAllows): Promise<NullAuthBackend> {
  const child = startProcess('null-auth', process.execPath, [fileURLToPath(import.meta.url)], { env: { ...process.env, NULL_AUTH_ALLOW: JSON.stringify(allow) } });
  return { port: await waitForReport(child, loggedPort(LISTENING)), process: child, close: () => child.stop() };
}

async function main(): Promise<void> {
  const allow = JSON.parse(process.env.NULL_AUTH_ALLOW ?? 'null') as NullAuthAllows | null;
  if (!allow) throw new Error('NULL_AUTH_ALLOW is not set');
  const server = http.createServer((req, res) => {
    // idgate.lua fails closed on an allow without the path decided on: the path asked, query dropped.
    const uri = req.headers['x-forwarded-uri'];
    const path = typeof uri === 'string' && uri.startsWith('/') ? uri.split('?')[0]! : '/';
    // A token is not looked at, only seen.
    res.writeHead(200, { ...(req.headers.authorization === undefined ? allow.session : allow.bearer), 'x-auth-request-id': 'r', 'x-idgate-path': path, 'content-length': '0' });
    res.end();
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  process.stdout.write(`${JSON.stringify({ msg: LISTENING, port: (server.address() as AddressInfo).port })}\n`);
  process.once('SIGTERM', () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
