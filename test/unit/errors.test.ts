import { ERRORS, IdgateError, type IdgateErrorCode } from '../../service/src/errors.js';

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
