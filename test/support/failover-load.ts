// The load the failover tests (Redis Cluster, Redis Sentinel) keep up while a primary is killed: one loop
// of checks per idgate replica, every answer counted by kind; the first and last 503 of the sessions the
// fault reaches time the outage; then a bounded wait until every session answers 200 through every
// replica again, and more load after it. The test says what a round checks, what the fault is, and what
// it asserts and prints from the result.
import { pause, waitAtMost } from '../../stack/wait.js';

export interface FailoverLoadOptions<K extends string, F> {
  /** The kinds answers are counted by (e.g. valid session, forged cookie, no cookie). */
  readonly kinds: readonly K[];
  /** Loops, one per replica; also how many answers per session `answers()` gives. */
  readonly replicas: number;
  /** How many sessions `answers()` asks about. */
  readonly sessions: number;
  /**
   * Round `i` of the loop on `replica`: its checks, each answer counted with `count`; `timesOutage`: a 503
   * there is one of the outage's (the sessions the fault reaches).
   */
  round(replica: number, i: number, count: (kind: K, status: number, timesOutage?: boolean) => void): Promise<void>;
  /** The pause after each round: a steady load, not a flood. */
  readonly pacingMs: number;
  /** Rounds (all loops together) before the fault, and again after the recovery: a number of rounds, not of milliseconds. */
  readonly rounds: number;
  /** The fault, from the kill to the failover its waits for; resolves with what the test prints of it. */
  fault(): Promise<F>;
  /** Every session's answer through each replica in turn (session 0 through replica 0, 1, ..., session 1...). */
  answers(): Promise<number[]>;
  /** Checks once every session answers again, before the load after the recovery. */
  afterRecovery?(): Promise<void>;
}

export interface FailoverLoadResult<K extends string, F> {
  readonly counts: Record<K, Map<number, number>>;
  /** The answers of a kind, by status: "200x812 503x40". */
  table(kind: K): string;
  readonly fault: F;
  readonly killedAt: number;
  readonly failedOverAt: number;
  readonly recoveredAt: number;
  /** From the first to the last 503 that timed the outage (0 without any). */
  readonly seconds503: number;
  /** Sessions that did not answer 200 through every replica by the end of the wait (15 s). */
  readonly lost: number;
}

export async function underFailoverLoad<K extends string, F>(options: FailoverLoadOptions<K, F>): Promise<FailoverLoadResult<K, F>> {
  const counts = Object.fromEntries(options.kinds.map((k) => [k, new Map<number, number>()])) as Record<K, Map<number, number>>;
  let first503: number | undefined;
  let last503: number | undefined;
  const count = (kind: K, status: number, timesOutage = false) => {
    counts[kind].set(status, (counts[kind].get(status) ?? 0) + 1);
    if (status === 503 && timesOutage) {
      first503 ??= Date.now();
      last503 = Date.now();
    }
  };
  let stopLoad = false;
  let rounds = 0;
  const load = async (replica: number) => {
    for (let i = 0; !stopLoad; i++) {
      await options.round(replica, i, count);
      rounds += 1;
      await pause(options.pacingMs); // pacing: a steady load, not a flood
    }
  };
  const loops = Array.from({ length: options.replicas }, (_, replica) => load(replica));
  let killedAt = 0;
  let fault: F;
  let failedOverAt = 0;
  let answering: number[] = [];
  let recoveredAt = 0;
  try {
    await waitAtMost(() => rounds >= options.rounds, 10_000); // a baseline before the failure
    killedAt = Date.now();
    fault = await options.fault();
    failedOverAt = Date.now();
    // Checks work again by themselves: wait (bounded) until every session answers 200 through every replica.
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      answering = await options.answers();
      if (answering.every((s) => s === 200)) break;
      await pause(100); // the pace of the recovery probes: part of the measured figures
    }
    recoveredAt = Date.now();
    const roundsAtRecovery = rounds;
    await options.afterRecovery?.();
    await waitAtMost(() => rounds >= roundsAtRecovery + options.rounds, 10_000); // the load goes on after the recovery
  } finally {
    // Also when the fault or a check failed: no loop outlives the test.
    stopLoad = true;
    await Promise.all(loops);
  }

  let lost = 0;
  for (let s = 0; s < options.sessions; s++) {
    if (answering.slice(s * options.replicas, (s + 1) * options.replicas).some((status) => status !== 200)) lost += 1;
  }
  return {
    counts,
    table: (kind) => [...counts[kind]].sort(([a], [b]) => a - b).map(([s, n]) => `${s}x${n}`).join(' '),
    fault,
    killedAt,
    failedOverAt,
    recoveredAt,
    seconds503: first503 === undefined ? 0 : (last503! - first503) / 1000,
    lost,
  };
}
