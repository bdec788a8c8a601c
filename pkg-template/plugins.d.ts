import type { Plugin, MiddlewareContext, OperationResponse } from './sandrun_wasm.js';
import type { SandrunError } from './index.js';

export interface RetryOptions {
  /** Attempts in all, the first included (default 3). */
  maxAttempts?: number;
  /** First backoff delay (default 250 ms). */
  initialDelayMs?: number;
  /** Longest delay, also the cap on a server-named wait (default 10 s). */
  maxDelayMs?: number;
  backoff?: 'exponential' | 'linear' | 'fixed';
  /** Randomize each delay between half and all of it (default true). */
  jitter?: boolean;
  /** Return false to veto a retry the plugin would make; it cannot add unsafe retries. */
  retryOn?: (context: MiddlewareContext, outcome: { response?: OperationResponse; error?: SandrunError }) => boolean;
}
/** Retries only what is safe: 429s, idempotent operations, submits that never reached the
 * server. While registered it is the one retry budget (`ownsRetries`): the SDK's own 429
 * retries (`defaults.retries`) are off, so a server sees at most `maxAttempts` requests. */
export declare function retryPlugin(options?: RetryOptions): Plugin & { options: Required<Omit<RetryOptions, 'retryOn'>> };

export interface MetricsCollector {
  increment(name: string, labels?: Record<string, string>, by?: number): void;
  observe(name: string, value: number, labels?: Record<string, string>): void;
  snapshot?(): MetricsSnapshot;
}
export interface HistogramSnapshot { count: number; sum: number; min: number; max: number; buckets: { le: number; count: number }[] }
export interface MetricsSnapshot { counters: Record<string, number>; histograms: Record<string, HistogramSnapshot> }
/** The default collector: counters and latency histograms in memory. */
export declare class InMemoryCollector implements MetricsCollector {
  increment(name: string, labels?: Record<string, string>, by?: number): void;
  observe(name: string, value: number, labels?: Record<string, string>): void;
  snapshot(): MetricsSnapshot;
}
/** Counts and times every operation and job event. */
export declare function metricsPlugin(collector?: MetricsCollector): Plugin & { collector: MetricsCollector; snapshot(): MetricsSnapshot | undefined };

export interface Logger {
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}
/** Logs operations and job events: environment variables by name only, everything
 * through `redact()`. */
export declare function loggingPlugin(logger?: Logger, options?: { level?: 'debug' | 'info' | 'warn' | 'error' }): Plugin;
/** What loggingPlugin applies to everything it logs: values of secret-named keys
 * (`*_API_KEY`, `*_TOKEN`, `*_SECRET`, `*PASSWORD*`, `MNEMONIC*`, ...) in objects, JSON,
 * query strings and `NAME=value` text; bearer tokens; `user:pass@` in URLs; keys in URL
 * paths (`/v3/<key>`); private keys (`0x` + 64 hex digits). */
export declare function redact<T>(value: T): T;

export type Credentials = { token: string; expiresAt?: number } | { apiKey: string; expiresAt?: number };
export interface AuthOptions {
  /** Base URLs whose origins (scheme, host, port) get the credentials, instead of the
   * default: the configured `registryEndpoint` and `ipfsGateway` origins. The
   * `apiEndpoint` origin is never covered. */
  origins?: string[];
  /** @deprecated the old name of `origins`. */
  endpoints?: string[];
}
/** Adds `Authorization: Bearer` or `X-API-Key` to requests toward the origins it covers,
 * matched exactly: by default the configured registry and IPFS gateway; never workers,
 * archive or script hosts, or redirect targets on other origins. */
/** Where `authPlugin` gets its credentials (spec: `AuthProvider`): called before each covered
 * request, and again after a 401. */
export type AuthProvider = () => Promise<Credentials> | Credentials;
export declare function authPlugin(provider: AuthProvider, options?: AuthOptions): Plugin & { origins?: string[] };
