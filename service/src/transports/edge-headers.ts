// The client headers HAProxy deletes before the check and before the app (docs/security.md, section 2):
// every name that some app, framework or proxy reads as who the caller is, as a verified client
// certificate, as the proxy path, as the client's address or as another method. One table: the
// `del-header` lines of haproxy-conf/dropin/frontend.cfg (both transports) and the table of
// docs/reference.md are generated from it, and test/unit/edge-headers.test.ts holds both to it.

export type HeaderFamily = 'identity' | 'client certificate' | 'proxy path' | 'client address' | 'method override' | 'idgate' | 'h2c';

export interface DeletedHeader {
  /** The name, or the start of every name (HAProxy compares names ignoring case). */
  readonly name: string;
  /** `prefix`: every name that starts so; `contains`: every name that holds it. */
  readonly match: 'exact' | 'prefix' | 'contains';
  readonly family: HeaderFamily;
  /** Who sets or reads it, so a reviewer can tell why it is here. */
  readonly who: string;
}

/** Why each family goes, in the order the lines are written. */
export const HEADER_FAMILIES: readonly { readonly family: HeaderFamily; readonly why: string }[] = [
  { family: 'identity', why: 'who the caller is: only idgate says it (X-Auth-*), and no gateway an app was once behind may say it instead' },
  { family: 'client certificate', why: 'a verified client certificate: HAProxy here never sets these, so any such header is the client\'s own claim' },
  { family: 'proxy path', why: 'what the proxy saw (URL, host, scheme, prefix): the app must read the request idgate judged' },
  { family: 'client address', why: 'the client\'s address: HAProxy sets X-Forwarded-For from the connection' },
  { family: 'method override', why: 'another method than the one judged (Rails, Laravel, Symfony, Express methodOverride, Spring)' },
  { family: 'idgate', why: 'idgate\'s own answers to HAProxy, never a client\'s' },
  { family: 'h2c', why: 'a cleartext HTTP/2 upgrade: after a 101 the connection would carry requests no check saw' },
];

