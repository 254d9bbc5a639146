// After the whole suite (make test): no idgate or HAProxy log line may carry a token, a cookie, an
// authorization code or a secret. Reads every log the suite captured (IDGATE_LOG_CAPTURE_DIR).
import fs from 'node:fs';
import path from 'node:path';

const dir = process.argv[2];
const ours = /^(idgate\d*|idgate-in-process|haproxy)\.log$/;
const leaks = [
  ['a JWT (access, ID or logout token)', /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/],
  ['a bearer credential', /Bearer [A-Za-z0-9._~+/-]{12,}/],
  ['a session cookie value', /s%3A[A-Za-z0-9_-]{20,}|"s:[A-Za-z0-9_-]{20,}\./],
  ['an authorization code in a URL', /[?&]code=[A-Za-z0-9_-]{8,}/],
  ['a refresh token field', /refresh_token"\s*:\s*"[^"[]/],
  ['a client secret of the demo', /(idgate|demo-bot|opaque-bot)-secret/],
  ['a cookie secret of the tests', /(old|new)-secret-[on]{8,}|(.)\2{31,}/],
  ['an id_token_hint', /id_token_hint=/],
  ['a Redis password or user name of the tests', /redis-(password|user)-of-the-tests/],
  ['a check secret of the tests (stack/haproxy.ts testCheckSecret)', /check-secret-of-the-tests/],
];

if (!dir || !fs.existsSync(dir)) {
  console.error(`scan-logs: no captured logs in ${dir}`);
  process.exit(1);
}
let lines = 0;
let found = 0;
for (const file of fs.readdirSync(dir).filter((f) => ours.test(f))) {
  const text = fs.readFileSync(path.join(dir, file), 'utf8');
  for (const line of text.split('\n')) {
    lines += 1;
    for (const [what, pattern] of leaks) {
      if (pattern.test(line)) {
        found += 1;
        console.error(`scan-logs: ${file}: ${what}: ${line.slice(0, 300)}`);
      }
    }
  }
}
if (lines < 100) {
  console.error(`scan-logs: only ${lines} log lines captured; the capture is not working`);
  process.exit(1);
}
console.log(`scan-logs: ${lines} log lines from idgate and HAProxy, ${found} carrying a secret`);
process.exit(found ? 1 : 0);
