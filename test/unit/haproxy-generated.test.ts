// The HAProxy lines written from idgate's tables (service/src/transports/haproxy-generated.ts): the shipped
// files hold exactly what the tables generate, so a fact changed in idgate's source reaches HAProxy's side
// or fails here. HAProxy reads them in the end-to-end tests of both transports.
import fs from 'node:fs';
import path from 'node:path';
import { CHECK_SOCKET, CHECK_SOCKET_NAME, IDGATE_ADDRESS, SPOE_AGENT_ADDRESS, UNAVAILABLE_PAGE, UNAVAILABLE_RETRY_AFTER_SECONDS } from '../../service/src/defaults.js';
import { INPUT_FIELDS, OUTCOME_FIELDS, httpHeadersOf } from '../../service/src/check/check-wire.js';
import { checkOutcome } from '../../service/src/check/contract.js';
import { GLOBAL_PRESETS, LUA_PRESETS, TEMPLATE_PRESETS, UNAVAILABLE_FILE, generatedBlocks, unavailableResponse, withGeneratedLines } from '../../service/src/transports/haproxy-generated.js';
import { haproxyConfDir } from '../../service/src/transports/haproxy-config.js';
import { heldToGenerated } from '../support/generated-text.js';

const regenerate = 'NODE_OPTIONS=--experimental-vm-modules npx jest test/unit/haproxy-generated.test.ts';
const confDir = haproxyConfDir();
const read = (file: string) => fs.readFileSync(path.join(confDir, file), 'utf8');

test.each(generatedBlocks().map((b) => [b.file, b.begin.trim(), b]))('%s: the lines "%s" are what it generates', (file, _begin, block) => {
  heldToGenerated(file, (text) => withGeneratedLines(text, block), block.begin.trim().replace('# generated from ', '').replace(/; do not edit.*/, ''), regenerate);
});

test(`haproxy-conf/${UNAVAILABLE_FILE} is the 503 page and Retry-After of service/src/defaults.ts`, () => {
  heldToGenerated(`haproxy-conf/${UNAVAILABLE_FILE}`, () => unavailableResponse(), 'UNAVAILABLE_PAGE (service/src/defaults.ts)', regenerate);
});

test("HAProxy's 503 says the Retry-After idgate's own 503 says", () => {
  const idgate = httpHeadersOf(checkOutcome('unavailable', 503, 'redis unreachable'))['Retry-After'];
  expect(idgate).toBe(String(UNAVAILABLE_RETRY_AFTER_SECONDS));
  expect(read(UNAVAILABLE_FILE)).toContain(`\r\nRetry-After: ${idgate}\r\n`);
  expect(read(UNAVAILABLE_FILE).endsWith(`\r\n\r\n${UNAVAILABLE_PAGE}`)).toBe(true);
});

test('every 503 of the check in the HAProxy lines and idgate.lua is that one file, and no page is written out anywhere else', () => {
  const dropin = fs.readdirSync(path.join(confDir, 'dropin')).map((f) => read(`dropin/${f}`)).join('\n');
  const returns = dropin.split('\n').filter((l) => /^\s*http-request (return|deny).* (status|deny_status) 503\b/.test(l));
  expect(returns.length).toBeGreaterThanOrEqual(4);
  for (const line of returns) expect(line).toContain(`errorfile "\${IDGATE_HAPROXY_CONF}/${UNAVAILABLE_FILE}"`);
  expect(read('idgate.lua')).toContain(`"${UNAVAILABLE_FILE}"`);
  for (const file of ['idgate.lua', 'haproxy.cfg', 'spoe-idgate.conf']) expect(read(file)).not.toMatch(/Retry-After|<h1>/i);
  expect(dropin).not.toMatch(/retry-after|<h1>/i);
});

test('the SPOE arguments name every fact of INPUT_FIELDS once, in both messages that carry them', () => {
  const conf = read('spoe-idgate.conf');
  const args = [...conf.matchAll(/^\s*args (method=.*)$/gm)].map((m) => m[1]!);
  expect(args).toHaveLength(2);
  for (const line of args) expect(line.split(' ').map((a) => a.split('=')[0])).toEqual([...INPUT_FIELDS.map((f) => f.argument), 'secret']);
});

test('the SPOE lines set one upstream header per identity field, and only from the agent\'s variables', () => {
  const identity = OUTCOME_FIELDS.filter((f) => f.name.startsWith('identity.'));
  const lines = read('dropin/frontend-spoe.cfg').split('\n').filter((l) => /set-header X-Auth-/.test(l) && !l.includes('Request-Id'));
  expect(lines.map((l) => l.trim().split(' ')[2])).toEqual(identity.map((f) => f.header));
});

test("the presets are defaults.ts's values, and HAProxy's side holds none of them elsewhere", () => {
  const presets = Object.fromEntries([...TEMPLATE_PRESETS, ...GLOBAL_PRESETS, ...LUA_PRESETS].map((p) => [p.name, p.value]));
  expect(presets).toMatchObject({ IDGATE_ADDR: IDGATE_ADDRESS, IDGATE_SPOE_ADDR: SPOE_AGENT_ADDRESS, IDGATE_CHECK_DST: CHECK_SOCKET });
  const lua = read('idgate.lua');
  for (const value of [IDGATE_ADDRESS, SPOE_AGENT_ADDRESS, CHECK_SOCKET_NAME, '2500']) expect({ value, inLua: lua.includes(value) }).toEqual({ value, inLua: false });
});
