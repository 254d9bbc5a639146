// The SPOE agent: HAProxy's Stream Processing Offload Protocol (SPOP 2.0, Debian's haproxy docs,
// SPOE.txt), spoken by idgate itself. HAProxy sends the message `idgate-check` with the request's facts;
// the agent runs the very check the HTTP endpoint runs (createCheck) and answers with variables
// (scope txn, prefix set by HAProxy's `option var-prefix idgate`): status, location, www_authenticate,
// set_cookie, reason, body, content_type and the identity values.
//
// Parsing is defensive: a frame larger than the negotiated size, a bad varint, a truncated field or an
// unknown frame type closes that connection with an AGENT-DISCONNECT status; other connections go on.
import net from 'node:net';
import type { CheckAnswer, CheckRequest } from './check.js';

export const FRAME = { HAPROXY_HELLO: 1, HAPROXY_DISCONNECT: 2, NOTIFY: 3, AGENT_HELLO: 101, AGENT_DISCONNECT: 102, ACK: 103 } as const;
const FLAG_FIN = 1;
const TYPE = { NULL: 0, BOOL: 1, INT32: 2, UINT32: 3, INT64: 4, UINT64: 5, IPV4: 6, IPV6: 7, STRING: 8, BINARY: 9 } as const;
const SCOPE_TXN = 2;
const ACTION_SET_VAR = 1;
/** Answers a peer may leave unread before its connection is closed. */
const MAX_UNREAD_BYTES = 1 << 20;
/**
 * Our largest frame. HAProxy offers tune.bufsize - 4 (16380 by default, 32764 with the shipped
 * config) and the smaller of the two is used: a request's facts (a big Cookie header) must fit in one
 * frame, since fragments are refused.
 */
export const MAX_FRAME_SIZE = 65532;

export const STATUS = { NORMAL: 0, IO: 1, TIMEOUT: 2, TOO_BIG: 3, INVALID: 4, NO_VERSION: 5, NO_FRAME_SIZE: 6, NO_CAPABILITIES: 7, BAD_VERSION: 8, BAD_FRAME_SIZE: 9, FRAGMENTED: 10, UNKNOWN: 99 } as const;

export class SpopError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export type Value = null | boolean | number | bigint | string | Buffer;

// ---- encoding -------------------------------------------------------------------------------------

/** Peers varint: < 240 in one byte; else low 4 bits with 0xF0, then 7 bits a byte, high bit = more. */
export function encodeVarint(value: number): Buffer {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`varint out of range: ${value}`);
  const buf = Buffer.allocUnsafe(varintLength(value));
  writeVarint(buf, 0, value);
  return buf;
}

function encodeString(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([encodeVarint(bytes.length), bytes]);
}

function encodeTyped(value: Value): Buffer {
  if (value === null) return Buffer.from([TYPE.NULL]);
  if (typeof value === 'boolean') return Buffer.from([TYPE.BOOL | (value ? 0x10 : 0)]);
  if (typeof value === 'number') return Buffer.concat([Buffer.from([TYPE.UINT32]), encodeVarint(value)]);
  if (typeof value === 'string') return Buffer.concat([Buffer.from([TYPE.STRING]), encodeString(value)]);
  if (Buffer.isBuffer(value)) return Buffer.concat([Buffer.from([TYPE.BINARY]), encodeVarint(value.length), value]);
  throw new TypeError('unsupported value');
}

export function encodeKvList(items: Readonly<Record<string, Value>>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(items)) parts.push(encodeString(name), encodeTyped(value));
  return Buffer.concat(parts);
}

