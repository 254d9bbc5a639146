// "No further line was written" cannot be waited for, but "a line written after it" can: idgate writes
// each stream in order, so once a marker line asked for now shows in the output, every line logged
// before it is there too. Tests use this instead of sleeping out the log batches.
import { waitUntil } from '../../stack/wait.js';

/** Every marker starts so: tests that read every line leave these out. */
export const MARKER_PREFIX = 'logs-caught-up-';
let markers = 0;

function nextMarker(): string {
  markers += 1;
  return `${MARKER_PREFIX}${process.pid}-${markers}`;
}

/**
 * Resolves once the event and message lines (login, refresh, logout, warnings) idgate at `idgateUrl` logged
 * before this call are in `output()`. The marker is a sign-in the IdP "refused" (`/_auth/callback?error=`),
 * logged as a login_failed event that carries the marker; it touches no session.
 */
export async function eventsCaughtUp(idgateUrl: string, output: () => string, timeoutMs = 5000): Promise<void> {
  const marker = nextMarker();
  await (await fetch(`${idgateUrl}/_auth/callback?error=${marker}`)).arrayBuffer();
  await waitUntil(`idgate at ${idgateUrl} logging the marker ${marker}`, () => output().includes(marker), { timeoutMs });
}

/**
 * Resolves once the decision lines idgate at `idgateUrl` logged before this call are in `output()`.
 * `checkHeaders`: what HAProxy sends to be answered at all (the stack's check secret). Decisions leave in
 * their own batches, so the marker is a decision: an anonymous check of the path `/<marker>`, whose line
 * shows with that path.
 */
export async function decisionsCaughtUp(idgateUrl: string, output: () => string, host: string, checkHeaders: Record<string, string>, timeoutMs = 5000): Promise<void> {
  const marker = `/${nextMarker()}`;
  const headers = { ...checkHeaders, accept: 'application/json', 'x-forwarded-method': 'GET', 'x-forwarded-uri': marker, 'x-forwarded-host': host };
  await (await fetch(`${idgateUrl}/auth`, { headers })).arrayBuffer();
  const written = () => output().includes(`"path":"${marker}"`);
  await waitUntil(`idgate at ${idgateUrl} logging a decision for ${marker}`, written, { timeoutMs });
}

/** The decision lines in `output` (an idgate's log), parsed, without the markers of decisionsCaughtUp. */
export function decisionLinesIn(output: string): Record<string, unknown>[] {
  return output
    .split('\n')
    .filter((l) => l.includes('"event":"decision"') && !l.includes(MARKER_PREFIX))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
