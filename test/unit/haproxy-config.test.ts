// The drop-in HAProxy lines: assembled from haproxy-conf/dropin/ (one copy of each line), filled with
// addresses, and filled into templates. HAProxy itself reads them in test/e2e/haproxy-dropin.test.ts.
import fs from 'node:fs';
import path from 'node:path';
import { USUAL_METHODS } from '../../service/src/policy/policy.js';
import { HAPROXY_PARTS, haproxyConfDir, haproxyPart, renderHaproxyTemplate, type HaproxyMode } from '../../service/src/transports/haproxy-config.js';

const MODES: HaproxyMode[] = ['lua', 'spoe'];
const confDir = haproxyConfDir();
const TEMPLATE = HAPROXY_PARTS.map((p) => `@idgate ${p}`).join('\n');

/** The lines HAProxy acts on (no comments, no blank lines), trimmed. */
function directives(text: string): string[] {
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
}

describe('the drop-in parts', () => {
  test('every file in dropin/ is part of some transport, and no directive is written in two of them', () => {
    const used = new Set(MODES.flatMap((mode) => HAPROXY_PARTS.map((part) => haproxyPart(part, mode, { confDir }))).join('\n').split('\n'));
    const seen = new Map<string, string>();
    for (const file of fs.readdirSync(path.join(confDir, 'dropin'))) {
      const lines = directives(fs.readFileSync(path.join(confDir, 'dropin', file), 'utf8'));
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) {
        expect([...used].some((u) => u.trim() === line.replaceAll('${IDGATE_HAPROXY_CONF}', confDir))).toBe(true);
        // Section headers and a few settings repeat by nature (each backend says its mode and timeouts), as
        // does the end of a conditional block.
        if (/^(backend|frontend|mode|timeout|balance|server|bind|default_backend|http-reuse|option spop-check|\.endif)\b/.test(line)) continue;
        expect(`${line} in ${file}`).toBe(`${line} in ${seen.get(line) ?? file}`);
        seen.set(line, file);
      }
    }
  });

  test('the shipped haproxy.cfg, the one template of both transports, holds none of the drop-in lines itself, only the @idgate lines that stand for them', () => {
    const shipped = new Set(directives(fs.readFileSync(path.join(confDir, 'haproxy.cfg'), 'utf8')));
    const dropin = fs.readdirSync(path.join(confDir, 'dropin')).flatMap((f) => directives(fs.readFileSync(path.join(confDir, 'dropin', f), 'utf8')));
    // `.endif` closes a conditional block, in either file; the generated runs share their end marker.
    const repeated = dropin.filter((line) => shipped.has(line) && !/^(mode|timeout|default_backend|\.endif)\b/.test(line));
    expect(repeated).toEqual([]);
    expect([...shipped].filter((l) => l.startsWith('@idgate'))).toEqual(HAPROXY_PARTS.map((p) => `@idgate ${p}`));
  });

  test("HAProxy's own 405 for CONNECT and TRACE names in Allow the methods every route takes, as idgate's own 405 does", () => {
    const backstop = directives(haproxyPart('routing', 'lua', { confDir })).filter((l) => l.includes('METH_CONNECT'));
    expect(backstop).toEqual([`http-request deny deny_status 405 hdr Allow "${[...USUAL_METHODS].join(', ')}" if METH_CONNECT || METH_TRACE`]);
    // The SPOE transport's return of idgate's 405 carries the agent's allow variable.
    expect(directives(haproxyPart('frontend', 'spoe', { confDir })).filter((l) => l.startsWith('http-request return status 405'))).toEqual([expect.stringContaining('hdr Allow "%[var(txn.idgate.allow)]"')]);
  });

  test('the Lua transport loads idgate.lua and listens for its checks; SPOE loads the agent config instead', () => {
    const lua = renderHaproxyTemplate(TEMPLATE, 'lua', { confDir });
    const spoe = renderHaproxyTemplate(TEMPLATE, 'spoe', { confDir });
    expect(lua).toContain(`lua-load "${confDir}/idgate.lua"`);
    expect(lua).toContain('frontend fe_idgate_check');
    expect(lua).not.toContain('filter spoe');
    expect(spoe).toContain(`filter spoe engine idgate config "${confDir}/spoe-idgate.conf"`);
    expect(spoe).toContain('backend be_idgate_spoe');
    expect(spoe).not.toMatch(/lua-load|lua\.idgate|fe_idgate_check\n/);
  });

  test('the bench can have the check left out, or another in its place, and nothing else changes', () => {
    for (const mode of MODES) {
      const shipped = renderHaproxyTemplate(TEMPLATE, mode, { confDir }).split('\n');
      const check = directives(fs.readFileSync(path.join(confDir, 'dropin', `frontend-${mode}.cfg`), 'utf8')).map((l) => l.replaceAll('${IDGATE_HAPROXY_CONF}', confDir));
      const without = renderHaproxyTemplate(TEMPLATE, mode, { confDir, replaceCheck: '' }).split('\n');
      expect(directives(shipped.filter((l) => !without.includes(l)).join('\n'))).toEqual(check);
      expect(without.filter((l) => !shipped.includes(l))).toEqual([]);
      const other = renderHaproxyTemplate(TEMPLATE, mode, { confDir, replaceCheck: '    http-request deny deny_status 401\n' });
      expect(directives(other).filter((l) => !shipped.map((s) => s.trim()).includes(l))).toEqual(['http-request deny deny_status 401']);
    }
  });

  test('given addresses become one server line (and one backup line) per replica', () => {
    const backends = haproxyPart('backends', 'spoe', { confDir, idgate: ['10.0.0.5:4180', '10.0.0.6:4180', '10.0.0.7:4180'], spoe: ['10.0.0.5:4181'] });
    const servers = directives(backends).filter((l) => l.startsWith('server '));
    expect(servers).toEqual([
      'server idgate1 10.0.0.5:4180',
      'server idgate2 10.0.0.6:4180',
      'server idgate3 10.0.0.7:4180',
      'server idgate1-backup 10.0.0.5:4180 backup no-check',
      'server idgate2-backup 10.0.0.6:4180 backup no-check',
      'server idgate3-backup 10.0.0.7:4180 backup no-check',
      'server idgate1-spoe 10.0.0.5:4181 check inter 1s fall 2 rise 2',
    ]);
    expect(backends).not.toContain('${IDGATE_');
  });

  test('without IDGATE_CHECK_SECRET in its environment HAProxy refuses to start, saying so', () => {
    const global = haproxyPart('global', 'lua', { confDir });
    expect(global).toMatch(/^\.if !defined\(IDGATE_CHECK_SECRET\)\n\s+\.alert "IDGATE_CHECK_SECRET is not set: [^"]+"\n\.endif$/m);
  });

  test('without values the lines read them from HAProxy\'s environment, as the shipped configs do', () => {
    expect(haproxyPart('backends', 'lua', { confDir })).toContain('server idgate2 "${IDGATE_ADDR_2}"');
    expect(haproxyPart('frontend', 'lua', { confDir })).toContain('gt "${IDGATE_AUTH_RATE_LIMIT}"');
  });

  test('with every value given, no line is left to the environment (each part holds wherever it lands in the file) but the check secret', () => {
    const values = { confDir, idgate: ['10.0.0.5:4180'], spoe: ['10.0.0.5:4181'], checkDst: 'unix@/run/haproxy/c.sock', authRateLimit: 30 };
    for (const mode of MODES) {
      const all = HAPROXY_PARTS.map((part) => haproxyPart(part, mode, values)).join('\n');
      // The check secret stays in HAProxy's environment on purpose: haproxy.cfg is often world-readable.
      expect(directives(all).filter((l) => l.includes('${'))).toEqual(mode === 'lua' ? ['http-request set-header X-Idgate-Check-Secret "${IDGATE_CHECK_SECRET}"'] : []);
      expect(all).toContain('{ sc_http_req_rate(2) gt 30 }');
    }
  });

  test('the check listener is a unix socket, set in the global lines (idgate.lua reads it) and bound by the listener', () => {
    const global = haproxyPart('global', 'lua', { confDir, checkDst: 'unix@/run/haproxy-edge/idgate.sock' });
    expect(directives(global)).toContain('setenv IDGATE_CHECK_DST unix@/run/haproxy-edge/idgate.sock');
    expect(directives(haproxyPart('backends', 'lua', { confDir, checkDst: 'unix@/run/haproxy-edge/idgate.sock' }))).toContain('bind unix@/run/haproxy-edge/idgate.sock mode 600');
    expect(() => haproxyPart('global', 'lua', { confDir, checkDst: '127.0.0.1:4190' })).toThrow(/check listener/);
    expect(() => haproxyPart('global', 'lua', { confDir, checkDst: 'unix@/a b' })).toThrow(/check listener/);
  });

  test('under HAProxy\'s chroot and user (Debian), the socket is that user\'s and idgate.lua is told the chroot', () => {
    const values = { confDir, checkDst: 'unix@/var/lib/haproxy/idgate-check.sock', chroot: '/var/lib/haproxy', haproxyUser: 'haproxy' };
    expect(directives(haproxyPart('global', 'lua', values))).toEqual(expect.arrayContaining(['setenv IDGATE_CHECK_DST unix@/var/lib/haproxy/idgate-check.sock', 'setenv IDGATE_CHECK_CHROOT /var/lib/haproxy']));
    expect(directives(haproxyPart('backends', 'lua', values))).toContain('bind unix@/var/lib/haproxy/idgate-check.sock mode 600 user haproxy');
    expect(() => haproxyPart('global', 'lua', { ...values, checkDst: 'unix@/run/haproxy/idgate-check.sock' })).toThrow(/must be inside HAProxy's chroot/);
  });

  test.each([
    ['an address with a quote', { idgate: ['10.0.0.5:4180" ssl'] }, /cannot go into an HAProxy configuration/],
    ['a directory with a quote', { confDir: '/opt/"x' }, /haproxy-conf directory/],
  ])('%s is refused, not written', (_name, values, message) => {
    expect(() => haproxyPart('backends', 'lua', { confDir, ...values })).toThrow(message);
  });
});

describe('templates', () => {
  test.each([
    ['an unknown part', `${TEMPLATE}\n@idgate frontends`, /t:5: "@idgate frontends" is not one of @idgate global/],
    ['a part twice', `${TEMPLATE}\n  @idgate routing`, /t:5: @idgate routing again \(first at line 3\)/],
    ['a missing part', '@idgate global\n@idgate frontend', /t: no @idgate routing, @idgate backends line/],
  ])('%s is refused', (_name, template, message) => {
    expect(() => renderHaproxyTemplate(template, 'lua', { confDir }, 't')).toThrow(message);
  });

  test('the other lines stay as they are', () => {
    const out = renderHaproxyTemplate(`global\n    nbthread 2\n    @idgate global\n# @idgate in a comment\n${HAPROXY_PARTS.slice(1).map((p) => `@idgate ${p}`).join('\n')}`, 'lua', { confDir });
    expect(out.startsWith('global\n    nbthread 2\n    # idgate, both transports')).toBe(true);
    expect(out).toContain('\n# @idgate in a comment\n');
  });
});
