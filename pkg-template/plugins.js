// The built-in plugins, written against the public Plugin and Middleware interfaces
// (the same ones users implement).
import { SandrunError } from './errors.js';

const VERSION = '0.1.0';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const invalid = (msg) => new SandrunError('INVALID_ARGUMENT', msg);

/** Operations that change nothing when repeated. */
const IDEMPOTENT_POST = new Set(['registry.register', 'registry.heartbeat', 'registry.complete']);
const isIdempotent = (ctx) => ctx.method === 'GET' || ctx.method === 'HEAD' || IDEMPOTENT_POST.has(ctx.operation);
/** The request never reached the server, so nothing was created. */
const neverSent = (error) => error?.code === 'NETWORK' && /connection refused|ECONNREFUSED/i.test(error.message);

function waitFromBody(body) {
  try {
    const text = JSON.parse(new TextDecoder().decode(body)).error ?? '';
    const m = /wait (\d+) second/.exec(text);
    return m ? Number(m[1]) * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Retries what is safe to retry:
 * - a `429` answer, on any operation (it proves nothing was done), after the wait the
 *   server names (`wait 34 seconds`) or the backoff;
 * - network failures, timeouts and 5xx answers of idempotent operations (GETs, registry
 *   register/heartbeat/complete);
 * - a submit whose connection was refused (it never reached the server).
 * A submit that may have reached the server is never retried, so no job runs twice.
 * `retryOn(context, { response, error })` can veto a retry (return false), not widen
 * these rules.
 */
export function retryPlugin(options = {}) {
  const { maxAttempts = 3, initialDelayMs = 250, maxDelayMs = 10_000, backoff = 'exponential', jitter = true, retryOn } = options;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw invalid(`retryPlugin: maxAttempts must be an integer >= 1, got ${maxAttempts}`);
  if (!(initialDelayMs >= 0) || !(maxDelayMs >= initialDelayMs)) throw invalid('retryPlugin: need 0 <= initialDelayMs <= maxDelayMs');
  if (!['exponential', 'linear', 'fixed'].includes(backoff)) throw invalid(`retryPlugin: backoff must be 'exponential', 'linear' or 'fixed', got ${backoff}`);
  if (retryOn !== undefined && typeof retryOn !== 'function') throw invalid('retryPlugin: retryOn must be a function');
  const delayFor = (attempt) => {
    const base = backoff === 'fixed' ? initialDelayMs : backoff === 'linear' ? initialDelayMs * attempt : initialDelayMs * 2 ** (attempt - 1);
    const capped = Math.min(base, maxDelayMs);
    return jitter ? capped / 2 + Math.random() * (capped / 2) : capped;
  };
  const retryable = (ctx, response, error) => {
    if (response) return response.status === 429 || (response.status >= 500 && isIdempotent(ctx));
    if (!error || !['NETWORK', 'TIMEOUT'].includes(error.code)) return false;
    return isIdempotent(ctx) || neverSent(error);
  };
  return {
    name: 'retry',
    version: VERSION,
    options: { maxAttempts, initialDelayMs, maxDelayMs, backoff, jitter },
    middleware: {
      name: 'retry',
      async execute(next, ctx) {
        for (let attempt = 1; ; attempt++) {
          let response, error;
          try {
            response = await next();
          } catch (e) {
            error = e;
          }
          const again = attempt < maxAttempts && retryable(ctx, response, error) && (retryOn ? retryOn(ctx, { response, error }) !== false : true);
          if (!again) {
            if (error) throw error;
            return response;
          }
          const asked = response?.status === 429 ? waitFromBody(response.body) : undefined;
          await sleep(asked !== undefined ? Math.min(asked, maxDelayMs) : delayFor(attempt));
        }
      },
    },
  };
}

const BUCKETS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, Infinity];

/** The default metrics collector: counters and latency histograms in memory. */
export class InMemoryCollector {
  constructor() {
    this.counters = new Map();
    this.histograms = new Map();
  }
  static key(name, labels = {}) {
    const l = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}="${v}"`).join(',');
    return l ? `${name}{${l}}` : name;
  }
  increment(name, labels, by = 1) {
    const k = InMemoryCollector.key(name, labels);
    this.counters.set(k, (this.counters.get(k) ?? 0) + by);
  }
  observe(name, value, labels) {
    const k = InMemoryCollector.key(name, labels);
    let h = this.histograms.get(k);
    if (!h) this.histograms.set(k, (h = { count: 0, sum: 0, min: Infinity, max: -Infinity, buckets: BUCKETS.map((le) => ({ le, count: 0 })) }));
    h.count++;
    h.sum += value;
    h.min = Math.min(h.min, value);
    h.max = Math.max(h.max, value);
    for (const b of h.buckets) if (value <= b.le) b.count++;
  }
  /** A plain copy: `{ counters: { 'name{labels}': n }, histograms: { 'name{labels}': { count, sum, min, max, buckets } } }`. */
  snapshot() {
    return {
      counters: Object.fromEntries(this.counters),
      histograms: Object.fromEntries([...this.histograms].map(([k, h]) => [k, { ...h, buckets: h.buckets.map((b) => ({ ...b })) }])),
    };
  }
}

/**
 * Counts and times every network operation (`sandrun_requests_total{operation,outcome}`,
 * `sandrun_request_ms{operation}`), and jobs (`sandrun_jobs_total{event}`:
 * submitted, completed, failed, error). Registered after `retryPlugin`, it sees each attempt.
 */
export function metricsPlugin(collector = new InMemoryCollector()) {
  for (const f of ['increment', 'observe']) {
    if (typeof collector?.[f] !== 'function') throw invalid(`metricsPlugin: the collector needs ${f}(name, ...)`);
  }
  return {
    name: 'metrics',
    version: VERSION,
    collector,
    snapshot: () => collector.snapshot?.(),
    onSubmit() {
      collector.increment('sandrun_jobs_total', { event: 'submitted' });
    },
    onResult(result) {
      collector.increment('sandrun_jobs_total', { event: result.status });
    },
    onError(error) {
      collector.increment('sandrun_jobs_total', { event: 'error', code: error.code ?? 'UNKNOWN' });
    },
    middleware: {
      name: 'metrics',
      async execute(next, ctx) {
        const t0 = performance.now();
        try {
          const r = await next();
          collector.increment('sandrun_requests_total', { operation: ctx.operation, outcome: String(r.status) });
          return r;
        } catch (e) {
          collector.increment('sandrun_requests_total', { operation: ctx.operation, outcome: e.code ?? 'error' });
          throw e;
        } finally {
          collector.observe('sandrun_request_ms', performance.now() - t0, { operation: ctx.operation });
        }
      },
    },
  };
}

const LEVELS = ['debug', 'info', 'warn', 'error'];
const SECRET_KEYS = /^(authorization|x-api-key|api[-_]?key|token|secret|password|private[-_]?key|privatekey|mnemonic)$/i;

/** Replace secrets in text: 32-byte hex keys, bearer tokens, key=value secrets. */
export function redact(value) {
  if (typeof value === 'string') {
    return value
      .replace(/0x[0-9a-fA-F]{64}\b/g, '0x[redacted]')
      .replace(/(Bearer\s+)[A-Za-z0-9._~+/=-]+/gi, '$1[redacted]')
      .replace(/((?:api[-_]?key|token|secret|password|private[-_]?key)["']?\s*[:=]\s*["']?)[^"'\s,&}]+/gi, '$1[redacted]');
  }
  if (Array.isArray(value)) return value.map(redact);
  if (value && typeof value === 'object' && !(value instanceof Uint8Array)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, SECRET_KEYS.test(k) ? '[redacted]' : redact(v)]));
  }
  return value;
}

/**
 * Logs each network operation and job event to `logger` (default `console`) at or above
 * `level`, with secrets redacted: request headers like Authorization and X-API-Key,
 * private keys, tokens and API keys never appear.
 */
export function loggingPlugin(logger = console, { level = 'info' } = {}) {
  if (!LEVELS.includes(level)) throw invalid(`loggingPlugin: level must be one of ${LEVELS.join(', ')}`);
  for (const l of LEVELS) if (typeof logger?.[l] !== 'function') throw invalid(`loggingPlugin: the logger needs a ${l}() method`);
  const min = LEVELS.indexOf(level);
  const log = (l, msg, data) => {
    if (LEVELS.indexOf(l) >= min) logger[l](redact(msg), ...(data === undefined ? [] : [redact(data)]));
  };
  return {
    name: 'logging',
    version: VERSION,
    onInit(config) {
      log('debug', 'sandrun: client configured', config);
    },
    onSubmit(job) {
      log('info', `sandrun: submitting a ${job.interpreter ?? 'detected-language'} job`, job);
    },
    onResult(result) {
      log('info', `sandrun: job ${result.id} on ${result.worker} ${result.status} (exit ${result.exitCode}) in ${Math.round(result.executionTime)} ms`);
    },
    onError(error, context) {
      log('error', `sandrun: ${context?.operation ?? 'operation'} failed: ${error.code}: ${error.message}`, context);
    },
    middleware: {
      name: 'logging',
      async execute(next, ctx) {
        const t0 = performance.now();
        log('debug', `sandrun: -> ${ctx.method} ${ctx.url} (${ctx.operation}, attempt ${ctx.attempt})`, { headers: ctx.headers });
        try {
          const r = await next();
          log(r.status >= 400 ? 'warn' : 'debug', `sandrun: <- ${r.status} ${ctx.operation} ${Math.round(performance.now() - t0)} ms`);
          return r;
        } catch (e) {
          log('warn', `sandrun: x ${ctx.operation} ${ctx.url}: ${e.code}: ${e.message}`);
          throw e;
        }
      },
    },
  };
}

/**
 * Adds credentials to requests toward endpoints that accept them: `Authorization: Bearer
 * <token>` or `X-API-Key: <apiKey>`. `provider` is an async function returning
 * `{ token }` or `{ apiKey }` (optionally `expiresAt`, ms since the epoch); it is asked
 * again when the credential expired or a server answered 401.
 * By default only registry and gateway operations get credentials (`endpoints` lists the
 * base URLs to cover instead). Reference Sandrun workers answer no CORS preflight, so
 * from a browser any request with these headers to such a worker fails: do not list
 * workers there for browser use.
 */
export function authPlugin(provider, { endpoints } = {}) {
  if (typeof provider !== 'function') throw invalid('authPlugin: provider must be an async function returning { token } or { apiKey }');
  if (endpoints !== undefined && !(Array.isArray(endpoints) && endpoints.every((e) => typeof e === 'string'))) throw invalid('authPlugin: endpoints must be a list of base URLs');
  let cached;
  const fresh = async (force) => {
    if (force || !cached || (cached.expiresAt !== undefined && Date.now() >= cached.expiresAt)) {
      const c = await provider();
      if (!c || (typeof c.token !== 'string' && typeof c.apiKey !== 'string')) throw invalid('authPlugin: the provider must return { token } or { apiKey }');
      cached = c;
    }
    return cached;
  };
  const covers = (ctx) => (endpoints ? endpoints.some((e) => ctx.endpoint === e.replace(/\/+$/, '')) : ctx.operation.startsWith('registry.') || ctx.operation === 'fetch');
  const apply = (ctx, c) => {
    if (c.token !== undefined) ctx.headers.Authorization = `Bearer ${c.token}`;
    else ctx.headers['X-API-Key'] = c.apiKey;
  };
  return {
    name: 'auth',
    version: VERSION,
    middleware: {
      name: 'auth',
      async execute(next, ctx) {
        if (!covers(ctx)) return next();
        apply(ctx, await fresh(false));
        const r = await next();
        if (r.status !== 401) return r;
        apply(ctx, await fresh(true));
        return next();
      },
    },
  };
}
