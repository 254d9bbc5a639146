// The setup the edge test files (test/e2e/edge-*.test.ts) share: for each HAProxy mode, a whole stack of
// their own, with the demo users they send requests as signed in once, before the first test.
import { startStack, type Stack, type StackOptions } from '../../stack/stack.js';
import { signedInCookies } from './browser.js';

export interface SignedInStack<U extends string> {
  stack: Stack;
  /** Each user's session cookie, `_idgate=…`, signed in through the stack's front by a browser of its own. */
  cookies: Record<U, string>;
  /** When the sign-ins were done (ms since the epoch): the age of their tokens starts there. */
  signedInAt: number;
}

/**
 * Registers, in the enclosing describe block, a beforeAll that starts a stack with `options()` (read then, so
 * it may use what an earlier hook wrote), signs `users` in and hands the result to `use`; and an afterAll
 * that stops that stack.
 */
export function withSignedInStack<U extends string>(users: readonly U[], options: () => StackOptions, use: (started: SignedInStack<U>) => void): void {
  let stack: Stack | undefined;
  beforeAll(async () => {
    stack = await startStack(options());
    const cookies = await signedInCookies(stack.frontUrl, users);
    use({ stack, cookies, signedInAt: Date.now() });
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
  });
}
