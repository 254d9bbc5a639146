// SPOP codec and agent, against a real TCP socket playing HAProxy, and property-based tests (fast-check)
// feeding the parser and the agent hostile bytes.
import { jest } from '@jest/globals';
import net from 'node:net';
import fc from 'fast-check';
import { spoeVariablesOf } from '../../service/src/check/check-wire.js';
import { checkOutcome, type CheckInput, type CheckOutcome } from '../../service/src/check/contract.js';
import { loadConfig } from '../../service/src/config.js';
import { parseTrustedProxies, type AddressMatcher } from '../../service/src/net.js';
import { createSpoeAgent, createWarningThrottle, type SpoeAgentOptions, checkInputFromMessage } from '../../service/src/transports/spoe-agent.js';
import { FRAME, FrameSplitter, MAX_FRAME_SIZE, Reader, STATUS, SpopError, decodeFrame, decodeMessages, encodeAck, encodeFrame, encodeKvList, encodeVarint } from '../../service/src/transports/spoe-codec.js';
import { allowOutcome, jsonOutcome, wireIdentity } from '../support/outcomes.js';
import { converse, defaultAgentOptions, hello, notify, openPeer, setVars, type Peer } from '../support/spop.js';
import { pause, waitUntil } from '../../stack/wait.js';

describe('varint (peers encoding)', () => {
  test.each([
    [0, '00'],
    [239, 'ef'],
    [240, 'f000'],
    [2287, 'ff7f'],
    [2288, 'f08000'],
    [264431, 'ffff7f'],
    [264432, 'f0808000'],
  ])('%i is %s', (value, hex) => {
    expect(encodeVarint(value).toString('hex')).toBe(hex);
    expect(new Reader(Buffer.from(hex, 'hex')).varint()).toBe(value);
  });

  test('every value up to 2^40 survives a round trip', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 40 }), (n) => new Reader(encodeVarint(n)).varint() === n));
  });
});

describe('names (of messages, arguments and hello items)', () => {
  test('read as a string reads them, whatever the bytes, the first time and every later time', () => {
    // Bytes of names seen before (the remembered ones), of look-alikes (same length, one byte off) and
    // of anything else: non-ASCII, invalid UTF-8, control characters.
    const names = fc.oneof(
      fc.constantFrom('idgate-check', 'method', 'pathq', 'host', 'cookie', 'methoe', 'Method', 'id', 'di').map((n) => Buffer.from(n)),
      fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b)),
      fc.string({ maxLength: 70 }).map((n) => Buffer.from(n)),
    );
    fc.assert(
      fc.property(fc.array(names, { minLength: 1, maxLength: 20 }), (list) => {
        const bytes = Buffer.concat(list.flatMap((n) => [encodeVarint(n.length), n]));
        const byName = new Reader(bytes);
        const byString = new Reader(bytes);
        for (let i = 0; i < list.length; i++) expect(byName.name()).toBe(byString.string());
        expect(byName.offset).toBe(bytes.length);
      }),
      { numRuns: 2000 },
    );
  });

  test('a name longer than its frame is refused', () => {
    expect(() => new Reader(Buffer.from([5, 0x61, 0x62])).name()).toThrow(SpopError);
  });
});

describe('ACK frames', () => {
  const vars = fc.dictionary(
    fc.string({ minLength: 1, maxLength: 300 }),
    fc.oneof(fc.string({ maxLength: 3000 }), fc.integer({ min: 0, max: 2 ** 32 - 1 })),
  );

  test('any set of variables decodes back to the same names, values and stream/frame ids', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), fc.integer({ min: 0, max: 2 ** 40 }), vars, (streamId, frameId, v) => {
        const ack = encodeAck(streamId, frameId, v);
        expect(ack.readUInt32BE(0)).toBe(ack.length - 4);
        const frame = decodeFrame(ack.subarray(4));
        expect([frame.type, frame.flags, frame.streamId, frame.frameId]).toEqual([FRAME.ACK, 1, streamId, frameId]);
        expect(setVars(frame)).toEqual({ ...v });
      }),
    );
  });
});

