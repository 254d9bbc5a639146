// Prometheus text exposition of a few counters, kept in plain objects so the check path pays an
// increment, not a library call. Labels are low-cardinality only (outcome, event): never users or paths.

export class Metrics {
  readonly #decisions = new Map<string, number>();
  readonly #events = new Map<string, number>();
  #checkSeconds = 0;
  #checks = 0;

  recordDecision(outcome: string, seconds: number): void {
    this.#decisions.set(outcome, (this.#decisions.get(outcome) ?? 0) + 1);
    this.#checkSeconds += seconds;
    this.#checks += 1;
  }

  /** login_ok, login_failed, logout, store_error, idp_error ... */
  recordEvent(event: string): void {
    this.#events.set(event, (this.#events.get(event) ?? 0) + 1);
  }

  render(): string {
    const lines = [
      '# HELP idgate_decisions_total Check decisions by outcome.',
      '# TYPE idgate_decisions_total counter',
      ...[...this.#decisions].map(([outcome, n]) => `idgate_decisions_total{outcome="${outcome}"} ${n}`),
      '# HELP idgate_check_duration_seconds Time spent deciding checks.',
      '# TYPE idgate_check_duration_seconds summary',
      `idgate_check_duration_seconds_sum ${this.#checkSeconds}`,
      `idgate_check_duration_seconds_count ${this.#checks}`,
      '# HELP idgate_events_total Logins, logouts and errors by kind.',
      '# TYPE idgate_events_total counter',
      ...[...this.#events].map(([event, n]) => `idgate_events_total{event="${event}"} ${n}`),
    ];
    return `${lines.join('\n')}\n`;
  }
}
