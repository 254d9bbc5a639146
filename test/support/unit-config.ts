// The settings of an idgate that unit tests build in process: the required ones, valid, and nothing else.
import { loadConfig, type Config } from '../../service/src/config.js';

export const UNIT_ENV: Readonly<Record<string, string>> = Object.freeze({
  IDGATE_ISSUER: 'https://idp.example.com',
  IDGATE_CLIENT_ID: 'client',
  IDGATE_CLIENT_SECRET: 'super-secret-value',
  IDGATE_PUBLIC_URL: 'https://app.example.com',
  IDGATE_COOKIE_SECRETS: 'a'.repeat(32),
  IDGATE_CHECK_SECRETS: 'k'.repeat(32),
});

/** The config of UNIT_ENV with `overrides`; throws with the problems when it does not load. */
export function unitConfig(overrides: Record<string, string> = {}): Config {
  const { config, problems } = loadConfig({ ...UNIT_ENV, ...overrides });
  if (!config) throw new Error(problems.join('\n'));
  return config;
}
