// The end-to-end files whose behaviour depends on the IdP, run once more against the local IdP's okta
// profile (`make test` runs this pass after the whole suite; alone: `npx jest -c jest.okta.config.js`).
// The rest of the suite tests no IdP behaviour (Redis topologies, HAProxy configurations, paths, policy
// reload, packaging, the CLI, docs) and runs once; okta-profile.test.ts and idp.test.ts name their profile.
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
