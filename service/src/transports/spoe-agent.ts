// The SPOE agent: HAProxy's Stream Processing Offload Protocol (SPOP 2.0, Debian's haproxy docs,
// SPOE.txt), spoken by idgate itself. HAProxy sends the message `idgate-check` with the request's facts;
// the agent maps its typed arguments to the check's input, runs the very check the HTTP endpoint runs
// (createCheck) and answers with variables (scope txn, prefix set by HAProxy's `option var-prefix
// idgate`): the outcome's fields, as check-wire.ts OUTCOME_FIELDS lists them.
//
// Parsing is defensive: a frame larger than the negotiated size, a bad varint, a truncated field or an
// unknown frame type closes that connection with an AGENT-DISCONNECT status; other connections go on.
import net from 'node:net';
import { clientAddressOf, spoeIdentityVariablesOf, spoeVariablesAroundIdentity, spoeVariablesOf } from '../check/check-wire.js';
import { refusedCheckInput, type Check, type CheckInput, type CheckOutcome, type WireIdentity } from '../check/contract.js';
import { CHECK_SECRET_ARGUMENT, createCheckSecretMatcher } from './check-secret.js';
import type { AddressMatcher } from '../net.js';
import { FINISH_BOUND_MS, SPOE_CLOSE_GRACE_MS, SPOE_HELLO_TIMEOUT_MS, SPOE_IDLE_TIMEOUT_MS, SPOE_MAX_FRAME_SIZE as MAX_FRAME_SIZE, SPOE_MAX_UNREAD_BYTES as MAX_UNREAD_BYTES, SPOE_WARNING_KEYS, SPOE_WARNING_WINDOW_MS } from '../limits.js';

export const FRAME = { HAPROXY_HELLO: 1, HAPROXY_DISCONNECT: 2, NOTIFY: 3, AGENT_HELLO: 101, AGENT_DISCONNECT: 102, ACK: 103 } as const;
const FLAG_FIN = 1;
const TYPE = { NULL: 0, BOOL: 1, INT32: 2, UINT32: 3, INT64: 4, UINT64: 5, IPV4: 6, IPV6: 7, STRING: 8, BINARY: 9 } as const;
const SCOPE_TXN = 2;
const ACTION_SET_VAR = 1;
export { MAX_FRAME_SIZE };

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
 * allocation per answer). Strings are typed STRING, numbers UINT32. With `encoded` and `after`: the
 * actions of `vars`, then `encoded` (actions encoded before, by `encodeActions`), then those of `after`.
 */
export function encodeAck(streamId: number, frameId: number, vars: Readonly<Record<string, string | number>>, encoded?: Buffer, after?: Readonly<Record<string, string | number>>): Buffer {
  const size = 1 + 4 + varintLength(streamId) + varintLength(frameId) + actionsSize(vars) + (encoded?.length ?? 0) + (after ? actionsSize(after) : 0);
  const buf = Buffer.allocUnsafe(4 + size);
  buf.writeUInt32BE(size, 0);
  buf[4] = FRAME.ACK;
  buf.writeUInt32BE(FLAG_FIN, 5);
  let at = writeVarint(buf, 9, streamId);
  at = writeVarint(buf, at, frameId);
  at = writeActions(buf, at, vars);
  if (encoded) at += encoded.copy(buf, at);
  if (after) writeActions(buf, at, after);
  return buf;
}

/** SET-VAR actions (scope txn) for `vars`, alone: a piece of ACK payload for `encodeAck` to splice in. */
export function encodeActions(vars: Readonly<Record<string, string | number>>): Buffer {
  const buf = Buffer.allocUnsafe(actionsSize(vars));
  writeActions(buf, 0, vars);
  return buf;
}

function actionsSize(vars: Readonly<Record<string, string | number>>): number {
  let size = 0;
  for (const name in vars) {
    const value = vars[name]!;
    size += actionHead(name).length + 1;
    if (typeof value === 'number') size += varintLength(value);
    else {
      const length = Buffer.byteLength(value);
      size += varintLength(length) + length;
    }
  }
  return size;
}