export const DELETED_HEADERS: readonly DeletedHeader[] = [
  // identity
  { name: 'X-Auth-', match: 'prefix', family: 'identity', who: 'idgate; oauth2-proxy (X-Auth-Request-User, -Email, -Groups, -Access-Token), Keycloak Gatekeeper' },
  { name: '_', match: 'contains', family: 'identity', who: 'CGI, Rack, WSGI and PHP read X_Auth_User as X-Auth-User; SiteMinder SM_USER, Shibboleth and mod_ssl variables (nginx drops such names by default)' },
  { name: 'X-Remote-', match: 'prefix', family: 'identity', who: 'Kubernetes request-header authentication (X-Remote-User, -Group, -Extra-*), Apache' },
  { name: 'Remote-', match: 'prefix', family: 'identity', who: 'Authelia (Remote-User, -Groups, -Email, -Name), REMOTE_USER readers' },
  { name: 'X-Webauth-', match: 'prefix', family: 'identity', who: 'Grafana auth proxy, Gitea, Jenkins reverse-proxy auth' },
  { name: 'X-Authenticated-', match: 'prefix', family: 'identity', who: 'Kong (X-Authenticated-Userid, -Scope)' },
  { name: 'X-User', match: 'exact', family: 'identity', who: 'Ory Oathkeeper, many apps' },
  { name: 'X-Email', match: 'exact', family: 'identity', who: 'many apps' },
  { name: 'Impersonate-', match: 'prefix', family: 'identity', who: 'the Kubernetes API (Impersonate-User, -Group, -Uid, -Extra-*)' },
  { name: 'X-Pomerium-', match: 'prefix', family: 'identity', who: 'Pomerium (X-Pomerium-Jwt-Assertion, X-Pomerium-Claim-*)' },
  { name: 'X-authentik-', match: 'prefix', family: 'identity', who: 'authentik (X-authentik-username, -groups, -email, -jwt)' },
  { name: 'X-Vouch-', match: 'prefix', family: 'identity', who: 'Vouch Proxy (X-Vouch-User, X-Vouch-IdP-*)' },
  { name: 'Tailscale-', match: 'prefix', family: 'identity', who: 'Tailscale serve (Tailscale-User-Login, -Name, -Profile-Pic)' },
  { name: 'Teleport-', match: 'prefix', family: 'identity', who: 'Teleport application access (Teleport-Jwt-Assertion)' },
  { name: 'X-MS-Client-Principal', match: 'prefix', family: 'identity', who: 'Azure App Service authentication (-Name, -Id, -Idp)' },
  { name: 'X-MS-Token-', match: 'prefix', family: 'identity', who: 'Azure App Service token store (X-MS-Token-AAD-Id-Token...)' },
  { name: 'X-Goog-Authenticated-', match: 'prefix', family: 'identity', who: 'Google IAP (X-Goog-Authenticated-User-Email, -Id)' },
  { name: 'X-Goog-IAP-', match: 'prefix', family: 'identity', who: 'Google IAP (X-Goog-IAP-JWT-Assertion)' },
  { name: 'X-Amzn-OIDC-', match: 'prefix', family: 'identity', who: 'AWS ALB (X-Amzn-Oidc-Identity, -Data, -Accesstoken)' },
  { name: 'Cf-Access-', match: 'prefix', family: 'identity', who: 'Cloudflare Access (Cf-Access-Authenticated-User-Email, -Jwt-Assertion)' },
  { name: 'X-Consumer-', match: 'prefix', family: 'identity', who: 'Kong (X-Consumer-Username, -Id, -Custom-Id, -Groups)' },
  { name: 'X-Anonymous-Consumer', match: 'exact', family: 'identity', who: 'Kong' },
  { name: 'X-Credential-', match: 'prefix', family: 'identity', who: 'Kong (X-Credential-Identifier)' },
  { name: 'X-Userinfo', match: 'exact', family: 'identity', who: 'Kong OIDC plugins' },
  { name: 'X-JWT-', match: 'prefix', family: 'identity', who: 'WSO2 (X-JWT-Assertion), Traefik plugins' },
  { name: 'X-Apigateway-Api-Userinfo', match: 'exact', family: 'identity', who: 'Google API Gateway' },
  { name: 'X-Endpoint-API-UserInfo', match: 'exact', family: 'identity', who: 'Google Cloud Endpoints' },
  { name: 'OIDC-', match: 'prefix', family: 'identity', who: 'mod_auth_openidc (OIDC-Claim-*, OIDC-Access-Token)' },
  { name: 'Shib-', match: 'prefix', family: 'identity', who: 'Shibboleth SP (Shib-Identity-Provider, Shib-Session-ID...)' },
  { name: 'X-Id-Token', match: 'exact', family: 'identity', who: 'oauth2-proxy-style setups, Istio' },
  { name: 'X-Access-Token', match: 'exact', family: 'identity', who: 'oauth2-proxy-style setups' },
  // client certificate
  { name: 'X-Client-Cert', match: 'prefix', family: 'client certificate', who: 'Envoy, GCP load balancers, nginx setups (X-Client-Cert, -Chain, -Dn...)' },
  { name: 'X-Client-Verify', match: 'exact', family: 'client certificate', who: 'nginx setups ($ssl_client_verify)' },
  { name: 'X-Client-DN', match: 'exact', family: 'client certificate', who: 'nginx setups ($ssl_client_s_dn)' },
  { name: 'X-SSL-', match: 'prefix', family: 'client certificate', who: 'HAProxy and nginx recipes (X-SSL-Client-Cert, -Verify, -S-DN, -I-DN, -Serial, X-SSL-Cert)' },
  { name: 'X-ARR-ClientCert', match: 'exact', family: 'client certificate', who: 'IIS Application Request Routing, Azure App Service' },
  { name: 'X-ARR-SSL', match: 'exact', family: 'client certificate', who: 'IIS Application Request Routing' },
  { name: 'Client-Cert', match: 'prefix', family: 'client certificate', who: 'RFC 9440 (Client-Cert, Client-Cert-Chain)' },
  { name: 'X-Amzn-Mtls-', match: 'prefix', family: 'client certificate', who: 'AWS ALB mutual TLS (X-Amzn-Mtls-Clientcert, -Clientcert-Leaf...)' },
  { name: 'Ssl-Client-', match: 'prefix', family: 'client certificate', who: 'mod_ssl-style names written with dashes' },
  // proxy path
  { name: 'X-Forwarded-', match: 'prefix', family: 'proxy path', who: 'every proxy (Host, Proto, Prefix, Uri, Method, Port); oauth2-proxy and OpenShift (X-Forwarded-User, -Email, -Groups, -Access-Token); Envoy (X-Forwarded-Client-Cert), Traefik (X-Forwarded-Tls-Client-Cert). HAProxy then sets its own' },
  { name: 'Forwarded', match: 'exact', family: 'proxy path', who: 'RFC 7239' },
  { name: 'X-Original-', match: 'prefix', family: 'proxy path', who: 'IIS, Symfony, Zend (X-Original-URL), nginx auth_request (X-Original-URI, -Method)' },
  { name: 'X-Rewrite-URL', match: 'exact', family: 'proxy path', who: 'IIS URL Rewrite, Symfony' },
  { name: 'X-Script-Name', match: 'exact', family: 'proxy path', who: 'Flask/Werkzeug ProxyFix-style prefixes' },
  { name: 'X-Envoy-', match: 'prefix', family: 'proxy path', who: 'Envoy (X-Envoy-Original-Path...)' },
  { name: 'X-Host', match: 'exact', family: 'proxy path', who: 'Django-style proxies' },
  { name: 'X-Scheme', match: 'exact', family: 'proxy path', who: 'nginx recipes' },
  { name: 'X-Url-Scheme', match: 'exact', family: 'proxy path', who: 'WSGI servers' },
  { name: 'Front-End-Https', match: 'exact', family: 'proxy path', who: 'Microsoft proxies' },
  // client address
  { name: 'X-Real-IP', match: 'exact', family: 'client address', who: 'nginx' },
  { name: 'X-Client-IP', match: 'exact', family: 'client address', who: 'many frameworks' },
  { name: 'True-Client-IP', match: 'exact', family: 'client address', who: 'Akamai, Cloudflare' },
  { name: 'X-Cluster-Client-IP', match: 'exact', family: 'client address', who: 'Rackspace, Riverbed' },
  { name: 'Client-IP', match: 'exact', family: 'client address', who: 'many frameworks' },
  { name: 'CF-Connecting-IP', match: 'exact', family: 'client address', who: 'Cloudflare' },
  { name: 'Fastly-Client-IP', match: 'exact', family: 'client address', who: 'Fastly' },
  { name: 'Proxy-Client-IP', match: 'exact', family: 'client address', who: 'WebLogic, Apache' },
  { name: 'WL-Proxy-Client-IP', match: 'exact', family: 'client address', who: 'WebLogic' },
  { name: 'X-Originating-IP', match: 'exact', family: 'client address', who: 'Microsoft' },
  { name: 'X-ProxyUser-IP', match: 'exact', family: 'client address', who: 'Google' },
  { name: 'X-Azure-ClientIP', match: 'exact', family: 'client address', who: 'Azure Front Door' },
  { name: 'X-Azure-SocketIP', match: 'exact', family: 'client address', who: 'Azure Front Door' },
  // method override
  { name: 'X-HTTP-Method-Override', match: 'exact', family: 'method override', who: 'Express methodOverride, Spring, ASP.NET, Google APIs' },
  { name: 'X-HTTP-Method', match: 'exact', family: 'method override', who: 'Microsoft OData' },
  { name: 'X-Method-Override', match: 'exact', family: 'method override', who: 'Rails-style frameworks' },
  // idgate
  { name: 'X-Idgate-', match: 'prefix', family: 'idgate', who: 'idgate\'s answers (X-Idgate-Path, X-Idgate-Cookie)' },
  // h2c
  { name: 'HTTP2-Settings', match: 'exact', family: 'h2c', who: 'the h2c upgrade (RFC 7540 section 3.2)' },
];

