/**
 * The constant table: weight tensors by constant name, loaded lazily (a real checkpoint is only read
 * when a tensor is needed) and cached. Passes that transform weights at build time (layout, fusion,
 * quantization) add their results with `set`. Not part of the immer-managed module tree.
 */
import type { Tensor } from "./tensor.js";

export class WeightStore {
  private readonly cache = new Map<string, Tensor>();
  private readonly loaders = new Map<string, () => Tensor>();

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
    return this.cache.has(name) || this.loaders.has(name);
  }

  get(name: string): Tensor {
    let t = this.cache.get(name);
    if (t) return t;
    const load = this.loaders.get(name);
    if (!load) throw new Error(`no data for constant @${name}`);
    t = load();
    this.cache.set(name, t);
    return t;
  }

  names(): string[] {
    return [...new Set([...this.cache.keys(), ...this.loaders.keys()])].sort();
  }
}
