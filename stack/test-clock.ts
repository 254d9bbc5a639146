// A clock a test moves, for an idgate child of the stack. Preloaded with `node --import` when a test asks
// startStack for `idgateClock: 'test'` (never in the product), it makes the child's Date.now(), which
// idgate's system clock reads, run ahead of the machine's by an offset the test advances over the IPC
// channel (Stack.advanceIdgateClock): a token lifetime then passes at once instead of in real seconds.
// The IdP, Redis and the test keep the machine's time. The stack imports this file too, for
// `advanceChildClock`: the clock is replaced only in a child the stack started with the offset set.
import type { ManagedProcess } from './processes.js';

/** The offset (ms) a (re)started replica begins with: the stack's total so far, so that replicas agree. */
export const TEST_CLOCK_OFFSET_ENV = 'STACK_TEST_CLOCK_OFFSET_MS';

/** What the stack sends: move the clock forward by this many ms. */
interface AdvanceClock {
  readonly advanceMs: number;
}
/** What the child answers once its clock has moved. */
interface ClockAdvanced {
  readonly clockOffsetMs: number;
}

const isAdvance = (m: unknown): m is AdvanceClock => typeof m === 'object' && m !== null && typeof (m as AdvanceClock).advanceMs === 'number';
const isAdvanced = (m: unknown): m is ClockAdvanced => typeof m === 'object' && m !== null && typeof (m as ClockAdvanced).clockOffsetMs === 'number';

/** Moves a child's clock forward by `ms`; resolves with its offset once the child has applied it. */
export function advanceChildClock(child: ManagedProcess, ms: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: unknown) => {
      if (!isAdvanced(message)) return;
      done();
      resolve(message.clockOffsetMs);
    };
    const onExit = () => {
      done();
      reject(new Error(`${child.name} exited before its clock moved`));
    };
    const done = () => {
      child.child.off('message', onMessage);
      child.child.off('exit', onExit);
    };
    child.child.on('message', onMessage);
    child.child.once('exit', onExit);
    child.child.send({ advanceMs: ms } satisfies AdvanceClock, (err) => {
      if (err) {
        done();
        reject(err);
      }
    });
  });
}

const startOffset = process.env[TEST_CLOCK_OFFSET_ENV];
if (startOffset !== undefined && process.send !== undefined) {
  const machineNow = Date.now.bind(Date);
  let offsetMs = Number(startOffset);
  Date.now = () => machineNow() + offsetMs;
  process.on('message', (message: unknown) => {
    if (!isAdvance(message)) return;
    offsetMs += message.advanceMs;
    process.send?.({ clockOffsetMs: offsetMs } satisfies ClockAdvanced);
  });
  // The channel must not keep idgate alive: it stops as it does in production.
  process.channel?.unref();
}
