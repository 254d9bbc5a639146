// `make bench`: runs the benchmark scenarios, writes bench/results.json and appends a dated table with
// the exact command to bench/RESULTS.md.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../demo/processes.js';
import { benchPolicyMatching, type MatchingResult } from './policy-matching.js';

async function main(): Promise<void> {
  const command = process.env.BENCH_COMMAND ?? 'make bench';
  const results: MatchingResult[] = [];
  for (const rules of [50, 500]) {
    process.stdout.write(`policy matching with ${rules} rules...\n`);
    results.push(benchPolicyMatching(rules));
  }
  const ratios: Record<string, number> = {
    'policy 500 rules / 50 rules (checks/s)': Number((results[1]!.rps / results[0]!.rps).toFixed(3)),
  };
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
  } catch {
    // not a git checkout
  }
  const out = { date: new Date().toISOString(), commit, command, machine: `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}`, scenarios: results, ratios };
  fs.writeFileSync(path.join(REPO_ROOT, 'bench/results.json'), `${JSON.stringify(out, null, 2)}\n`);
  const table = [
    `## ${out.date.slice(0, 16).replace('T', ' ')} UTC, commit ${commit} (${out.machine})`,
    '',
    `Command: \`${command}\``,
    '',
    '| scenario | checks/s | p50 ms | p99 ms | errors | RSS MB |',
    '|---|---|---|---|---|---|',
    ...results.map((r) => `| ${r.name} | ${r.rps.toLocaleString('en-US')} | ${r.p50_ms} | ${r.p99_ms} | ${r.errors} | ${r.rss_mb} |`),
    '',
    ...Object.entries(ratios).map(([k, v]) => `- ${k}: ${v}`),
    '',
  ].join('\n');
  const resultsMd = path.join(REPO_ROOT, 'bench/RESULTS.md');
  if (!fs.existsSync(resultsMd)) fs.writeFileSync(resultsMd, '# Benchmark results\n\nEach run of `make bench` appends a section: the date, the machine, the exact command, the figures.\n\n');
  fs.appendFileSync(resultsMd, `${table}\n`);
  process.stdout.write(`${table}\nwrote bench/results.json and appended to bench/RESULTS.md\n`);
}

void main();
