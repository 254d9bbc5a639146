// The Lua transport's ceiling in `make bench`: a do-nothing HTTP auth backend behind the very same
// idgate.lua action and HAProxy lines. It reads nothing, checks nothing and allows every request with
// a fixed identity, so what HAProxy reaches through it is what the Lua subrequest alone allows.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** What idgate's /auth sends on an allow for a session like the bench's (the X-Auth-* of alice). */
const IDENTITY: Record<string, string> = {
  'x-auth-user': 'alice',
  'x-auth-subject': 'alice',
  'x-auth-email': 'alice@example.com',
  'x-auth-groups': 'engineering,admins',
  'x-auth-request-id': 'r',
};

export interface NullAuthBackend {
  readonly port: number;
  close(): Promise<void>;
}

/** Listens on 127.0.0.1, port 0; answers 200 to everything (health checks included). */
export async function startNullAuthBackend(): Promise<NullAuthBackend> {
  const server = http.createServer((req, res) => {
    // idgate.lua fails closed on an allow without the path decided on: the path asked, query dropped.
    const uri = req.headers['x-forwarded-uri'];
    const path = typeof uri === 'string' && uri.startsWith('/') ? uri.split('?')[0]! : '/';
    res.writeHead(200, { ...IDENTITY, 'x-idgate-path': path, 'content-length': '0' });
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
