import fs from 'node:fs';
import { ERRORS, errorBody, IdgateError, sendError, type IdgateErrorCode } from '../../service/src/errors.js';

describe('the error table', () => {
  const codes = Object.keys(ERRORS) as IdgateErrorCode[];

  test.each(codes)('%s declares a status, a wire error, a metric label and a user text', (code) => {
    const spec = ERRORS[code];
    expect(spec.status).toBeGreaterThanOrEqual(400);
    expect(spec.status).toBeLessThan(600);
    expect(spec.wire).toMatch(/^[a-z_]+$/);
    expect(spec.metric).toMatch(/^[a-z_]+$/);
    expect(spec.text.length).toBeGreaterThan(0);
  });

  test('an error takes its status from the table, and IdgateError.of its text', () => {
    const error = IdgateError.of('store_unavailable', 'ECONNREFUSED');
    expect(error).toMatchObject({ code: 'store_unavailable', status: 503, expose: 'session store unavailable', detail: 'ECONNREFUSED' });
    expect(new IdgateError('invalid_token', 'the token expired').status).toBe(401);
  });

  test('metric labels are distinct: each code counts apart', () => {
    expect(new Set(codes.map((c) => ERRORS[c].metric)).size).toBe(codes.length);
  });
});

describe('one renderer for every error answer', () => {
  /** A response that records what sendError did with it. */
  const recorder = () => {
    const sent: { status?: number; body?: unknown } = {};
    const res = { status: (code: number) => ((sent.status = code), { json: (body: unknown) => (sent.body = body) }) };
    return { res, sent };
  };

  test("an answer takes its status and `error` from the code, and says the code's text unless given a reason", () => {
    const { res, sent } = recorder();
    sendError(res, 'not_found');
    expect(sent).toEqual({ status: 404, body: { error: 'not_found', reason: 'there is no such idgate page' } });
    const other = recorder();
    sendError(other.res, 'no_credentials', 'no session');
    expect(other.sent).toEqual({ status: 401, body: { error: 'unauthorized', reason: 'no session' } });
  });

  test('the body is the one errorBody gives the check too', () => {
    expect(errorBody('invalid_request', 'the check lacks host')).toEqual({ error: 'invalid_request', reason: 'the check lacks host' });
    expect(Object.keys(errorBody('internal_error'))).toEqual(['error', 'reason']);
  });

  test("an OAuth 2.0 error response names the reason error_description; a body parser's own 4xx keeps its status", () => {
    const oauth = recorder();
    sendError(oauth.res, 'invalid_request', 'logout_token is required', { reasonField: 'error_description' });
    expect(oauth.sent).toEqual({ status: 400, body: { error: 'invalid_request', error_description: 'logout_token is required' } });
    const large = recorder();
    sendError(large.res, 'invalid_request', 'the body is too large', { status: 413 });
    expect(large.sent.status).toBe(413);
  });
});

describe('docs/reference.md documents every error code', () => {
  const file = 'docs/reference.md';
  const doc = fs.readFileSync(file, 'utf8');
  const begin = doc.indexOf('<!-- error codes:');
  const end = doc.indexOf('<!-- end of the error codes -->');
  const rows = doc
    .slice(begin, end)
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) => line.split(' | ').map((cell) => cell.replace(/^\| /, '')));
  const documented = new Map(rows.map(([code, status, wire, meaning, todo]) => [code!.replace(/`/g, ''), { status, wire, meaning, todo }]));

  test('the table is there, between its markers', () => {
    expect(begin).toBeGreaterThan(-1);
    expect(end).toBeGreaterThan(begin);
  });

  test.each(Object.keys(ERRORS) as IdgateErrorCode[])('%s: a row with its status, its `error`, what it means and what to do', (code) => {
    const row = documented.get(code);
    if (!row) throw new Error(`${code} is not in ${file}'s table of error codes: add a row (what it means, what to do)`);
    expect(row.status).toBe(String(ERRORS[code].status));
    expect(row.wire).toBe(`\`${ERRORS[code].wire}\``);
    expect(row.meaning!.length).toBeGreaterThan(10);
    expect(row.todo!.length).toBeGreaterThan(5);
  });

  test('each row names a code of ERRORS, once', () => {
    expect(rows.length).toBe(documented.size);
    for (const code of documented.keys()) expect(Object.keys(ERRORS)).toContain(code);
  });
});
