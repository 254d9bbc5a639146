// RFC 7662 token introspection, for tokens idgate cannot verify itself (opaque tokens, Okta's org
// authorization server). Answers are cached by a hash of the token (never the token itself): active
// ones until the token's exp (bounded by maxAgeMs) in one bounded map, inactive ones briefly in another,
// so that a flood of made-up tokens can only push out other made-up tokens, never a real client's.
// Calls to the issuer are bounded overall and per source (the checked request's client address; an
// IPv6 address counts as its /64, which one host usually holds whole): one flooding client gets
// "unavailable" while every other client's tokens keep being checked.
import crypto from 'node:crypto';
import net from 'node:net';
import { IdgateError, describeError } from '../errors.js';
import { defaultOf } from '../config/settings.js';
import { BodyTooLarge, discardBody, readBoundedText } from './bounded-body.js';
import { MAX_INTROSPECTION_BYTES, INTROSPECTION_MAX_INFLIGHT, INTROSPECTION_MAX_SOURCES as MAX_SOURCES, INTROSPECTION_NEGATIVE_MAX_MS, INTROSPECTION_SOURCE_WINDOW_MS, INTROSPECTION_TIMEOUT_MS } from '../limits.js';

/** A token the identity provider cannot check now: the check answers 503, never a verdict on the token. */
export function cannotCheckToken(detail: string): IdgateError {
  return new IdgateError('idp_unavailable', 'the identity provider cannot check this token now', detail);
}

/**
 * The issuer answered 401 or 403 to idgate's own client credentials: the client still gets a 503, but the
 * code says configuration, so that neither the audit line nor the log reads as an outage.
 */
export function credentialsRefused(status: number): IdgateError {
  return new IdgateError('introspection_config_error', 'the identity provider cannot check this token now', `introspection: HTTP ${status}: the issuer refuses idgate's client credentials (client_id/client_secret)`);
}

export interface IntrospectionAnswer {
  readonly active: boolean;
  readonly claims: Readonly<Record<string, unknown>>;
}

/** Why a call to the issuer was not made: too many overall, or too many from one source. */
export type IntrospectionRefusal = 'global_inflight' | 'source_inflight' | 'source_rate';

export interface IntrospectorOptions {
  endpoint: URL;
  clientId: string;
  clientSecret: string;
  /** Longest reuse of an active answer, ms. Default: IDGATE_INTROSPECTION_CACHE's. */
  maxAgeMs?: number;
  /** Reuse of an inactive answer, ms. Default INTROSPECTION_NEGATIVE_MAX_MS (limits.ts). */
  negativeAgeMs?: number;
  /** Active answers kept at most. Default: IDGATE_INTROSPECTION_CACHE_SIZE's. */
  maxEntries?: number;
  /** Inactive answers kept at most (their own map: they never push out an active answer). Default: IDGATE_INTROSPECTION_CACHE_SIZE's. */
  maxNegativeEntries?: number;
  /** Milliseconds a call may take. Default INTROSPECTION_TIMEOUT_MS (limits.ts). */
  timeoutMs?: number;
  /** Bytes of an answer read at most; a longer one is refused as unavailable. Default MAX_INTROSPECTION_BYTES (limits.ts). */
  maxBodyBytes?: number;
  /** Calls under way at most; beyond, checks answer 503 (a flood of made-up tokens cannot pile onto the IdP). Default INTROSPECTION_MAX_INFLIGHT (limits.ts). */
  maxInflight?: number;
  /** Calls under way at most for one source. Default: IDGATE_INTROSPECTION_MAX_INFLIGHT_PER_SOURCE's. */
  maxInflightPerSource?: number;
  /** Calls (cache misses) one source may cause per window. Default: IDGATE_INTROSPECTION_CALLS_PER_SOURCE's. */
  maxCallsPerSource?: number;
  /** The window of maxCallsPerSource, ms. Default INTROSPECTION_SOURCE_WINDOW_MS (limits.ts). */
  sourceWindowMs?: number;
  /** Called for every call made to the issuer (not for cached answers). */
  onCall?: () => void;
  /** Called for every call not made because a bound was reached. */
  onRefused?: (why: IntrospectionRefusal) => void;
  /** Called for every answer 401 or 403: the issuer refuses the client credentials (a configuration error). */
  onCredentialsRefused?: (status: number) => void;
  /** Called for every answer 200: the client credentials are good. */
  onCredentialsAccepted?: () => void;
  now?: () => number;
}

