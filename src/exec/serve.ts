/**
 * Serving simulation: a request trace (arrival time, prompt and output lengths) run through a batch
 * scheduler whose steps take the time a target's device model gives (deterministic, event by event).
 *
 * - Continuous batching (iteration-level, Orca / vLLM): between steps, arrived requests join while
 *   there are free slots; joining requests are prefilled together first (their prompts padded to
 *   the longest), then every running request decodes one step. A request leaves as soon as it has
 *   its output.
 * - Static batching: a batch of up to `maxBatch` arrived requests is prefilled together and decodes
 *   until its longest output is done (finished requests keep their slot); only then does the next
 *   batch start.
 *
 * TTFT is the time from arrival to the end of the request's prefill (its first token); TBT the time
 * between its consecutive tokens.
 */

export interface Request {
  /** Seconds from the start of the trace. */
  readonly arrival: number;
  readonly prompt: number;
  /** Tokens to generate (the first comes from the prefill). */
  readonly output: number;
}

/** The time of one step of the model (from a target's device model). */
export interface StepTiming {
  prefill(batch: number, prompt: number): number;
  /** A decode step of `batch` sequences holding `context` tokens each on average. */
  decode(batch: number, context: number): number;
}

export interface ServeOptions {
  readonly batching: "static" | "continuous";
  readonly maxBatch: number;
  /** Called as each request finishes, with the number finished (for a progress bar). */
  readonly onFinish?: (done: number) => void;
}

export interface RequestResult {
  readonly id: number;
  readonly arrival: number;
  /** End of the request's prefill, and of its last token. */
  readonly firstToken: number;
  readonly finish: number;
  /** Seconds between consecutive tokens. */
  readonly tbt: readonly number[];
}

export interface ServeResult {
  readonly requests: readonly RequestResult[];
  readonly prefillSteps: number;
  readonly decodeSteps: number;
  /** Sequences per decode step, on average. */
  readonly meanBatch: number;
  /** From the first arrival to the last token. */
  readonly makespan: number;
}

interface Live {
  readonly id: number;
  readonly r: Request;
  generated: number;
  last: number;
  firstToken: number;
  readonly tbt: number[];
}

export function simulate(trace: readonly Request[], timing: StepTiming, opts: ServeOptions): ServeResult {
  const order = trace.map((r, id) => ({ r, id })).sort((a, b) => a.r.arrival - b.r.arrival || a.id - b.id);
  const results: RequestResult[] = [];
  let next = 0;
  let t = order[0]?.r.arrival ?? 0;
  const start = t;
  const waiting: Live[] = [];
  const admit = () => {
    while (next < order.length && order[next]!.r.arrival <= t) {
      const { r, id } = order[next++]!;
      waiting.push({ id, r, generated: 0, last: 0, firstToken: 0, tbt: [] });
    }
  };
  let prefillSteps = 0;
  let decodeSteps = 0;
  let batchSum = 0;
  const finish = (x: Live) =>
    opts.onFinish?.(
      results.push({ id: x.id, arrival: x.r.arrival, firstToken: x.firstToken, finish: x.last, tbt: x.tbt }),
    );
  const prefill = (joining: Live[]) => {
    t += timing.prefill(joining.length, Math.max(...joining.map((x) => x.r.prompt)));
    prefillSteps++;
    for (const x of joining) {
      x.generated = 1;
      x.firstToken = t;
      x.last = t;
    }
  };
  const decode = (batch: Live[], active: Live[]) => {
    const context = batch.reduce((s, x) => s + x.r.prompt + x.generated, 0) / batch.length;
    t += timing.decode(batch.length, Math.ceil(context));
    decodeSteps++;
    batchSum += batch.length;
    for (const x of active) {
      x.generated++;
      x.tbt.push(t - x.last);
      x.last = t;
    }
  };
  /** Admits what has arrived; with nothing to do, waits for the next arrival. */
  const admitOrWait = (busy: boolean) => {
    admit();
    if (!busy && waiting.length === 0 && next < order.length) {
      t = Math.max(t, order[next]!.r.arrival);
      admit();
    }
  };

  if (opts.batching === "continuous") {
    const running: Live[] = [];
    while (results.length < order.length) {
      admitOrWait(running.length > 0);
      if (waiting.length > 0 && running.length < opts.maxBatch) {
        const joining = waiting.splice(0, opts.maxBatch - running.length);
        prefill(joining);
        for (const x of joining) {
          if (x.generated >= x.r.output) finish(x);
          else running.push(x);
        }
        continue;
      }
      if (running.length === 0) continue;
      decode(running, running);
      for (let i = running.length - 1; i >= 0; i--)
        if (running[i]!.generated >= running[i]!.r.output) finish(running.splice(i, 1)[0]!);
    }
  } else {
    while (results.length < order.length) {
      admitOrWait(false);
      const batch = waiting.splice(0, opts.maxBatch);
      prefill(batch);
      let active = batch.filter((x) => x.generated < x.r.output);
      for (const x of batch) if (x.generated >= x.r.output) finish(x);
      while (active.length > 0) {
        // The batch keeps its shape: finished sequences still occupy their slots.
        decode(batch, active);
        for (const x of active) if (x.generated >= x.r.output) finish(x);
        active = active.filter((x) => x.generated < x.r.output);
      }
    }
  }
  results.sort((a, b) => a.id - b.id);
  return {
    requests: results,
    prefillSteps,
    decodeSteps,
    meanBatch: decodeSteps > 0 ? batchSum / decodeSteps : 0,
    makespan: Math.max(0, ...results.map((r) => r.finish)) - start,
  };
}

/** Nearest-rank percentile (p in 0..100) of values; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export interface ServeMetrics {
  readonly requests: number;
  readonly tokens: number;
  readonly makespan: number;
  readonly tokens_per_second: number;
  readonly requests_per_second: number;
  readonly ttft: { readonly p50: number; readonly p90: number; readonly p99: number; readonly mean: number };
  readonly tbt: { readonly p50: number; readonly p90: number; readonly p99: number; readonly mean: number };
  readonly prefill_steps: number;
  readonly decode_steps: number;
  readonly mean_batch: number;
}

const summary = (xs: readonly number[]) => ({
  p50: percentile(xs, 50),
  p90: percentile(xs, 90),
  p99: percentile(xs, 99),
  mean: xs.length > 0 ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN,
});

export function metrics(trace: readonly Request[], r: ServeResult): ServeMetrics {
  const tokens = trace.reduce((s, q) => s + q.output, 0);
  return {
    requests: trace.length,
    tokens,
    makespan: r.makespan,
    tokens_per_second: r.makespan > 0 ? tokens / r.makespan : 0,
    requests_per_second: r.makespan > 0 ? trace.length / r.makespan : 0,
    ttft: summary(r.requests.map((q) => q.firstToken - q.arrival)),
    tbt: summary(r.requests.flatMap((q) => q.tbt)),
    prefill_steps: r.prefillSteps,
    decode_steps: r.decodeSteps,
    mean_batch: r.meanBatch,
  };
}
