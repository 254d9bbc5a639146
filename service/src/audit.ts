// Structured output with pino: one JSON line per check decision (the audit trail), per login, logout,
// renewal and revocation, and per operational event. Nothing that reaches here may carry a token, a
// cookie, a code or a secret: callers pass only the fields below, paths are logged without their query
// string (queries sometimes carry tokens), and pino's redaction blanks the usual suspects as a second net.
import pino from 'pino';
import { LOG_BATCH_CHARS, LOG_BATCH_MS } from './limits.js';

export interface DecisionRecord {
  /** null only on a refused check whose request id was unusable. */
  readonly request_id: string | null;
  readonly decision: string;
  readonly status: number;
  readonly reason: string;
  /** null when no rule was looked at (a refused check). */
  readonly rule: string | null;
  /** null for anonymous callers: every line has every field. */
  readonly sub: string | null;
  readonly user: string | null;
  readonly client: string | null;
  /** How the credentials came: `session`, `bearer` or `dpop` (RFC 9449), for an identity or a token that failed; else null. */
  readonly scheme: 'session' | 'bearer' | 'dpop' | null;
  /** null when a refused check lacked them. */
  readonly method: string | null;
  readonly host: string | null;
  readonly path: string | null;
  readonly client_ip: string;
  readonly latency_ms: number;
}

export type LogLevel = 'info' | 'warn' | 'error';

export interface Logger {
  decision(record: DecisionRecord): void;
  /** Logins, logouts, renewals, revocations. */
  event(event: string, fields: Record<string, unknown>): void;
  log(level: LogLevel, message: string, fields?: Record<string, unknown>): void;
  /** Writes out what is buffered (before exit). */
  flush(): void;
  /** Resolves once lines can be written out: a file opens asynchronously, and a flush before that writes nothing. */
  ready(): Promise<void>;
}

export interface LoggerOptions {
  /** Lowest level written: info (default), warn, error; decisions and events are info. */
  level?: string;
  /** A file to append to; default: standard output. */
  file?: string;
  /** For tests: where lines go instead (each call gets one line with its newline). */
  write?: (line: string) => void;
}

const REDACT = ['authorization', 'cookie', 'token', 'access_token', 'id_token', 'refresh_token', 'code', 'client_secret', 'password', '*.authorization', '*.cookie', '*.token', '*.access_token', '*.id_token', '*.refresh_token', '*.client_secret'];

let lastMs = 0;
let lastTime = '';
/** The same millisecond formats the same way: formatted once. */
function timestamp(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastTime = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastTime;
}

/**
 * A decision line: `{"level":"info","time":…,"event":"decision",` then the record's fields in
 * DecisionRecord's order, and a newline. Written from a template (one JSON.stringify of the whole record
 * cost more than the rest of the line): a string of printable ASCII other than `"` and `\` (nearly every
 * value: ids, methods, hosts, paths, rule names) is its JSON as it is; any other goes through
 * JSON.stringify, and U+2028/U+2029, which JSON leaves raw, are escaped too, so that the line is one line
 * to any reader. test/unit/audit-writer.test.ts holds it to JSON.parse with random strings.
 */
export function decisionLine(r: DecisionRecord, timeField: string): string {
  return `{"level":"info"${timeField},"event":"decision","request_id":${jsonText(r.request_id)},"decision":${jsonText(r.decision)},"status":${jsonNumber(r.status)},"reason":${jsonText(r.reason)},"rule":${jsonText(r.rule)},"sub":${jsonText(r.sub)},"user":${jsonText(r.user)},"client":${jsonText(r.client)},"scheme":${jsonText(r.scheme)},"method":${jsonText(r.method)},"host":${jsonText(r.host)},"path":${jsonText(r.path)},"client_ip":${jsonText(r.client_ip)},"latency_ms":${jsonNumber(r.latency_ms)}}\n`;
}

/** The fields decisionLine writes, in its order. A field added to DecisionRecord and not here fails the typecheck. */
export const DECISION_LINE_FIELDS = ['request_id', 'decision', 'status', 'reason', 'rule', 'sub', 'user', 'client', 'scheme', 'method', 'host', 'path', 'client_ip', 'latency_ms'] as const;
const everyFieldWritten: Exclude<keyof DecisionRecord, (typeof DECISION_LINE_FIELDS)[number]> extends never ? true : never = true;
void everyFieldWritten;

/** Printable ASCII without `"` and `\`: JSON as it stands between quotes. */
const PLAIN_JSON_TEXT = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function jsonText(value: string | null): string {
  if (value === null) return 'null';
  if (PLAIN_JSON_TEXT.test(value)) return `"${value}"`;
  return JSON.stringify(value).replace(/[\u2028\u2029]/g, (c) => (c === '\u2028' ? '\\u2028' : '\\u2029'));
}

function jsonNumber(value: number): string {
  return Number.isFinite(value) ? String(value) : 'null';
}

export function createLogger(options: LoggerOptions | ((line: string) => void) = {}): Logger {
  const opts = typeof options === 'function' ? { write: options } : options;
  const destination = opts.write
    ? { write: opts.write }
    : pino.destination({ dest: opts.file ?? 1, sync: false, mkdir: opts.file !== undefined, append: true });
  // Decision lines, one per check, leave in batches of about 32 KiB, at least every 100 ms: a write per
  // line would cost the check path a system call per decision. Joined here, not appended to the
  // destination's own buffer, which measures its whole pending string on every write.
  const batched = !opts.write;
  let pending: string[] = [];
  let pendingChars = 0;
  const drain = () => {
    if (!pending.length) return;
    const chunk = pending.join('');
    pending = [];
    pendingChars = 0;
    destination.write(chunk);
  };
  if (batched) setInterval(drain, LOG_BATCH_MS).unref();
  // Listened for now, so that it is not missed: the file may open before anyone asks.
  const opened = opts.write || opts.file === undefined ? Promise.resolve() : new Promise<void>((resolve) => (destination as NodeJS.EventEmitter).once('ready', () => resolve()));
  const settings = {
    level: opts.level ?? 'info',
    base: undefined,
    messageKey: 'msg',
    timestamp,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  const logger = pino({ ...settings, redact: { paths: REDACT, censor: '[redacted]' } }, destination);
  // Decision lines, one per check, are the hot path: built from DecisionRecord alone (nothing to
  // redact) by `decisionLine`, in the very shape pino gives the other lines.
  const decisions = logger.isLevelEnabled('info');
  return {
    decision(record) {
      if (!decisions) return;
      const line = decisionLine(record, timestamp());
      if (!batched) return void destination.write(line);
      pending.push(line);
      pendingChars += line.length;
      if (pendingChars >= LOG_BATCH_CHARS) drain();
    },
    event(event, fields) {
      logger.info({ ...fields, event });
    },
    log(level, message, fields) {
      logger[level](fields ?? {}, message);
    },
    flush() {
      drain();
      if ('flushSync' in destination && typeof destination.flushSync === 'function') {
        try {
          destination.flushSync();
        } catch {
          // not ready yet: nothing written
        }
      }
    },
    ready: () => opened,
  };
}
