// deploy/'s units as systemd reads them: `systemd-analyze verify` (from Debian's systemd package, which
// `make` installs when missing). verify insists that ExecStart's binary exists, so it reads a copy whose
// /opt/idgate/bin/idgate is this checkout's bin/idgate.js; everything else is the shipped file.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../../stack/processes.js';

const SYSTEMD_ANALYZE = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => fs.existsSync(p));
if (!SYSTEMD_ANALYZE) process.stdout.write('systemd-verify: skipped, systemd-analyze is not installed (Debian package systemd)\n');
const withSystemd = SYSTEMD_ANALYZE ? describe : describe.skip;

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idgate-units-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A copy of deploy/<file> named `as`, runnable from this checkout; `edit` changes its text further. */
function copyOf(file: string, as: string, edit: (text: string) => string = (t) => t): string {
  const text = fs.readFileSync(path.join(REPO_ROOT, 'deploy', file), 'utf8').replaceAll('/opt/idgate/bin/idgate', path.join(REPO_ROOT, 'bin/idgate.js'));
  const target = path.join(dir, as);
  fs.writeFileSync(target, edit(text));
  return target;
}

/** verify's verdict on one unit file: its exit code and every line it wrote about that file. */
function verify(unitPath: string): { code: number | null; complaints: string[] } {
  const result = spawnSync(SYSTEMD_ANALYZE!, ['verify', '--man=no', unitPath], { encoding: 'utf8', timeout: 20_000 });
  // On a host running systemd, verify may also talk about other units; only ours count.
  const name = path.basename(unitPath);
  const complaints = `${result.stdout}${result.stderr}`.split('\n').filter((l) => l.includes(name));
  return { code: result.status, complaints };
}

withSystemd('systemd-analyze verify', () => {
  test.each([
    ['idgate.service', 'idgate.service'],
    ['idgate@.service', 'idgate@.service'],
    ['idgate@.service', 'idgate@a.service'],
  ])('accepts deploy/%s (as %s) without a complaint', (file, as) => {
    expect(verify(copyOf(file, as))).toEqual({ code: 0, complaints: [] });
  });

  // verify exits 0 on settings it ignores; what makes the test above meaningful is that it names them.
  test('names a misspelt or invalid setting, which is why the test above looks for complaints', () => {
    const bad = copyOf('idgate.service', 'idgate-bad.service', (t) => t.replace('ProtectSystem=strict', 'ProtectSystem=strictly').replace('RestartSec=', 'RestartSecs='));
    const { complaints } = verify(bad);
    expect(complaints.join('\n')).toMatch(/protect system value/i);
    expect(complaints.join('\n')).toMatch(/Unknown key 'RestartSecs'/);
  });
});
