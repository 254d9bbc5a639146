// How fast the policy decides with hundreds of rules: matchRule + decide over a 500-rule policy compiled
// from YAML, for requests that match early, late, and not at all (the worst case: every rule tried).
import { parsePolicy } from '../service/src/policy/policy-file.js';
import { canonicalPath } from '../service/src/paths.js';
import { decide, matchRule, type Identity, type RequestFacts } from '../service/src/policy/policy.js';

import type { LoadResult } from './load.js';

export function policyWithRules(count: number): string {
  const rules: string[] = [];
  for (let i = 0; i < count; i++) {
    const kind = i % 5;
    if (kind === 0) rules.push(`  - id: r${i}\n    host: "*.team${i}.example.com"\n    path: /svc${i}/\n    allow: {groups: [g${i}, admins]}`);
    else if (kind === 1) rules.push(`  - id: r${i}\n    path_regex: /reports/${i}/[0-9]+$\n    methods: [GET, HEAD]\n    allow: {roles: [auditor${i}]}`);
    else if (kind === 2) rules.push(`  - id: r${i}\n    path: /api/v${i}/\n    api: true\n    allow_any: [{via: session}, {scopes: [api${i}:read]}]`);
    else if (kind === 3) rules.push(`  - id: r${i}\n    host: app${i}.example.com\n    path: /\n    allow: {email_domains: [example${i}.com]}\n    backend: pool${i % 7}`);
    else rules.push(`  - id: r${i}\n    path: /static${i}/\n    public: true`);
  }
  return `version: 1\ndefault: deny\nrules:\n${rules.join('\n')}\n`;
}

export function benchPolicyMatching(ruleCount = 500, iterations = 200_000): LoadResult {
  const { policy, problems } = parsePolicy(policyWithRules(ruleCount), 'bench.yaml');
  if (!policy) throw new Error(problems.join('\n'));
  const identity: Identity = { via: 'session', subject: 's', user: 'u', email: 'u@example.com', groups: ['engineering', 'admins'], roles: [], scopes: [], clientId: undefined, issuer: 'i', fromPrimaryIssuer: true };
  const facts = (host: string, uri: string): RequestFacts => ({ method: 'GET', proto: 'https', host, uri, path: (canonicalPath(uri) as { path: string }).path, clientIp: '', requestId: '', wantsHtml: true, isXhr: false, corsPreflight: false });
  const requests = [
    facts('a.team0.example.com', '/svc0/x'), // first rule
    facts(`app${ruleCount - 2}.example.com`, '/home'), // near the end
    facts('nowhere.example.com', '/nothing/here'), // no match: every rule tried
    facts('x.example.com', `/reports/${(Math.floor(ruleCount / 2) * 5 + 1) % ruleCount}/42`),
  ];
  let errors = 0;
  const samples = new Float64Array(iterations);
  const started = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) {
    const request = requests[i % requests.length]!;
    const t0 = process.hrtime.bigint();
    const decision = decide(request, matchRule(policy, request), identity, undefined);
    samples[i] = Number(process.hrtime.bigint() - t0) / 1e6;
    if (!decision.rule) errors += 1;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  samples.sort();
  return {
    name: `policy matching, ${ruleCount} rules (in-process matchRule + decide)`,
    rps: Math.round(iterations / seconds),
    p50_ms: Number(samples[Math.floor(iterations * 0.5)]!.toFixed(4)),
    p99_ms: Number(samples[Math.floor(iterations * 0.99)]!.toFixed(4)),
    errors,
    rss_mb: Math.round(process.memoryUsage().rss / 1024 / 1024),
  };
}