/** Alice allowed, with a renewed cookie (no decided path: the agent sets what it is given). */
const aliceAllowed = allowOutcome(undefined, wireIdentity({ user: 'alice', groups: 'admins' }), { requestId: 'r1', setCookie: '_idgate=x; Path=/' });

let server: net.Server;
let port: number;
const seen: CheckInput[] = [];
const agentErrors: string[] = [];

beforeAll(async () => {
  const check = async (input: CheckInput): Promise<CheckOutcome> => {
    seen.push(input);
    if (input.cookie === 'ok') return aliceAllowed;
    return jsonOutcome('unauthenticated', 401, 'unauthorized', 'no credentials', { challenge: 'Bearer realm="idgate"' });
  };
  server = createSpoeAgent(defaultAgentOptions(check, { onError: (message) => agentErrors.push(message) }));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('the SPOE agent', () => {
  test('answers HAPROXY-HELLO with AGENT-HELLO (version 2.0, pipelining and async, FIN set)', async () => {
    const { frames } = await converse(port, [hello()], 1);
    expect(frames[0]!.type).toBe(FRAME.AGENT_HELLO);
    expect(frames[0]!.flags & 1).toBe(1);
    expect(frames[0]!.payload.kvList()).toEqual({ version: '2.0', 'max-frame-size': 16380, capabilities: 'pipelining,async' });
  });

  test('a health-check hello gets its answer and the connection is closed', async () => {
    const { frames, closed } = await converse(port, [hello({ healthcheck: true })], 1, 5000, true);
    expect(frames.map((f) => f.type)).toEqual([FRAME.AGENT_HELLO]);
    expect(closed).toBe(true);
  });

  test('NOTIFY idgate-check runs the check and ACKs with the variables of docs/reference.md, same stream and frame ids', async () => {
    const { frames } = await converse(port, [hello(), notify(7, 300, { method: 'GET', pathq: '/x?y', host: 'app', cookie: 'ok', id: 'req-1' }), notify(8, 1, { method: 'GET', pathq: '/' })], 3);
    const acks = frames.filter((f) => f.type === FRAME.ACK);
    expect(acks.map((a) => [a.streamId, a.frameId])).toEqual(expect.arrayContaining([[7, 300], [8, 1]]));
    const first = acks.find((a) => a.streamId === 7)!;
    expect(setVars(first)).toEqual({ status: 200, user: 'alice', groups: 'admins', request_id: 'r1', set_cookie: '_idgate=x; Path=/' });
    const second = acks.find((a) => a.streamId === 8)!;
    expect(setVars(second)).toMatchObject({ status: 401, www_authenticate: 'Bearer realm="idgate"', reason: 'no credentials' });
    expect(seen.find((r) => r.requestId === 'req-1')!).toMatchObject({ pathq: '/x?y', host: 'app', method: 'GET', fromTrustedProxy: true });
  });

  test('idgate-check-retry (HAProxy asking again after a failed exchange) is answered as idgate-check', async () => {
    const { frames } = await converse(port, [hello(), notify(9, 4, { method: 'GET', pathq: '/r', cookie: 'ok' }, 'idgate-check-retry')], 2);
    const ack = frames.find((f) => f.type === FRAME.ACK)!;
    expect([ack.streamId, ack.frameId]).toEqual([9, 4]);
    expect(setVars(ack)).toMatchObject({ status: 200, user: 'alice' });
  });

  test('HAPROXY-DISCONNECT gets AGENT-DISCONNECT with status 0', async () => {
    const { frames, closed } = await converse(port, [hello(), encodeFrame(FRAME.HAPROXY_DISCONNECT, 1, 0, 0, encodeKvList({ 'status-code': 0, message: 'bye' }))], 2, 5000, true);
    expect(frames[1]!.type).toBe(FRAME.AGENT_DISCONNECT);
    expect(frames[1]!.payload.kvList()['status-code']).toBe(STATUS.NORMAL);
    expect(closed).toBe(true);
  });

  test.each([
    ['a frame larger than the negotiated size', Buffer.from([0x00, 0x10, 0x00, 0x00, 1]), STATUS.TOO_BIG],
    ['a NOTIFY before the hello', notify(1, 1, {}), STATUS.INVALID],
    ['an unknown frame type', Buffer.concat([hello(), encodeFrame(42, 1, 0, 0, Buffer.alloc(0))]), STATUS.INVALID],
    ['a bad varint', Buffer.concat([hello(), Buffer.from([0, 0, 0, 12, 3, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])]), STATUS.INVALID],
    ['a string longer than its frame', Buffer.concat([hello(), encodeFrame(FRAME.NOTIFY, 1, 1, 1, Buffer.from([0xf0, 0x10, 0x61]))]), STATUS.INVALID],
    ['a hello without a version', encodeFrame(FRAME.HAPROXY_HELLO, 1, 0, 0, encodeKvList({ 'max-frame-size': 16380 })), STATUS.NO_VERSION],
    ['a fragmented NOTIFY', Buffer.concat([hello(), encodeFrame(FRAME.NOTIFY, 0, 1, 1, Buffer.alloc(0))]), STATUS.FRAGMENTED],
  ])('%s closes that connection with AGENT-DISCONNECT', async (_name, bytes, status) => {
    const { frames, closed } = await converse(port, [bytes], 5, 5000);
    const last = frames.at(-1)!;
    expect(last.type).toBe(FRAME.AGENT_DISCONNECT);
    expect(last.payload.kvList()['status-code']).toBe(status);
    expect(closed).toBe(true);
    // Other connections are unaffected.
    expect((await converse(port, [hello()], 1)).frames[0]!.type).toBe(FRAME.AGENT_HELLO);
  });

  test('random bytes never crash the agent; each connection ends in a disconnect or keeps waiting', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 300 }), async (bytes) => {
        await converse(port, [hello(), Buffer.from(bytes)], 10, 150);
        return true;
      }),
      { numRuns: 60 },
    );
    expect((await converse(port, [hello()], 1)).frames[0]!.type).toBe(FRAME.AGENT_HELLO);
  });
});

