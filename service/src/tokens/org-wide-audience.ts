// Okta's `default` authorization server puts its audience, api://default, on every access token it issues,
// whichever app of the org asked for it. A bearer token verified against that audience alone can be any
// app's token for its user: a token some other app of the org holds would pass as that user. Wherever such
// a token would count, idgate wants to know which clients may: the issuer's `client_ids` (IDGATE_JWT_CLIENT_IDS),
// `clients` on the rule, an audience of the API's own, or the operator's word that any app's tokens are
// meant to count (IDGATE_JWT_ANY_CLIENT / `any_client`). Checked where a policy meets the settings: at
// check-config, at start and on every reload, since the rules decide where tokens count; a policy that
// fails it is refused, as an invalid one is.
import type { Config } from '../config.js';
import { ORG_WIDE_AUDIENCE, type BearerIssuer } from '../config/bearer-issuers.js';
import { acceptedCredentials, type Policy, type PolicyRule } from '../policy/policy.js';
import { planOf } from '../policy/policy-conditions.js';

/** Issuers whose tokens for the org-wide audience count for any client: nothing names which. */
function openIssuers(issuers: readonly BearerIssuer[]): BearerIssuer[] {
  return issuers.filter((i) => i.jwt && i.audiences.includes(ORG_WIDE_AUDIENCE) && i.clientIds === undefined && !i.anyClient);
}

/**
 * One line per rule of `policy` where a token of any app of the org would count (see above), as
 * `SOURCE:LINE: rule "id": ...` like the policy file's own problems; none when the policy is safe.
 */
export function orgWideAudienceProblems(config: Pick<Config, 'bearerIssuers' | 'issuerId'>, policy: Policy): string[] {
  const open = openIssuers(config.bearerIssuers);
  if (open.length === 0) return [];
  const problems: string[] = [];
  for (const rule of policy.rules) {
    for (const issuer of exposedIssuers(rule, open, config.issuerId)) {
      problems.push(
        `${policy.source}:${rule.line}: rule "${rule.id}": bearer tokens of ${issuer} count here with the audience ${ORG_WIDE_AUDIENCE}, which Okta's default server puts on every token, whichever app of the org asked for it; ` +
          `name the clients (clients: [...] on the rule, or IDGATE_JWT_CLIENT_IDS / the IDGATE_BEARER_ISSUERS entry's "client_ids"), give the API an audience of its own (e.g. api://idgate), ` +
          `or accept any app's tokens with IDGATE_JWT_ANY_CLIENT=1 / "any_client": true`,
      );
    }
  }
  return problems;
}

/** The issuers of `open` whose tokens pass `rule` without a `clients` condition. */
function exposedIssuers(rule: PolicyRule, open: readonly BearerIssuer[], primaryIssuer: string): string[] {
  if (!acceptedCredentials(rule).token) return [];
  const primary = open.filter((i) => i.issuer === primaryIssuer).map((i) => i.issuer);
  // An authenticated rule lets any token of the primary issuer in (policy.ts decide).
  if (rule.access === 'authenticated') return primary;
  if (rule.access !== 'restricted') return [];
  const exposed = new Set<string>();
  for (const condition of rule.allow ?? []) {
    const credentials = planOf(condition).credentials ?? rule.accept ?? ['session'];
    if (!credentials.includes('token') || condition.clients !== undefined) continue;
    // Without `issuers`, a condition holds for the primary issuer's identities only (policy.ts decide).
    const issuers = condition.issuers === undefined ? primary : open.map((i) => i.issuer).filter((i) => condition.issuers!.includes(i));
    for (const issuer of issuers) exposed.add(issuer);
  }
  return [...exposed];
}
