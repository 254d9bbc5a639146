// Decisions are counted as plain numbers on the check path and handed to prom-client when /metrics is
// read: the exposition says what a prom-client counter incremented on every decision would say.
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
