#!/usr/bin/env node
// `make test-compat`: runs the tests that touch HAProxy, Redis and Node against each version that
// compat/fetch.sh put in the cache (CACHE/components.tsv), then prints the matrix. The versions `make test`
// runs on (the ones on PATH) are listed too, as covered by it. Exit 1 when any file failed.
//
// Plain Node, no build step: it only starts jest and reads its JSON report.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CACHE = process.argv[2] ?? path.join(ROOT, '.cache/compat');
const LOGS = path.join(ROOT, '.run/compat-logs');
const ROW_TIMEOUT_MS = 20 * 60_000;

// The test files each component's versions run: whatever starts that component and depends on how it
// behaves. HAProxy: both transports, the edge, the drop-in lines; Redis: the session store suite, TLS,
// Sentinel and Cluster; Node: the unit tests and a few end-to-end files that start child processes.
const FILES = {
  haproxy: [
    'test/e2e/haproxy-lua.test.ts',
    'test/e2e/haproxy-spoe.test.ts',
    'test/e2e/haproxy-dropin.test.ts',
    'test/e2e/spoe-parity.test.ts',
    'test/e2e/check-secret.test.ts',
    'test/e2e/edge-cookies.test.ts',
    'test/e2e/edge-demo.test.ts',
    'test/e2e/edge-headers.test.ts',
    'test/e2e/edge-methods.test.ts',
    'test/e2e/edge-paths.test.ts',
    'test/e2e/edge-spellings.test.ts',
  ],
  redis: [
    'test/unit/session-store.test.ts',
    'test/e2e/redis-tls.test.ts',
    'test/e2e/redis-sentinel.test.ts',
    'test/e2e/redis-cluster.test.ts',
    'test/e2e/redis-tls-topologies.test.ts',
  ],
  node: ['test/unit', 'test/e2e/service.test.ts', 'test/e2e/cli.test.ts', 'test/e2e/haproxy-lua.test.ts', 'test/e2e/haproxy-spoe.test.ts'],
};

function readManifest() {
  const file = path.join(CACHE, 'components.tsv');
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: run compat/fetch.sh first`);
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [component, version, binDir] = line.split('\t');
      return { component, version, binDir };
    });
}

/** Each row of the matrix: what it runs and with which programs. */
function rowsOf(manifest) {
  return manifest.map(({ component, version, binDir }) => {
    const row = { component, version, files: FILES[component === 'valkey' ? 'redis' : component] };
    if (binDir === 'unavailable') return { ...row, unavailable: true };
    const env = {};
    if (component === 'haproxy') env.IDGATE_HAPROXY_BIN = path.join(binDir, 'haproxy');
    if (component === 'redis' || component === 'valkey') {
      env.IDGATE_REDIS_SERVER_BIN = path.join(binDir, `${component}-server`);
      env.IDGATE_REDIS_CLI_BIN = path.join(binDir, `${component}-cli`);
    }
    const node = component === 'node' ? path.join(binDir, 'node') : process.execPath;
    if (component === 'node') env.PATH = `${binDir}:${process.env.PATH}`;
    return { ...row, env, node };
  });
}

function runJest(row, name) {
  const report = path.join(LOGS, `${name}.json`);
  const log = path.join(LOGS, `${name}.log`);
  fs.rmSync(report, { force: true });
  const out = fs.openSync(log, 'w');
  const args = [path.join(ROOT, 'node_modules/jest/bin/jest.js'), '--json', '--outputFile', report, ...row.files];
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(row.node, args, {
      cwd: ROOT,
      env: { ...process.env, NODE_OPTIONS: '--experimental-vm-modules', ...row.env },
      stdio: ['ignore', out, out],
      detached: true,
    });
    const timer = setTimeout(() => process.kill(-child.pid, 'SIGKILL'), ROW_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      fs.closeSync(out);
      const seconds = Math.round((Date.now() - started) / 1000);
      let result = { passed: 0, failed: 0, failedFiles: [] };
      try {
        const json = JSON.parse(fs.readFileSync(report, 'utf8'));
        result = {
          passed: json.numPassedTests,
          failed: json.numFailedTests + json.numRuntimeErrorTestSuites,
          failedFiles: json.testResults.filter((r) => r.status !== 'passed').map((r) => path.relative(ROOT, r.name)),
        };
      } catch {
        result.failed = 1; // no report: jest itself failed or was killed
      }
      if (code !== 0 && result.failed === 0) result.failed = 1;
      resolve({ ...result, seconds, log });
    });
  });
}

function versionOnPath(command, args, pattern) {
  try {
    const out = execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return out.match(pattern)?.[1] ?? '?';
  } catch {
    return 'absent';
  }
}

function printMatrix(results) {
  const header = ['component', 'version', 'files', 'passed', 'failed', 'seconds'];
  const lines = results.map((r) => [r.component, r.version, r.filesLabel, String(r.passed ?? ''), String(r.failed ?? ''), String(r.seconds ?? '')]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  console.log(['', fmt(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...lines.map(fmt)].join('\n'));
}

fs.mkdirSync(LOGS, { recursive: true });
const results = [
  { component: 'haproxy', version: versionOnPath('haproxy', ['-v'], /version (\S+)/), filesLabel: 'make test (on PATH)' },
  { component: 'redis', version: versionOnPath('redis-server', ['--version'], /v=(\S+)/), filesLabel: 'make test (on PATH)' },
  { component: 'node', version: process.versions.node, filesLabel: 'make test (on PATH)' },
];
const began = Date.now();
for (const row of rowsOf(readManifest())) {
  const filesLabel =
    row.component === 'node'
      ? `test/unit + ${row.files.length - 1} e2e files`
      : `${row.files.length} files: ${row.component === 'haproxy' ? 'transports, edge' : 'store, TLS, Sentinel, Cluster'}`;
  if (row.unavailable) {
    results.push({ component: row.component, version: row.version, filesLabel: 'source not on the mirror: skipped' });
    continue;
  }
  const name = `${row.component}-${row.version}`;
  console.log(`compat: ${row.component} ${row.version}: ${row.files.length} test paths`);
  const result = await runJest(row, name);
  if (result.failed > 0) {
    console.log(`compat: ${name} failed: ${result.failedFiles.join(', ') || '(no report)'}; last lines of ${path.relative(ROOT, result.log)}:`);
    console.log(fs.readFileSync(result.log, 'utf8').split('\n').slice(-60).join('\n'));
  }
  results.push({ component: row.component, version: row.version, filesLabel, ...result });
}
printMatrix(results);
console.log(`\ncompat: ${Math.round((Date.now() - began) / 1000)} s of tests; logs in ${path.relative(ROOT, LOGS)}/`);
process.exit(results.some((r) => r.failed > 0) ? 1 : 0);
