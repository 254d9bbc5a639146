// SPOP codec and agent, against a real TCP socket playing HAProxy, and property-based tests (fast-check)
// feeding the parser and the agent hostile bytes.
import net from 'node:net';
import fc from 'fast-check';
import type { CheckAnswer, CheckRequest } from '../../service/src/check.js';
import { FRAME, MAX_FRAME_SIZE, Reader, STATUS, SpopError, createSpoeAgent, decodeFrame, decodeMessages, encodeAck, encodeFrame, encodeKvList, encodeVarint, variablesFor } from '../../service/src/spoe.js';
import { converse, hello, notify, setVars } from '../support/spop.js';

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

let server: net.Server;
let port: number;
const seen: CheckRequest[] = [];
const agentErrors: string[] = [];

beforeAll(async () => {
  const check = async (request: CheckRequest): Promise<CheckAnswer> => {
    seen.push(request);
    if (request.headers.cookie === 'ok') return { status: 200, headers: { 'X-Auth-User': 'alice', 'X-Auth-Groups': 'admins', 'X-Auth-Request-Id': 'r1', 'Set-Cookie': '_idgate=x; Path=/' }, body: '' };
    return { status: 401, headers: { 'WWW-Authenticate': 'Bearer realm="idgate"', 'Content-Type': 'application/json' }, body: '{"error":"unauthorized","reason":"no credentials"}' };
  };
  server = createSpoeAgent({ check, onError: (message) => agentErrors.push(message) });
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
    const { frames, closed } = await converse(port, [hello({ healthcheck: true })], 1);
    expect(frames.map((f) => f.type)).toEqual([FRAME.AGENT_HELLO]);
    expect(closed).toBe(true);
  });

  test('NOTIFY idgate-check runs the check and ACKs with the contract variables, same stream and frame ids', async () => {
    const { frames } = await converse(port, [hello(), notify(7, 300, { method: 'GET', pathq: '/x?y', host: 'app', cookie: 'ok', id: 'req-1' }), notify(8, 1, { method: 'GET', pathq: '/' })], 3);
    const acks = frames.filter((f) => f.type === FRAME.ACK);
    expect(acks.map((a) => [a.streamId, a.frameId])).toEqual(expect.arrayContaining([[7, 300], [8, 1]]));
    const first = acks.find((a) => a.streamId === 7)!;
    expect(setVars(first)).toEqual({ status: 200, user: 'alice', groups: 'admins', request_id: 'r1', set_cookie: '_idgate=x; Path=/' });
    const second = acks.find((a) => a.streamId === 8)!;
    expect(setVars(second)).toMatchObject({ status: 401, www_authenticate: 'Bearer realm="idgate"', reason: 'no credentials' });
    expect(seen.find((r) => r.headers['x-request-id'] === 'req-1')!.headers).toMatchObject({ 'x-forwarded-uri': '/x?y', 'x-forwarded-host': 'app', 'x-forwarded-method': 'GET' });
  });

  test('HAPROXY-DISCONNECT gets AGENT-DISCONNECT with status 0', async () => {
    const { frames, closed } = await converse(port, [hello(), encodeFrame(FRAME.HAPROXY_DISCONNECT, 1, 0, 0, encodeKvList({ 'status-code': 0, message: 'bye' }))], 2);
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
    const { frames, closed } = await converse(port, [bytes], 5, 1500);
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

test('answers map to the contract variables, with the body only for 4xx', () => {
  expect(variablesFor({ status: 302, headers: { Location: '/_auth/login?rd=%2F', 'Cache-Control': 'no-store' }, body: '' })).toEqual({ status: 302, location: '/_auth/login?rd=%2F' });
  expect(variablesFor({ status: 403, headers: { 'Content-Type': 'application/json', 'X-Auth-User': 'bob' }, body: '{"error":"access_denied","reason":"needs group admins"}' })).toEqual({
    status: 403,
    content_type: 'application/json',
    body: '{"error":"access_denied","reason":"needs group admins"}',
    user: 'bob',
    reason: 'needs group admins',
  });
});

test('a peer that sends but never reads is disconnected; memory stays bounded', async () => {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((r) => socket.once('connect', r));
  socket.on('error', () => undefined); // the agent resetting us is the point
  socket.pause(); // never read
  const closed = new Promise<boolean>((resolve) => {
    socket.once('close', () => resolve(true));
    setTimeout(() => resolve(false), 15_000);
  });
  socket.write(hello());
  const batch = Buffer.concat(Array.from({ length: 2000 }, (_, i) => notify(i + 1, 1, { method: 'GET', pathq: '/', cookie: 'ok' })));
  for (let i = 0; i < 60 && !socket.destroyed; i++) {
    socket.write(batch);
    await new Promise((r) => setTimeout(r, 20));
  }
  expect(await closed).toBe(true);
  expect(agentErrors).toContain('spoe: closing a connection whose peer does not read its answers');
  expect((await converse(port, [hello()], 1)).frames[0]!.type).toBe(FRAME.AGENT_HELLO);
}, 30_000);
