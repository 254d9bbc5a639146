// Reading the settings: each one's text from the environment or the config file (environment wins), its
// default, then its kind's parser. Problems are collected, never thrown, and never show a secret's value.
import fs from 'node:fs';
import { isInvalid } from './kinds.js';
import { SETTINGS, type Setting, type SettingFields, type SettingValues } from './settings.js';

/** What was read: each setting's text as found (before parsing), and the values that parsed. */
export interface ReadSettings {
  readonly raw: ReadonlyMap<string, string | undefined>;
  /** Absent: the setting is required and unset, or its text did not parse (a problem says which). */
  readonly values: Partial<SettingValues>;
}

/** Raw and parsed values of `settings` from `env` and IDGATE_CONFIG_FILE; problems appended. */
export function readSettings(settings: readonly Setting[], env: NodeJS.ProcessEnv, problems: string[]): ReadSettings {
  const fileValues = readConfigFile(env.IDGATE_CONFIG_FILE, problems);
  const raw = new Map<string, string | undefined>();
  for (const s of settings) {
    const fromEnv = env[s.env];
    const fromFile = fileValues[s.key];
    const fileText = fromFile === undefined ? undefined : typeof fromFile === 'string' ? fromFile : s.kind.json ? JSON.stringify(fromFile) : Array.isArray(fromFile) ? fromFile.join(',') : String(fromFile);
    const value = fromEnv !== undefined && fromEnv !== '' ? fromEnv : fileText ?? s.default;
    raw.set(s.env, value);
  }
  const known = new Set<string>(SETTINGS.map((s) => s.key));
  for (const key of Object.keys(fileValues)) {
    if (!known.has(key)) problems.push(`${env.IDGATE_CONFIG_FILE}: unknown setting "${key}" (known: ${[...known].join(', ')})`);
  }

  const values: Record<string, unknown> = {};
  for (const s of settings) {
    const value = raw.get(s.env);
    if (value === undefined || value === '') {
      if (s.default === undefined && !s.optional) problems.push(`${s.env}: required, ${s.doc} (e.g. ${s.example})`);
      else values[s.env] = s.kind.unset;
      continue;
    }
    const result = s.kind.parse(value, s.env);
    if (!isInvalid(result)) values[s.env] = result;
    else if ('problem' in result) problems.push(`${s.env}: ${result.problem} (e.g. ${s.example})`);
    else problems.push(...result.problems);
  }
  // The one place a value's type is asserted: each came from its own row's parser, whose return type
  // SettingValues names for that row.
  return { raw, values: values as Partial<SettingValues> };
}

/** Whether every setting that is not optional has a value (then none is missing from `values`). */
export function isComplete(values: Partial<SettingValues>): values is SettingValues {
  const byEnv: Readonly<Record<string, unknown>> = values;
  return SETTINGS.every((s) => s.optional || byEnv[s.env] !== undefined);
}

/** The `Config` fields settings fill as they are (each row's `field`), lists frozen. */
export function settingFields(values: SettingValues): SettingFields {
  const byEnv: Readonly<Record<string, unknown>> = values;
  const fields: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    if (s.field === undefined) continue;
    const value = byEnv[s.env];
    fields[s.field] = Array.isArray(value) ? Object.freeze([...value]) : value;
  }
  // Asserted as readSettings' values are: each field holds its row's value.
  return fields as SettingFields;
}

function readConfigFile(file: string | undefined, problems: string[]): Record<string, unknown> {
  if (!file) return {};
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    problems.push(`IDGATE_CONFIG_FILE: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    return {};
  }
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      problems.push(`${file}: must hold one JSON object of settings (e.g. {"issuer": "https://dev-123456.okta.com/oauth2/default"})`);
      return {};
    }
    return value as Record<string, unknown>;
  } catch (err) {
    problems.push(`${file}: not valid JSON: ${(err as Error).message}`);
    return {};
  }
}
