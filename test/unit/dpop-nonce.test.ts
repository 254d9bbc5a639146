// DPoP server nonces (RFC 9449 sections 8 and 9; IDGATE_DPOP_NONCE): issued per time slot, keyed by the
// cookie secrets, accepted for this slot and the previous one on any replica that shares the secrets. The
// answers idgate gives with them (401 use_dpop_nonce, DPoP-Nonce on both transports) are in
// test/e2e/dpop-nonce.test.ts.
import crypto from 'node:crypto';
import { jest } from '@jest/globals';
import { createDpopNonces, dpopNoncesOf } from '../../service/src/tokens/dpop-nonce.js';
import { DPOP_NONCE_SLOT_SECONDS } from '../../service/src/limits.js';

const SECRET = 'a-cookie-secret-of-thirty-two-characters-or-more';
const OLDER_SECRET = 'an-older-cookie-secret-still-listed-to-verify-with';
const SLOT_MS = DPOP_NONCE_SLOT_SECONDS * 1000;
/** The start of a slot, so that "a slot later" is exact. */
const T = Math.floor(Date.parse('2026-11-29T12:00:00Z') / SLOT_MS) * SLOT_MS;

describe('a DPoP nonce', () => {
  const nonces = createDpopNonces([SECRET]);

  test('is 43 base64url characters (32 bytes), the same for a whole slot, and another in the next', () => {
    const nonce = nonces.issue(T);
    expect(nonce).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(nonces.issue(T + SLOT_MS - 1)).toBe(nonce);
    expect(nonces.issue(T + SLOT_MS)).not.toBe(nonce);
  });

  test.each<[string, number, 'current' | 'previous' | undefined]>([
    ['in its own slot is current', 0, 'current'],
    ['at the end of its own slot is current', SLOT_MS - 1, 'current'],
    ['in the next slot is previous (a fresh one goes back with the answer)', SLOT_MS, 'previous'],
    ['at the end of the next slot is still previous: it lives one to two slots', 2 * SLOT_MS - 1, 'previous'],
    ['two slots later is refused', 2 * SLOT_MS, undefined],
    ['an hour later is refused', 3600_000, undefined],
    ['a slot earlier is current (issued by a replica whose clock runs ahead)', -SLOT_MS, 'current'],
    ['two slots earlier is refused (no nonce from the future)', -2 * SLOT_MS, undefined],
  ])('issued at T, checked %s', (_name, later, age) => {
    expect(nonces.check(nonces.issue(T), T + later)).toBe(age);
  });

  test('issued by another replica (another process, the same secret) is accepted', () => {
    const replica = createDpopNonces([SECRET]);
    expect(replica.issue(T)).toBe(nonces.issue(T));
    expect(replica.check(nonces.issue(T), T)).toBe('current');
  });

  test('signed with a listed older secret is accepted; the newest one issues', () => {
    const rotated = createDpopNonces([SECRET, OLDER_SECRET]);
    const beforeRotation = createDpopNonces([OLDER_SECRET]);
    expect(rotated.check(beforeRotation.issue(T), T)).toBe('current');
    expect(rotated.issue(T)).toBe(nonces.issue(T));
  });

  test('signed with a secret idgate does not hold is refused', () => {
    expect(nonces.check(createDpopNonces([OLDER_SECRET]).issue(T), T)).toBeUndefined();
  });

  test.each<[string, (good: string) => string]>([
    ['one character changed', (good) => (good[0] === 'A' ? 'B' : 'A') + good.slice(1)],
    ['its last character changed', (good) => good.slice(0, -1) + (good.endsWith('A') ? 'B' : 'A')],
    ['cut short', (good) => good.slice(0, -1)],
    ['made longer', (good) => `${good}A`],
    ['empty', () => ''],
    ['the same length in other bytes', (good) => 'é'.repeat(good.length / 2)],
    ['a made-up one', () => crypto.randomBytes(32).toString('base64url')],
  ])('tampered with (%s) is refused', (_name, tamper) => {
    expect(nonces.check(tamper(nonces.issue(T)), T)).toBeUndefined();
  });

  test('is compared in constant time (crypto.timingSafeEqual), with every candidate', () => {
    const compare = jest.spyOn(crypto, 'timingSafeEqual');
    try {
      const fresh = createDpopNonces([SECRET, OLDER_SECRET]);
      expect(fresh.check(fresh.issue(T), T)).toBe('current');
      // this slot, the next and the previous, for each of the two secrets: all compared, the match first or not
      expect(compare).toHaveBeenCalledTimes(6);
      compare.mockClear();
      expect(fresh.check(crypto.randomBytes(32).toString('base64url'), T)).toBeUndefined();
      expect(compare).toHaveBeenCalledTimes(6);
    } finally {
      compare.mockRestore();
    }
  });

  test('a configuration keeps one set of nonces, keyed by its first cookie secret', () => {
    const config = Object.freeze({ cookieSecrets: Object.freeze([SECRET, OLDER_SECRET]) });
    expect(dpopNoncesOf(config)).toBe(dpopNoncesOf(config));
    expect(dpopNoncesOf(config).issue(T)).toBe(nonces.issue(T));
  });
});
