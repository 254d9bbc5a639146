// Log lines and pub/sub announcements arrive a moment after the answer: tests wait for them, up to a bound.
// The bound is a liveness limit, not a speed figure: generous, so that a loaded machine meets it (a test
// that passes waits only as long as the event takes).
const LIVENESS_MS = 5000;

/** Resolves once `condition()` holds; returns quietly after `timeoutMs` so the assertion after it reports what was seen. */
export async function waitUntil(condition: () => boolean, timeoutMs = LIVENESS_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
}

/** Resolves with the first result `probe()` gives that `done` accepts, or the last one after `timeoutMs` (for the assertion to report). */
export async function probeUntil<T>(probe: () => Promise<T>, done: (result: T) => boolean, timeoutMs = LIVENESS_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let result = await probe();
  while (!done(result) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 25));
    result = await probe();
  }
  return result;
}