function writeActions(buf: Buffer, at: number, vars: Readonly<Record<string, string | number>>): number {
  for (const name in vars) {
    const value = vars[name]!;
    const head = actionHead(name);
    buf.set(head, at);
    at += head.length;
    if (typeof value === 'number') {
      buf[at++] = TYPE.UINT32;
      at = writeVarint(buf, at, value);
    } else {
      buf[at++] = TYPE.STRING;
      at = writeVarint(buf, at, Buffer.byteLength(value));
      at += buf.write(value, at, 'utf8');
    }
  }
  return at;
}

/** SET-VAR's bytes up to the value: action, argument count, scope, the name. Encoded once per name. */
const actionHeads = new Map<string, Buffer>();

function actionHead(name: string): Buffer {
  let head = actionHeads.get(name);
  if (head === undefined) {
    const nameLength = Buffer.byteLength(name);
    head = Buffer.allocUnsafe(3 + varintLength(nameLength) + nameLength);
    head[0] = ACTION_SET_VAR;
    head[1] = 3;
    head[2] = SCOPE_TXN;
    head.write(name, writeVarint(head, 3, nameLength), 'utf8');
    // The agent sets a few dozen names at most; others (none today) are encoded each time.
    if (actionHeads.size < 64) actionHeads.set(name, head);
  }
  return head;
}

/** Per WireIdentity object (check.ts reuses one while the identity, policy, rule and backend stay): its SET-VAR actions. */
const identityActions = new WeakMap<WireIdentity, Buffer>();

/**
 * The ACK answering a check with `outcome`: the bytes of encodeAck(spoeVariablesOf(outcome)). An allow's
 * identity variables are encoded once per WireIdentity object; only the frame's ids and the variables of
 * this request (status, request id, path, cookies) are written per answer.
 */
export function encodeAnswer(streamId: number, frameId: number, outcome: CheckOutcome): Buffer {
  const parts = spoeVariablesAroundIdentity(outcome);
  if (parts === undefined) return encodeAck(streamId, frameId, spoeVariablesOf(outcome));
  let encoded = identityActions.get(parts.identity);
  if (encoded === undefined) {
    encoded = encodeActions(spoeIdentityVariablesOf(parts.identity));
    identityActions.set(parts.identity, encoded);
  }
  return encodeAck(streamId, frameId, parts.before, encoded, parts.after);
}

// ---- decoding -------------------------------------------------------------------------------------

/** Names read before (Reader.name), by a hash of their bytes: 1024 slots, so a peer cannot make it grow. */
const knownNames: (string | undefined)[] = new Array<string | undefined>(1024).fill(undefined);
const MAX_KNOWN_NAME = 64;

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

  /**
   * A name (of a message, an argument, a hello item): what `string` reads, but the few names HAProxy
   * sends over and over come back as the same strings, compared byte by byte, without decoding them.
   */
  name(): string {
    const length = this.varint();
    if (length > this.buf.length - this.offset) throw new SpopError(STATUS.INVALID, 'field longer than the frame');
    const start = this.offset;
    this.offset += length;
    if (length === 0 || length > MAX_KNOWN_NAME) return this.buf.toString('utf8', start, this.offset);
    let hash = length;
    for (let i = start; i < this.offset; i++) hash = (hash * 31 + this.buf[i]!) & 0x3ff;
    const known = knownNames[hash];
    if (known !== undefined && known.length === length) {
      let same = true;
      for (let i = 0; i < length; i++) {
        if (known.charCodeAt(i) !== this.buf[start + i]) {
          same = false;
          break;
        }
      }
      if (same) return known;
    }
    const name = this.buf.toString('utf8', start, this.offset);
    // Only ASCII names are kept (a char code is then its byte); one per slot, the latest.
    if (/^[\x20-\x7e]+$/.test(name)) knownNames[hash] = name;
    return name;
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
      const name = this.name();
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
    const name = payload.name();
    const count = payload.byte();
    const args: Record<string, Value> = {};
    for (let i = 0; i < count; i++) {
      const key = payload.name();
      args[key] = payload.typed();
    }
    messages.set(name, args);
  }
  return messages;
}

