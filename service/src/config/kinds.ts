// The kinds of value a setting takes: how its text becomes a value of one type, and the words the
// settings reference uses for it. A setting's row (settings.ts) names its kind, and the kind's parser's
// return type is the type of the setting's value, so `Config` needs no type written by hand.
import { parseTrustedProxies, type AddressMatcher } from '../net.js';

/** What is wrong with a value: one problem (shown with the setting's example), or whole lines of their own. */
export type Invalid = { readonly problem: string } | { readonly problems: readonly string[] };

/** A kind whose values are `T`; a setting of it left unset reads as `Unset` (`undefined`, or `[]` for lists). */
export interface Kind<T, Unset = undefined> {
  /** A set value's text as a value, or what is wrong with it; `env` names the setting in whole-line problems. */
  parse(text: string, env: string): T | Invalid;
  /** The "value" column of docs/configuration.md. */
  readonly describe: string;
  /** The value of the setting when nothing sets it and it has no default. */
  readonly unset: Unset;
  /** A config-file value that is not a string is written back as JSON (else: a list joined with commas). */
  readonly json?: true;
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export function isInvalid(value: unknown): value is Invalid {
  return typeof value === 'object' && value !== null && ('problem' in value || 'problems' in value);
}

const listItems = (value: string) => value.split(',').map((v) => v.trim()).filter((v) => v !== '');

const HOST_PORT = /^(\[[0-9a-fA-F:]+\]|[^:\s]+):(\d{1,5})$/;

function singleLine(value: string): string | Invalid {
  if (/[\r\n\0]/.test(value)) return { problem: 'must be a single line' };
  return value.trim();
}

/** "a, b or c". */
function orList(values: readonly string[]): string {
  return values.length < 2 ? values.join('') : `${values.slice(0, -1).join(', ')} or ${values[values.length - 1]}`;
}

/** A boolean setting's value: 1/true/yes/on or 0/false/no/off, any case; undefined for anything else. */
export function parseFlag(value: string): boolean | undefined {
  if (['1', 'true', 'yes', 'on'].includes(value.toLowerCase())) return true;
  if (['0', 'false', 'no', 'off'].includes(value.toLowerCase())) return false;
  return undefined;
}

/** An http(s) URL without credentials. */
export const url: Kind<URL> = {
  parse(value) {
    let parsed: URL;
    try {
      parsed = new URL(value);
    } catch {
      return { problem: 'not a URL' };
    }
    if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') return { problem: 'must be an http(s) URL' };
    if (parsed.username || parsed.password) return { problem: 'must not carry credentials' };
    return parsed;
  },
  describe: 'URL',
  unset: undefined,
};

/** One line of text, trimmed. */
export const text: Kind<string> = { parse: singleLine, describe: 'text', unset: undefined };

/** One line of text that is never shown. */
export const secret: Kind<string> = { parse: singleLine, describe: 'secret', unset: undefined };

/** Secrets, comma-separated. */
export const secretList: Kind<readonly string[], readonly string[]> = { parse: listItems, describe: 'secrets, comma-separated', unset: [] };

/** Items, comma-separated; `oneOf`: the only items allowed, and what they are (said when one is not). */
export function list(oneOf?: { readonly values: ReadonlySet<string>; readonly what: string }): Kind<readonly string[], readonly string[]> {
  return {
    parse(value, env) {
      const items = listItems(value);
      if (!oneOf) return items;
      const problems = items.flatMap((item) => (oneOf.values.has(item) ? [] : [`${env}: "${item}" is not ${oneOf.what} (one of ${[...oneOf.values].join(', ')})`]));
      return problems.length > 0 ? { problems } : items;
    },
    describe: 'list, comma-separated',
    unset: [],
  };
}

/** A whole number of at least `min` (1 unless said). */
export function int(min = 1): Kind<number> {
  return {
    parse(value) {
      if (!/^\d+$/.test(value.trim())) return { problem: `"${value}" is not a whole number` };
      const n = Number(value);
      if (n < min || !Number.isSafeInteger(n)) return { problem: min === 0 ? 'must be a whole number, 0 or more' : 'must be a positive whole number' };
      return n;
    },
    describe: min === 0 ? 'whole number, 0 or more' : 'whole number, 1 or more',
    unset: undefined,
  };
}

export const flag: Kind<boolean> = {
  parse: (value) => parseFlag(value) ?? { problem: `"${value}" is not 1/0 or true/false` },
  describe: '`1` or `0`',
  unset: undefined,
};

/** One of `values`. */
export function oneOf<const V extends string>(values: readonly V[]): Kind<V> {
  const known = (value: string): value is V => values.some((v) => v === value);
  return {
    parse(value) {
      const trimmed = value.trim();
      return known(trimmed) ? trimmed : { problem: `"${trimmed}" is not ${orList(values)}` };
    },
    describe: orList(values.map((v) => `\`${v}\``)),
    unset: undefined,
  };
}

/** host:port to listen on. */
export const listen: Kind<HostPort> = listener(undefined);

/** host:port to listen on, or the word `off` for no listener (then the value is undefined). */
export function listenOr(off: string): Kind<HostPort | undefined> {
  return listener(off);
}

function listener(off: undefined): Kind<HostPort>;
function listener(off: string): Kind<HostPort | undefined>;
function listener(off: string | undefined): Kind<HostPort | undefined> {
  return {
    parse(value) {
      if (off !== undefined && value.trim() === off) return undefined;
      const m = HOST_PORT.exec(value.trim());
      if (!m || Number(m[2]) > 65535) return { problem: `"${value}" is not host:port${off !== undefined ? `, or unset or "${off}" for no agent` : ''}` };
      return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
    },
    describe: off !== undefined ? `host:port or \`${off}\`` : 'host:port',
    unset: undefined,
  };
}

/** Replicas a write waits for: `auto` or a count. */
export const replicas: Kind<number | 'auto'> = {
  parse(value) {
    const trimmed = value.trim();
    return trimmed === 'auto' ? 'auto' : /^\d{1,2}$/.test(trimmed) ? Number(trimmed) : { problem: `"${trimmed}" is not auto, 0 or a count of replicas` };
  },
  describe: '`auto` or a count',
  unset: undefined,
};

/** Addresses and CIDRs: the matcher, and the text as given (shown by describeConfig). */
export const proxies: Kind<{ readonly matcher: AddressMatcher; readonly text: string }> = {
  parse(value) {
    const result = parseTrustedProxies(value);
    if (typeof result === 'string') return { problem: result };
    return { matcher: result, text: value };
  },
  describe: 'addresses and CIDRs, comma-separated',
  unset: undefined,
};

/** Any JSON value; its setting's reader checks its shape. */
export const json: Kind<unknown> = {
  parse(value) {
    try {
      return JSON.parse(value) as unknown;
    } catch (err) {
      return { problem: `not valid JSON: ${(err as Error).message}` };
    }
  },
  describe: 'JSON',
  unset: undefined,
  json: true,
};

/** host:port items, comma-separated, at least one. */
export const hostPorts: Kind<readonly HostPort[]> = {
  parse(value) {
    const out: HostPort[] = [];
    for (const item of listItems(value)) {
      const m = /^(\[[0-9a-fA-F:]+\]|[^:\s\[\]]+):(\d{1,5})$/.exec(item);
      if (!m || Number(m[2]) === 0 || Number(m[2]) > 65535) return { problem: `"${item}" is not host:port` };
      out.push({ host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) });
    }
    return out.length > 0 ? out : { problem: 'names no host:port' };
  },
  describe: 'host:port list, comma-separated',
  unset: undefined,
};
