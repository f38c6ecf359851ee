/**
 * A progress bar on stderr for long commands (one tick per step, with a label of what runs), drawn
 * only when stderr is a terminal: otherwise every call is a no-op and nothing is written.
 */
import { Presets, SingleBar } from "cli-progress";

export interface Progress {
  /** Starts (or restarts) the bar for `total` steps. */
  start(total: number): void;
  /** Shows what runs now. */
  label(text: string): void;
  /** One step done; the last one removes the bar. */
  tick(): void;
  /** Removes the bar (safe to call more than once, or before `start`). */
  stop(): void;
}

/** Least milliseconds between two redraws on a step done. */
const DRAW_MS = 50;

const noop: Progress = { start() {}, label() {}, tick() {}, stop() {} };

/** A bar on `stream` (default stderr) when it is a TTY, else a no-op. */
export function progress(stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY) return noop;
  const bar = new SingleBar(
    {
      stream,
      format: "{bar} {value}/{total} {label}",
      barsize: 24,
      clearOnComplete: true,
      hideCursor: true,
      gracefulExit: true,
    },
    Presets.shades_classic,
  );
  let running = false;
  let done = 0;
  let total = 0;
  let text = "";
  let drawn = -Infinity;
  // The steps are synchronous work that blocks the bar's timer: draw on a new label, and on a step
  // done at most every DRAW_MS (a run of thousands of short steps would spend its time drawing).
  const draw = () => {
    bar.update(done, { label: text });
    bar.render();
    drawn = performance.now();
  };
  return {
    start(n) {
      if (running) bar.stop();
      done = 0;
      total = n;
      bar.start(n, 0, { label: text });
      running = true;
    },
    label(t) {
      text = t;
      if (running) draw();
    },
    tick() {
      done++;
      if (!running) return;
      if (done >= total) this.stop();
      else if (performance.now() - drawn >= DRAW_MS) draw();
    },
    stop() {
      if (running) bar.stop();
      running = false;
    },
  };
}
