// The Lua transport's ceiling in `make bench`: a do-nothing HTTP auth backend behind the very same
// idgate.lua action and HAProxy lines. It reads nothing, checks nothing and allows every request with
// a fixed identity, so what HAProxy reaches through it is what the Lua subrequest alone allows.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

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
  close(): Promise<void>;
}

/** Listens on 127.0.0.1, port 0; answers 200 with `allow` (allowHeadersFrom) to everything (health checks included). */
export async function startNullAuthBackend(allow: Record<string, string>): Promise<NullAuthBackend> {
  const server = http.createServer((req, res) => {
    // idgate.lua fails closed on an allow without the path decided on: the path asked, query dropped.
    const uri = req.headers['x-forwarded-uri'];
    const path = typeof uri === 'string' && uri.startsWith('/') ? uri.split('?')[0]! : '/';
    res.writeHead(200, { ...allow, 'x-auth-request-id': 'r', 'x-idgate-path': path, 'content-length': '0' });
    res.end();
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
