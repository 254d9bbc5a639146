// The one clock of the service: where time decides (a session's tokens due or expired, a cached answer's
// age, a DPoP proof's window and nonce, the age of signing keys), the time is read from a Clock handed
// down from createIdgate, so a test can move it instead of waiting for a lifetime to pass. Durations
// measured for metrics use performance.now(), which no test needs to move.

/** Milliseconds since the epoch, as Date.now() gives them. */
export type Clock = () => number;

/** The machine's clock: what production runs on. */
export const systemClock: Clock = () => Date.now();