describe('the frame parser under random input', () => {
  test('decoding arbitrary bytes either succeeds or throws SpopError, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        try {
          const frame = decodeFrame(Buffer.from(bytes));
          if (frame.type === FRAME.NOTIFY) decodeMessages(frame.payload);
          else frame.payload.kvList();
        } catch (err) {
          if (!(err instanceof SpopError)) throw err;
        }
        return true;
      }),
      { numRuns: 5000 },
    );
  });

  test.each([
    [16380, 16380],
    [32764, 32764],
    [1_000_000, MAX_FRAME_SIZE],
  ])('HAProxy offering frames of %i bytes gets %i: the smaller of its size and ours', async (offered, agreed) => {
    const { frames } = await converse(port, [hello({ 'max-frame-size': offered })], 1);
    expect(frames[0]!.payload.kvList()['max-frame-size']).toBe(agreed);
  });
});

test('answers map to the variables of docs/reference.md, with the body only for 4xx', () => {
  expect(spoeVariablesOf(checkOutcome('login', 302, 'no credentials', { location: '/_auth/login?rd=%2F' }))).toEqual({ status: 302, location: '/_auth/login?rd=%2F' });
  expect(spoeVariablesOf(jsonOutcome('deny', 403, 'access_denied', 'needs group admins', { identity: wireIdentity({ user: 'bob' }) }))).toEqual({
    status: 403,
    content_type: 'application/json',
    body: '{"error":"access_denied","reason":"needs group admins"}',
    user: 'bob',
    reason: 'needs group admins',
  });
  // A page for a browser has no JSON reason; a 503 has its reason but no body.
  expect(spoeVariablesOf(checkOutcome('deny', 403, 'needs group admins', { contentType: 'text/html; charset=utf-8', body: '<p>no</p>' }))).toEqual({ status: 403, content_type: 'text/html; charset=utf-8', body: '<p>no</p>' });
  expect(spoeVariablesOf(jsonOutcome('unavailable', 503, 'unavailable', 'idgate cannot decide right now'))).toEqual({ status: 503, content_type: 'application/json', reason: 'idgate cannot decide right now' });
});

