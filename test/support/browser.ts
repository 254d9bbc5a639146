// A small cookie-keeping HTTP client that behaves like a browser navigating: it sends browser headers,
// keeps cookies per host (ports share cookies, as in browsers), follows redirects by hand so tests can
// see every hop, and fills in HTML forms.

interface StoredCookie {
  value: string;
  path: string;
}

export class Browser {
  readonly cookies = new Map<string, Map<string, StoredCookie>>();
  readonly hops: { url: string; status: number; location?: string }[] = [];
  /** `send`: how requests go out (default the global fetch; a test of a self-signed site passes one that trusts it). */
  constructor(readonly extraHeaders: Record<string, string> = {}, private readonly send: typeof fetch = fetch) {}

  cookieHeader(url: URL): string | undefined {
    const jar = this.cookies.get(url.hostname);
    if (!jar) return undefined;
    const pairs = [...jar].filter(([, c]) => url.pathname.startsWith(c.path)).map(([name, c]) => `${name}=${c.value}`);
    return pairs.length ? pairs.join('; ') : undefined;
  }

  cookie(host: string, name: string): string | undefined {
    return this.cookies.get(host)?.get(name)?.value;
  }

  storeCookies(url: URL, setCookies: string[]): void {
    for (const line of setCookies) {
      const [pair = '', ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = '/';
      let expired = false;
      for (const attr of attrs) {
        const [k = '', v = ''] = attr.split('=');
        const key = k.trim().toLowerCase();
        if (key === 'path') path = v.trim();
        if (key === 'max-age' && Number(v) <= 0) expired = true;
        if (key === 'expires' && Date.parse(v) < Date.now()) expired = true;
      }
      const jar = this.cookies.get(url.hostname) ?? new Map<string, StoredCookie>();
      this.cookies.set(url.hostname, jar);
      if (expired) jar.delete(name);
      else jar.set(name, { value, path });
    }
  }

  /** One request, no redirect following. */
  async fetch(url: string | URL, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Response> {
    const target = new URL(url);
    const headers: Record<string, string> = {
      accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
      'user-agent': 'idgate-test-browser',
      ...this.extraHeaders,
      ...init.headers,
    };
    const cookie = this.cookieHeader(target);
    if (cookie) headers.cookie = cookie;
    const res = await this.send(target, { method: init.method ?? 'GET', headers, body: init.body, redirect: 'manual' });
    this.storeCookies(target, res.headers.getSetCookie());
    this.hops.push({ url: target.href, status: res.status, location: res.headers.get('location') ?? undefined });
    return res;
  }

  /** Navigates like a browser: follows redirects (303 and 302 after POST become GET) up to `maxHops`. */
  async navigate(url: string | URL, init: { method?: string; headers?: Record<string, string>; body?: string } = {}, maxHops = 15): Promise<{ res: Response; url: URL }> {
    let target = new URL(url);
    let current = init;
    for (let hop = 0; hop < maxHops; hop++) {
      const res = await this.fetch(target, current);
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        await res.arrayBuffer();
        target = new URL(location, target);
        current = { headers: init.headers };
        continue;
      }
      return { res, url: target };
    }
    throw new Error(`too many redirects: ${JSON.stringify(this.hops.slice(-maxHops))}`);
  }

  /** Fills the first form of `html` (served at `pageUrl`) with `values` and submits it. */
  async submitForm(pageUrl: URL, html: string, values: Record<string, string>): Promise<{ res: Response; url: URL }> {
    const form = parseForm(html);
    const fields = { ...form.fields, ...values };
    return this.navigate(new URL(form.action || pageUrl.href, pageUrl), {
      method: form.method,
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: pageUrl.origin },
      body: new URLSearchParams(fields).toString(),
    });
  }
}

export function parseForm(html: string): { action: string; method: string; fields: Record<string, string> } {
  const formTag = /<form\b[^>]*>/i.exec(html);
  if (!formTag) throw new Error(`no form in page: ${html.slice(0, 500)}`);
  const attr = (tag: string, name: string) => new RegExp(`\\b${name}\\s*=\\s*"([^"]*)"`, 'i').exec(tag)?.[1];
  const fields: Record<string, string> = {};
  for (const input of html.matchAll(/<input\b[^>]*>/gi)) {
    const name = attr(input[0], 'name');
    if (name) fields[name] = decodeEntities(attr(input[0], 'value') ?? '');
  }
  return { action: decodeEntities(attr(formTag[0], 'action') ?? ''), method: (attr(formTag[0], 'method') ?? 'GET').toUpperCase(), fields };
}

function decodeEntities(text: string): string {
  return text.replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n))).replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>');
}

/** Signs in through the whole browser flow, starting at `url`; returns the final page. */
export async function signIn(browser: Browser, url: string, user: string, password = user): Promise<{ res: Response; url: URL }> {
  const first = await browser.navigate(url);
  if (!/name="login"/.test(await first.res.clone().text())) throw new Error(`expected the IdP login form at ${first.url.href}, got ${first.res.status}`);
  return browser.submitForm(first.url, await first.res.text(), { login: user, password });
}

/** The session cookie (`_idgate=…`) of each user, each signed in through `frontUrl` by a browser of its own. */
export async function signedInCookies<U extends string>(frontUrl: string, users: readonly U[]): Promise<Record<U, string>> {
  const cookies = {} as Record<U, string>;
  await Promise.all(
    users.map(async (user) => {
      const browser = new Browser();
      await signIn(browser, `${frontUrl}/`, user);
      cookies[user] = `_idgate=${browser.cookie('127.0.0.1', '_idgate')}`;
    }),
  );
  return cookies;
}