/** A whole frame with its 4-byte length prefix. */
export function encodeFrame(type: number, flags: number, streamId: number, frameId: number, payload: Buffer): Buffer {
  const head = Buffer.concat([Buffer.from([type]), Buffer.alloc(4), encodeVarint(streamId), encodeVarint(frameId)]);
  head.writeUInt32BE(flags, 1);
  const frame = Buffer.concat([head, payload]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(frame.length);
  return Buffer.concat([length, frame]);
}

function varintLength(value: number): number {
  if (value < 240) return 1;
  let n = 2;
  for (let rest = Math.floor((value - 240) / 16); rest >= 128; rest = Math.floor((rest - 128) / 128)) n++;
  return n;
}

function writeVarint(buf: Buffer, at: number, value: number): number {
  if (value < 240) {
    buf[at] = value;
    return at + 1;
  }
  buf[at++] = (value % 16) | 0xf0;
  let rest = Math.floor((value - 240) / 16);
  while (rest >= 128) {
    buf[at++] = (rest % 128) | 0x80;
    rest = Math.floor((rest - 128) / 128);
  }
  buf[at++] = rest;
  return at;
}

/**
 * A whole ACK frame setting `vars`, written into one buffer sized up front (the hot path: one
 * allocation per answer). Strings are typed STRING, numbers UINT32.
 */
export function encodeAck(streamId: number, frameId: number, vars: Readonly<Record<string, string | number>>): Buffer {
  const names = Object.keys(vars);
  let size = 1 + 4 + varintLength(streamId) + varintLength(frameId);
  for (const name of names) {
    const value = vars[name]!;
    const nameLength = Buffer.byteLength(name);
    size += 3 + varintLength(nameLength) + nameLength + 1;
    if (typeof value === 'number') size += varintLength(value);
    else {
      const length = Buffer.byteLength(value);
      size += varintLength(length) + length;
    }
  }
  const buf = Buffer.allocUnsafe(4 + size);
  buf.writeUInt32BE(size, 0);
  buf[4] = FRAME.ACK;
  buf.writeUInt32BE(FLAG_FIN, 5);
  let at = writeVarint(buf, 9, streamId);
  at = writeVarint(buf, at, frameId);
  for (const name of names) {
    const value = vars[name]!;
    buf[at++] = ACTION_SET_VAR;
    buf[at++] = 3;
    buf[at++] = SCOPE_TXN;
    at = writeVarint(buf, at, Buffer.byteLength(name));
    at += buf.write(name, at, 'utf8');
    if (typeof value === 'number') {
      buf[at++] = TYPE.UINT32;
      at = writeVarint(buf, at, value);
    } else {
      buf[at++] = TYPE.STRING;
      at = writeVarint(buf, at, Buffer.byteLength(value));
      at += buf.write(value, at, 'utf8');
    }
  }
  return buf;
}

// ---- decoding -------------------------------------------------------------------------------------

/** A cursor over one frame's bytes; every read checks its bounds. */
export class Reader {
  offset = 0;
  constructor(readonly buf: Buffer) {}

  get done(): boolean {
    return this.offset >= this.buf.length;
  }

  byte(): number {
    if (this.offset >= this.buf.length) throw new SpopError(STATUS.INVALID, 'truncated frame');
    return this.buf[this.offset++]!;
  }

  varint(): number {
    let value = this.byte();
    if (value < 240) return value;
    let shift = 4;
    let b: number;
    do {
      if (shift > 53) throw new SpopError(STATUS.INVALID, 'varint too long');
      b = this.byte();
      value += b * 2 ** shift;
      shift += 7;
    } while (b >= 128);
    if (!Number.isSafeInteger(value)) throw new SpopError(STATUS.INVALID, 'varint too large');
    return value;
  }

  bytes(length: number): Buffer {
    if (length > this.buf.length - this.offset) throw new SpopError(STATUS.INVALID, 'field longer than the frame');
    const out = this.buf.subarray(this.offset, this.offset + length);
    this.offset += length;
    return out;
  }

  string(): string {
    const length = this.varint();
    if (length > this.buf.length - this.offset) throw new SpopError(STATUS.INVALID, 'field longer than the frame');
    const start = this.offset;
    this.offset += length;
    return this.buf.toString('utf8', start, this.offset);
  }

  typed(): Value {
    const head = this.byte();
    switch (head & 0x0f) {
      case TYPE.NULL:
        return null;
      case TYPE.BOOL:
        return (head & 0x10) !== 0;
      case TYPE.INT32:
      case TYPE.UINT32:
      case TYPE.INT64:
      case TYPE.UINT64:
        return this.varint();
      case TYPE.IPV4:
        return Array.from(this.bytes(4)).join('.');
      case TYPE.IPV6: {
        const raw = this.bytes(16);
        const groups: string[] = [];
        for (let i = 0; i < 16; i += 2) groups.push(raw.readUInt16BE(i).toString(16));
        return groups.join(':');
      }
      case TYPE.STRING:
        return this.string();
      case TYPE.BINARY:
        return this.bytes(this.varint());
      default:
        throw new SpopError(STATUS.INVALID, `unknown data type ${head & 0x0f}`);
    }
  }

  kvList(): Record<string, Value> {
    const out: Record<string, Value> = {};
    while (!this.done) {
      const name = this.string();
      out[name] = this.typed();
    }
    return out;
  }
}

export interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly frameId: number;
  readonly payload: Reader;
}

export function decodeFrame(frame: Buffer): Frame {
  const reader = new Reader(frame);
  const type = reader.byte();
  const flags = reader.bytes(4).readUInt32BE(0);
  const streamId = reader.varint();
  const frameId = reader.varint();
  return { type, flags, streamId, frameId, payload: new Reader(frame.subarray(reader.offset)) };
}

