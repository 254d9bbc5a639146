// The check secret's comparison (check-secret.ts): any listed secret passes, nothing else does.
import { createCheckSecretMatcher } from '../../service/src/transports/check-secret.js';

const NEW = 'n'.repeat(40);
const OLD = 'o'.repeat(32);

describe('a check secret matcher with a new and an old secret', () => {
  const hasSecret = createCheckSecretMatcher([NEW, OLD]);

  test.each([
    ['the new secret', NEW, true],
    ['the old secret', OLD, true],
    ['nothing', undefined, false],
    ['an empty value', '', false],
    ['a prefix of the new secret', NEW.slice(0, -1), false],
    ['the new secret and more', `${NEW}n`, false],
    ['both secrets joined', `${NEW},${OLD}`, false],
    ['a header sent twice (node gives a list)', [NEW, NEW], false],
    ['the old secret with its last character beyond ASCII', `${OLD.slice(0, -1)}\u00f6`, false],
    ['the new secret with a character whose low byte is its own', `${NEW.slice(0, -1)}\u016e`, false],
    ['the new secret with a character that does not fit', `${NEW.slice(0, -1)}\u{1f600}`, false],
  ])('%s: %s', (_name, presented, expected) => {
    expect(hasSecret(presented)).toBe(expected);
  });
});

test('without secrets (IDGATE_INSECURE_HTTP=1 only) every check passes, with or without one', () => {
  const hasSecret = createCheckSecretMatcher([]);
  expect(hasSecret(undefined)).toBe(true);
  expect(hasSecret('anything')).toBe(true);
});
