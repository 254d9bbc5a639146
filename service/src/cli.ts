// `npx idgate <command>`. Exit 0 on success, 1 on a finding or error, with a one-line reason on stderr.
import fs from 'node:fs';
import { describeConfig, loadConfig, SETTINGS } from './config.js';
import { serve } from './main.js';

const HELP = `usage: idgate <command> [options]

commands:
  serve           run the check, login and health endpoints (settings from IDGATE_* environment)
  check-config    validate the settings; one line per problem; exit 1 if any
  version         print the version
  --help          this text

settings (environment; IDGATE_CONFIG_FILE may name a JSON file with the same keys in lower case):
${SETTINGS.map((s) => `  ${s.env.padEnd(30)} ${s.doc}${s.default !== undefined && s.default !== '' ? ` (default ${s.default})` : s.optional || s.default === '' ? ' (optional)' : ' (required)'}`).join('\n')}
`;

function version(): string {
  const pkg = JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  const [command = 'serve', ...rest] = argv;
  switch (command) {
    case 'serve':
      return serve();
    case 'check-config': {
      if (rest.includes('--help')) {
        process.stdout.write('usage: idgate check-config\n  validates the IDGATE_* settings; exit 0 when all are right, 1 with one line per problem\n');
        return 0;
      }
      const { config, problems } = loadConfig();
      if (!config) {
        for (const problem of problems) process.stderr.write(`${problem}\n`);
        return 1;
      }
      process.stdout.write(`configuration ok: ${JSON.stringify(describeConfig(config))}\n`);
      return 0;
    }
    case 'version':
    case '--version':
      process.stdout.write(`idgate ${version()}\n`);
      return 0;
    case '--help':
    case 'help':
    case '-h':
      process.stdout.write(HELP);
      return 0;
    default:
      process.stderr.write(`idgate: unknown command "${command}"; see idgate --help\n`);
      return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`idgate: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
