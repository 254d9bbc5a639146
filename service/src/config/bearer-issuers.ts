// The issuers whose bearer tokens idgate accepts: IDGATE_BEARER_ISSUERS (a JSON list), or else
// IDGATE_ISSUER with the IDGATE_JWT_* settings, each entry checked as a whole.
import { ASYMMETRIC_ALGORITHMS, settingNamed, type SettingValues } from './settings.js';

/** One issuer whose bearer tokens idgate accepts. */
export interface BearerIssuer {
  /** Exactly as it appears in tokens' `iss`. */
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly algorithms: readonly string[];
  /** Verify JWT-shaped tokens locally against the issuer's JWKS (Okta custom authorization servers). */
  readonly jwt: boolean;
  /** Ask the issuer's introspection endpoint (RFC 7662) instead: opaque tokens, Okta's org server. */
  readonly introspection: boolean;
  /** Client credentials for introspection (default: IDGATE_CLIENT_ID / IDGATE_CLIENT_SECRET). */
  readonly clientId: string;
  readonly clientSecret: string;
  /** Overrides the jwks_uri from discovery. */
  readonly jwksUri: string | undefined;
  /** The only client ids (cid, client_id or azp) whose tokens count; undefined: any client. */
  readonly clientIds: readonly string[] | undefined;
  /** Take the tokens' `email` without `email_verified: true` (for issuers that never send it). */
  readonly trustUnverifiedEmail: boolean;
  /**
   * The operator accepts tokens of any client for the org-wide audience (ORG_WIDE_AUDIENCE) on rules that
   * name no `clients` (tokens/org-wide-audience.ts); false: such a policy is refused.
   */
  readonly anyClient: boolean;
}

/**
 * The audience of Okta's `default` authorization server: every access token it issues carries it,
 * whichever app of the org asked, so alone it says nothing about who the token is for.
 */
export const ORG_WIDE_AUDIENCE = 'api://default';


/**
 * The bearer issuers the settings give, checked together: IDGATE_BEARER_ISSUERS' entries, or IDGATE_ISSUER
 * with IDGATE_JWT_*; never IDGATE_CLIENT_ID as an audience of IDGATE_ISSUER. `raw`: the settings' texts as
 * found, to tell a setting left at its default from one set.
 */
export function bearerIssuersFrom(values: Partial<SettingValues>, raw: ReadonlyMap<string, string | undefined>, problems: string[]): BearerIssuer[] {
  const insecureHttp = values.IDGATE_INSECURE_HTTP === true;
  const algorithms = [...(values.IDGATE_JWT_ALGORITHMS ?? [])];
  const issuerId = (raw.get('IDGATE_ISSUER') ?? '').trim();
  const clientId = values.IDGATE_CLIENT_ID;
  const clientSecret = values.IDGATE_CLIENT_SECRET;
  const jwtClientIds = values.IDGATE_JWT_CLIENT_IDS ?? [];
  if (values.IDGATE_BEARER_ISSUERS !== undefined) {
    for (const env of ['IDGATE_JWT_CLIENT_IDS', 'IDGATE_JWT_ANY_CLIENT']) {
      if (raw.get(env) !== settingNamed(env).default) problems.push(`${env}: set together with IDGATE_BEARER_ISSUERS, which it does not apply to; use the entry's ${env === 'IDGATE_JWT_CLIENT_IDS' ? '"client_ids"' : '"any_client"'} (e.g. {"issuer": "https://example.okta.com/oauth2/default", "audiences": ["api://default"], "client_ids": ["0oa-ci-bot"]})`);
    }
  }
  const bearerIssuers: BearerIssuer[] = values.IDGATE_BEARER_ISSUERS === undefined
    ? [{ issuer: issuerId, audiences: values.IDGATE_JWT_AUDIENCES ?? [], algorithms, jwt: true, introspection: false, clientId: clientId ?? '', clientSecret: clientSecret ?? '', jwksUri: undefined, clientIds: jwtClientIds.length > 0 ? jwtClientIds : undefined, anyClient: values.IDGATE_JWT_ANY_CLIENT === true, trustUnverifiedEmail: values.IDGATE_TRUST_UNVERIFIED_EMAIL === true }]
    : parseBearerIssuers(values.IDGATE_BEARER_ISSUERS, { algorithms, insecureHttp, clientId: clientId ?? '', clientSecret: clientSecret ?? '' }, problems);
  // The login's ID tokens are issued to idgate's client id (their `aud`): an audience equal to it would let
  // an ID token pass as an access token.
  for (const entry of bearerIssuers) {
    if (clientId && entry.issuer === issuerId && entry.audiences.includes(clientId)) {
      problems.push(`${values.IDGATE_BEARER_ISSUERS === undefined ? 'IDGATE_JWT_AUDIENCES' : 'IDGATE_BEARER_ISSUERS'}: "${clientId}" is IDGATE_CLIENT_ID, the audience of the login's ID tokens; access tokens need an audience of their own (e.g. api://default)`);
    }
  }
  return bearerIssuers;
}

