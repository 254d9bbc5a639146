// Decisions and their latency are counted as plain numbers on the check path, read by prom-client when
// /metrics is scraped: the exposition says what a prom-client counter and histogram would say.
import fc from 'fast-check';
import client from 'prom-client';
import { Metrics } from '../../service/src/metrics.js';

const decisionLines = (text: string) => text.split('\n').filter((l) => l.startsWith('idgate_decisions_total') || l.startsWith('# HELP idgate_decisions_total') || l.startsWith('# TYPE idgate_decisions_total'));

test('idgate_decisions_total counts every decision by outcome and reason, scrape after scrape', async () => {
  const metrics = new Metrics();
  const registry = new client.Registry();
  const reference = new client.Counter({ name: 'idgate_decisions_total', help: 'Check decisions by outcome and reason code.', labelNames: ['outcome', 'reason'], registers: [registry] });
  const decisions: [string, string][] = [['allow', 'ok'], ['allow', 'ok'], ['deny', 'access_denied'], ['refused', 'untrusted_peer'], ['public', 'public'], ['allow', 'ok']];
  for (const round of [1, 2, 3]) {
    for (const [outcome, reason] of decisions.slice(0, round * 2)) {
      metrics.recordDecision(outcome, reason, 0.0001);
      reference.inc({ outcome, reason });
    }
    expect(decisionLines(await metrics.render())).toEqual(decisionLines(await registry.metrics()));
  }
  expect(await metrics.render()).toContain('idgate_decisions_total{outcome="allow",reason="ok"} 7');
  expect(await metrics.render()).toContain('idgate_check_duration_seconds_count 12');
});

test('before any decision, no decision series is shown', async () => {
  expect(decisionLines(await new Metrics().render())).toEqual(['# HELP idgate_decisions_total Check decisions by outcome and reason code.', '# TYPE idgate_decisions_total counter']);
});

const latencyLines = (text: string) => text.split('\n').filter((l) => /^(# (HELP|TYPE) )?idgate_check_duration_seconds/.test(l));

test('idgate_check_duration_seconds reads out as a prom-client histogram fed the same latencies', async () => {
  const latency = fc.oneof(
    fc.double({ min: 0, max: 10, noNaN: true }),
    fc.constantFrom(0, 0.0002, 0.0005, 0.001, 0.0025, 2.5, 2.5000001, 1e-9, 30),
  );
  await fc.assert(
    fc.asyncProperty(fc.array(latency, { maxLength: 60 }), async (seconds) => {
      const metrics = new Metrics();
      const registry = new client.Registry();
      const reference = new client.Histogram({
        name: 'idgate_check_duration_seconds',
        help: 'Time from a check request to its answer.',
        buckets: [0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
        registers: [registry],
      });
      for (const s of seconds) {
        metrics.recordDecision('allow', 'ok', s);
        reference.observe(s);
      }
      expect(latencyLines(await metrics.render())).toEqual(latencyLines(await registry.metrics()));
      expect(latencyLines(await metrics.render())).toHaveLength(2 + 13 + 1 + 2);
    }),
    { numRuns: 200 },
  );
});