export const DELETED_HEADERS_BEGIN = '    # generated from DELETED_HEADERS in service/src/transports/edge-headers.ts; do not edit by hand';
export const DELETED_HEADERS_END = '    # end of the generated lines';

/** The table holds `name` (HTTP names compare ignoring case). */
export function isDeletedHeader(name: string): boolean {
  const lower = name.toLowerCase();
  return DELETED_HEADERS.some((h) => {
    const n = h.name.toLowerCase();
    return h.match === 'exact' ? lower === n : h.match === 'prefix' ? lower.startsWith(n) : lower.includes(n);
  });
}

const FLAG = { exact: '', prefix: ' -m beg', contains: ' -m sub' } as const;

/** The `del-header` lines of haproxy-conf/dropin/frontend.cfg, between their markers, one comment per family. */
export function deletedHeaderLines(): string {
  const lines = [DELETED_HEADERS_BEGIN];
  for (const { family, why } of HEADER_FAMILIES) {
    lines.push(`    # ${family}: ${why}`);
    for (const h of DELETED_HEADERS) if (h.family === family) lines.push(`    http-request del-header ${h.name}${FLAG[h.match]}`);
  }
  lines.push(DELETED_HEADERS_END);
  return lines.join('\n');
}

export const DELETED_HEADERS_TABLE_BEGIN = '<!-- deleted headers: generated from DELETED_HEADERS in service/src/transports/edge-headers.ts; do not edit by hand -->';
export const DELETED_HEADERS_TABLE_END = '<!-- end of the deleted headers -->';

/** DELETED_HEADERS as the Markdown table of docs/reference.md, between its markers. */
export function deletedHeadersTable(): string {
  const name = (h: DeletedHeader) => (h.match === 'exact' ? `\`${h.name}\`` : h.match === 'prefix' ? `\`${h.name}*\`` : `any name with \`${h.name}\``);
  return [
    DELETED_HEADERS_TABLE_BEGIN,
    '',
    '| family | names (ignoring case) | who sets or reads them |',
    '|---|---|---|',
    ...HEADER_FAMILIES.flatMap(({ family }) => DELETED_HEADERS.filter((h) => h.family === family).map((h) => `| ${family} | ${name(h)} | ${h.who} |`)),
    '',
    DELETED_HEADERS_TABLE_END,
  ].join('\n');
}
