// WebDAV's Destination header (RFC 4918 section 10.3): MOVE and COPY write to the path it names, so that
// path is judged too, as a second path of the same request with the same method and caller (check.ts).
import { canonicalPath } from '../paths.js';
import { MAX_PATH_LENGTH } from '../limits.js';

export type DestinationPath = { readonly path: string } | { readonly problem: string };

/**
 * The canonical path a Destination header names, on the request's own host, or why it has none: an
 * absolute URI naming another host (or port) is refused, since the check cannot judge a write elsewhere;
 * a path with no single meaning is refused as the request's own path would be. A query is no part of it.
 */
export function destinationPathOf(value: string, host: string): DestinationPath {
  let target = value.trim();
  const absolute = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)/.exec(target);
  if (absolute) {
    const named = absolute[1]!.toLowerCase().replace(/\.(?=(:\d+)?$)/, '');
    if (named !== host.replace(/\.(?=(:\d+)?$)/, '')) return { problem: 'Destination names another host' };
    target = target.slice(absolute[0].length) || '/';
  }
  if (!/^\/[\x21-\x7e]*$/.test(target)) return { problem: 'Destination is not a path on this host' };
  if (target.includes('?')) return { problem: 'Destination holds a query' };
  const canonical = canonicalPath(target);
  if (!canonical.ok) return { problem: `Destination: ${canonical.reason}` };
  if (canonical.path.length > MAX_PATH_LENGTH) return { problem: `Destination is longer than ${MAX_PATH_LENGTH} characters` };
  return { path: canonical.path };
}
