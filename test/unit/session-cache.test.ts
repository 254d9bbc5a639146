import { SessionCache } from '../../service/src/session/session-cache.js';

const lookup = (user: string) => ({ found: true as const, sid: 's', session: {} as never, identity: { user } as never, record: {} });

describe('SessionCache', () => {
  test('a cached session is served until its time is up', () => {
    let now = 1000;
    const cache = new SessionCache(5000, 10, () => now);
    cache.set('h', lookup('alice'), now);
    expect(cache.get('h')?.identity.user).toBe('alice');
    now += 5001;
    expect(cache.get('h')).toBeUndefined();
  });

  test('a revocation removes the entry, and a read that raced with it is not cached', () => {
    let now = 1000;
    const cache = new SessionCache(5000, 10, () => now);
    cache.set('h', lookup('alice'), now);
    const readStartedAt = now;
    now += 1;
    cache.invalidate(['h']);
    expect(cache.get('h')).toBeUndefined();
    cache.set('h', lookup('alice'), readStartedAt); // read before the revocation, answered after it
    expect(cache.get('h')).toBeUndefined();
    now += 1;
    cache.set('h', lookup('alice'), now); // a read after it (a new login with the same id cannot happen, but fine)
    expect(cache.get('h')).toBeDefined();
  });

  test('while suspended nothing is served or kept; resuming starts empty', () => {
    const now = 1000;
    const cache = new SessionCache(5000, 10, () => now);
    cache.set('h', lookup('alice'), now);
    cache.suspend();
    expect(cache.get('h')).toBeUndefined();
    cache.set('h2', lookup('bob'), now);
    expect(cache.size).toBe(0);
    cache.resume();
    expect(cache.get('h')).toBeUndefined();
  });

  test('the cache is bounded, oldest out first', () => {
    const cache = new SessionCache(5000, 3);
    for (const h of ['a', 'b', 'c', 'd']) cache.set(h, lookup(h), Date.now());
    expect(cache.size).toBe(3);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.get('d')).toBeDefined();
  });

  test('a zero time-to-live turns it off', () => {
    const cache = new SessionCache(0, 10);
    cache.set('h', lookup('alice'), Date.now());
    expect(cache.get('h')).toBeUndefined();
  });
});
