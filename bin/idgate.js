#!/usr/bin/env node
// Entry point for `npx idgate`: the compiled CLI lives in dist/ (`npm run build`, done by `make`).
import('../dist/service/src/cli.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND') {
    process.stderr.write('idgate: not built yet; run `make build` (or `npm run build`) first\n');
  } else {
    process.stderr.write(`idgate: ${err && err.message ? err.message : err}\n`);
  }
  process.exit(1);
});
