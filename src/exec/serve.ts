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
 *
 * Admission control (`capacity`): a request joins only when the KV cache of its whole sequence
 * (prompt + output tokens, reserved at admission) fits beside the running requests' reservations;
 * otherwise it waits (first come, first served) until finished requests free memory. A request that
 * could never fit, alone, or whose sequence exceeds the model's positions, is rejected.
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
  readonly capacity?: {
    /** Cached tokens (over every running sequence) the memory holding the KV cache has room for. */
    readonly tokens: number;
    /** The model's positions: the most tokens one sequence may hold. */
    readonly positions?: number;
  };
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
  /** Requests that waited for KV-cache memory before joining. */
  readonly waited: number;
  /** Requests turned away: their sequence alone exceeds the KV-cache memory, or the model's positions. */
  readonly rejected: { readonly memory: readonly number[]; readonly positions: readonly number[] };
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
  const tokens = opts.capacity?.tokens ?? Infinity;
  const positions = opts.capacity?.positions ?? Infinity;
  const rejected = { memory: [] as number[], positions: [] as number[] };
  const order = trace
    .map((r, id) => ({ r, id }))
    .filter(({ r, id }) => {
      const n = r.prompt + r.output;
      if (n > positions) rejected.positions.push(id);
      else if (n > tokens) rejected.memory.push(id);
      else return true;
      return false;
    })
    .sort((a, b) => a.r.arrival - b.r.arrival || a.id - b.id);
  const results: RequestResult[] = [];
  /** Tokens reserved by the admitted requests, and the requests that had to wait for memory. */
  let reserved = 0;
  const waitedFor = new Set<number>();
  const need = (x: Live): number => x.r.prompt + x.r.output;
  /** The longest prefix of the waiting queue (up to `room` requests) whose reservations fit. */
  const take = (room: number): Live[] => {
    let n = 0;
    let sum = 0;
    while (n < Math.min(room, waiting.length) && reserved + sum + need(waiting[n]!) <= tokens)
      sum += need(waiting[n++]!);
    if (n < Math.min(room, waiting.length)) waitedFor.add(waiting[n]!.id);
    reserved += sum;
    return waiting.splice(0, n);
  };
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
  const finish = (x: Live) => {
    reserved -= need(x);
    // Pushed first: `onFinish?.(results.push(...))` would skip the push when there is no callback.
    const done = results.push({
      id: x.id,
      arrival: x.r.arrival,
      firstToken: x.firstToken,
      finish: x.last,
      tbt: x.tbt,
    });
    opts.onFinish?.(done);
  };
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
      const joining = running.length < opts.maxBatch ? take(opts.maxBatch - running.length) : [];
      if (joining.length > 0) {
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
      // Nothing runs between static batches: the head of the queue always fits (it was not rejected).
      const batch = take(opts.maxBatch);
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
    waited: waitedFor.size,
    rejected,
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
  /** Requests that waited for KV-cache memory, and those rejected (memory, positions). */
  readonly waited: number;
  readonly rejected_memory: number;
  readonly rejected_positions: number;
}

const summary = (xs: readonly number[]) => ({
  p50: percentile(xs, 50),
  p90: percentile(xs, 90),
  p99: percentile(xs, 99),
  mean: xs.length > 0 ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN,
});

export function metrics(trace: readonly Request[], r: ServeResult): ServeMetrics {
  // The requests served (rejected ones generate nothing).
  const tokens = r.requests.reduce((s, q) => s + trace[q.id]!.output, 0);
  return {
    requests: r.requests.length,
    tokens,
    makespan: r.makespan,
    tokens_per_second: r.makespan > 0 ? tokens / r.makespan : 0,
    requests_per_second: r.makespan > 0 ? r.requests.length / r.makespan : 0,
    ttft: summary(r.requests.map((q) => q.firstToken - q.arrival)),
    tbt: summary(r.requests.flatMap((q) => q.tbt)),
    prefill_steps: r.prefillSteps,
    decode_steps: r.decodeSteps,
    mean_batch: r.meanBatch,
    waited: r.waited,
    rejected_memory: r.rejected.memory.length,
    rejected_positions: r.rejected.positions.length,
  };
}
