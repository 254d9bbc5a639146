// Waiting, for the launcher and the tests alike: a child's readiness, a log line, a state that settles a moment
// after an answer. Every wait is bounded; the bounds are liveness limits, not speed figures: generous, so that a
// loaded machine meets them (a wait that succeeds lasts only as long as the event takes). It lives in stack/ (which
// tests import, never the reverse) so that the launcher and the tests share one set.

/** The default bound of a wait: a log line or a pub/sub announcement that follows an answer. */
const LIVENESS_MS = 5000;

/** How often a condition is asked again when nothing else says it may have changed. */
const EVERY_MS = 25;

export interface WaitOptions {
  /** How long to wait, in ms, before giving up. Default 5000 (5 seconds). */
  timeoutMs?: number;
  /** The pause between two tries, in ms. Default 25. */
  everyMs?: number;
}

/** Resolves after `ms` milliseconds. For a pace (load, probes) or a time that is itself the behaviour under test; to wait for an event, use waitUntil. */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Resolves once `condition()` holds. A condition that throws or rejects counts as not yet (a child not yet
 * listening). Rejects after `timeoutMs` with "`what`: not reached after N ms" and the last error, if any.
 */
export async function waitUntil(what: string, condition: () => boolean | Promise<boolean>, options: WaitOptions = {}): Promise<void> {
  const { timeoutMs = LIVENESS_MS, everyMs = EVERY_MS } = options;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      if (await condition()) return;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const why = lastError === undefined ? '' : ` (last error: ${lastError instanceof Error ? lastError.message : String(lastError)})`;
      throw new Error(`${what}: not reached after ${timeoutMs} ms${why}`);
    }
    await pause(everyMs);
  }
}

/**
 * Resolves with the first result of `probe()` that `done` accepts, or the last one after `timeoutMs`: for an
 * assertion on the result, which then reports what was seen. Never rejects on time.
 */
export async function probeUntil<T>(probe: () => Promise<T>, done: (result: T) => boolean, options: WaitOptions = {}): Promise<T> {
  const { timeoutMs = LIVENESS_MS, everyMs = EVERY_MS } = options;
  const deadline = Date.now() + timeoutMs;
  let result = await probe();
  while (!done(result) && Date.now() < deadline) {
    await pause(everyMs);
    result = await probe();
  }
  return result;
}

/** Resolves once `proc`'s output (stdout and stderr) contains `text`; rejects after `timeoutMs` with that output. */
export async function waitForOutput(proc: { name: string; output(): string }, text: string, options: WaitOptions = {}): Promise<void> {
  await waitUntil(`"${text}" in ${proc.name}'s output`, () => proc.output().includes(text), options).catch((err: Error) => {
    throw new Error(`${err.message}; its output:\n${proc.output()}`);
  });
}

/**
 * Resolves once `condition()` holds or after `timeoutMs`, whichever comes first, and never rejects: for a load
 * that runs until it has enough answers, at most so long; the assertions after it judge what came.
 */
export async function waitAtMost(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await pause(EVERY_MS);
}
