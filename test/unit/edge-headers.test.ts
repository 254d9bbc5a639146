// The client headers HAProxy deletes: one table (service/src/transports/edge-headers.ts), written out as
// the del-header lines both transports share and as the table of docs/reference.md. HAProxy itself is
// held to it in test/e2e/edge-headers.test.ts.
import { DELETED_HEADERS, DELETED_HEADERS_BEGIN, DELETED_HEADERS_END, DELETED_HEADERS_TABLE_BEGIN, DELETED_HEADERS_TABLE_END, HEADER_FAMILIES, deletedHeaderLines, deletedHeadersTable, isDeletedHeader } from '../../service/src/transports/edge-headers.js';
import { betweenMarkers, heldToGenerated } from '../support/generated-text.js';

const regenerate = 'NODE_OPTIONS=--experimental-vm-modules npx jest test/unit/edge-headers.test.ts';

/** `file` with the text between `begin` and `end` (markers included) replaced by `generated`; or rewritten so with IDGATE_WRITE_DOCS=1. */
function heldTo(file: string, begin: string, end: string, generated: string): void {
  heldToGenerated(file, (text) => betweenMarkers(file, text, begin, end, generated), 'DELETED_HEADERS (service/src/transports/edge-headers.ts)', regenerate);
}

test('the del-header lines of dropin/frontend.cfg are what DELETED_HEADERS generates', () => {
  heldTo('haproxy-conf/dropin/frontend.cfg', DELETED_HEADERS_BEGIN, DELETED_HEADERS_END, deletedHeaderLines());
});

test("docs/reference.md's table of deleted headers is what DELETED_HEADERS generates", () => {
  heldTo('docs/reference.md', DELETED_HEADERS_TABLE_BEGIN, DELETED_HEADERS_TABLE_END, deletedHeadersTable());
});

test('every name is an HTTP token HAProxy takes as it is, listed once, in a family that is written out', () => {
  const families = new Set(HEADER_FAMILIES.map((f) => f.family));
  for (const h of DELETED_HEADERS) {
    expect({ name: h.name, token: /^[A-Za-z0-9_-]+$/.test(h.name), family: families.has(h.family) }).toEqual({ name: h.name, token: true, family: true });
  }
  const names = DELETED_HEADERS.map((h) => h.name.toLowerCase());
  expect(names.length).toBe(new Set(names).size);
});

test('no row is already covered by another (each del-header line does work of its own)', () => {
  for (const h of DELETED_HEADERS) {
    const others = DELETED_HEADERS.filter((o) => o !== h && o.match !== 'exact');
    const covered = others.find((o) => (o.match === 'prefix' ? h.name.toLowerCase().startsWith(o.name.toLowerCase()) : h.name.toLowerCase().includes(o.name.toLowerCase())));
    expect({ name: h.name, coveredBy: covered?.name }).toEqual({ name: h.name, coveredBy: undefined });
  }
});

// The families attackers of identity-aware proxies use, and what a demanding review adds: each of these names is deleted.
test.each([
  'X-Client-Cert', 'X-SSL-Client-Cert', 'X-SSL-Client-Verify', 'X-SSL-Client-S-DN', 'X-ARR-ClientCert', 'Client-Cert', 'Client-Cert-Chain',
  'X-Forwarded-Client-Cert', 'X-Amzn-Mtls-Clientcert', 'SSL_CLIENT_S_DN',
  'Impersonate-User', 'Impersonate-Group', 'Impersonate-Uid', 'Impersonate-Extra-Scopes',
  'X-Pomerium-Claim-Email', 'X-Pomerium-Jwt-Assertion', 'X-authentik-username', 'X-Authentik-Groups',
  'X-Auth-Request-User', 'X-Auth-Request-Email', 'X-Forwarded-User', 'X-Forwarded-Email', 'Remote-User', 'X-Remote-User',
  'X-Webauth-User', 'Cf-Access-Authenticated-User-Email', 'X-Goog-Authenticated-User-Email', 'X-Amzn-Oidc-Identity',
  'X-MS-CLIENT-PRINCIPAL', 'X-MS-CLIENT-PRINCIPAL-NAME', 'X-Vouch-User', 'Tailscale-User-Login', 'Teleport-Jwt-Assertion', 'SM_USER',
  'X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override', 'HTTP2-Settings', 'X-Idgate-Path',
])('%s is deleted', (name) => {
  expect(isDeletedHeader(name)).toBe(true);
});

test.each(['Authorization', 'DPoP', 'Cookie', 'Accept', 'Origin', 'Access-Control-Request-Method', 'Content-Type', 'Host', 'User-Agent', 'X-Requested-With'])(
  '%s, which idgate or the app needs, is kept',
  (name) => {
    expect(isDeletedHeader(name)).toBe(false);
  },
);
