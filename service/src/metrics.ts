// Prometheus metrics (prom-client) at /metrics. Labels are low-cardinality only: outcomes, reason codes,
// results — never users, subjects, paths or rule text. Every event name idgate records is declared once in
// EVENTS below, with the counter and labels it moves.
import client from 'prom-client';

type EventName =
  | 'login_ok'
  | 'login_failed'
  | 'login_refused_busy'
  | 'pending_login_dropped'
  | 'logout'
  | 'backchannel_logout'
  | 'backchannel_logout_rejected'
  | 'frontchannel_logout'
  | 'frontchannel_logout_rejected'
  | 'okta_event'
  | 'okta_event_rejected'
  | 'refresh_token_revocation_failed'
  | 'refresh_ok'
  | 'refresh_failed'
  | 'refresh_unavailable'
  | 'store_error'
  | 'idp_error'
  | 'jwks_refresh_ok'
  | 'jwks_refresh_failed'
  | 'introspection_call'
  | 'introspection_credentials_refused'
  | 'policy_reload_ok'
  | 'policy_reload_failed';

/**
 * A histogram without labels kept as plain numbers (one per bucket, a sum, a count), for the check path:
 * prom-client's observe() costs several times as much (bench/check-components.ts). It sits in the
 * registry as prom-client's own histograms do and reads out the same values in the same shape (`get`),
 * so /metrics writes the same lines (test/unit/metrics.test.ts compares it with a prom-client Histogram).
 */
class PlainHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  /** Observations per bucket, not cumulative; the last slot holds those above every bound. */
  #counts: number[];
  #sum = 0;
  #count = 0;

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
    registry: client.Registry,
  ) {
    this.#counts = new Array<number>(bounds.length + 1).fill(0);
    registry.registerMetric(this as unknown as client.Metric);
  }

  observe(value: number): void {
    // prom-client throws on these; a latency is never one, and the check path must not throw.
    if (!Number.isFinite(value)) return;
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]!) i++;
    this.#counts[i]!++;
    this.#sum += value;
    this.#count++;
  }

  /** What prom-client's Histogram.get() gives for a histogram without labels. */
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: { labels: Record<string, string | number>; value: number; metricName: string }[] }> {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    let cumulative = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      cumulative += this.#counts[i]!;
      values.push({ labels: { le: this.bounds[i]! }, value: cumulative, metricName: `${this.name}_bucket` });
    }
    values.push({ labels: { le: '+Inf' }, value: this.#count, metricName: `${this.name}_bucket` });
    values.push({ labels: {}, value: this.#sum, metricName: `${this.name}_sum` });
    values.push({ labels: {}, value: this.#count, metricName: `${this.name}_count` });
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.#counts.fill(0);
    this.#sum = 0;
    this.#count = 0;
  }
}

export class Metrics {
  readonly registry = new client.Registry();
  /**
   * Decisions counted since the last scrape, per outcome and reason: the check counts each one here, as a
   * plain number (a labelled prom-client inc() costs several Map updates: docs/design-notes.md), and
   * the counter takes them in when /metrics is read (`collect`).
   */
  readonly #decisionsPending = new Map<string, Map<string, number>>();
  readonly #decisions: client.Counter<'outcome' | 'reason'> = new client.Counter({
    name: 'idgate_decisions_total',
    help: 'Check decisions by outcome and reason code.',
    labelNames: ['outcome', 'reason'] as const,
    registers: [this.registry],
    collect: () => this.#collectDecisions(),
  });
  readonly #latency = new PlainHistogram(
    'idgate_check_duration_seconds',
    'Time from a check request to its answer.',
    [0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    this.registry,
  );
  readonly #revoked = new client.Counter({ name: 'idgate_sessions_revoked_total', help: 'Sessions ended by logout, back-channel logout, failed renewal or an operator.', registers: [this.registry] });
  readonly #introspectionRefused = new client.Counter({
    name: 'idgate_introspection_refused_total',
    help: 'Introspection calls not made because a bound was reached (global_inflight, source_inflight, source_rate).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly #replicationWaits = new client.Counter({
    name: 'idgate_redis_replication_waits_total',
    help: 'Writes that waited for Redis replicas (WAIT), by write (session, renewal, revocation) and result (replicated, timeout: went on unconfirmed, skipped: no free connection, went on without waiting, error).',
    labelNames: ['write', 'result'] as const,
    registers: [this.registry],
  });
  readonly #events: Record<EventName, () => void>;

  constructor() {
    const counter = (name: string, help: string, labelNames: string[] = []) => new client.Counter({ name, help, labelNames, registers: [this.registry] });
    const logins = counter('idgate_logins_total', 'Completed and failed logins.', ['result']);
    const logouts = counter('idgate_logouts_total', 'Logouts by kind (local: POST /_auth/logout; backchannel, frontchannel: the IdP; okta_event: an Okta event hook delivery that ended sessions).', ['kind']);
    const refreshes = counter('idgate_refreshes_total', 'Token renewals: ok, failed (session ended), unavailable (IdP away).', ['result']);
    const jwks = counter('idgate_jwks_refreshes_total', 'Fetches of signing keys.', ['result']);
    const reloads = counter('idgate_policy_reloads_total', 'Policy reloads.', ['result']);
    const redisErrors = counter('idgate_redis_errors_total', 'Checks that could not reach Redis.');
    const idpErrors = counter('idgate_idp_errors_total', 'Failures to reach the IdP (discovery, keys, introspection, renewal).');
    const introspections = counter('idgate_introspection_calls_total', 'Introspection calls made (cache misses).');
    const refusedCredentials = counter('idgate_introspection_credentials_refused_total', "Introspection answers 401/403: the issuer refuses idgate's client credentials (a configuration error, not an outage).");
    const droppedLogins = counter('idgate_pending_logins_dropped_total', 'Pending logins dropped because their browser started more than IDGATE_LOGIN_MAX_PENDING_PER_BROWSER.');
    const rejectedLogouts = counter('idgate_backchannel_logout_rejected_total', 'Logout tokens refused.');
    const rejectedFrontChannel = counter('idgate_frontchannel_logout_rejected_total', 'Front-channel logouts refused (iss not the issuer, no sid).');
    const rejectedEvents = counter('idgate_okta_events_rejected_total', 'Okta event hook requests refused (wrong or missing Authorization, malformed body).');
    const failedRevocations = counter('idgate_refresh_token_revocations_failed_total', 'Logouts whose refresh token the IdP could not be made to revoke (the logout completed all the same).');
    this.#events = {
      login_ok: () => logins.inc({ result: 'ok' }),
      login_failed: () => logins.inc({ result: 'failed' }),
      login_refused_busy: () => logins.inc({ result: 'refused_busy' }),
      pending_login_dropped: () => droppedLogins.inc(),
      logout: () => logouts.inc({ kind: 'local' }),
      backchannel_logout: () => logouts.inc({ kind: 'backchannel' }),
      backchannel_logout_rejected: () => rejectedLogouts.inc(),
      frontchannel_logout: () => logouts.inc({ kind: 'frontchannel' }),
      frontchannel_logout_rejected: () => rejectedFrontChannel.inc(),
      okta_event: () => logouts.inc({ kind: 'okta_event' }),
      okta_event_rejected: () => rejectedEvents.inc(),
      refresh_token_revocation_failed: () => failedRevocations.inc(),
      refresh_ok: () => refreshes.inc({ result: 'ok' }),
      refresh_failed: () => refreshes.inc({ result: 'failed' }),
      refresh_unavailable: () => refreshes.inc({ result: 'unavailable' }),
      store_error: () => redisErrors.inc(),
      idp_error: () => idpErrors.inc(),
      jwks_refresh_ok: () => jwks.inc({ result: 'ok' }),
      jwks_refresh_failed: () => jwks.inc({ result: 'failed' }),
      introspection_call: () => introspections.inc(),
      introspection_credentials_refused: () => refusedCredentials.inc(),
      policy_reload_ok: () => reloads.inc({ result: 'ok' }),
      policy_reload_failed: () => reloads.inc({ result: 'failed' }),
    };
    client.collectDefaultMetrics({ register: this.registry, prefix: 'idgate_' });
  }

  recordDecision(outcome: string, reason: string, seconds: number): void {
    let reasons = this.#decisionsPending.get(outcome);
    if (reasons === undefined) this.#decisionsPending.set(outcome, (reasons = new Map()));
    reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    this.#latency.observe(seconds);
  }

  #collectDecisions(): void {
    for (const [outcome, reasons] of this.#decisionsPending) {
      for (const [reason, count] of reasons) {
        if (count === 0) continue;
        this.#decisions.inc({ outcome, reason }, count);
        reasons.set(reason, 0);
      }
    }
  }

  recordEvent(event: EventName): void {
    this.#events[event]();
  }

  recordIntrospectionRefused(reason: 'global_inflight' | 'source_inflight' | 'source_rate'): void {
    this.#introspectionRefused.inc({ reason });
  }

  recordReplicationWait(write: 'session' | 'renewal' | 'revocation', result: 'replicated' | 'timeout' | 'skipped' | 'error'): void {
    this.#replicationWaits.inc({ write, result });
  }

  recordRevoked(count: number): void {
    if (count > 0) this.#revoked.inc(count);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
