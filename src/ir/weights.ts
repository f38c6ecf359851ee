/**
 * The constant table: weight tensors by constant name, loaded lazily (a real checkpoint is only read
 * when a tensor is needed) and cached. Passes that transform weights at build time (layout, fusion,
 * quantization) add their results with `define`/`set` on a fork, so the table of the model they
 * started from is never changed. Not part of the immer-managed module tree.
 */
import type { Tensor } from "./tensor.js";

export class WeightStore {
  private readonly cache = new Map<string, Tensor>();
  private readonly loaders = new Map<string, () => Tensor>();

  constructor(private readonly parent?: WeightStore) {}

  /** A copy-on-write child: reads fall through to this store, definitions stay in the child. */
  fork(): WeightStore {
    return new WeightStore(this);
  }

  /** Registers a lazy source for `name`. */
  define(name: string, load: () => Tensor): void {
    this.loaders.set(name, load);
    this.cache.delete(name);
  }

  set(name: string, t: Tensor): void {
    this.cache.set(name, t);
    this.loaders.delete(name);
  }

  has(name: string): boolean {
    return this.cache.has(name) || this.loaders.has(name) || (this.parent?.has(name) ?? false);
  }

  get(name: string): Tensor {
    let t = this.cache.get(name);
    if (t) return t;
    const load = this.loaders.get(name);
    if (!load) {
      if (this.parent) return this.parent.get(name);
      throw new Error(`no data for constant @${name}`);
    }
    t = load();
    this.cache.set(name, t);
    return t;
  }

  /**
   * The current data of `name` as a thunk, unaffected by later redefinitions of `name` (so a weight
   * can be redefined as a function of its previous value).
   */
  source(name: string): () => Tensor {
    const cached = this.cache.get(name);
    if (cached) return () => cached;
    const load = this.loaders.get(name);
    if (!load) {
      if (this.parent) return this.parent.source(name);
      throw new Error(`no data for constant @${name}`);
    }
    return () => this.cacheOf(name, load);
  }

  private cacheOf(name: string, load: () => Tensor): Tensor {
    // Still the current definition: cache it under its name; otherwise just load it.
    if (this.loaders.get(name) !== load) return load();
    return this.get(name);
  }

  names(): string[] {
    return [
      ...new Set([...(this.parent?.names() ?? []), ...this.cache.keys(), ...this.loaders.keys()]),
    ].sort();
  }
}
