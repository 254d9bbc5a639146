// Structured output: one JSON line per check decision (the audit trail) and one per operational event.
// Nothing that reaches here may carry a token, a cookie, a code or a secret: callers pass only the fields
// below, and paths are logged without their query string (queries sometimes carry tokens).

export interface DecisionRecord {
  readonly request_id: string;
  readonly decision: string;
  readonly status: number;
  readonly reason: string;
  readonly rule: string;
  readonly sub: string | undefined;
  readonly user: string | undefined;
  readonly client: string | undefined;
  readonly method: string;
  readonly host: string;
  readonly path: string;
  readonly client_ip: string;
  readonly latency_ms: number;
}

export type LogLevel = 'info' | 'warn' | 'error';

export interface Logger {
  decision(record: DecisionRecord): void;
  /** Logins, logouts and other session events. */
  event(event: string, fields: Record<string, unknown>): void;
  log(level: LogLevel, message: string, fields?: Record<string, unknown>): void;
}

export function createLogger(write: (line: string) => void = (line) => process.stdout.write(line)): Logger {
  return {
    decision(record) {
      write(`${JSON.stringify({ time: new Date().toISOString(), event: 'decision', ...record })}\n`);
    },
    event(event, fields) {
      write(`${JSON.stringify({ time: new Date().toISOString(), event, ...fields })}\n`);
    },
    log(level, message, fields) {
      write(`${JSON.stringify({ time: new Date().toISOString(), level, msg: message, ...fields })}\n`);
    },
  };
}