// ---- the agent ------------------------------------------------------------------------------------

export interface SpoeAgentOptions {
  readonly check: Check;
  /** Connections held at once (IDGATE_SPOE_MAX_CONNECTIONS); more are closed as they arrive. */
  readonly maxConnections: number;
  /**
   * Checks one connection may have running at once (IDGATE_SPOE_MAX_INFLIGHT); a NOTIFY beyond it is
   * answered status 503 at once.
   */
  readonly maxInFlight: number;
  /** Milliseconds a connection may take to send HAPROXY-HELLO before it is closed. Default 2000. */
  readonly helloTimeoutMs?: number;
  /**
   * Peers allowed to speak for the client (HAProxy; IDGATE_TRUSTED_PROXIES). Any other peer is closed
   * as it connects, before a byte of it is read.
   */
  readonly trustedPeers: AddressMatcher;
  /**
   * IDGATE_CHECK_SECRETS: a message whose `secret` argument is none of them is answered as the HTTP
   * check answers a check without it (status 403, untrusted_peer), never judged. Default: none needed.
   */
  readonly checkSecrets?: readonly string[];
  /** Warnings, one line each; those a peer can cause at will are at most one per ~10 s per kind. */
  readonly onError?: (message: string) => void;
  /**
   * True while the process is stopping: HAProxy's health check (a HAPROXY-HELLO with healthcheck set,
   * `option spop-check`) is answered AGENT-DISCONNECT, which HAProxy counts as a failed check, so it
   * takes this agent out as it does an HTTP replica whose /readyz says 503. Checks still run meanwhile.
   */
  readonly draining?: () => boolean;
}

/** The agent's server, and how it stops without failing a check. */
export interface SpoeAgent extends net.Server {
  /**
   * Stops accepting, closes idle connections with AGENT-DISCONNECT, answers the checks that are running
   * and then disconnects their connections too. Resolves once every connection is closed, or after
   * `timeoutMs` (default 5000), when the rest are cut. SPOP has no way to say "send nothing more": a
   * frame HAProxy writes while the AGENT-DISCONNECT is on its way is lost, and HAProxy answers its
   * request 503 after `timeout processing` (docs/operations.md has the measured count).
   */
  shutdown(timeoutMs?: number): Promise<void>;
}

const text = (v: Value | undefined) => (typeof v === 'string' && v !== '' ? v : undefined);

/**
 * The facts HAProxy sends in `idgate-check` (spoe-idgate.conf), as the check's input: each typed argument
 * is one field (check-wire.ts INPUT_FIELDS). With several Cookie lines, `idgate-cookies` carries the first four: joined as one header,
 * as Node does.
 */
export function checkInputFromMessage(args: Record<string, Value>, peer: string | undefined, cookieLines?: Record<string, Value>): CheckInput {
  const cookie = cookieLines ? [cookieLines.cookie1, cookieLines.cookie2, cookieLines.cookie3, cookieLines.cookie4].map(text).filter((c) => c !== undefined).join('; ') || undefined : text(args.cookie);
  return {
    // The agent closed every peer outside IDGATE_TRUSTED_PROXIES as it connected, before reading a byte.
    fromTrustedProxy: true,
    peer,
    method: text(args.method),
    // `ssl_fc` arrives as a boolean; a string is accepted too (a config that passes a header).
    scheme: args.proto === true ? 'https' : args.proto === false ? 'http' : text(args.proto),
    host: text(args.host),
    pathq: text(args.pathq),
    clientAddress: clientAddressOf(text(args.src), peer),
    requestId: text(args.id),
    cookie,
    authorization: text(args.authorization),
    dpop: text(args.dpop),
    accept: text(args.accept),
    requestedWith: text(args.xrw),
    origin: text(args.origin),
    corsRequestMethod: text(args.acrm),
    destination: text(args.dest),
  };
}