/** NOTIFY payload: messages with their arguments. */
export function decodeMessages(payload: Reader): Map<string, Record<string, Value>> {
  const messages = new Map<string, Record<string, Value>>();
  while (!payload.done) {
    const name = payload.string();
    const count = payload.byte();
    const args: Record<string, Value> = {};
    for (let i = 0; i < count; i++) {
      const key = payload.string();
      args[key] = payload.typed();
    }
    messages.set(name, args);
  }
  return messages;
}

// ---- the agent ------------------------------------------------------------------------------------

export interface SpoeAgentOptions {
  readonly check: (request: CheckRequest) => Promise<CheckAnswer>;
  /** Peers allowed to speak for the client (HAProxy); others get their forwarded facts ignored by check. */
  readonly onError?: (message: string) => void;
}

const text = (v: Value | undefined) => (typeof v === 'string' && v !== '' ? v : undefined);

/**
 * The facts HAProxy sends in `idgate-check`, as the request the HTTP check would have received. With
 * several Cookie lines, `idgate-cookies` carries the first four: joined as one header, as Node does.
 */
export function requestFromMessage(args: Record<string, Value>, peer: string | undefined, cookieLines?: Record<string, Value>): CheckRequest {
  const cookie = cookieLines ? [cookieLines.cookie1, cookieLines.cookie2, cookieLines.cookie3, cookieLines.cookie4].map(text).filter((c) => c !== undefined).join('; ') || undefined : text(args.cookie);
  return {
    peer,
    headers: {
      'x-forwarded-method': text(args.method),
      'x-forwarded-uri': text(args.pathq),
      'x-forwarded-host': text(args.host),
      // `ssl_fc` arrives as a boolean; a string is accepted too (a config that passes a header).
      'x-forwarded-proto': args.proto === true ? 'https' : args.proto === false ? 'http' : text(args.proto),
      'x-forwarded-for': text(args.src),
      'x-request-id': text(args.id),
      cookie,
      authorization: text(args.authorization),
      accept: text(args.accept),
      'x-requested-with': text(args.xrw),
    },
  };
}

/** The check's answer as the contract's variables (txn.idgate.*). */
export function variablesFor(answer: CheckAnswer): Record<string, string | number> {
  const h = answer.headers;
  const vars: Record<string, string | number> = { status: answer.status };
  const put = (name: string, value: string | undefined) => {
    if (value !== undefined && value !== '') vars[name] = value;
  };
  put('location', h.Location);
  put('www_authenticate', h['WWW-Authenticate']);
  put('set_cookie', h['Set-Cookie']);
  put('content_type', h['Content-Type']);
  if (answer.status >= 400 && answer.status < 500) put('body', answer.body);
  put('user', h['X-Auth-User']);
  put('email', h['X-Auth-Email']);
  put('subject', h['X-Auth-Subject']);
  put('groups', h['X-Auth-Groups']);
  put('scopes', h['X-Auth-Scopes']);
  put('client', h['X-Auth-Client']);
  put('backend', h['X-Auth-Backend']);
  put('request_id', h['X-Auth-Request-Id']);
  put('issuer', h['X-Auth-Issuer']);
  if (h['X-Auth-Groups-Truncated']) vars.groups_truncated = 1;
  if (h['X-Auth-Scopes-Truncated']) vars.scopes_truncated = 1;
  // What HAProxy forwards on an allow: the decided path, and the Cookie header without idgate's cookies.
  put('path', h['X-Idgate-Path']);
  if (h['X-Idgate-Cookie'] !== undefined) {
    vars.cookie_strip = 1;
    put('cookie', h['X-Idgate-Cookie']);
  }
  if (answer.status !== 200) {
    try {
      const reason = (JSON.parse(answer.body) as { reason?: unknown }).reason;
      if (typeof reason === 'string') vars.reason = reason;
    } catch {
      // an HTML page: no reason variable
    }
  }
  return vars;
}

