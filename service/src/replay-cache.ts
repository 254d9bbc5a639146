// What refusing a replayed DPoP proof needs: each proof remembered once, for every replica. The session
// store implements it in Redis; tokens/dpop.ts depends on this interface alone.

export interface ReplayCache {
  /**
   * Whether a DPoP proof (by `digest`: of its key's thumbprint and its jti) is seen for the first time, for
   * `ttlSeconds`. The same request asked again (`requestId`, HAProxy's unique id: an SPOE retry, the Lua
   * action sending again after a lost answer) is no replay; any other request with the proof is.
   */
  firstUseOfDpopProof(digest: string, ttlSeconds: number, requestId: string): Promise<boolean>;
}
