// The policy in force, and its reload: the holder swaps in a new valid policy on SIGHUP or when the file
// changes, keeping the old one when the new one is invalid.
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../audit.js';
import type { Metrics } from '../metrics.js';
import { POLICY_RELOAD_DEBOUNCE_MS } from '../limits.js';
import { SIGNED_IN_POLICY, type Policy } from './policy.js';
import { loadPolicyFile, type PolicyLoadResult } from './policy-file.js';

/** Problems a policy has beyond its file's own (e.g. with the settings it is used with); none: it may be used. */
export type PolicyCheck = (policy: Policy) => readonly string[];

/** The file's policy when it is valid and `check` finds nothing; else its problems. */
function checkedPolicy(file: string, check: PolicyCheck): PolicyLoadResult {
  const loaded = loadPolicyFile(file);
  if (!loaded.policy) return loaded;
  const problems = check(loaded.policy);
  return problems.length > 0 ? { policy: undefined, problems: [...problems], warnings: loaded.warnings } : loaded;
}

/**
 * The policy in force. Without a file it is the built-in "any signed-in user" policy. With one, a new
 * valid version replaces it on reload (SIGHUP or a change to the file); an invalid version is logged
 * with its problems and the policy in force stays.
 */
export class PolicyHolder {
  #policy: Policy;
  #watcher: fs.FSWatcher | undefined;
  #debounce: NodeJS.Timeout | undefined;

  private constructor(
    readonly file: string | undefined,
    policy: Policy,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    private readonly check: PolicyCheck,
  ) {
    this.#policy = policy;
  }

  /**
   * Loads the file; returns the holder, or the problems when the first version is invalid. `check`: what
   * else makes a policy invalid, from outside the file (the settings it meets); asked again on each reload.
   */
  static open(file: string | undefined, logger: Logger, metrics: Metrics, check: PolicyCheck = () => []): PolicyHolder | readonly string[] {
    if (!file) return new PolicyHolder(undefined, SIGNED_IN_POLICY, logger, metrics, check);
    const { policy, problems, warnings } = checkedPolicy(file, check);
    if (!policy) return problems;
    if (warnings.length) logger.log('warn', 'the policy loaded with warnings (idgate check-config lists them)', { file, warnings });
    return new PolicyHolder(file, policy, logger, metrics, check);
  }

  get current(): Policy {
    return this.#policy;
  }

  /** Reads the file again; true when a new valid policy is in force. */
  reload(trigger: string): boolean {
    if (!this.file) return false;
    const { policy, problems } = checkedPolicy(this.file, this.check);
    if (!policy) {
      this.metrics.recordEvent('policy_reload_failed');
      this.logger.log('error', 'policy reload rejected; the previous policy stays in force', { file: this.file, trigger, problems });
      return false;
    }
    this.#policy = policy;
    this.metrics.recordEvent('policy_reload_ok');
    this.logger.log('info', 'policy reloaded', { file: this.file, trigger, rules: policy.rules.length });
    return true;
  }

  /** Reloads when the file changes. Watches the directory: editors and config managers replace files by rename. */
  watch(): void {
    if (!this.file || this.#watcher) return;
    const base = path.basename(this.file);
    try {
      this.#watcher = fs.watch(path.dirname(this.file), (_event, name) => {
        if (name !== null && name !== base) return;
        if (this.#debounce) clearTimeout(this.#debounce);
        this.#debounce = setTimeout(() => this.reload('file change'), POLICY_RELOAD_DEBOUNCE_MS);
      });
      this.#watcher.on('error', (err) => this.logger.log('warn', 'policy file watch failed; reload with SIGHUP', { error: err.message }));
    } catch (err) {
      this.logger.log('warn', 'cannot watch the policy file; reload with SIGHUP', { file: this.file, error: (err as Error).message });
    }
  }

  close(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
    if (this.#debounce) clearTimeout(this.#debounce);
  }
}