export function createSpoeAgent(options: SpoeAgentOptions): net.Server {
  return net.createServer({ noDelay: true }, (socket) => {
    let buffered: Buffer = Buffer.alloc(0);
    let frameSize = MAX_FRAME_SIZE;
    let greeted = false;
    let closing = false;
    // Answers finished in one turn of the event loop leave in one write (HAProxy pipelines many frames).
    let outbox: Buffer[] = [];
    const flush = () => {
      const out = outbox;
      outbox = [];
      if (closing || socket.destroyed || !out.length) return;
      socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
      // A peer that sends but never reads would make us buffer its answers without bound.
      if (socket.writableLength > MAX_UNREAD_BYTES) {
        options.onError?.('spoe: closing a connection whose peer does not read its answers');
        socket.destroy();
      }
    };
    const send = (frame: Buffer) => {
      if (outbox.push(frame) === 1) setImmediate(flush);
    };

    const disconnectFrame = (status: number, message: string) => encodeFrame(FRAME.AGENT_DISCONNECT, FLAG_FIN, 0, 0, encodeKvList({ 'status-code': status, message }));
    /** Writes what is pending, then closes; a peer that never reads must not hold the socket forever. */
    const close = (last: Buffer[]) => {
      closing = true;
      socket.end(Buffer.concat([...outbox, ...last]));
      outbox = [];
      setTimeout(() => socket.destroy(), 1000).unref();
    };

    const handle = (frame: Frame): Buffer | undefined => {
      if (frame.type === FRAME.HAPROXY_HELLO) {
        const hello = frame.payload.kvList();
        const versions = typeof hello['supported-versions'] === 'string' ? hello['supported-versions'].split(',').map((v) => v.trim()) : [];
        if (!versions.length) throw new SpopError(STATUS.NO_VERSION, 'no supported-versions');
        if (!versions.some((v) => v.startsWith('2.'))) throw new SpopError(STATUS.BAD_VERSION, 'SPOP 2.0 only');
        if (typeof hello['max-frame-size'] !== 'number') throw new SpopError(STATUS.NO_FRAME_SIZE, 'no max-frame-size');
        if (hello['max-frame-size'] < 256) throw new SpopError(STATUS.BAD_FRAME_SIZE, 'max-frame-size too small');
        frameSize = Math.min(MAX_FRAME_SIZE, hello['max-frame-size']);
        greeted = true;
        const reply = encodeFrame(FRAME.AGENT_HELLO, FLAG_FIN, 0, 0, encodeKvList({ version: '2.0', 'max-frame-size': frameSize, capabilities: 'pipelining,async' }));
        // A health check only wants the hello: answer, then close.
        if (hello.healthcheck === true) closing = true;
        return reply;
      }
      if (!greeted) throw new SpopError(STATUS.INVALID, 'a frame before HAPROXY-HELLO');
      if (frame.type === FRAME.HAPROXY_DISCONNECT) {
        closing = true;
        return disconnectFrame(STATUS.NORMAL, 'bye');
      }
      if (frame.type !== FRAME.NOTIFY) throw new SpopError(STATUS.INVALID, `unexpected frame type ${frame.type}`);
      if ((frame.flags & FLAG_FIN) === 0) throw new SpopError(STATUS.FRAGMENTED, 'fragmented frames are not supported');
      const messages = decodeMessages(frame.payload);
      const args = messages.get('idgate-check');
      const { streamId, frameId } = frame;
      if (!args) return encodeFrame(FRAME.ACK, FLAG_FIN, streamId, frameId, Buffer.alloc(0));
      void options.check(requestFromMessage(args, socket.remoteAddress, messages.get('idgate-cookies'))).then((answer) => {
        if (closing || socket.destroyed) return;
        const vars = variablesFor(answer);
        let ack = encodeAck(streamId, frameId, vars);
        if (ack.length - 4 > frameSize) {
          // Too much to set (a huge body): keep the decision, drop the page.
          delete vars.body;
          ack = encodeAck(streamId, frameId, vars);
        }
        send(ack);
      });
      return undefined;
    };

    socket.on('data', (chunk: Buffer) => {
      if (closing) return;
      buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
      const replies: Buffer[] = [];
      try {
        while (buffered.length >= 4) {
          const length = buffered.readUInt32BE(0);
          if (length > frameSize) throw new SpopError(STATUS.TOO_BIG, `frame of ${length} bytes`);
          if (buffered.length < 4 + length) break;
          const frame = decodeFrame(buffered.subarray(4, 4 + length));
          buffered = buffered.subarray(4 + length);
          const reply = handle(frame);
          if (reply) replies.push(reply);
          if (closing) break;
        }
      } catch (err) {
        const status = err instanceof SpopError ? err.status : STATUS.UNKNOWN;
        options.onError?.(`spoe: closing a connection: ${(err as Error).message}`);
        close([...replies, disconnectFrame(status, (err as Error).message)]);
        return;
      }
      if (closing) close(replies);
      else for (const reply of replies) send(reply);
    });
    socket.on('error', () => socket.destroy());
    socket.setTimeout(120_000, () => socket.destroy());
  });
}