/**
 * Cuts a connection's byte stream into frames, copying each byte at most once: a frame that arrives
 * whole inside one chunk is a view of that chunk; one split across chunks is copied into a buffer of its
 * announced size as its pieces arrive. The announced size is checked against `limit` as soon as the
 * 4-byte prefix is in, so an oversized frame is refused before a byte of its body is kept.
 */
export class FrameSplitter {
  /** Largest frame body accepted (the negotiated max-frame-size). */
  limit = MAX_FRAME_SIZE;
  private rest: Buffer = Buffer.alloc(0);
  private readonly prefix = Buffer.alloc(4);
  private prefixFilled = 0;
  private body: Buffer | undefined;
  private bodyFilled = 0;

  /** Takes the next chunk; call `next()` until it returns undefined before pushing another. */
  push(chunk: Buffer): void {
    this.rest = chunk;
  }

  /** The next whole frame (without its length prefix), or undefined when more bytes are needed. */
  next(): Buffer | undefined {
    if (!this.body) {
      let length: number;
      if (this.prefixFilled === 0 && this.rest.length >= 4) {
        length = this.rest.readUInt32BE(0);
        this.rest = this.rest.subarray(4);
      } else {
        const n = this.rest.copy(this.prefix, this.prefixFilled, 0, 4 - this.prefixFilled);
        this.prefixFilled += n;
        this.rest = this.rest.subarray(n);
        if (this.prefixFilled < 4) return undefined;
        this.prefixFilled = 0;
        length = this.prefix.readUInt32BE(0);
      }
      if (length > this.limit) throw new SpopError(STATUS.TOO_BIG, `frame of ${length} bytes`);
      if (this.rest.length >= length) {
        const frame = this.rest.subarray(0, length);
        this.rest = this.rest.subarray(length);
        return frame;
      }
      this.body = Buffer.allocUnsafe(length);
      this.bodyFilled = 0;
    }
    const n = this.rest.copy(this.body, this.bodyFilled);
    this.bodyFilled += n;
    this.rest = this.rest.subarray(n);
    if (this.bodyFilled < this.body.length) return undefined;
    const frame = this.body;
    this.body = undefined;
    return frame;
  }
}

/**
 * Warnings a peer can cause at will (refused connections, caps reached) as at most one line per key
 * (a peer address, a cap) per `windowMs`, each saying how many events it stands for. At most
 * `maxKeys` keys are remembered; beyond them, events share one key `many peers`.
 */
export function createWarningThrottle(
  warn: (message: string) => void,
  options: { windowMs?: number; maxKeys?: number; now?: () => number } = {},
): (key: string, describe: (key: string, count: number) => string) => void {
  const windowMs = options.windowMs ?? SPOE_WARNING_WINDOW_MS;
  const maxKeys = options.maxKeys ?? SPOE_WARNING_KEYS;
  const now = options.now ?? Date.now;
  /** Per key: when its last line was written, and the events since. */
  const windows = new Map<string, { since: number; count: number }>();
  return (key, describe) => {
    const t = now();
    if (!windows.has(key) && windows.size >= maxKeys) {
      for (const [k, w] of windows) if (t - w.since >= windowMs) windows.delete(k);
      if (windows.size >= maxKeys) key = 'many peers';
    }
    const w = windows.get(key);
    if (w && t - w.since < windowMs) {
      w.count++;
      return;
    }
    warn(describe(key, (w?.count ?? 0) + 1));
    windows.set(key, { since: t, count: 0 });
  };
}

