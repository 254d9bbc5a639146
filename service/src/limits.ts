// idgate's internal tunables, in one place: bounds, cache sizes, timeouts and cool-downs that an operator
// should not need to touch (those that one may are settings: config.ts SETTINGS). Each says why it is what it is.
// Changing one changes behaviour under load or failure: the tests and bench/RESULTS.md are the reference.

// ---- Command line

/** Redis command timeout of `idgate sessions revoke`'s waiting writes: a person at a terminal waits longer than a check. */
export const CLI_REDIS_TIMEOUT_MS = 3000;
