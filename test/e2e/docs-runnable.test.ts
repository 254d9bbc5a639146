// Every command in the docs runs as written: this test runs each fenced block of docs/*.md and README.md
// marked runnable, and fails naming the doc, the line and the output when one does not.
//
// Marking: an HTML comment on the line right before the opening fence (GitHub renders nothing for it):
//
//   <!-- runnable -->              the block runs. A block whose lines start with "$ " is a transcript:
//                                  each "$ " command runs and its output (stdout and stderr together)
//                                  must be exactly the lines that follow it, whatever its exit status.
//                                  Any other block is a script: it runs with bash -euo pipefail and must
//                                  exit 0.
//   <!-- runnable: settings -->    the same, with the five required IDGATE_* settings set to example
//                                  values, as on a configured host (and nothing else of idgate's).
//   <!-- runnable: file NAME -->   the block is not run but written to NAME, for the blocks after it
//                                  (a policy file, a sample audit log).
//
// The blocks of one doc run in order, in one temporary directory that holds a copy of the repo's policy/
// (as a checkout does), with `idgate` (bin/idgate.js of this tree, built) on PATH and an environment of
// PATH (the system one, sbin included: Debian puts haproxy there), HOME and TZ=UTC only. Blocks that need root, apt, systemd, a real IdP or a running stack stay
// unmarked; mark what a reader can paste on a machine with idgate installed and nothing running.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../../stack/processes.js';

type Marking = { kind: 'run'; settings: boolean } | { kind: 'file'; name: string };

interface Block {
  readonly doc: string;
  /** Line of the opening fence, 1-based. */
  readonly line: number;
  readonly marking: Marking;
  readonly lines: string[];
}

const MARKER = /^<!--\s*runnable(?::\s*(.*?))?\s*-->\s*$/;

/** The marked blocks of a markdown file; a marker that is malformed or not right before a fence throws. */
function markedBlocks(doc: string, text: string): Block[] {
  const lines = text.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/<!--\s*runnable/.test(lines[i]!)) continue;
    const where = `${doc}:${i + 1}`;
    const m = MARKER.exec(lines[i]!);
    if (!m) throw new Error(`${where}: malformed runnable marker: ${lines[i]}`);
    const option = (m[1] ?? '').trim();
    let marking: Marking;
    if (option === '') marking = { kind: 'run', settings: false };
    else if (option === 'settings') marking = { kind: 'run', settings: true };
    else if (/^file [\w.-]+$/.test(option)) marking = { kind: 'file', name: option.slice(5) };
    else throw new Error(`${where}: unknown runnable option "${option}" (settings, or file NAME)`);
    const fence = /^(```+)/.exec(lines[i + 1] ?? '');
    if (!fence) throw new Error(`${where}: a runnable marker must be right before a fenced block`);
    const end = lines.findIndex((l, j) => j > i + 1 && l.startsWith(fence[1]!) && l.trim() === fence[1]);
    if (end === -1) throw new Error(`${where}: the fenced block is not closed`);
    blocks.push({ doc, line: i + 2, marking, lines: lines.slice(i + 2, end) });
    i = end;
  }
  return blocks;
}

const DOCS = [...fs.readdirSync(path.join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`), 'README.md'];
const blocksByDoc = new Map(DOCS.map((doc) => [doc, markedBlocks(doc, fs.readFileSync(path.join(REPO_ROOT, doc), 'utf8'))]));

/** Example values of the required settings: valid, and pointing nowhere real (nothing here connects). */
const REQUIRED_SETTINGS = {
  IDGATE_ISSUER: 'https://dev-123456.okta.com/oauth2/default',
  IDGATE_CLIENT_ID: '0oa1b2c3d4e5f6g7h8i9',
  IDGATE_CLIENT_SECRET: 'client-secret-of-the-docs-test',
  IDGATE_PUBLIC_URL: 'https://app.example.com',
  IDGATE_COOKIE_SECRETS: 'cookie-secret-of-the-docs-test-0123456789',
  IDGATE_CHECK_SECRETS: 'check-secret-of-the-docs-test-0123456789',
};

