/**
 * When to retry a failed call: UNAVAILABLE with capped exponential backoff and full jitter, and
 * RESOURCE_EXHAUSTED when the server says when to come back (`google.rpc.RetryInfo`: it was busy),
 * after that delay plus the same jitter, so callers turned away together do not return together.
 * RESOURCE_EXHAUSTED without a delay (the request overran its own budget or memory bound, and would
 * again) is never retried; no retry outlives the call's deadline.
 */
import { type ChainruleError, ResourceExhaustedError, UnavailableError } from "./errors.js";

export interface RetryPolicy {
  /** Attempts in all, the first included; 1 turns retries off. Default 4. */
  maxAttempts: number;
  /** Ceiling of the first wait, in ms. Default 50. */
  initialBackoffMs: number;
  /** Largest wait ceiling, in ms. Default 1000. */
  maxBackoffMs: number;
  /** Growth of the ceiling per attempt. Default 2. */
  multiplier: number;
}

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 4, initialBackoffMs: 50, maxBackoffMs: 1000, multiplier: 2 };

/** The wait in ms before retrying after `error` on attempt `attempt` (1-based), or undefined: raise it. */
export function retryDelay(
  policy: RetryPolicy,
  error: ChainruleError,
  attempt: number,
  deadline: number | undefined,
  now: number = Date.now(),
  random: () => number = Math.random,
): number | undefined {
  if (attempt >= policy.maxAttempts) return undefined;
  const { initialBackoffMs, maxBackoffMs, multiplier } = policy;
  const jitter = random() * Math.min(maxBackoffMs, initialBackoffMs * multiplier ** (attempt - 1));
  let delay: number;
  if (error instanceof UnavailableError) delay = jitter;
  else if (error instanceof ResourceExhaustedError && error.retryAfterMs !== undefined) delay = error.retryAfterMs + jitter;
  else return undefined;
  return deadline !== undefined && now + delay >= deadline ? undefined : delay;
}