test('a peer that sends but never reads is disconnected; memory stays bounded', async () => {
  // Every frame checked (no in-flight bound in the way), each answered with a full identity.
  const identity = async (): Promise<CheckOutcome> => aliceAllowed;
  const { port, warnings: agentErrors } = await startAgent(identity, { maxInFlight: 1_000_000 });
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((r) => socket.once('connect', r));
  socket.on('error', () => undefined); // the agent resetting us is the point
  socket.pause(); // never read
  const closed = new Promise<boolean>((resolve) => {
    socket.once('close', () => resolve(true));
    setTimeout(() => resolve(false), 15_000).unref();
  });
  socket.write(hello());
  const batch = Buffer.concat(Array.from({ length: 2000 }, (_, i) => notify(i + 1, 1, { method: 'GET', pathq: '/', cookie: 'ok' })));
  for (let i = 0; i < 60 && !socket.destroyed; i++) {
    socket.write(batch);
    await pause(20); // a client writing on and never reading: the behaviour under test
  }
  const closedByAgent = await closed;
  socket.destroy(); // when the agent did not: the test fails, and leaves nothing open
  expect(closedByAgent).toBe(true);
  expect(agentErrors).toContain('spoe: closing a connection whose peer does not read its answers');
  expect((await converse(port, [hello()], 1)).frames[0]!.type).toBe(FRAME.AGENT_HELLO);
}, 30_000);

// ---- what the agent bounds: who may connect, how many, how much at once, for how long -------------

const allow = async (): Promise<CheckOutcome> => checkOutcome('public', 200, 'public route');
const agents: net.Server[] = [];
const peers: Peer[] = [];

/** An agent of its own on a free port (closed after the test), with its warnings and its side of each connection. */
async function startAgent(check: SpoeAgentOptions['check'], overrides: Partial<SpoeAgentOptions> = {}) {
  const warnings: string[] = [];
  const agent = createSpoeAgent(defaultAgentOptions(check, { onError: (message) => warnings.push(message), ...overrides }));
  const accepted: net.Socket[] = [];
  // Registered after the agent's own handler: sees each socket as the agent left it.
  agent.on('connection', (socket: net.Socket) => accepted.push(socket));
  await new Promise<void>((r) => agent.listen(0, '127.0.0.1', r));
  agents.push(agent);
  return { agent, port: (agent.address() as net.AddressInfo).port, warnings, accepted };
}

async function peer(port: number): Promise<Peer> {
  const p = await openPeer(port);
  peers.push(p);
  return p;
}

afterEach(async () => {
  for (const p of peers.splice(0)) p.socket.destroy();
  await Promise.all(agents.splice(0).map((a) => new Promise((r) => a.close(r))));
});

const get = (streamId: number) => notify(streamId, 1, { method: 'GET', pathq: '/', host: 'app' });
const statusCode = (frame: ReturnType<typeof decodeFrame>) => frame.payload.kvList()['status-code'];

describe('IDGATE_SPOE_LISTEN: no agent unless set', () => {
  const required = {
    IDGATE_ISSUER: 'https://dev-123456.okta.com/oauth2/default',
    IDGATE_CLIENT_ID: 'client',
    IDGATE_CLIENT_SECRET: 'super-secret-value',
    IDGATE_PUBLIC_URL: 'https://app.example.com',
    IDGATE_COOKIE_SECRETS: 'a'.repeat(32),
    IDGATE_CHECK_SECRETS: 'k'.repeat(32),
  };

  test.each([
    ['unset: no agent', {}, undefined],
    ['"off": no agent', { IDGATE_SPOE_LISTEN: 'off' }, undefined],
    ['an address: the agent there', { IDGATE_SPOE_LISTEN: '127.0.0.1:4181' }, { host: '127.0.0.1', port: 4181 }],
  ])('%s', (_name, env, spoeListen) => {
    const { config, problems } = loadConfig({ ...required, ...env });
    expect(problems).toEqual([]);
    expect(config!.spoeListen).toEqual(spoeListen);
  });

  test('bounds default to 256 connections and 64 running checks per connection; both settable', () => {
    expect(loadConfig(required).config).toMatchObject({ spoeMaxConnections: 256, spoeMaxInFlight: 64 });
    expect(loadConfig({ ...required, IDGATE_SPOE_MAX_CONNECTIONS: '8', IDGATE_SPOE_MAX_INFLIGHT: '20' }).config).toMatchObject({ spoeMaxConnections: 8, spoeMaxInFlight: 20 });
  });

  test('an address that is not host:port, or a bound of 0, is a problem', () => {
    const { problems } = loadConfig({ ...required, IDGATE_SPOE_LISTEN: 'on', IDGATE_SPOE_MAX_CONNECTIONS: '0', IDGATE_SPOE_MAX_INFLIGHT: 'many' });
    expect(problems.map((p) => p.split(':')[0])).toEqual(['IDGATE_SPOE_LISTEN', 'IDGATE_SPOE_MAX_CONNECTIONS', 'IDGATE_SPOE_MAX_INFLIGHT']);
  });
});

