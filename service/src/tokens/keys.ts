// An issuer's signing keys (JWKS), cached so that verifying a bearer token needs no network call.
// Keys are chosen by `kid` only. An unknown kid triggers one refetch, at most once per cool-down, so a
// flood of made-up kids cannot hammer the IdP; cached keys are refreshed in the background after
// `maxAgeMs`; when the IdP is unreachable, the keys already held keep working and the failure is
// reported. A key the IdP has retired stops verifying once a refetch no longer lists it.
import * as jose from 'jose';
import { defaultOf } from '../config/settings.js';
import { IdgateError, describeError } from '../errors.js';
import { readBoundedText, discardBody } from './bounded-body.js';
import { JWKS_FETCH_TIMEOUT_MS, JWKS_RETRY_MIN_MS, MAX_JWKS_BYTES } from '../limits.js';

export interface KeySetOptions {
  /** Milliseconds a fetch may take. Default JWKS_FETCH_TIMEOUT_MS (limits.ts). */
  fetchTimeoutMs?: number;
  /** Milliseconds after which keys are fetched again in the background. Default: IDGATE_JWKS_CACHE's. */
  maxAgeMs?: number;
  /** Minimum milliseconds between two fetches caused by unknown kids. Default: IDGATE_JWKS_COOLDOWN's. */
  cooldownMs?: number;
  /** Called after every fetch: ok with the number of keys and whether the set changed, or the error. */
  onFetch?: (result: { ok: true; keys: number; changed: boolean } | { ok: false; error: string }) => void;
  /** For tests: the clock. Default Date.now. */
  now?: () => number;
}

export class RemoteKeySet {
  readonly #uri: URL;
  readonly #fetchTimeoutMs: number;
  readonly #maxAgeMs: number;
  readonly #cooldownMs: number;
  readonly #onFetch: NonNullable<KeySetOptions['onFetch']>;
  readonly #now: () => number;
  /** kid → JWK as published. */
  #jwks = new Map<string, jose.JWK>();
  /** `${kid} ${alg}` → imported key: importing costs more than verifying. */
  #imported = new Map<string, jose.CryptoKey | Uint8Array>();
  #loadedAt = -Infinity;
  #lastAttemptAt = -Infinity;
  /** Last fetch caused by an unknown kid: only these are limited by the cool-down, so a routine refresh
   * never makes a token signed with a freshly rotated key wait or fail. */
  #lastMissFetchAt = -Infinity;
  #inflight: Promise<void> | undefined;

  constructor(uri: URL, options: KeySetOptions = {}) {
    this.#uri = uri;
    this.#fetchTimeoutMs = options.fetchTimeoutMs ?? JWKS_FETCH_TIMEOUT_MS;
    this.#maxAgeMs = options.maxAgeMs ?? Number(defaultOf('IDGATE_JWKS_CACHE')) * 1000;
    this.#cooldownMs = options.cooldownMs ?? Number(defaultOf('IDGATE_JWKS_COOLDOWN')) * 1000;
    this.#onFetch = options.onFetch ?? (() => undefined);
    this.#now = options.now ?? Date.now;
  }

  get loaded(): boolean {
    return this.#loadedAt !== -Infinity;
  }

  /** Fetches the keys now (start-up), unless a fetch is already under way. Never throws. */
  load(): Promise<void> {
    return this.#refresh();
  }

  /** Starts a background refresh when the keys are older than maxAgeMs (callers that skip getKey). */
  refreshIfStale(): void {
    const now = this.#now();
    if (this.loaded && now - this.#loadedAt > this.#maxAgeMs && now - this.#lastAttemptAt > this.#cooldownMs) void this.#refresh();
  }

  /**
   * The key for `kid`, usable with `alg`, or undefined when the issuer does not publish one.
   * Throws IdgateError('idp_unavailable') only when no keys were ever loaded and they cannot be.
   */
  async getKey(kid: string, alg: string): Promise<jose.CryptoKey | Uint8Array | undefined> {
    const now = this.#now();
    if (!this.loaded) {
      // Never loaded: try at most once a second, so an unreachable IdP is not called per request.
      if (now - this.#lastAttemptAt > JWKS_RETRY_MIN_MS || this.#inflight) await this.#refresh();
      if (!this.loaded) throw new IdgateError('idp_unavailable', 'the identity provider keys are not reachable', `no keys from ${this.#uri.href}`);
    } else {
      this.refreshIfStale();
    }
    let jwk = this.#jwks.get(kid);
    if (!jwk && now - this.#lastMissFetchAt > this.#cooldownMs) {
      this.#lastMissFetchAt = now;
      await this.#refresh();
      jwk = this.#jwks.get(kid);
    }
    if (!jwk) return undefined;
    if (jwk.alg !== undefined && jwk.alg !== alg) return undefined;
    const cacheKey = `${kid} ${alg}`;
    let key = this.#imported.get(cacheKey);
    if (!key) {
      try {
        key = await jose.importJWK(jwk, alg);
      } catch {
        return undefined;
      }
      this.#imported.set(cacheKey, key);
    }
    return key;
  }

  /** One fetch at a time; concurrent callers share it. */
  #refresh(): Promise<void> {
    this.#inflight ??= this.#fetch().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  async #fetch(): Promise<void> {
    this.#lastAttemptAt = this.#now();
    try {
      const res = await fetch(this.#uri, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(this.#fetchTimeoutMs), redirect: 'error' });
      if (res.status !== 200) {
        await discardBody(res);
        throw new Error(`HTTP ${res.status}`);
      }
      const text = await readBoundedText(res, MAX_JWKS_BYTES);
      const body = JSON.parse(text) as { keys?: unknown };
      if (!Array.isArray(body.keys)) throw new Error('no "keys" list');
      const next = new Map<string, jose.JWK>();
      for (const candidate of body.keys as jose.JWK[]) {
        // Only asymmetric signing keys with an id can ever be chosen.
        if (typeof candidate !== 'object' || candidate === null || typeof candidate.kid !== 'string') continue;
        if (candidate.kty !== 'RSA' && candidate.kty !== 'EC' && candidate.kty !== 'OKP') continue;
        if (candidate.use !== undefined && candidate.use !== 'sig') continue;
        if ('d' in candidate) continue;
        next.set(candidate.kid, candidate);
      }
      for (const cacheKey of this.#imported.keys()) {
        const kid = cacheKey.slice(0, cacheKey.lastIndexOf(' '));
        if (!next.has(kid) || JSON.stringify(next.get(kid)) !== JSON.stringify(this.#jwks.get(kid))) this.#imported.delete(cacheKey);
      }
      const changed = JSON.stringify([...next]) !== JSON.stringify([...this.#jwks]);
      this.#jwks = next;
      this.#loadedAt = this.#now();
      this.#onFetch({ ok: true, keys: next.size, changed });
    } catch (err) {
      this.#onFetch({ ok: false, error: describeError(err) });
    }
  }
}
