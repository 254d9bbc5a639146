// The local IdP's storage: every record oidc-provider keeps (sessions, interactions, grants, codes, opaque
// tokens, front-channel logout notes), in memory, with the okta profile's refresh-token reuse grace.
import type { Adapter, AdapterPayload } from 'oidc-provider';

/** oidc-provider models whose records belong to a grant and go away when the grant is revoked. */
const GRANT_MEMBER_MODELS = new Set([
  'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest',
]);

/**
 * Everything the provider stores (sessions, interactions, grants, codes, opaque tokens), in memory.
 * One store per running IdP, shared by every Provider instance built for it, so that a key rotation
 * (which builds a new Provider, see startIdp) keeps users signed in and issued tokens valid.
 * Unlike oidc-provider's built-in memory adapter it has no size cap (which could evict sessions
 * under a benchmark) and is not shared with other IdPs in the same process.
 */
export class InMemoryStore {
  /**
   * Profile okta: a consumed (rotated) refresh token reads as unused for this long after its first use,
   * so it can be redeemed again (Okta's grace period: two requests racing with one token both succeed).
   * After it, oidc-provider sees it consumed and revokes the grant (reuse detection). 0: no grace.
   */
  refreshReuseGraceMs = 0;
  private readonly consumedAtByKey = new Map<string, number>();
  private readonly records = new Map<string, { payload: AdapterPayload; expiresAt: number }>();
  private readonly sessionKeyByUid = new Map<string, string>();
  private readonly keyByUserCode = new Map<string, string>();
  private readonly memberKeysByGrantId = new Map<string, Set<string>>();

  adapterFor(model: string): Adapter {
    const keyOf = (id: string) => `${model}:${id}`;
    return {
      upsert: async (id, payload, expiresIn) => {
        const key = keyOf(id);
        this.delete(key);
        const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
        this.records.set(key, { payload, expiresAt });
        if (model === 'Session' && payload.uid) this.sessionKeyByUid.set(payload.uid, key);
        if (payload.userCode) this.keyByUserCode.set(payload.userCode, key);
        if (GRANT_MEMBER_MODELS.has(model) && payload.grantId) {
          const members = this.memberKeysByGrantId.get(payload.grantId) ?? new Set<string>();
          members.add(key);
          this.memberKeysByGrantId.set(payload.grantId, members);
        }
      },
      find: async (id) => this.withinReuseGrace(keyOf(id), this.get(keyOf(id))),
      findByUid: async (uid) => this.get(this.sessionKeyByUid.get(uid)),
      findByUserCode: async (userCode) => this.get(this.keyByUserCode.get(userCode)),
      consume: async (id) => {
        const payload = this.get(keyOf(id));
        if (payload) payload.consumed = Math.floor(Date.now() / 1000);
        // The grace period runs from the first use: redeeming it again within it does not extend it.
        if (payload && !this.consumedAtByKey.has(keyOf(id))) this.consumedAtByKey.set(keyOf(id), Date.now());
      },
      destroy: async (id) => this.delete(keyOf(id)),
      revokeByGrantId: async (grantId) => {
        for (const key of this.memberKeysByGrantId.get(grantId) ?? []) this.delete(key);
        this.memberKeysByGrantId.delete(grantId);
      },
    };
  }

  /** Drops expired records; called periodically so a long demo run does not grow without bound. */
  sweep(): void {
    const now = Date.now();
    for (const [key, record] of this.records) if (record.expiresAt <= now) this.delete(key);
  }

  clear(): void {
    this.records.clear();
    this.consumedAtByKey.clear();
    this.sessionKeyByUid.clear();
    this.keyByUserCode.clear();
    this.memberKeysByGrantId.clear();
  }

  /** A consumed refresh token within its grace period reads as not consumed (a copy: the record keeps the mark). */
  private withinReuseGrace(key: string, payload: AdapterPayload | undefined): AdapterPayload | undefined {
    const consumedAt = this.consumedAtByKey.get(key);
    if (!payload?.consumed || consumedAt === undefined || !key.startsWith('RefreshToken:')) return payload;
    return Date.now() - consumedAt < this.refreshReuseGraceMs ? { ...payload, consumed: undefined } : payload;
  }

  private get(key: string | undefined): AdapterPayload | undefined {
    if (key === undefined) return undefined;
    const record = this.records.get(key);
    if (!record) return undefined;
    if (record.expiresAt <= Date.now()) {
      this.delete(key);
      return undefined;
    }
    return record.payload;
  }

  private delete(key: string): void {
    const record = this.records.get(key);
    if (!record) return;
    this.records.delete(key);
    this.consumedAtByKey.delete(key);
    const { uid, userCode, grantId } = record.payload;
    if (uid && this.sessionKeyByUid.get(uid) === key) this.sessionKeyByUid.delete(uid);
    if (userCode && this.keyByUserCode.get(userCode) === key) this.keyByUserCode.delete(userCode);
    if (grantId) this.memberKeysByGrantId.get(grantId)?.delete(key);
  }
}
