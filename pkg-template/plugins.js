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
 * these rules. While registered it is the only retry budget: the SDK's own retries of
 * 429 submits (`defaults.retries`) are off, so a server sees at most `maxAttempts`
 * requests per operation.
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
      // This middleware is the one retry budget: the SDK's own 429 retries of submits
      // (defaults.retries) are off while it is registered, so maxAttempts is what a
      // server sees.
      ownsRetries: true,
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
const REDACTED = '[redacted]';
/** Names whose values are secrets: `*_API_KEY`, `*_TOKEN`, `*_SECRET`, `*PASSWORD*`,
 * `MNEMONIC*`, private keys, credentials, authorization headers, any case and separator. */
const SECRET_NAME = /(api[-_]?key|apikey|token|secret|passw(or)?d|passphrase|mnemonic|seed[-_]?phrase|private[-_]?key|privatekey|credential|authorization|auth[-_]?key|access[-_]?key|session[-_]?id|cookie)/i;
const isSecretName = (name) => SECRET_NAME.test(String(name));
// `NAME=value`, `NAME: value`, `"NAME": "value"`, `?NAME=value&` with a secret-like NAME.
const NAME_VALUE = /(["']?)([A-Za-z0-9_.-]*?(?:api[-_]?key|apikey|token|secret|passw(?:or)?d|passphrase|mnemonic|seed[-_]?phrase|private[-_]?key|privatekey|credential|authorization|auth[-_]?key|access[-_]?key|session[-_]?id|cookie)[A-Za-z0-9_.-]*)\1(\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s"'&,;}\]]+)/gi;

/**
 * Replace secrets in text or data: values of secret-named keys (`*_API_KEY`, `*_TOKEN`,
 * `*_SECRET`, `*PASSWORD*`, `MNEMONIC*`, ...) in objects, JSON, query strings and
 * `NAME=value` text; bearer and basic credentials; `user:password@` in URLs; keys in URL
 * paths (`/v3/<key>` as Infura and Alchemy use); private keys (`0x` + 64 hex digits).
 */
export function redact(value) {
  if (typeof value === 'string') {
    return value
      .replace(/\b0x[0-9a-fA-F]{64}\b/g, `0x${REDACTED}`)
      .replace(/\b(Bearer|Basic|Token)(\s+)[A-Za-z0-9._~+/=-]+/gi, `$1$2${REDACTED}`)
      .replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^/\s@?#]+@/gi, `$1${REDACTED}@`)
      .replace(/(\/v\d+\/)[A-Za-z0-9_-]{16,}/g, `$1${REDACTED}`)
      // A mnemonic is words separated by spaces: its value runs to the end of the line.
      .replace(/([A-Za-z0-9_.-]*(?:mnemonic|seed[-_]?phrase|passphrase)[A-Za-z0-9_.-]*["']?\s*[:=]\s*)(?!["'])[^\r\n"'&;,}\]]+/gi, `$1${REDACTED}`)
      .replace(NAME_VALUE, (all, q, name, sep, v) => v.startsWith(REDACTED.slice(0, -1)) ? all : `${q}${name}${q}${sep}${v.startsWith('"') ? `"${REDACTED}"` : v.startsWith("'") ? `'${REDACTED}'` : REDACTED}`);
  }
  if (Array.isArray(value)) return value.map(redact);
  if (value instanceof Error) return redact(`${value.name}: ${value.message}`);
  if (value && typeof value === 'object' && !(value instanceof Uint8Array)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, isSecretName(k) && v !== null && v !== undefined ? REDACTED : redact(v)]));
  }
  return value;
}

/** What loggingPlugin logs of a job: environment variable names, never their values. */
function describeJob(job) {
  const { environment, ...rest } = job ?? {};
  return { ...rest, environment: Object.keys(environment ?? {}) };
}

