// Decision lines leave in batches; none is lost, cut or reordered, and a quiet idgate still writes
// its last lines within a moment. Each line, written from a template, is JSON of one line whatever its values.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { createLogger, DECISION_LINE_FIELDS, decisionLine, type DecisionRecord } from '../../service/src/audit.js';
import { waitUntil } from '../../stack/wait.js';

const record = (i: number): DecisionRecord => ({
  request_id: `req-${i}`, decision: 'allow', status: 200, reason: 'ok', rule: 'r', sub: 'alice', user: 'alice', client: null, scheme: 'session',
  method: 'GET', host: 'app.example', path: `/p/${i}`, client_ip: '127.0.0.1', latency_ms: 0.1,
});

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idgate-audit-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const linesOf = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);

test('thousands of decision lines, flushed, are all there, whole and in order', async () => {
  const file = path.join(dir, 'audit.log');
  const logger = createLogger({ file });
  await logger.ready(); // the file is opened asynchronously
  for (let i = 0; i < 5000; i++) logger.decision(record(i));
  logger.flush();
  const lines = linesOf(file).map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(lines).toHaveLength(5000);
  expect(lines.map((l) => l.request_id)).toEqual(Array.from({ length: 5000 }, (_, i) => `req-${i}`));
  expect(lines[0]).toMatchObject({ level: 'info', event: 'decision', status: 200, sub: 'alice', client: null });
  expect(typeof lines[0]!.time).toBe('string');
});

test('a single decision line is written within a moment, without a flush', async () => {
  const file = path.join(dir, 'audit.log');
  const logger = createLogger({ file });
  logger.decision(record(1));
  await waitUntil('a line in the audit file', () => linesOf(file).length > 0);
  expect(linesOf(file).map((l) => (JSON.parse(l) as { request_id: string }).request_id)).toEqual(['req-1']);
});

describe('a decision line is written from a template', () => {
  // Strings a client or an IdP can put in a field: quotes, backslashes, every control character, the JS
  // line separators, lone surrogates, non-ASCII, and plain printable ASCII (the template's fast path).
  const hostile = fc.oneof(
    fc.string({ unit: fc.constantFrom('"', '\\', '\n', '\r', '\t', '\u0000', '\u001f', '\u007f', '\u2028', '\u2029', '\ud800', '\udfff', 'é', '😀', 'a', '/', ' ', '}', '{', ',', ':') }),
    fc.string({ unit: 'binary' }),
    fc.string(),
    fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) }),
  );
  const orNull = fc.option(hostile, { nil: null });
  const number = fc.oneof(fc.double(), fc.integer(), fc.constantFrom(0, -0, 0.1, 1e21, 1e-7));
  const records: fc.Arbitrary<DecisionRecord> = fc.record({
    request_id: orNull, decision: hostile, status: number, reason: hostile, rule: orNull, sub: orNull, user: orNull, client: orNull,
    scheme: fc.constantFrom('session' as const, 'bearer' as const, 'dpop' as const, null), method: orNull, host: orNull, path: orNull, client_ip: hostile, latency_ms: number,
  });
  const time = ',"time":"2026-11-29T16:00:00.000Z"';
  /** What JSON makes of a number: the value, or null for NaN and the infinities. */
  const asJson = (n: number) => (Number.isFinite(n) ? (Object.is(n, -0) ? 0 : n) : null);

  test('parses back to the very values, as one line, for any strings', () => {
    fc.assert(
      fc.property(records, (r) => {
        const line = decisionLine(r, time);
        expect(line.endsWith('}\n')).toBe(true);
        expect(line.slice(0, -1)).not.toMatch(/[\n\r\u2028\u2029]/);
        expect(JSON.parse(line)).toEqual({ level: 'info', time: '2026-11-29T16:00:00.000Z', event: 'decision', ...r, status: asJson(r.status), latency_ms: asJson(r.latency_ms) });
        expect(Object.keys(JSON.parse(line) as object)).toEqual(['level', 'time', 'event', ...Object.keys(r)]);
        expect(Object.keys(r)).toEqual([...DECISION_LINE_FIELDS]);
      }),
      { numRuns: 2000 },
    );
  });

  test('is the bytes one JSON.stringify of the record gives, for values without line separators', () => {
    fc.assert(
      fc.property(records, (r) => {
        fc.pre(!/[\u2028\u2029]/.test(JSON.stringify(r)));
        expect(decisionLine(r, time)).toBe(`{"level":"info"${time},"event":"decision",${JSON.stringify(r).slice(1)}\n`);
      }),
      { numRuns: 2000 },
    );
  });
});
