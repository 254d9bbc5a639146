// Runs the sample upstream app as its own process: `node dist/stack/upstream-main.js`.
//
// Environment (all optional):
//   UPSTREAM_PORT  port to listen on (default 8081; 0: any free port, reported below)
//   UPSTREAM_HOST  address to listen on (default 127.0.0.1)
//   UPSTREAM_NAME  the pool it stands for, echoed as "server" (default main)
//
// Prints `upstream listening on http://<host>:<port>` once it accepts requests; SIGTERM/SIGINT stop it.
import { startUpstream } from './upstream.js';

async function main(): Promise<void> {
  const port = Number(process.env.UPSTREAM_PORT ?? 8081);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new Error(`UPSTREAM_PORT is not a valid port: "${process.env.UPSTREAM_PORT}"`);
  const host = process.env.UPSTREAM_HOST || '127.0.0.1';

  const upstream = await startUpstream({ port, host, name: process.env.UPSTREAM_NAME || 'main' });
  console.log(`upstream listening on http://${host}:${upstream.port}`);

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    upstream.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error: Error) => {
  console.error(`upstream: ${error.message}`);
  process.exit(1);
});
