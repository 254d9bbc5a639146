// The end-to-end tests whose outcome depends on the IdP's profile, run once more against the local IdP's okta
// profile (`make test` runs this pass after the whole suite; alone: `npx jest -c jest.okta.config.js`).
// Those tests sit in a `describe('per IdP profile', ...)` block: what idgate reads from the IdP's claims and
// tokens (groups from userinfo, Okta's cid/uid/scp, the stack's bearer issuer settings), the renewals the
// profile changes (rotated refresh tokens, an ID token only when openid is asked), dpop-bot's token requests.
// Everything else in these files, and every other file, uses the IdP at most to sign someone in and tests
// something else: it runs once. okta-profile.test.ts always runs against the okta profile and idp.test.ts
// tests the demo profile itself: neither follows the switch. test/unit/test-idp-profile.test.ts checks that
// every file with such a block is listed here.
import base from './jest.config.js';

// Every local IdP the tests start takes its profile from this switch (stack/test-idp-profile.ts).
process.env.IDGATE_TEST_IDP_PROFILE = 'okta';

/** The title of the blocks that run in both passes. */
const PER_IDP_PROFILE = 'per IdP profile';

const FILES_WITH_PER_PROFILE_TESTS = [
  'sessions', // renewal with rotated refresh tokens, the IdP away or forgetting the grant
  'refresh-claims', // groups read anew at renewal, from userinfo
  'real-browser', // sign-in and groups through the IdP's pages in Chromium
  'audit', // the audit lines of signed-in users, their groups deciding
  'edge-headers', // identity headers as built from the IdP's claims
  'spoe-parity', // the same identity over both transports
  'bearer', // the IdP's JWT access tokens (Okta's claim names)
  'dpop', // dpop-bot, whose token requests need a proof (and, from okta, a nonce)
  'stack', // sign-in, groups and machine tokens through HAProxy, both transports
];

/** @type {import('jest').Config} */
export default {
  ...base,
  testMatch: FILES_WITH_PER_PROFILE_TESTS.map((name) => `<rootDir>/test/e2e/${name}.test.ts`),
  testNamePattern: PER_IDP_PROFILE,
};
