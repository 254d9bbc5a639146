// RFC 7662 token introspection, for tokens idgate cannot verify itself (opaque tokens, Okta's org
// authorization server). Answers are cached by a hash of the token (never the token itself): active
// ones until the token's exp (bounded by maxAgeMs), inactive ones briefly, in a bounded map.
import crypto from 'node:crypto';
import { IdgateError, describeError } from './errors.js';

export interface IntrospectionAnswer {
  readonly active: boolean;
  readonly claims: Readonly<Record<string, unknown>>;
}

export interface IntrospectorOptions {
  endpoint: URL;
  clientId: string;
  clientSecret: string;
  /** Longest reuse of an active answer, ms. Default 300000. */
  maxAgeMs?: number;
  /** Reuse of an inactive answer, ms. Default 30000. */
  negativeAgeMs?: number;
  /** Answers kept at most. Default 10000. */
  maxEntries?: number;
  /** Milliseconds a call may take. Default 3000. */
  timeoutMs?: number;
  /** Calls under way at most; beyond, checks answer 503 (a flood of made-up tokens cannot pile onto the IdP). Default 64. */
  maxInflight?: number;
  /** Called for every call made to the issuer (not for cached answers). */
  onCall?: () => void;
  now?: () => number;
}

interface CacheEntry {
  answer: IntrospectionAnswer;
  expiresAt: number;
}

export class Introspector {
  readonly #options: Required<IntrospectorOptions>;
  readonly #authorization: string;
  readonly #cache = new Map<string, CacheEntry>();
  /** Concurrent checks of one token share one call. */
  readonly #inflight = new Map<string, Promise<IntrospectionAnswer>>();

  constructor(options: IntrospectorOptions) {
    this.#options = { maxAgeMs: 300_000, negativeAgeMs: 30_000, maxEntries: 10_000, timeoutMs: 3000, maxInflight: 64, onCall: () => undefined, now: Date.now, ...options };
    // client_secret_basic: form-encode, then base64 (RFC 6749 2.3.1).
    const id = encodeURIComponent(options.clientId);
    const secret = encodeURIComponent(options.clientSecret);
    this.#authorization = `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
  }

  /** The issuer's answer about `token`. Throws IdgateError('idp_unavailable') when it cannot be had. */
  async introspect(token: string): Promise<IntrospectionAnswer> {
    const key = crypto.createHash('sha256').update(token).digest('base64url');
    const now = this.#options.now();
    const cached = this.#cache.get(key);
    if (cached && cached.expiresAt > now) return cached.answer;
    if (cached) this.#cache.delete(key);
    let pending = this.#inflight.get(key);
    if (!pending) {
      if (this.#inflight.size >= this.#options.maxInflight) {
        throw new IdgateError('idp_unavailable', 'the identity provider cannot check this token now', 'too many introspection calls under way');
      }
      pending = this.#call(token).finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    const answer = await pending;
    this.#remember(key, answer);
    return answer;
  }

  #remember(key: string, answer: IntrospectionAnswer): void {
    const now = this.#options.now();
    const exp = typeof answer.claims.exp === 'number' ? answer.claims.exp * 1000 : Infinity;
    const expiresAt = answer.active ? Math.min(exp, now + this.#options.maxAgeMs) : now + this.#options.negativeAgeMs;
    if (expiresAt <= now) return;
    if (this.#cache.size >= this.#options.maxEntries) {
      // Oldest first (Map keeps insertion order): drop one entry per insert.
      const oldest = this.#cache.keys().next().value;
      if (oldest !== undefined) this.#cache.delete(oldest);
    }
    this.#cache.set(key, { answer, expiresAt });
  }

  async #call(token: string): Promise<IntrospectionAnswer> {
    this.#options.onCall();
    let res: Response;
    try {
      res = await fetch(this.#options.endpoint, {
        method: 'POST',
        headers: { authorization: this.#authorization, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
        signal: AbortSignal.timeout(this.#options.timeoutMs),
        redirect: 'error',
      });
    } catch (err) {
      throw new IdgateError('idp_unavailable', 'the identity provider cannot check this token now', `introspection: ${describeError(err)}`);
    }
    if (res.status !== 200) {
      await res.arrayBuffer().catch(() => undefined);
      throw new IdgateError('idp_unavailable', 'the identity provider cannot check this token now', `introspection: HTTP ${res.status}`);
    }
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      throw new IdgateError('idp_unavailable', 'the identity provider cannot check this token now', 'introspection: answer is not JSON');
    }
    if (typeof body !== 'object' || body === null || typeof (body as { active?: unknown }).active !== 'boolean') {
      throw new IdgateError('idp_unavailable', 'the identity provider cannot check this token now', 'introspection: answer lacks "active"');
    }
    const claims = body as Record<string, unknown>;
    return { active: claims.active === true, claims };
  }
}
