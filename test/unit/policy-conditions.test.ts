import fs from 'node:fs';
import { parsePolicy } from '../../service/src/policy/policy-file.js';
import { CONDITION_ENTRIES, planOf } from '../../service/src/policy/policy-conditions.js';
import { decide, matchRule, type Identity, type Policy, type RequestFacts } from '../../service/src/policy/policy.js';

const facts: RequestFacts = { method: 'GET', proto: 'https', host: 'h', uri: '/x', path: '/x', clientIp: '', requestId: 'r', wantsHtml: false, isXhr: false, corsPreflight: false };
const token: Identity = {
  via: 'token',
  subject: 'other-bot',
  user: 'other-bot',
  email: undefined,
  groups: [],
  roles: [],
  scopes: [],
  clientId: 'other-bot',
  issuer: 'https://idp',
  fromPrimaryIssuer: true,
};

function compile(yaml: string): Policy {
  const { policy, problems } = parsePolicy(yaml, 'test.yaml');
  if (!policy) throw new Error(problems.join('\n'));
  return policy;
}

describe('the conditions table', () => {
  test('every condition is in the conditions table of docs/policy.md', () => {
    const doc = fs.readFileSync(new URL('../../docs/policy.md', import.meta.url), 'utf8');
    const section = /### Conditions\n([\s\S]*?)\n#/.exec(doc)![1]!;
    const missing = CONDITION_ENTRIES.map((e) => e.row.key).filter((key) => !section.includes(`| \`${key}:`) && !section.includes(`/ \`${key}:`));
    expect(missing).toEqual([]);
  });

  test('a wrong client that also lacks the scope is told about the client, never insufficient_scope', () => {
    const policy = compile('rules: [{id: deploy, path: /x, allow: {scopes: [deploy], clients: [ci-bot]}}]');
    expect(decide(facts, matchRule(policy, facts), token, undefined)).toMatchObject({ status: 403, reason: 'needs client ci-bot', missingScope: undefined });
  });

  test('an allow names the credential and the issuer first, then the rest in table order', () => {
    const policy = compile('rules: [{id: r, path: /x, allow: {clients: [other-bot], scopes_all: [a], via: token, issuers: [https://idp]}}]');
    const decision = decide(facts, matchRule(policy, facts), { ...token, scopes: ['a'] }, undefined);
    expect(decision.reason).toBe('has bearer token, issuer https://idp, scopes a, client other-bot');
  });

  test('a condition named like an object property is unknown', () => {
    const { problems } = parsePolicy('rules: [{id: r, allow: {constructor: [x]}}]', 'p.yaml');
    expect(problems).toEqual([expect.stringContaining('allow: unknown condition "constructor"')]);
  });

  test('a condition written by hand, not parsed, is planned on first use', () => {
    expect(planOf({ groups: ['admins'], via: 'session' })).toMatchObject({ tokenOnly: false, credentials: ['session'], reason: 'has signed-in session, group admins' });
    expect(planOf({ scopes: ['x'] })).toMatchObject({ tokenOnly: true, credentials: ['token'] });
    expect(planOf({ groups: ['admins'] }).credentials).toBeUndefined();
  });
});
