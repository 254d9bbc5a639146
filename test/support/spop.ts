// A client playing HAProxy's side of SPOP, for the tests.
import net from 'node:net';
import { defaultOf } from '../../service/src/config/settings.js';
import { parseTrustedProxies, type AddressMatcher } from '../../service/src/net.js';
import { type SpoeAgentOptions } from '../../service/src/transports/spoe-agent.js';
import { FRAME, decodeFrame, encodeFrame, encodeKvList, encodeVarint } from '../../service/src/transports/spoe-codec.js';

/** The agent's bounds and trusted peers as idgate's default settings give them (SETTINGS), for `check`. */
export function defaultAgentOptions(check: SpoeAgentOptions['check'], overrides: Partial<SpoeAgentOptions> = {}): SpoeAgentOptions {
  return {
    check,
    trustedPeers: parseTrustedProxies(defaultOf('IDGATE_TRUSTED_PROXIES')) as AddressMatcher,
    maxConnections: Number(defaultOf('IDGATE_SPOE_MAX_CONNECTIONS')),
    maxInFlight: Number(defaultOf('IDGATE_SPOE_MAX_INFLIGHT')),
    ...overrides,
  };
}

export function notify(streamId: number, frameId: number, args: Record<string, string>, message = 'idgate-check'): Buffer {
  const name = Buffer.from(message);
  const parts: Buffer[] = [encodeVarint(name.length), name, Buffer.from([Object.keys(args).length])];
  for (const [k, v] of Object.entries(args)) parts.push(encodeKvList({ [k]: v }));
  return encodeFrame(FRAME.NOTIFY, 1, streamId, frameId, Buffer.concat(parts));
}

export const hello = (extra: Record<string, string | number | boolean> = {}) =>
  encodeFrame(FRAME.HAPROXY_HELLO, 1, 0, 0, encodeKvList({ 'supported-versions': '2.0', 'max-frame-size': 16380, capabilities: 'pipelining,async', ...extra }));

/**
 * A client playing HAProxy: sends bytes, collects decoded frames. It ends when the agent closes, after
 * `timeoutMs`, or 50 ms after the `expectFrames`-th frame; with `untilClosed`, not then but only when the
 * agent closes (or the timeout passes): a test asserting the close waits for it, not for a guess of when.
 */
export async function converse(port: number, send: Buffer[], expectFrames: number, timeoutMs = 2000, untilClosed = false): Promise<{ frames: ReturnType<typeof decodeFrame>[]; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const frames: ReturnType<typeof decodeFrame>[] = [];
    let closed = false;
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ frames, closed });
    };
    const timer = setTimeout(finish, timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        frames.push(decodeFrame(Buffer.from(buf.subarray(4, 4 + buf.readUInt32BE(0)))));
        buf = buf.subarray(4 + buf.readUInt32BE(0));
      }
      if (frames.length >= expectFrames && !closed && !untilClosed) setTimeout(finish, 50);
    });
    socket.on('close', () => {
      closed = true;
      finish();
    });
    socket.on('error', () => undefined);
    socket.on('connect', () => {
      for (const b of send) socket.write(b);
    });
  });
}

export function setVars(frame: ReturnType<typeof decodeFrame>): Record<string, unknown> {
  const r = frame.payload;
  // No prototype: a variable named __proto__ is a variable like any other.
  const vars: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  while (!r.done) {
    if (r.byte() !== 1 || r.byte() !== 3 || r.byte() !== 2) throw new Error('not a txn set-var');
    vars[r.string()] = r.typed();
  }
  return vars;
}


/** A connection playing HAProxy that stays open: frames arrive in `frames`, `closed` turns true at the end. */
export interface Peer {
  readonly socket: net.Socket;
  readonly frames: ReturnType<typeof decodeFrame>[];
  readonly closed: boolean;
}

export async function openPeer(port: number): Promise<Peer> {
  const socket = net.connect(port, '127.0.0.1');
  const peer = { socket, frames: [] as ReturnType<typeof decodeFrame>[], closed: false };
  let buf = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      peer.frames.push(decodeFrame(Buffer.from(buf.subarray(4, 4 + buf.readUInt32BE(0)))));
      buf = buf.subarray(4 + buf.readUInt32BE(0));
    }
  });
  socket.on('close', () => {
    peer.closed = true;
  });
  socket.on('error', () => undefined);
  await new Promise((resolve) => {
    socket.once('connect', resolve);
    socket.once('close', resolve);
  });
  return peer;
}