/**
 * The agent: a TCP server speaking SPOP for HAProxy. What it bounds, and why:
 * - peers outside `trustedPeers` are closed as they connect, unread (a local user or another host must
 *   not get checks run, nor hold connections);
 * - at most `maxConnections` connections (node's server.maxConnections closes the ones beyond);
 * - HAPROXY-HELLO within `helloTimeoutMs`, else the connection is closed (HAProxy sends it at once);
 * - frames no larger than the negotiated size, refused from their length prefix;
 * - at most `maxInFlight` checks running per connection: HAProxy keeps max-waiting-frames (20 by
 *   default) unanswered per connection, so more means a misconfigured or hostile peer. A frame beyond
 *   the bound is answered status=503 at once (HAProxy fails that request closed) rather than the
 *   connection being dropped: the connection carries other requests, whose checks are already running
 *   and would be failed too, and HAProxy would only reconnect and send the same load again;
 * - answers the peer leaves unread (MAX_UNREAD_BYTES), and 120 s of silence.
 */
export function createSpoeAgent(options: SpoeAgentOptions): SpoeAgent {
  const warn = (message: string) => options.onError?.(message);
  // Apart: a flood of refused peers must not silence the caps' warnings.
  const warnPerPeer = createWarningThrottle(warn);
  const warnPerCap = createWarningThrottle(warn);
  const helloTimeoutMs = options.helloTimeoutMs ?? SPOE_HELLO_TIMEOUT_MS;
  const hasSecret = createCheckSecretMatcher(options.checkSecrets ?? []);
  /** Each open connection's way to stop: disconnect now if idle, else once its last check is answered. */
  const connections = new Map<net.Socket, () => void>();
  let stopping = false;
  // pauseOnConnect: nothing is read from a connection until its peer is known to be trusted.
  const server = net.createServer({ noDelay: true, pauseOnConnect: true }, (socket) => {
    if (!options.trustedPeers(socket.remoteAddress)) {
      socket.destroy();
      const peer = socket.remoteAddress ?? 'an unknown address';
      warnPerPeer(peer, (key, count) =>
        key === peer
          ? `spoe: refused a connection from ${peer}, not in IDGATE_TRUSTED_PROXIES (${count} refused from it since the last such line)`
          : `spoe: refused a connection from ${peer}, not in IDGATE_TRUSTED_PROXIES (${count} refused from it and from too many other peers to name since the last such line)`);
      return;
    }
    const splitter = new FrameSplitter();
    let greeted = false;
    let closing = false;
    let inFlight = 0;
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
      clearTimeout(helloTimer);
      socket.end(Buffer.concat([...outbox, ...last]));
      outbox = [];
      setTimeout(() => socket.destroy(), SPOE_CLOSE_GRACE_MS).unref();
    };
    /** When stopping: an idle connection is told AGENT-DISCONNECT (HAProxy then opens one to another agent). */
    const disconnectIfIdle = () => {
      if (stopping && inFlight === 0 && !closing && !socket.destroyed) close([disconnectFrame(STATUS.NORMAL, 'agent stopping')]);
    };
    connections.set(socket, disconnectIfIdle);
    const helloTimer = setTimeout(() => {
      if (closing || socket.destroyed) return;
      options.onError?.(`spoe: closing a connection from ${socket.remoteAddress ?? 'an unknown address'} that sent no HAPROXY-HELLO within ${helloTimeoutMs} ms`);
      close([disconnectFrame(STATUS.TIMEOUT, 'no HAPROXY-HELLO in time')]);
    }, helloTimeoutMs);
    helloTimer.unref();

    const handle = (frame: Frame): Buffer | undefined => {
      if (frame.type === FRAME.HAPROXY_HELLO) {
        const hello = frame.payload.kvList();
        const versions = typeof hello['supported-versions'] === 'string' ? hello['supported-versions'].split(',').map((v) => v.trim()) : [];
        if (!versions.length) throw new SpopError(STATUS.NO_VERSION, 'no supported-versions');
        if (!versions.some((v) => v.startsWith('2.'))) throw new SpopError(STATUS.BAD_VERSION, 'SPOP 2.0 only');
        if (typeof hello['max-frame-size'] !== 'number') throw new SpopError(STATUS.NO_FRAME_SIZE, 'no max-frame-size');
        if (hello['max-frame-size'] < 256) throw new SpopError(STATUS.BAD_FRAME_SIZE, 'max-frame-size too small');
        splitter.limit = Math.min(MAX_FRAME_SIZE, hello['max-frame-size']);
        greeted = true;
        clearTimeout(helloTimer);
        const reply = encodeFrame(FRAME.AGENT_HELLO, FLAG_FIN, 0, 0, encodeKvList({ version: '2.0', 'max-frame-size': splitter.limit, capabilities: 'pipelining,async' }));
        // A health check only wants the hello: answer, then close. A stopping agent fails it.
        if (hello.healthcheck === true) {
          closing = true;
          if (stopping || options.draining?.()) return disconnectFrame(STATUS.NORMAL, 'agent stopping');
        }
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
      // The -retry names: the same facts, asked again by HAProxy after a failed exchange (spoe-idgate.conf).
      const args = messages.get('idgate-check') ?? messages.get('idgate-check-retry');
      const { streamId, frameId } = frame;
      if (!args) return encodeFrame(FRAME.ACK, FLAG_FIN, streamId, frameId, Buffer.alloc(0));
      if (inFlight >= options.maxInFlight) {
        warnPerCap('in-flight cap', (_key, count) => `spoe: a connection has ${options.maxInFlight} checks running (IDGATE_SPOE_MAX_INFLIGHT); answered 503 to ${count} frame(s) beyond it since the last such line`);
        return encodeAck(streamId, frameId, { status: 503 });
      }
      inFlight++;
      // The secret rides in every message, not the connection: SPOP's hello has no room for it.
      const input = hasSecret(args[CHECK_SECRET_ARGUMENT]) ? checkInputFromMessage(args, socket.remoteAddress, messages.get('idgate-cookies') ?? messages.get('idgate-cookies-retry')) : refusedCheckInput(socket.remoteAddress, 'secret');
      options.check(input).then(
        (outcome) => {
          inFlight--;
          if (closing || socket.destroyed) return;
          let ack = encodeAnswer(streamId, frameId, outcome);
          if (ack.length - 4 > splitter.limit) {
            // Too much to set (a huge body): keep the decision, drop the page.
            const vars = spoeVariablesOf(outcome);
            delete vars.body;
            ack = encodeAck(streamId, frameId, vars);
          }
          send(ack);
          disconnectIfIdle();
        },
        (err: unknown) => {
          // The check answers errors itself; should it ever throw, that request fails closed.
          inFlight--;
          options.onError?.(`spoe: the check failed, answered 503: ${err instanceof Error ? err.message : String(err)}`);
          if (!closing && !socket.destroyed) send(encodeAck(streamId, frameId, { status: 503 }));
          disconnectIfIdle();
        },
      );
      return undefined;
    };

    socket.on('data', (chunk: Buffer) => {
      if (closing) return;
      splitter.push(chunk);
      const replies: Buffer[] = [];
      try {
        for (let frame = splitter.next(); frame; frame = closing ? undefined : splitter.next()) {
          const reply = handle(decodeFrame(frame));
          if (reply) replies.push(reply);
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
    socket.on('close', () => {
      clearTimeout(helloTimer);
      connections.delete(socket);
    });
    socket.setTimeout(SPOE_IDLE_TIMEOUT_MS, () => socket.destroy());
    socket.resume();
  });
  const shutdown = (timeoutMs = FINISH_BOUND_MS) =>
    new Promise<void>((resolve) => {
      stopping = true;
      const cut = setTimeout(() => {
        for (const socket of connections.keys()) socket.destroy();
      }, timeoutMs);
      cut.unref();
      server.close(() => {
        clearTimeout(cut);
        resolve();
      });
      for (const disconnectIfIdle of connections.values()) disconnectIfIdle();
    });
  server.maxConnections = options.maxConnections;
  server.on('drop', (data?: { remoteAddress?: string }) => {
    warnPerCap('connection cap', (_key, count) => `spoe: ${options.maxConnections} connections open (IDGATE_SPOE_MAX_CONNECTIONS); closed ${count} more since the last such line, the latest from ${data?.remoteAddress ?? 'an unknown address'}`);
  });
  return Object.assign(server, { shutdown });
}
