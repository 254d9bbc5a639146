// Decision lines leave in batches; none is lost, cut or reordered, and a quiet idgate still writes
// its last lines within a moment.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger, type DecisionRecord } from '../../service/src/audit.js';
import { waitUntil } from '../support/wait.js';

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
  await waitUntil(() => linesOf(file).length > 0, 1000);
  expect(linesOf(file).map((l) => (JSON.parse(l) as { request_id: string }).request_id)).toEqual(['req-1']);
});