describe('only trusted peers may connect', () => {
  const refuseLoopback = parseTrustedProxies('10.0.0.0/8') as AddressMatcher;

  test('a peer outside IDGATE_TRUSTED_PROXIES is closed as it connects: no answer, not a byte read, no check', async () => {
    const check = jest.fn(allow);
    const { port, warnings, accepted } = await startAgent(check, { trustedPeers: refuseLoopback });
    const { frames, closed } = await converse(port, [hello(), get(1)], 1, 5000);
    expect(frames).toEqual([]);
    expect(closed).toBe(true);
    expect(check).not.toHaveBeenCalled();
    expect(accepted.map((s) => [s.destroyed, s.bytesRead])).toEqual([[true, 0]]);
    expect(warnings).toEqual([expect.stringMatching(/^spoe: refused a connection from (::ffff:)?127\.0\.0\.1, not in IDGATE_TRUSTED_PROXIES \(1 refused/)]);
  });

  test('a burst of refused connections from one peer makes one log line, not one each', async () => {
    const { port, warnings } = await startAgent(allow, { trustedPeers: refuseLoopback });
    for (let i = 0; i < 5; i++) expect(await converse(port, [hello()], 1, 1500)).toEqual({ frames: [], closed: true });
    expect(warnings).toHaveLength(1);
  });

  test('the trusted list is the one given: loopback trusted, loopback served', async () => {
    const { port } = await startAgent(allow, { trustedPeers: parseTrustedProxies('127.0.0.1,::1') as AddressMatcher });
    expect((await converse(port, [hello()], 1)).frames.map((f) => f.type)).toEqual([FRAME.AGENT_HELLO]);
  });
});

describe('warnings a peer can cause at will are rate-limited', () => {
  test.each([
    [
      'one line per key per window, each counting the events it stands for',
      {},
      [[0, 'a'], [1000, 'a'], [5000, 'a'], [10_000, 'a'], [10_500, 'a'], [10_600, 'b']] as [number, string][],
      ['a 1', 'a 3', 'b 1'],
    ],
    [
      'beyond maxKeys remembered keys, new ones share the key "many peers" until old windows end',
      { maxKeys: 2 },
      [[0, 'a'], [0, 'b'], [0, 'c'], [1, 'd'], [20_000, 'e']] as [number, string][],
      ['a 1', 'b 1', 'many peers 1', 'e 1'],
    ],
  ])('%s', (_name, options, events, lines) => {
    const written: string[] = [];
    let t = 0;
    const note = createWarningThrottle((line) => written.push(line), { ...options, windowMs: 10_000, now: () => t });
    for (const [at, key] of events) {
      t = at;
      note(key, (k, count) => `${k} ${count}`);
    }
    expect(written).toEqual(lines);
  });
});

describe('connections are bounded', () => {
  test('beyond IDGATE_SPOE_MAX_CONNECTIONS a connection is closed unanswered; a freed place serves again', async () => {
    const { port, warnings, accepted } = await startAgent(allow, { maxConnections: 2 });
    const held = [await peer(port), await peer(port)];
    for (const p of held) p.socket.write(hello());
    await waitUntil('both peers greeted', () => held.every((p) => p.frames.length === 1));
    expect(held.map((p) => p.frames[0]!.type)).toEqual([FRAME.AGENT_HELLO, FRAME.AGENT_HELLO]);

    expect(await converse(port, [hello()], 1, 1500)).toEqual({ frames: [], closed: true });
    expect(warnings).toEqual([expect.stringContaining('spoe: 2 connections open (IDGATE_SPOE_MAX_CONNECTIONS); closed 1 more')]);

    held[0]!.socket.destroy();
    await waitUntil('the first connection closed', () => accepted[0]!.destroyed);
    expect((await converse(port, [hello()], 1)).frames.map((f) => f.type)).toEqual([FRAME.AGENT_HELLO]);
  });
});

describe('running checks per connection are bounded', () => {
  test('beyond IDGATE_SPOE_MAX_INFLIGHT a frame is answered status 503 at once (fail closed); the connection stays', async () => {
    // Checks that answer only when the test says so; some never do.
    const pending: ((outcome: CheckOutcome) => void)[] = [];
    const check = () => new Promise<CheckOutcome>((resolve) => pending.push(resolve));
    const { port, warnings } = await startAgent(check, { maxInFlight: 2 });
    const p = await peer(port);
    p.socket.write(Buffer.concat([hello(), get(1), get(2), get(3)]));
    await waitUntil('two frames', () => p.frames.length === 2);
    expect(p.frames.map((f) => [f.type, f.streamId])).toEqual([[FRAME.AGENT_HELLO, 0], [FRAME.ACK, 3]]);
    expect(setVars(p.frames[1]!)).toEqual({ status: 503 });
    expect(pending).toHaveLength(2);
    expect(warnings).toEqual([expect.stringContaining('IDGATE_SPOE_MAX_INFLIGHT')]);

    // An answered check frees its place: the next frame is checked, not refused.
    pending[0]!(checkOutcome('public', 200, 'public route'));
    await waitUntil('three frames', () => p.frames.length === 3);
    p.socket.write(get(4));
    await waitUntil('three checks pending', () => pending.length === 3);
    expect(pending).toHaveLength(3);
    expect(p.frames.map((f) => [f.type, f.streamId])).toEqual([[FRAME.AGENT_HELLO, 0], [FRAME.ACK, 3], [FRAME.ACK, 1]]);
    expect(setVars(p.frames[2]!)).toEqual({ status: 200 });
    expect(p.closed).toBe(false);
  });

  test('a check that throws answers that frame 503 and keeps the connection', async () => {
    const { port, warnings } = await startAgent(() => Promise.reject(new Error('boom')));
    const { frames, closed } = await converse(port, [hello(), get(5)], 2);
    expect(frames.map((f) => [f.type, f.streamId])).toEqual([[FRAME.AGENT_HELLO, 0], [FRAME.ACK, 5]]);
    expect(setVars(frames[1]!)).toEqual({ status: 503 });
    expect(closed).toBe(false);
    expect(warnings).toEqual(['spoe: the check failed, answered 503: boom']);
  });
});

describe('a connection must say hello soon', () => {
  test('no HAPROXY-HELLO (nothing, or half of one) within the hello timeout: AGENT-DISCONNECT timeout; a greeted peer stays', async () => {
    // Long enough that the greeted peer's hello, sent as it connects, arrives within it on a loaded machine.
    const { port, warnings } = await startAgent(allow, { helloTimeoutMs: 1000 });
    const greeted = await peer(port);
    greeted.socket.write(hello());
    await waitUntil('the greeted peer\'s hello', () => greeted.frames.length === 1);
    // Opened after the greeted peer's hello: had its timer not been stopped, it would fire first.
    const silent = await peer(port);
    const halfway = await peer(port);
    halfway.socket.write(hello().subarray(0, 10));
    await waitUntil('the silent and the halfway peers closed', () => silent.closed && halfway.closed);
    for (const p of [silent, halfway]) {
      expect(p.closed).toBe(true);
      expect(p.frames.map((f) => [f.type, statusCode(f)])).toEqual([[FRAME.AGENT_DISCONNECT, STATUS.TIMEOUT]]);
    }
    expect(warnings.filter((w) => w.includes('sent no HAPROXY-HELLO within 1000 ms'))).toHaveLength(2);
    expect(greeted.closed).toBe(false);
    greeted.socket.write(get(1));
    await waitUntil('the greeted peer\'s ACK', () => greeted.frames.length === 2);
    expect(greeted.frames.map((f) => f.type)).toEqual([FRAME.AGENT_HELLO, FRAME.ACK]);
  });
});

describe('frame reassembly', () => {
  test('a length prefix above the negotiated max-frame-size disconnects at once, before any of the body is sent', async () => {
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(16381);
    const { frames, closed } = await converse(port, [hello({ 'max-frame-size': 16380 }), prefix], 2, 5000, true);
    expect(frames.map((f) => f.type)).toEqual([FRAME.AGENT_HELLO, FRAME.AGENT_DISCONNECT]);
    expect(statusCode(frames[1]!)).toBe(STATUS.TOO_BIG);
    expect(closed).toBe(true);
  });

  test('the splitter refuses an oversized frame from its prefix, without allocating its body', () => {
    const splitter = new FrameSplitter();
    splitter.limit = 100;
    const allocate = jest.spyOn(Buffer, 'allocUnsafe');
    try {
      splitter.push(Buffer.from([0, 0, 0, 101, 1, 2, 3]));
      expect(() => splitter.next()).toThrow(expect.objectContaining({ status: STATUS.TOO_BIG }));
      expect(allocate).not.toHaveBeenCalled();
    } finally {
      allocate.mockRestore();
    }
  });

  test('a 30 KB frame fed one byte at a time reaches the check whole: each byte copied once, chunks never joined', async () => {
    const cookies: (string | undefined)[] = [];
    const { port: agentPort, accepted } = await startAgent(async (input) => {
      cookies.push(input.cookie);
      return allow();
    });
    const p = await peer(agentPort);
    p.socket.write(hello({ 'max-frame-size': 32764 }));
    await waitUntil('the hello', () => p.frames.length === 1);
    const cookie = `big=${'x'.repeat(30_000)}`;
    const frame = notify(1, 1, { method: 'GET', pathq: '/', cookie });
    // Fed straight into the agent's side of the connection: TCP would merge the bytes on the way.
    const agentSide = accepted[0]!;
    const concat = jest.spyOn(Buffer, 'concat');
    const copy = jest.spyOn(Buffer.prototype, 'copy');
    try {
      for (let i = 0; i < frame.length; i++) agentSide.emit('data', frame.subarray(i, i + 1));
      // Linear work: what was copied adds up to the frame itself (the old code joined every chunk
      // to all before it, ~n²/2 bytes: 450 MB for this frame).
      expect(concat).not.toHaveBeenCalled();
      expect(copy.mock.results.reduce((sum, r) => sum + (r.value as number), 0)).toBe(frame.length);
    } finally {
      concat.mockRestore();
      copy.mockRestore();
    }
    await waitUntil('two frames', () => p.frames.length === 2);
    expect(cookies).toEqual([cookie]);
    expect(p.frames[1]!.type).toBe(FRAME.ACK);
  });

  test('frames cut at any points come out whole and in order, as views where a chunk holds them', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 20 }), (bodies, cuts) => {
        const stream = Buffer.concat(bodies.map((b) => Buffer.concat([Buffer.from([0, 0, b.length >> 8, b.length & 0xff]), b])));
        const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        const splitter = new FrameSplitter();
        const out: Buffer[] = [];
        let from = 0;
        for (const to of [...points, stream.length]) {
          splitter.push(stream.subarray(from, to));
          for (let f = splitter.next(); f; f = splitter.next()) out.push(Buffer.from(f));
          from = to;
        }
        expect(out).toEqual(bodies.map((b) => Buffer.from(b)));
      }),
      { numRuns: 500 },
    );
  });
});

