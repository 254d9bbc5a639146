// The bench's HAProxy baselines are the shipped template with another check in the place of idgate's (the
// renderer's replaceCheck), never the shipped lines edited: so only the check differs from what is measured.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nativeJwtConfig, passthroughConfig } from '../../bench/configs.js';
import { haproxyConfigPath } from '../../stack/haproxy.js';
import { renderHaproxyTemplate } from '../../service/src/transports/haproxy-config.js';

const lines = (text: string) => text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idgate-bench-configs-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const shipped = () => lines(renderHaproxyTemplate(fs.readFileSync(haproxyConfigPath(), 'utf8'), 'lua'));

test('passthrough: the shipped configuration without the Lua check and its fail-closed 503, every other line kept', () => {
  const passthrough = lines(fs.readFileSync(passthroughConfig(dir), 'utf8'));
  expect(passthrough.filter((l) => !shipped().includes(l))).toEqual([]);
  const left = shipped().filter((l) => !passthrough.includes(l));
  expect(left).toEqual(expect.arrayContaining([expect.stringMatching(/^http-request lua\.idgate-check /), expect.stringMatching(/^http-request return status 503 /), expect.stringMatching(/^http-response lua\.idgate-set-cookies /)]));
  expect(passthrough.some((l) => /lua\.idgate-check|idgate\.allowed/.test(l))).toBe(false);
});

test("native JWT: HAProxy's own jwt_verify where the check was, nothing else added", () => {
  const native = lines(fs.readFileSync(nativeJwtConfig(dir, '/tmp/key.pem'), 'utf8'));
  expect(native.filter((l) => !shipped().includes(l))).toEqual([expect.stringContaining('jwt_verify("RS256","/tmp/key.pem")')]);
  expect(native.some((l) => /lua\.idgate-check/.test(l))).toBe(false);
  // In the frontend, before idgate's routing (the check's place).
  expect(native.findIndex((l) => l.includes('jwt_verify'))).toBeLessThan(native.findIndex((l) => l.startsWith('use_backend be_idgate if idgate_auth_path')));
});
