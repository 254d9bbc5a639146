// The profile every local IdP of the tests answers with: IDGATE_TEST_IDP_PROFILE=okta starts them all with
// the okta profile (stack/idp.ts IdpOptions.profile), so the end-to-end files run against the Okta-shaped IdP;
// unset or demo: the demo profile. `make test` runs the tests that depend on the profile once more with okta (jest.okta.config.js).
// Declared here, beside the stack that starts the IdP, so stack.ts and the tests read the one switch.
import type { IdpProfile } from './idp.js';

export function testIdpProfile(): IdpProfile {
  const value = process.env.IDGATE_TEST_IDP_PROFILE ?? '';
  if (value === '' || value === 'demo') return 'demo';
  if (value === 'okta') return 'okta';
  throw new Error(`IDGATE_TEST_IDP_PROFILE must be demo or okta, got "${value}"`);
}

/** The IDP_* setting that gives an IdP process (stack/idp-main.ts) started by a test that profile. */
export function testIdpEnv(): { IDP_PROFILE: IdpProfile } {
  return { IDP_PROFILE: testIdpProfile() };
}

/**
 * IDGATE_SCOPES that bring a user's groups from that IdP: the demo profile gives them for its `groups`
 * scope; okta defines no such scope (asking for it is invalid_scope) and gives them with `profile`.
 */
export function testLoginScopes(profile: IdpProfile = testIdpProfile()): string {
  return profile === 'okta' ? 'openid profile email' : 'openid profile email groups';
}