describe('the facts of a SPOE message', () => {
  test.each([
    [true, 'https'],
    [false, 'http'],
    ['https', 'https'],
    [undefined, undefined],
  ])('proto %j (ssl_fc) is the scheme %j', (proto, scheme) => {
    const args = { method: 'GET', pathq: '/x', host: 'h', src: '127.0.0.1', ...(proto === undefined ? {} : { proto }) };
    expect(checkInputFromMessage(args, '127.0.0.1').scheme).toBe(scheme);
  });

  test('each argument is one field of the input; the client address is src, else the peer', () => {
    const input = checkInputFromMessage({ method: 'GET', pathq: '/x?y', host: 'h', src: '10.0.0.7', id: 'req-9', cookie: 'a=1', authorization: 'Bearer t', accept: 'text/html', xrw: 'XMLHttpRequest' }, '127.0.0.1');
    expect(input).toEqual({ fromTrustedProxy: true, peer: '127.0.0.1', method: 'GET', scheme: undefined, host: 'h', pathq: '/x?y', clientAddress: '10.0.0.7', requestId: 'req-9', cookie: 'a=1', authorization: 'Bearer t', accept: 'text/html', requestedWith: 'XMLHttpRequest' });
    expect(checkInputFromMessage({ method: 'GET', src: 'not an address' }, '127.0.0.1').clientAddress).toBe('127.0.0.1');
    expect(checkInputFromMessage({ method: 'GET' }, '127.0.0.1', { cookie1: 'a=1', cookie2: '', cookie3: 'b=2' }).cookie).toBe('a=1; b=2');
  });

  test('an allow sets the path to forward and the Cookie header without idgate\'s cookies', () => {
    const allow = (appCookies: string | undefined) => spoeVariablesOf(allowOutcome('/a/b', wireIdentity({ user: 'u', issuer: 'https://idp', groups: 'g', groupsTruncated: true }), { appCookies }));
    expect(allow('app=1')).toMatchObject({ path: '/a/b', issuer: 'https://idp', groups_truncated: 1, cookie_strip: 1, cookie: 'app=1' });
    const none = allow('');
    expect(none).toMatchObject({ cookie_strip: 1 });
    expect(none.cookie).toBeUndefined();
    expect(allow(undefined).cookie_strip).toBeUndefined();
  });
});

