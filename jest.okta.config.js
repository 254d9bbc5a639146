// The end-to-end files whose behaviour depends on the IdP, run once more against the local IdP's okta
// profile (`make test` runs this pass after the whole suite; alone: `npx jest -c jest.okta.config.js`).
// The rest of the suite uses the IdP at most to sign someone in, and tests something else (Redis topologies,
// HAProxy configurations, paths, policy reload, pending logins, session records, packaging, the CLI, docs):
// it runs once. okta-profile.test.ts always runs against the okta profile
// and idp.test.ts tests the demo profile itself: neither follows the switch.
import base from './jest.config.js';

// Every local IdP the tests start takes its profile from this switch (stack/test-idp-profile.ts).
process.env.IDGATE_TEST_IDP_PROFILE = 'okta';

const IDP_FACING = [
  'login', // the code flow and back-channel logout, idgate in-process
  'sessions', // renewal with rotated refresh tokens, the IdP away or forgetting the grant, back-channel logout
  'refresh-claims', // groups read anew at renewal, from userinfo
  'real-browser', // the IdP's pages in Chromium
  'audit', // audit lines of sign-ins and of tokens with Okta's claims
  'edge-headers', // identity headers as built from the IdP's claims, renewal
  'spoe-parity', // the same identity over both transports
  'bearer', // the IdP's JWT and opaque access tokens
  'dpop', // dpop-bot, whose token requests need a proof
  'okta-logout', // revocation at the IdP, front-channel logout
  'stack', // sign-in, machine tokens and logout through HAProxy, both transports
];

/** @type {import('jest').Config} */
export default {
  ...base,
  testMatch: IDP_FACING.map((name) => `<rootDir>/test/e2e/${name}.test.ts`),
};
