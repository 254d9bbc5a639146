// The one switch that points every local IdP of the tests at a profile (stack/test-idp-profile.ts).
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../../stack/processes.js';
import { testIdpEnv, testIdpProfile, testLoginScopes } from '../../stack/test-idp-profile.js';

const saved = process.env.IDGATE_TEST_IDP_PROFILE;
afterEach(() => {
  if (saved === undefined) delete process.env.IDGATE_TEST_IDP_PROFILE;
  else process.env.IDGATE_TEST_IDP_PROFILE = saved;
});

test.each([
  ['unset', 'demo', undefined],
  ['empty', 'demo', ''],
  ['demo', 'demo', 'demo'],
  ['okta', 'okta', 'okta'],
] as const)('IDGATE_TEST_IDP_PROFILE %s starts the IdPs with the %s profile', (_name, profile, value) => {
  if (value === undefined) delete process.env.IDGATE_TEST_IDP_PROFILE;
  else process.env.IDGATE_TEST_IDP_PROFILE = value;
  expect(testIdpProfile()).toBe(profile);
  expect(testIdpEnv()).toEqual({ IDP_PROFILE: profile });
});

test('a profile the IdP does not have is refused, not taken for demo', () => {
  process.env.IDGATE_TEST_IDP_PROFILE = 'Okta';
  expect(() => testIdpProfile()).toThrow('IDGATE_TEST_IDP_PROFILE must be demo or okta, got "Okta"');
});

test('groups come with the groups scope from the demo profile and with profile from okta, which has no groups scope', () => {
  expect(testLoginScopes('demo').split(' ')).toContain('groups');
  expect(testLoginScopes('okta').split(' ')).not.toContain('groups');
  expect(testLoginScopes('okta').split(' ')).toContain('profile');
});

test("the okta pass (jest.okta.config.js) lists every end-to-end file with a 'per IdP profile' block, and no other", () => {
  const config = fs.readFileSync(path.join(REPO_ROOT, 'jest.okta.config.js'), 'utf8');
  expect(config).toContain("const PER_IDP_PROFILE = 'per IdP profile';");
  const listed = /FILES_WITH_PER_PROFILE_TESTS = \[([^\]]*)\]/.exec(config)![1]!.match(/'[\w-]+'/g)!.map((quoted) => quoted.slice(1, -1));
  const e2e = path.join(REPO_ROOT, 'test/e2e');
  const withBlock = fs.readdirSync(e2e)
    .filter((file) => file.endsWith('.test.ts') && fs.readFileSync(path.join(e2e, file), 'utf8').includes("describe('per IdP profile'"))
    .map((file) => file.replace(/\.test\.ts$/, ''));
  expect([...listed].sort()).toEqual(withBlock.sort());
});