describe('a stopping agent (graceful shutdown)', () => {
  test('while draining, a health-check hello is answered AGENT-DISCONNECT (HAProxy counts a failed check) and checks still run', async () => {
    let draining = false;
    const { port } = await startAgent(allow, { draining: () => draining });
    draining = true;
    const check = await converse(port, [hello({ healthcheck: true })], 1);
    expect(check.frames.map((f) => f.type)).toEqual([FRAME.AGENT_DISCONNECT]);
    expect(check.closed).toBe(true);
    const traffic = await converse(port, [hello(), notify(1, 1, { method: 'GET', pathq: '/' })], 2);
    expect(traffic.frames.map((f) => f.type)).toEqual([FRAME.AGENT_HELLO, FRAME.ACK]);
  });

  test('shutdown disconnects an idle connection at once, and a busy one right after answering its running check', async () => {
    let release!: () => void;
    const slow = (): Promise<CheckOutcome> => new Promise((resolve) => (release = () => resolve(checkOutcome('public', 200, 'public route'))));
    const { agent, port } = await startAgent(slow);
    const idle = await peer(port);
    const busy = await peer(port);
    idle.socket.write(hello());
    busy.socket.write(Buffer.concat([hello(), notify(5, 9, { method: 'GET', pathq: '/' })]));
    await waitUntil('both peers greeted, the busy one\'s check held', () => idle.frames.length === 1 && busy.frames.length === 1 && release !== undefined);
    const stopped = agent.shutdown(2000);
    await waitUntil('the idle peer closed', () => idle.closed);
    expect(idle.frames.map((f) => f.type)).toEqual([FRAME.AGENT_HELLO, FRAME.AGENT_DISCONNECT]);
    expect(busy.closed).toBe(false);
    release();
    await stopped;
    await waitUntil('the busy peer closed', () => busy.closed);
    expect(busy.frames.map((f) => [f.type, f.streamId, f.frameId])).toEqual([[FRAME.AGENT_HELLO, 0, 0], [FRAME.ACK, 5, 9], [FRAME.AGENT_DISCONNECT, 0, 0]]);
    expect(busy.frames[2]!.payload.kvList()['status-code']).toBe(STATUS.NORMAL);
  });
});
