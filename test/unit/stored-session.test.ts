// A session record as the check path reads it back from Redis (opened, then checked field by field).
import { idpSessionHash, sealSession } from '../../service/src/session-store.js';
import { parseRecord } from '../../service/src/sessions.js';

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