/**
 * Logs each network operation and job event to `logger` (default `console`) at or above
 * `level`. Environment variables are logged by name only, and everything logged goes
 * through `redact()`: credentials, tokens, API keys, passwords, mnemonics, private keys
 * and keys in URL paths never appear.
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
      const { web3Provider, ...rest } = config ?? {};
      log('debug', 'sandrun: client configured', { ...rest, web3Provider: web3Provider ? '[provider]' : undefined });
    },
    onSubmit(job) {
      log('info', `sandrun: submitting a ${job.interpreter ?? 'detected-language'} job`, describeJob(job));
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
        log('debug', `sandrun: -> ${ctx.method} ${ctx.url} (${ctx.operation} at ${ctx.service}, attempt ${ctx.attempt})`, { headers: ctx.headers });
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

/** `scheme://host[:port]` as the host's URL parser (the one requests go through) reads it;
 * null for a non-http(s) URL or one with userinfo. */
function originOf(url) {
  let u;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.username || u.password) return null;
  return u.origin;
}

/**
 * Adds credentials to requests toward the origins it covers: `Authorization: Bearer
 * <token>` or `X-API-Key: <apiKey>`. `provider` is an async function returning
 * `{ token }` or `{ apiKey }` (optionally `expiresAt`, ms since the epoch); it is asked
 * again when the credential expired or a covered server answered 401.
 *
 * Coverage is by exact origin (scheme, host and port, after normalisation: default ports
 * dropped, host lowercased), never by path:
 * - by default, the client's configured `registryEndpoint` and `ipfsGateway` origins
 *   (each request's `context.service`);
 * - with `origins` (base URLs; only their origins count), exactly those.
 * Never covered: the `apiEndpoint` origin (a Sandrun worker; reference workers also
 * answer no CORS preflight), any other worker, archive or script host, RPC, or a redirect
 * target on another origin; a URL with userinfo; a covered-looking path (`/claim/`,
 * `/register`) on another origin.
 */
export function authPlugin(provider, options = {}) {
  if (typeof provider !== 'function') throw invalid('authPlugin: provider must be an async function returning { token } or { apiKey }');
  if (options === null || typeof options !== 'object') throw invalid('authPlugin: options must be { origins?: string[] }');
  for (const k of Object.keys(options)) if (k !== 'origins' && k !== 'endpoints') throw invalid(`authPlugin: unknown option ${k} (expected origins)`);
  if (options.origins !== undefined && options.endpoints !== undefined) throw invalid('authPlugin: give origins (endpoints is its old name), not both');
  const given = options.origins ?? options.endpoints;
  let listed;
  if (given !== undefined) {
    if (!Array.isArray(given) || given.length === 0) throw invalid('authPlugin: origins must be a non-empty list of base URLs like https://registry.example.com');
    listed = new Set(given.map((e) => {
      const o = typeof e === 'string' ? originOf(e) : null;
      if (o === null) throw invalid(`authPlugin: ${JSON.stringify(e)} is not an http(s) base URL without user:password@, like https://registry.example.com`);
      return o;
    }));
  }
  let cached;
  const fresh = async (force) => {
    if (force || !cached || (cached.expiresAt !== undefined && Date.now() >= cached.expiresAt)) {
      const c = await provider();
      if (!c || (typeof c.token !== 'string' && typeof c.apiKey !== 'string')) throw invalid('authPlugin: the provider must return { token } or { apiKey }');
      cached = c;
    }
    return cached;
  };
  const covers = (ctx) => {
    // The configured worker never gets credentials, even when listed.
    if (ctx.service === 'worker') return false;
    // Decided on the origin the request will really go to, parsed as the host parses it.
    const o = originOf(ctx.url);
    if (o === null) return false;
    if (listed) return listed.has(o);
    return (ctx.service === 'registry' || ctx.service === 'gateway') && o === ctx.origin;
  };
  const apply = (ctx, c) => {
    if (c.token !== undefined) ctx.headers.Authorization = `Bearer ${c.token}`;
    else ctx.headers['X-API-Key'] = c.apiKey;
  };
  return {
    name: 'auth',
    version: VERSION,
    origins: listed ? [...listed] : undefined,
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
