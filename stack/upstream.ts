// The sample upstream app behind HAProxy: it echoes every request it receives as JSON, so the demo
// and the tests can see exactly which headers (X-Auth-* and others) made it through.
import crypto from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';

export interface UpstreamOptions {
  /** TCP port to listen on. Required (0 picks a free one; see `port` on the result). */
  port: number;
  /** Address to listen on. Default `127.0.0.1`. */
  host?: string;
  /** Which pool this instance stands for, echoed as `server` (e.g. "main", "canary"). Default "main". */
  name?: string;
}

export interface RunningUpstream {
  /** The port actually listened on. */
  readonly port: number;
  /** Stops listening and drops open connections. */
  close(): Promise<void>;
}

/** What the upstream answers to every request (status 200, application/json). */
export interface EchoedRequest {
  /** The instance's name (UpstreamOptions.name): which pool served the request. */
  server: string;
  method: string;
  /** Path and query, exactly as received. */
  path: string;
  /** All request headers, lowercase names; a header sent several times appears as an array in received order. */
  headers: Record<string, string | string[]>;
}

/** Request headers keyed by lowercase name, from the raw list so repeated headers keep every value. */
function receivedHeaders(req: http.IncomingMessage): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i].toLowerCase();
    const value = req.rawHeaders[i + 1];
    const previous = headers[name];
    if (previous === undefined) headers[name] = value;
    else if (Array.isArray(previous)) previous.push(value);
    else headers[name] = [previous, value];
  }
  return headers;
}

export async function startUpstream(options: UpstreamOptions): Promise<RunningUpstream> {
  const server = http.createServer((req, res) => {
    const echoed: EchoedRequest = {
      server: options.name ?? 'main',
      method: req.method ?? '',
      path: req.url ?? '',
      headers: receivedHeaders(req),
    };
    // The body is not echoed, but it is read to the end so keep-alive connections stay usable.
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify(echoed);
      res.writeHead(200, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    });
  });

  // An app that accepts CONNECT, as some do: 200, then the connection's next bytes are read as requests
  // again and echoed like any other. The edge must never let a client get this far (docs/security.md).
  server.on('connect', (_req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0) socket.unshift(head);
    server.emit('connection', socket);
  });

  // A WebSocket handshake is accepted (101), and the request is echoed as the first bytes after it, so a
  // test sees which Connection and Upgrade headers reached the app through the upgrade.
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
    const key = req.headers['sec-websocket-key'];
    if (String(req.headers.upgrade).toLowerCase() !== 'websocket' || typeof key !== 'string') {
      socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const accept = crypto.createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    const echoed: EchoedRequest = { server: options.name ?? 'main', method: req.method ?? '', path: req.url ?? '', headers: receivedHeaders(req) };
    socket.end(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n${JSON.stringify(echoed)}`);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });

  return {
    port: (server.address() as { port: number }).port,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