export interface IntrospectOptions {
  /**
   * Who asks: the client address of the checked request. Calls are bounded per source; without one,
   * only the overall bound applies.
   */
  source?: string;
}

interface CacheEntry {
  answer: IntrospectionAnswer;
  expiresAt: number;
}

interface SourceUse {
  inflight: number;
  windowStart: number;
  calls: number;
}


export class Introspector {
  readonly #options: Required<IntrospectorOptions>;
  readonly #authorization: string;
  readonly #active = new Map<string, CacheEntry>();
  readonly #inactive = new Map<string, CacheEntry>();
  /** Concurrent checks of one token share one call. */
  readonly #inflight = new Map<string, Promise<IntrospectionAnswer>>();
  readonly #sources = new Map<string, SourceUse>();

  constructor(options: IntrospectorOptions) {
    this.#options = {
      maxAgeMs: Number(defaultOf('IDGATE_INTROSPECTION_CACHE')) * 1000,
      negativeAgeMs: INTROSPECTION_NEGATIVE_MAX_MS,
      maxEntries: Number(defaultOf('IDGATE_INTROSPECTION_CACHE_SIZE')),
      maxNegativeEntries: Number(defaultOf('IDGATE_INTROSPECTION_CACHE_SIZE')),
      timeoutMs: INTROSPECTION_TIMEOUT_MS,
      maxBodyBytes: MAX_INTROSPECTION_BYTES,
      maxInflight: INTROSPECTION_MAX_INFLIGHT,
      maxInflightPerSource: Number(defaultOf('IDGATE_INTROSPECTION_MAX_INFLIGHT_PER_SOURCE')),
      maxCallsPerSource: Number(defaultOf('IDGATE_INTROSPECTION_CALLS_PER_SOURCE')),
      sourceWindowMs: INTROSPECTION_SOURCE_WINDOW_MS,
      onCall: () => undefined,
      onRefused: () => undefined,
      onCredentialsRefused: () => undefined,
      onCredentialsAccepted: () => undefined,
      now: Date.now,
      ...options,
    };
    // client_secret_basic: form-encode, then base64 (RFC 6749 2.3.1).
    const id = encodeURIComponent(options.clientId);
    const secret = encodeURIComponent(options.clientSecret);
    this.#authorization = `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
  }

  /** The issuer's answer about `token`. Throws IdgateError('idp_unavailable') when it cannot be had. */
  async introspect(token: string, options: IntrospectOptions = {}): Promise<IntrospectionAnswer> {
    const key = crypto.hash('sha256', token, 'base64url');
    const now = this.#options.now();
    const cached = cachedAnswer(this.#active, key, now) ?? cachedAnswer(this.#inactive, key, now);
    if (cached) return cached;
    let pending = this.#inflight.get(key);
    if (!pending) {
      if (this.#inflight.size >= this.#options.maxInflight) this.#refuse('global_inflight', 'too many introspection calls under way');
      const source = options.source === undefined ? undefined : this.#admit(sourceKey(options.source), now);
      pending = this.#call(token).finally(() => {
        this.#inflight.delete(key);
        if (source) source.inflight -= 1;
      });
      this.#inflight.set(key, pending);
    }
    const answer = await pending;
    this.#remember(key, answer);
    return answer;
  }

  /** Counts one call against its source, or refuses it when the source is at one of its bounds. */
  #admit(key: string, now: number): SourceUse {
    let use = this.#sources.get(key);
    if (!use) {
      if (this.#sources.size >= MAX_SOURCES) this.#forgetOneIdleSource();
      use = { inflight: 0, windowStart: now, calls: 0 };
      this.#sources.set(key, use);
    }
    if (now - use.windowStart >= this.#options.sourceWindowMs) {
      use.windowStart = now;
      use.calls = 0;
    }
    if (use.inflight >= this.#options.maxInflightPerSource) this.#refuse('source_inflight', 'too many introspection calls under way for this client');
    if (use.calls >= this.#options.maxCallsPerSource) this.#refuse('source_rate', 'too many introspection calls from this client in this window');
    use.inflight += 1;
    use.calls += 1;
    return use;
  }

  /** At most maxInflight sources have a call under way, so the scan from the oldest stops soon. */
  #forgetOneIdleSource(): void {
    for (const [key, use] of this.#sources) {
      if (use.inflight === 0) {
        this.#sources.delete(key);
        return;
      }
    }
  }

  #refuse(why: IntrospectionRefusal, detail: string): never {
    this.#options.onRefused(why);
    throw cannotCheckToken(detail);
  }

  #remember(key: string, answer: IntrospectionAnswer): void {
    const now = this.#options.now();
    const exp = typeof answer.claims.exp === 'number' ? answer.claims.exp * 1000 : Infinity;
    const expiresAt = answer.active ? Math.min(exp, now + this.#options.maxAgeMs) : now + this.#options.negativeAgeMs;
    if (expiresAt <= now) return;
    const cache = answer.active ? this.#active : this.#inactive;
    const limit = answer.active ? this.#options.maxEntries : this.#options.maxNegativeEntries;
    if (!cache.has(key) && cache.size >= limit) {
      // Oldest first (Map keeps insertion order): drop one entry per insert.
      const oldest = cache.keys().next().value;
      if (oldest !== undefined) cache.delete(oldest);
    }
    cache.set(key, { answer, expiresAt });
  }

  /**
   * Asks about a made-up token, past the caches and bounds, only to learn whether the issuer takes the
   * client credentials again (the callbacks say). Never throws.
   */
  async probeCredentials(): Promise<void> {
    await this.#call(`idgate-credentials-probe-${crypto.randomBytes(16).toString('base64url')}`).catch(() => undefined);
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
      throw cannotCheckToken(`introspection: ${describeError(err)}`);
    }
    if (res.status === 401 || res.status === 403) {
      await discardBody(res);
      this.#options.onCredentialsRefused(res.status);
      throw credentialsRefused(res.status);
    }
    if (res.status !== 200) {
      await discardBody(res);
      throw cannotCheckToken(`introspection: HTTP ${res.status}`);
    }
    this.#options.onCredentialsAccepted();
    let body: unknown;
    try {
      body = JSON.parse(await readBoundedText(res, this.#options.maxBodyBytes));
    } catch (err) {
      if (err instanceof BodyTooLarge) throw cannotCheckToken(`introspection: ${err.message}`);
      throw cannotCheckToken('introspection: answer is not JSON');
    }
    if (typeof body !== 'object' || body === null || typeof (body as { active?: unknown }).active !== 'boolean') {
      throw cannotCheckToken('introspection: answer lacks "active"');
    }
    const claims = body as Record<string, unknown>;
    return { active: claims.active === true, claims };
  }
}

function cachedAnswer(cache: Map<string, CacheEntry>, key: string, now: number): IntrospectionAnswer | undefined {
  const entry = cache.get(key);
  if (!entry) return undefined;
  if (entry.expiresAt > now) return entry.answer;
  cache.delete(key);
  return undefined;
}

/**
 * The unit a source is bounded as: an IPv4 address itself (also when IPv4-mapped), an IPv6 address as
 * its /64 (a host is usually given a whole /64, so counting single addresses would bound nothing).
 */
export function sourceKey(address: string): string {
  if (address.startsWith('::ffff:') && net.isIPv4(address.slice(7))) return address.slice(7);
  const bare = address.split('%')[0]!;
  if (!net.isIPv6(bare)) return address;
  const [head = '', tail] = bare.split('::') as [string, string | undefined];
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = Array<string>(Math.max(0, 8 - headGroups.length - tailGroups.length)).fill('0');
  const groups = [...headGroups, ...zeros, ...tailGroups].slice(0, 4);
  return `${groups.map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}
