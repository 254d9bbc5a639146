// Raw HTTP/1.1 on the client side, for the HAProxy tests: repeated headers (Cookie, Set-Cookie) are
// written and read exactly as they are on the wire.
import net from 'node:net';
import type { EchoedRequest } from '../../stack/upstream.js';

export interface RawResponse {
  status: number;
  headers: [string, string][];
  body: string;
  ms: number;
}

export function pairs(raw: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!.toLowerCase(), raw[i + 1]!]);
  return out;
}

export function all(headers: [string, string][], name: string): string[] {
  return headers.filter(([n]) => n === name.toLowerCase()).map(([, v]) => v);
}

export function one(headers: [string, string][], name: string): string | undefined {
  return all(headers, name)[0];
}

function decodeChunked(data: string): string {
  let out = '';
  let rest = data;
  for (;;) {
    const eol = rest.indexOf('\r\n');
    if (eol < 0) return out;
    const size = parseInt(rest.slice(0, eol), 16);
    if (!size) return out;
    out += rest.slice(eol + 2, eol + 2 + size);
    rest = rest.slice(eol + 2 + size + 2);
  }
}

export function parseResponse(data: string, started: number): RawResponse {
  const split = data.indexOf('\r\n\r\n');
  const head = data.slice(0, split).split('\r\n');
  const status = Number(head[0]!.split(' ')[1]);
  const headers: [string, string][] = head.slice(1).map((line) => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
  });
  let rest = data.slice(split + 4);
  if (one(headers, 'transfer-encoding')?.toLowerCase() === 'chunked') rest = decodeChunked(rest);
  return { status, headers, body: Buffer.from(rest, 'latin1').toString('utf8'), ms: Date.now() - started };
}

/**
 * One HTTP/1.1 request over a fresh socket, written exactly as given (repeated headers stay
 * repeated). Adds `Connection: close` unless a Connection header is given; resolves at the end
 * of the stream or once a Content-Length body is complete.
 */
export function rawRequest(port: number, method: string, target: string, headers: [string, string][] = [], body = ''): Promise<RawResponse> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    const lines = [`${method} ${target} HTTP/1.1`];
    if (!headers.some(([n]) => n.toLowerCase() === 'host')) lines.push(`Host: 127.0.0.1:${port}`);
    for (const [n, v] of headers) lines.push(`${n}: ${v}`);
    if (body) lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
    if (!headers.some(([n]) => n.toLowerCase() === 'connection')) lines.push('Connection: close');
    lines.push('', body);
    let data = '';
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(parseResponse(data, started));
    };
    const timer = setTimeout(() => { done = true; socket.destroy(); reject(new Error(`no answer for ${method} ${target} after 10 s`)); }, 10_000);
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      data += chunk;
      const split = data.indexOf('\r\n\r\n');
      if (split < 0) return;
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(data.slice(0, split + 2));
      if (length && data.length - split - 4 >= Number(length[1])) finish();
    });
    socket.on('error', (err) => { if (!done) { done = true; clearTimeout(timer); reject(err); } });
    socket.on('end', finish);
    socket.write(lines.join('\r\n'));
  });
}

/**
 * Writes `bytes` as they are on a fresh socket (several requests pipelined, or a CONNECT and what would
 * follow it in a tunnel) and resolves with everything received once the peer closes. The last request
 * should say `Connection: close`, so that the end comes from the server, not from a timer.
 */
export function rawExchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    let data = '';
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`the connection was still open after 10 s; received so far:\n${data}`)); }, 10_000);
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => { data += chunk; });
    socket.on('error', (err) => { clearTimeout(timer); reject(err); });
    socket.on('close', () => { clearTimeout(timer); resolve(data); });
    socket.write(bytes);
  });
}

/** The status codes of every response in a stream of HTTP/1.1 responses, in order. */
export function statusLines(data: string): number[] {
  return [...data.matchAll(/(?:^|\r\n)HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
}

/**
 * What the echoing sample upstream saw of this request, when the answer is its echo (else undefined: HAProxy
 * or idgate answered). With `marker`, the echo must carry it as X-Edge-Probe: an echo of another request is
 * an error of the harness, never a pass.
 */
export function echoOf(res: RawResponse, marker?: string): EchoedRequest | undefined {
  let echo: EchoedRequest | undefined;
  try {
    const body = JSON.parse(res.body) as EchoedRequest;
    if (typeof body.server === 'string' && body.headers) echo = body;
  } catch {
    // not the upstream
  }
  if (echo && marker !== undefined && echo.headers['x-edge-probe'] !== marker) throw new Error(`echo of another request: ${res.body}`);
  return echo;
}
