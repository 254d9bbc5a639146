// SPOP 2.0's wire format (HAProxy's Stream Processing Offload Protocol, SPOE.txt), as idgate's agent
// speaks it: frames and their length prefix, varints, typed values, KV lists, messages, and the ACK that
// sets the check's answer as variables. No sockets here: spoe-agent.ts holds the connections.
//
// Parsing is defensive: a frame larger than the negotiated size, a bad varint, a truncated field or an
// unknown frame type throws SpopError with the AGENT-DISCONNECT status that closes that connection.
import { spoeIdentityVariablesOf, spoeVariablesAroundIdentity, spoeVariablesOf } from '../check/check-wire.js';
import type { CheckOutcome, WireIdentity } from '../check/contract.js';
import { SPOE_MAX_FRAME_SIZE as MAX_FRAME_SIZE } from '../limits.js';
import { oncePerObject } from '../per-object.js';

export const FRAME = { HAPROXY_HELLO: 1, HAPROXY_DISCONNECT: 2, NOTIFY: 3, AGENT_HELLO: 101, AGENT_DISCONNECT: 102, ACK: 103 } as const;
export const FLAG_FIN = 1;
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
const identityActions = oncePerObject((identity: WireIdentity) => encodeActions(spoeIdentityVariablesOf(identity)));

/**
 * The ACK answering a check with `outcome`: the bytes of encodeAck(spoeVariablesOf(outcome)). An allow's
 * identity variables are encoded once per WireIdentity object; only the frame's ids and the variables of
 * this request (status, request id, path, cookies) are written per answer.
 */
export function encodeAnswer(streamId: number, frameId: number, outcome: CheckOutcome): Buffer {
  const parts = spoeVariablesAroundIdentity(outcome);
  if (parts === undefined) return encodeAck(streamId, frameId, spoeVariablesOf(outcome));
  return encodeAck(streamId, frameId, parts.before, identityActions(parts.identity), parts.after);
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
