// A session record as the check path reads it back from Redis (opened, then checked field by field, its version first).
import { idpSessionHash, sealSession, describeSessionRecordVersions, parseRecord, SESSION_RECORD_VERSION, SESSION_RECORD_VERSIONS_READ, unreadableVersionOf } from '../../service/src/session/session-record.js';

const base = { v: 1, subject: 'alice', user: 'alice', groups: [], roles: [], issuer: 'https://idp.example.com', createdAt: 1, idToken: 'x', tokensIssuedAt: 1 };

function read(idgate: Record<string, unknown>) {
  return parseRecord('sid-1', sealSession('sid-1', JSON.stringify({ cookie: {}, idgate })));
}

describe('the IdP session id in a stored session', () => {
  test('a session from before hashing is read with the hash of its IdP session id, and the id itself is gone', () => {
    const parsed = read({ ...base, idpSessionId: 'raw-idp-sid' });
    expect(parsed!.stored.idpSessionHash).toBe(idpSessionHash('raw-idp-sid'));
    // The record is what a renewal writes back: it must not carry the raw id either.
    expect(JSON.stringify(parsed!.record)).not.toContain('raw-idp-sid');
  });

  test('a hashed one is kept as it is; a malformed one makes the record no session', () => {
    expect(read({ ...base, idpSessionHash: 'abc' })!.stored.idpSessionHash).toBe('abc');
    expect(read({ ...base, idpSessionHash: 42 })).toBeUndefined();
  });
});

describe('the version of a stored session', () => {
  const sealed = (idgate: Record<string, unknown>) => sealSession('sid-1', JSON.stringify({ cookie: {}, idgate }));
  test.each([
    ['a v1 record, sealed as v1', sealed(base), true, undefined],
    ['a record of version 2 (a newer idgate)', sealed({ ...base, v: 2 }), false, 'v2'],
    ['a value sealed as v2 (a newer idgate)', `v2.${sealed(base).slice(3)}`, false, 'v2'],
    ['a record without a version', sealed({ ...base, v: undefined }), false, undefined],
    ['a v1 value that does not open (tampered, or another session)', `v1.${'A'.repeat(60)}`, false, undefined],
    ['a value that names no version', 'garbage', false, undefined],
  ])('%s', (_name, value, readable, unknownVersion) => {
    expect(parseRecord('sid-1', value) !== undefined).toBe(readable);
    expect(unreadableVersionOf('sid-1', value)).toBe(unknownVersion);
  });

  test('idgate names the versions it reads and writes', () => {
    expect(describeSessionRecordVersions()).toBe(`session records: reads ${SESSION_RECORD_VERSIONS_READ.map((v) => `v${v}`).join(', ')}, writes v${SESSION_RECORD_VERSION}`);
    expect(SESSION_RECORD_VERSIONS_READ).toContain(SESSION_RECORD_VERSION);
  });
});