const BEARER_ISSUER_KEYS = new Set(['issuer', 'audiences', 'algorithms', 'jwt', 'introspection', 'client_id', 'client_secret', 'jwks_uri', 'client_ids', 'any_client', 'trust_unverified_email']);

function parseBearerIssuers(
  value: unknown,
  defaults: { algorithms: string[]; insecureHttp: boolean; clientId: string; clientSecret: string },
  problems: string[],
): BearerIssuer[] {
  const where = 'IDGATE_BEARER_ISSUERS';
  if (!Array.isArray(value) || value.length === 0) {
    problems.push(`${where}: must be a non-empty JSON list of issuers (e.g. [{"issuer":"https://example.okta.com/oauth2/default","audiences":["api://default"]}])`);
    return [];
  }
  const out: BearerIssuer[] = [];
  value.forEach((entry: unknown, i) => {
    const at = `${where}[${i}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      problems.push(`${at}: must be an object like {"issuer": "https://example.okta.com/oauth2/default", "audiences": ["api://default"]}`);
      return;
    }
    const e = entry as Record<string, unknown>;
    for (const key of Object.keys(e)) if (!BEARER_ISSUER_KEYS.has(key)) problems.push(`${at}: unknown key "${key}" (known: ${[...BEARER_ISSUER_KEYS].join(', ')})`);
    const strings = (key: string): string[] | undefined => {
      const v = e[key];
      if (v === undefined) return undefined;
      if (Array.isArray(v) && v.every((x) => typeof x === 'string' && x !== '')) return v as string[];
      problems.push(`${at}.${key}: must be a list of strings`);
      return undefined;
    };
    const bool = (key: string, fallback: boolean): boolean => {
      const v = e[key];
      if (v === undefined) return fallback;
      if (typeof v === 'boolean') return v;
      problems.push(`${at}.${key}: must be true or false`);
      return fallback;
    };
    const text = (key: string): string | undefined => {
      const v = e[key];
      if (v === undefined) return undefined;
      if (typeof v === 'string' && v !== '') return v;
      problems.push(`${at}.${key}: must be a non-empty string`);
      return undefined;
    };
    const issuer = text('issuer');
    if (!issuer) {
      if (e.issuer === undefined) problems.push(`${at}.issuer: required (e.g. "https://example.okta.com/oauth2/default")`);
    } else if (!isHttpUrl(issuer, defaults.insecureHttp)) {
      problems.push(`${at}.issuer: must be an https URL${defaults.insecureHttp ? ' (or http)' : ''} (e.g. "https://example.okta.com/oauth2/default")`);
    } else if (out.some((o) => o.issuer === issuer)) {
      problems.push(`${at}.issuer: "${issuer}" is listed twice`);
    }
    const algorithms = strings('algorithms') ?? defaults.algorithms;
    for (const alg of algorithms) if (!ASYMMETRIC_ALGORITHMS.has(alg)) problems.push(`${at}.algorithms: "${alg}" is not an accepted asymmetric algorithm`);
    const jwt = bool('jwt', true);
    const introspection = bool('introspection', false);
    const audiences = strings('audiences') ?? [];
    if (jwt && audiences.length === 0) problems.push(`${at}.audiences: required when jwt is on (Okta's default: ["api://default"])`);
    if (!jwt && !introspection) problems.push(`${at}: accepts no token (jwt and introspection both off)`);
    const jwksUri = text('jwks_uri');
    if (jwksUri && !isHttpUrl(jwksUri, defaults.insecureHttp)) problems.push(`${at}.jwks_uri: must be an https URL`);
    const clientIds = strings('client_ids');
    if (clientIds?.length === 0) problems.push(`${at}.client_ids: must list at least one client id, or be left out to accept any client (e.g. ["0oa-ci-bot"])`);
    // An active answer says only that the issuer minted the token, for whichever of its apps: without an
    // audience or a client allow-list, every token of every app of that org would pass.
    if (introspection && audiences.length === 0 && clientIds === undefined) {
      problems.push(`${at}: introspection needs "audiences" or "client_ids", else any active token the issuer minted for any app passes (e.g. "audiences": ["https://example.okta.com"] or "client_ids": ["0oa9service1"])`);
    }
    const trustUnverifiedEmail = bool('trust_unverified_email', false);
    const anyClient = bool('any_client', false);
    if (issuer) {
      out.push({ issuer, audiences, algorithms, jwt, introspection, clientId: text('client_id') ?? defaults.clientId, clientSecret: text('client_secret') ?? defaults.clientSecret, jwksUri, clientIds, anyClient, trustUnverifiedEmail });
    }
  });
  return out;
}

function isHttpUrl(value: string, allowHttp: boolean): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'https:' || (allowHttp && url.protocol === 'http:');
  } catch {
    return false;
  }
}