let root: string;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'idgate-docs-'));
  fs.mkdirSync(path.join(root, 'bin'));
  fs.writeFileSync(path.join(root, 'bin/idgate'), `#!/bin/sh\nexec "${process.execPath}" "${path.join(REPO_ROOT, 'bin/idgate.js')}" "$@"\n`, { mode: 0o755 });
  fs.mkdirSync(path.join(root, 'home'));
});

afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

function environment(settings: boolean): NodeJS.ProcessEnv {
  return {
    PATH: `${path.join(root, 'bin')}:${path.dirname(process.execPath)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
    HOME: path.join(root, 'home'),
    TZ: 'UTC',
    ...(settings ? REQUIRED_SETTINGS : {}),
  };
}

/** Runs bash on `script` in `cwd`; stdout and stderr together, in the order written. */
function bash(script: string, cwd: string, env: NodeJS.ProcessEnv): { status: number | null; output: string } {
  const run = spawnSync('bash', ['-euo', 'pipefail', '-c', `exec 2>&1\n${script}`], { cwd, env, encoding: 'utf8', timeout: 20_000 });
  return { status: run.status, output: run.stdout + (run.error ? `\n(${run.error.message})` : '') };
}

const indent = (text: string) => text.replace(/\n$/, '').split('\n').map((l) => `    ${l}`).join('\n');

/** Runs one marked block in `cwd`; returns what went wrong, or undefined. */
function runBlock(block: Block, cwd: string): string | undefined {
  const where = `${block.doc}:${block.line}`;
  if (block.marking.kind === 'file') {
    fs.writeFileSync(path.join(cwd, block.marking.name), `${block.lines.join('\n')}\n`);
    return undefined;
  }
  const env = environment(block.marking.settings);
  if (block.lines[0]?.startsWith('$ ')) {
    // A transcript: each command, and the output the doc shows for it.
    for (let i = 0; i < block.lines.length; ) {
      const at = `${block.doc}:${block.line + 1 + i}`;
      const command = block.lines[i]!.slice(2);
      const expected: string[] = [];
      for (i++; i < block.lines.length && !block.lines[i]!.startsWith('$ '); i++) expected.push(block.lines[i]!);
      const { output } = bash(command, cwd, env);
      const want = expected.join('\n');
      if (output.replace(/\n$/, '') !== want) {
        return `${at}: \`${command}\` printed other than the doc shows\n  the doc:\n${indent(want)}\n  printed:\n${indent(output)}`;
      }
    }
    return undefined;
  }
  const { status, output } = bash(block.lines.join('\n'), cwd, env);
  return status === 0 ? undefined : `${where}: the block failed (exit ${status})\n${indent(block.lines.join('\n'))}\n  output:\n${indent(output)}`;
}

test('runnable markers are well formed, and the docs have runnable blocks', () => {
  // markedBlocks threw at load time for a malformed marker; here, that some blocks are marked at all.
  const count = [...blocksByDoc.values()].reduce((n, blocks) => n + blocks.filter((b) => b.marking.kind === 'run').length, 0);
  expect(count).toBeGreaterThanOrEqual(5);
});

describe.each(DOCS.filter((doc) => blocksByDoc.get(doc)!.length > 0))('%s', (doc) => {
  let cwd: string;
  beforeAll(() => {
    cwd = path.join(root, doc.replace(/[/.]/g, '_'));
    fs.mkdirSync(cwd);
    fs.cpSync(path.join(REPO_ROOT, 'policy'), path.join(cwd, 'policy'), { recursive: true });
  });

  test.each(blocksByDoc.get(doc)!.map((block) => [`line ${block.line}${block.marking.kind === 'file' ? ` (written to ${block.marking.name})` : ''}`, block] as const))(
    '%s runs as written',
    (_name, block) => {
      const problem = runBlock(block, cwd);
      if (problem !== undefined) throw new Error(problem);
    },
    30_000,
  );
});
