// The SPOE agent: HAProxy's Stream Processing Offload Protocol (SPOP 2.0, Debian's haproxy docs,
// SPOE.txt), spoken by idgate itself. HAProxy sends the message `idgate-check` with the request's facts;
// the agent maps its typed arguments to the check's input, runs the very check the HTTP endpoint runs
// (built once by the wiring) and answers with variables (scope txn, prefix set by HAProxy's `option
// var-prefix idgate`): the outcome's fields, as check-wire.ts OUTCOME_FIELDS lists them. The bytes are
// spoe-codec.ts's; here are the connections, the checks in flight on each, and their bounds.
//
// A frame the codec refuses (too large, a bad varint, a truncated field, an unknown frame type) closes
// that connection with an AGENT-DISCONNECT status; other connections go on.
import net from 'node:net';
import { clientAddressOf, spoeVariablesOf } from '../check/check-wire.js';
import { refusedCheckInput, type Check, type CheckInput, type CheckOutcome } from '../check/contract.js';
import { CHECK_SECRET_ARGUMENT, createCheckSecretMatcher } from './check-secret.js';
import { decodeFrame, decodeMessages, encodeAck, encodeAnswer, encodeFrame, encodeKvList, FLAG_FIN, FRAME, FrameSplitter, MAX_FRAME_SIZE, SpopError, STATUS, type Frame, type Value } from './spoe-codec.js';
import type { AddressMatcher } from '../net.js';
import { FINISH_BOUND_MS, SPOE_CLOSE_GRACE_MS, SPOE_HELLO_TIMEOUT_MS, SPOE_IDLE_TIMEOUT_MS, SPOE_MAX_UNREAD_BYTES as MAX_UNREAD_BYTES, SPOE_WARNING_KEYS, SPOE_WARNING_WINDOW_MS } from '../limits.js';

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
 * The arguments of `idgate-cookies` (and its retry), sent only when the client wrote several Cookie lines:
 * the first four, each under its own name (spoe-idgate.conf's lines are generated from this list).
 */
export const COOKIE_LINE_ARGUMENTS: readonly { readonly argument: string; readonly fetch: string }[] = [1, 2, 3, 4].map((n) => ({ argument: `cookie${n}`, fetch: `req.fhdr(cookie,${n})` }));

/**
 * The facts HAProxy sends in `idgate-check` (spoe-idgate.conf), as the check's input: each typed argument
 * is one field (check-wire.ts INPUT_FIELDS). With several Cookie lines, `idgate-cookies` carries the first four: joined as one header,
 * as Node does.
 */
export function checkInputFromMessage(args: Record<string, Value>, peer: string | undefined, cookieLines?: Record<string, Value>): CheckInput {
  const cookie = cookieLines ? COOKIE_LINE_ARGUMENTS.map((a) => text(cookieLines[a.argument])).filter((c) => c !== undefined).join('; ') || undefined : text(args.cookie);
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
  const agent: AgentState = {
    options,
    // Apart: a flood of refused peers must not silence the caps' warnings.
    warnPerPeer: createWarningThrottle(warn),
    warnPerCap: createWarningThrottle(warn),
    helloTimeoutMs: options.helloTimeoutMs ?? SPOE_HELLO_TIMEOUT_MS,
    hasSecret: createCheckSecretMatcher(options.checkSecrets ?? []),
    connections: new Map(),
    stopping: false,
  };
  // pauseOnConnect: nothing is read from a connection until its peer is known to be trusted.
  const server = net.createServer({ noDelay: true, pauseOnConnect: true }, (socket) => {
    if (!options.trustedPeers(socket.remoteAddress)) return refuseUntrustedPeer(agent, socket);
    agent.connections.set(socket, new SpoeConnection(agent, socket));
    socket.resume();
  });
  server.maxConnections = options.maxConnections;
  server.on('drop', (data?: { remoteAddress?: string }) => {
    agent.warnPerCap('connection cap', (_key, count) => `spoe: ${options.maxConnections} connections open (IDGATE_SPOE_MAX_CONNECTIONS); closed ${count} more since the last such line, the latest from ${data?.remoteAddress ?? 'an unknown address'}`);
  });
  return Object.assign(server, { shutdown: (timeoutMs?: number) => shutdownAgent(agent, server, timeoutMs) });
}

/** What every connection of one agent shares: its options, its warnings, and whether it is stopping. */
interface AgentState {
  readonly options: SpoeAgentOptions;
  readonly warnPerPeer: ReturnType<typeof createWarningThrottle>;
  readonly warnPerCap: ReturnType<typeof createWarningThrottle>;
  readonly helloTimeoutMs: number;
  readonly hasSecret: (presented: unknown) => boolean;
  /** Each open connection, to disconnect when the agent stops. */
  readonly connections: Map<net.Socket, SpoeConnection>;
  stopping: boolean;
}

/** A peer outside IDGATE_TRUSTED_PROXIES: closed unread, and a (throttled) line saying so. */
function refuseUntrustedPeer(agent: AgentState, socket: net.Socket): void {
  socket.destroy();
  const peer = socket.remoteAddress ?? 'an unknown address';
  agent.warnPerPeer(peer, (key, count) =>
    key === peer
      ? `spoe: refused a connection from ${peer}, not in IDGATE_TRUSTED_PROXIES (${count} refused from it since the last such line)`
      : `spoe: refused a connection from ${peer}, not in IDGATE_TRUSTED_PROXIES (${count} refused from it and from too many other peers to name since the last such line)`);
}

/** SpoeAgent.shutdown: stop accepting, disconnect each connection once idle, cut the rest after `timeoutMs`. */
function shutdownAgent(agent: AgentState, server: net.Server, timeoutMs = FINISH_BOUND_MS): Promise<void> {
  return new Promise<void>((resolve) => {
    agent.stopping = true;
    const cut = setTimeout(() => {
      for (const socket of agent.connections.keys()) socket.destroy();
    }, timeoutMs);
    cut.unref();
    server.close(() => {
      clearTimeout(cut);
      resolve();
    });
    for (const connection of agent.connections.values()) connection.disconnectIfIdle();
  });
}

function disconnectFrame(status: number, message: string): Buffer {
  return encodeFrame(FRAME.AGENT_DISCONNECT, FLAG_FIN, 0, 0, encodeKvList({ 'status-code': status, message }));
}

/** One trusted connection from HAProxy: its frames in, its checks in flight, its answers out. */
class SpoeConnection {
  private readonly splitter = new FrameSplitter();
  private greeted = false;
  private closing = false;
  private inFlight = 0;
  /** Answers finished in one turn of the event loop leave in one write (HAProxy pipelines many frames). */
  private outbox: Buffer[] = [];
  private readonly helloTimer: NodeJS.Timeout;

  constructor(
    private readonly agent: AgentState,
    private readonly socket: net.Socket,
  ) {
    this.helloTimer = setTimeout(() => this.helloTimedOut(), agent.helloTimeoutMs);
    this.helloTimer.unref();
    socket.on('data', (chunk: Buffer) => this.read(chunk));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      clearTimeout(this.helloTimer);
      agent.connections.delete(socket);
    });
    socket.setTimeout(SPOE_IDLE_TIMEOUT_MS, () => socket.destroy());
  }

  /** When stopping: an idle connection is told AGENT-DISCONNECT (HAProxy then opens one to another agent). */
  disconnectIfIdle(): void {
    if (this.agent.stopping && this.inFlight === 0 && !this.closing && !this.socket.destroyed) this.close([disconnectFrame(STATUS.NORMAL, 'agent stopping')]);
  }

  private helloTimedOut(): void {
    if (this.closing || this.socket.destroyed) return;
    this.agent.options.onError?.(`spoe: closing a connection from ${this.socket.remoteAddress ?? 'an unknown address'} that sent no HAPROXY-HELLO within ${this.agent.helloTimeoutMs} ms`);
    this.close([disconnectFrame(STATUS.TIMEOUT, 'no HAPROXY-HELLO in time')]);
  }

  private read(chunk: Buffer): void {
    if (this.closing) return;
    this.splitter.push(chunk);
    const replies: Buffer[] = [];
    try {
      for (let frame = this.splitter.next(); frame; frame = this.closing ? undefined : this.splitter.next()) {
        const reply = this.handle(decodeFrame(frame));
        if (reply) replies.push(reply);
      }
    } catch (err) {
      const status = err instanceof SpopError ? err.status : STATUS.UNKNOWN;
      this.agent.options.onError?.(`spoe: closing a connection: ${(err as Error).message}`);
      this.close([...replies, disconnectFrame(status, (err as Error).message)]);
      return;
    }
    if (this.closing) this.close(replies);
    else for (const reply of replies) this.send(reply);
  }

  /** The reply to a frame, sent at once; undefined when the answer comes later (a check) or not at all. */
  private handle(frame: Frame): Buffer | undefined {
    if (frame.type === FRAME.HAPROXY_HELLO) return this.hello(frame);
    if (!this.greeted) throw new SpopError(STATUS.INVALID, 'a frame before HAPROXY-HELLO');
    if (frame.type === FRAME.HAPROXY_DISCONNECT) {
      this.closing = true;
      return disconnectFrame(STATUS.NORMAL, 'bye');
    }
    if (frame.type !== FRAME.NOTIFY) throw new SpopError(STATUS.INVALID, `unexpected frame type ${frame.type}`);
    if ((frame.flags & FLAG_FIN) === 0) throw new SpopError(STATUS.FRAGMENTED, 'fragmented frames are not supported');
    return this.notify(frame);
  }

  private hello(frame: Frame): Buffer {
    const hello = frame.payload.kvList();
    const versions = typeof hello['supported-versions'] === 'string' ? hello['supported-versions'].split(',').map((v) => v.trim()) : [];
    if (!versions.length) throw new SpopError(STATUS.NO_VERSION, 'no supported-versions');
    if (!versions.some((v) => v.startsWith('2.'))) throw new SpopError(STATUS.BAD_VERSION, 'SPOP 2.0 only');
    if (typeof hello['max-frame-size'] !== 'number') throw new SpopError(STATUS.NO_FRAME_SIZE, 'no max-frame-size');
    if (hello['max-frame-size'] < 256) throw new SpopError(STATUS.BAD_FRAME_SIZE, 'max-frame-size too small');
    this.splitter.limit = Math.min(MAX_FRAME_SIZE, hello['max-frame-size']);
    this.greeted = true;
    clearTimeout(this.helloTimer);
    const reply = encodeFrame(FRAME.AGENT_HELLO, FLAG_FIN, 0, 0, encodeKvList({ version: '2.0', 'max-frame-size': this.splitter.limit, capabilities: 'pipelining,async' }));
    // A health check only wants the hello: answer, then close. A stopping agent fails it.
    if (hello.healthcheck === true) {
      this.closing = true;
      if (this.agent.stopping || this.agent.options.draining?.()) return disconnectFrame(STATUS.NORMAL, 'agent stopping');
    }
    return reply;
  }

  /** A NOTIFY: its check started (answered when it ends), or an answer at once (no message of ours, the in-flight cap). */
  private notify(frame: Frame): Buffer | undefined {
    const { options, hasSecret } = this.agent;
    const messages = decodeMessages(frame.payload);
    // The -retry names: the same facts, asked again by HAProxy after a failed exchange (spoe-idgate.conf).
    const args = messages.get('idgate-check') ?? messages.get('idgate-check-retry');
    const { streamId, frameId } = frame;
    if (!args) return encodeFrame(FRAME.ACK, FLAG_FIN, streamId, frameId, Buffer.alloc(0));
    if (this.inFlight >= options.maxInFlight) {
      this.agent.warnPerCap('in-flight cap', (_key, count) => `spoe: a connection has ${options.maxInFlight} checks running (IDGATE_SPOE_MAX_INFLIGHT); answered 503 to ${count} frame(s) beyond it since the last such line`);
      return encodeAck(streamId, frameId, { status: 503 });
    }
    this.inFlight++;
    const peer = this.socket.remoteAddress;
    // The secret rides in every message, not the connection: SPOP's hello has no room for it.
    const input = hasSecret(args[CHECK_SECRET_ARGUMENT]) ? checkInputFromMessage(args, peer, messages.get('idgate-cookies') ?? messages.get('idgate-cookies-retry')) : refusedCheckInput(peer, 'secret');
    options.check(input).then(
      (outcome) => this.answer(streamId, frameId, outcome),
      (err: unknown) => this.answerFailure(streamId, frameId, err),
    );
    return undefined;
  }

  private answer(streamId: number, frameId: number, outcome: CheckOutcome): void {
    this.inFlight--;
    if (this.closing || this.socket.destroyed) return;
    let ack = encodeAnswer(streamId, frameId, outcome);
    if (ack.length - 4 > this.splitter.limit) {
      // Too much to set (a huge body): keep the decision, drop the page.
      const vars = spoeVariablesOf(outcome);
      delete vars.body;
      ack = encodeAck(streamId, frameId, vars);
    }
    this.send(ack);
    this.disconnectIfIdle();
  }

  /** The check answers errors itself; should it ever throw, that request fails closed. */
  private answerFailure(streamId: number, frameId: number, err: unknown): void {
    this.inFlight--;
    this.agent.options.onError?.(`spoe: the check failed, answered 503: ${err instanceof Error ? err.message : String(err)}`);
    if (!this.closing && !this.socket.destroyed) this.send(encodeAck(streamId, frameId, { status: 503 }));
    this.disconnectIfIdle();
  }

  private send(frame: Buffer): void {
    if (this.outbox.push(frame) === 1) setImmediate(this.flush);
  }

  private readonly flush = (): void => {
    const out = this.outbox;
    this.outbox = [];
    if (this.closing || this.socket.destroyed || !out.length) return;
    this.socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
    // A peer that sends but never reads would make us buffer its answers without bound.
    if (this.socket.writableLength > MAX_UNREAD_BYTES) {
      this.agent.options.onError?.('spoe: closing a connection whose peer does not read its answers');
      this.socket.destroy();
    }
  };

  /** Writes what is pending, then closes; a peer that never reads must not hold the socket forever. */
  private close(last: Buffer[]): void {
    this.closing = true;
    clearTimeout(this.helloTimer);
    this.socket.end(Buffer.concat([...this.outbox, ...last]));
    this.outbox = [];
    setTimeout(() => this.socket.destroy(), SPOE_CLOSE_GRACE_MS).unref();
  }
}
