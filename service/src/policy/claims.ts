import type { Identity } from '../identity.js';

// Reading identity claims the same way everywhere (login, bearer tokens, `idgate explain`): configured
// claim names may be paths into nested claims ("realm_access.roles"), lists may arrive as strings.

/**
 * The claim called `name`: the top-level claim of exactly that name if present (names like
 * "https://example.com/roles" contain dots), else the value at that dotted path.
 */
export function readClaim(claims: Readonly<Record<string, unknown>>, name: string): unknown {
  if (Object.hasOwn(claims, name)) return claims[name];
  if (!name.includes('.')) return undefined;
  let value: unknown = claims;
  for (const part of name.split('.')) {
    if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.hasOwn(value, part)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

/** A claim that should be a list of strings: arrays keep their strings, a single string becomes a list. */
export function stringList(value: unknown): string[] {
  if (typeof value === 'string') return value === '' ? [] : [value];
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string' && v !== '');
  return [];
}

/** Scopes: Okta's `scp` list, or an RFC 8693/9068 space-separated `scope` string. */
export function scopesOf(claims: Readonly<Record<string, unknown>>): string[] {
  if (Array.isArray(claims.scp)) return stringList(claims.scp);
  // Entra ID writes delegated scopes as one space-separated string in `scp`.
  if (typeof claims.scp === 'string') return claims.scp.split(' ').filter(Boolean);
  if (typeof claims.scope === 'string') return claims.scope.split(' ').filter(Boolean);
  return [];
}

/** How claims become an identity: which claims to read, and what idgate trusts of this issuer. */
export interface ClaimReading {
  readonly groupsClaim: string;
  readonly rolesClaim: string;
  /** IDGATE_ISSUER, exactly: identities it issued satisfy conditions that name no `issuers`. */
  readonly primaryIssuer: string;
  /** Take `email` without `email_verified: true` (for IdPs that never send it). */
  readonly trustUnverifiedEmail: boolean;
}

/**
 * The email address, when it may identify someone: only with `email_verified: true` from the issuer (or
 * the string "true", as some IdPs send it), unless the issuer is trusted without it. An address anyone
 * could have typed into their profile must not pass an `emails` condition or reach the app.
 */
export function verifiedEmail(claims: Readonly<Record<string, unknown>>, trustUnverified: boolean): string | undefined {
  const email = typeof claims.email === 'string' && claims.email !== '' ? claims.email : undefined;
  if (email === undefined) return undefined;
  return trustUnverified || claims.email_verified === true || claims.email_verified === 'true' ? email : undefined;
}

/**
 * The identity a set of claims describes. Tokens (RFC 9068 / Okta access tokens, RFC 7662 answers):
 * subject from uid or sub, user from username or sub, client from cid, client_id or azp. Sessions (ID
 * token + userinfo): user from preferred_username, the verified email or sub.
 */
export function identityFromClaims(
  claims: Readonly<Record<string, unknown>>,
  via: Identity['via'],
  reading: ClaimReading,
  issuer: string,
): Identity | undefined {
  const text = (value: unknown) => (typeof value === 'string' && value !== '' ? value : undefined);
  const clientId = via === 'token' ? (text(claims.cid) ?? text(claims.client_id) ?? text(claims.azp)) : undefined;
  const subject = (via === 'token' ? text(claims.uid) : undefined) ?? text(claims.sub) ?? clientId;
  if (!subject) return undefined;
  const email = verifiedEmail(claims, reading.trustUnverifiedEmail);
  const user = via === 'token' ? (text(claims.username) ?? text(claims.sub) ?? subject) : (text(claims.preferred_username) ?? email ?? subject);
  return {
    via,
    subject,
    user,
    email,
    groups: stringList(readClaim(claims, reading.groupsClaim)),
    roles: stringList(readClaim(claims, reading.rolesClaim)),
    scopes: via === 'token' ? scopesOf(claims) : [],
    clientId,
    issuer,
    fromPrimaryIssuer: issuer === reading.primaryIssuer,
  };
}
