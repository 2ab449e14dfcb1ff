/**
 * Make matrix-js-sdk behave in a test process. Import this BEFORE
 * 'matrix-js-sdk' (some SDK modules bind the logger's methods as they load).
 *
 * - Silence its logger, including child loggers created later.
 * - Unref long timers. The SDK arms a 110 s (sync) or 80 s abort timer per
 *   request and never clears it, plus a 6 h capabilities refresh; in Node
 *   those keep a finished test file alive for almost two minutes. No test
 *   here waits on a timer that long, so letting them not hold the process
 *   open changes nothing else.
 */
import { logger } from 'matrix-js-sdk/lib/logger.js';

type Quietable = { methodFactory: unknown; rebuild?: () => void; setLevel: (level: string, persist?: boolean) => void };
const l = logger as unknown as Quietable;
l.methodFactory = () => () => {};
l.rebuild?.();
l.setLevel('silent', false);

const LONG_TIMER_MS = 60_000;
const realSetTimeout = globalThis.setTimeout;
if (!(realSetTimeout as { __ranvierUnrefLong?: boolean }).__ranvierUnrefLong) {
  const patched = function (this: unknown, fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) {
    const t = realSetTimeout(fn, ms, ...args);
    if ((ms ?? 0) >= LONG_TIMER_MS) t.unref();
    return t;
  };
  Object.assign(patched, realSetTimeout, { __ranvierUnrefLong: true });
  globalThis.setTimeout = patched as unknown as typeof setTimeout;
}
