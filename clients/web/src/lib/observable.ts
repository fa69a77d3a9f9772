/** A listener of an Emitter. */
export type Listener<A extends unknown[]> = (...args: A) => void;

/** A set of listeners; emit calls each, isolating their exceptions. */
export class Emitter<A extends unknown[]> {
  private listeners = new Set<Listener<A>>();

  /** Adds a listener; returns the function that removes it. */
  add(l: Listener<A>): () => void {
    // A wrapper, so that the same function added twice is called twice.
    const w: Listener<A> = (...a) => l(...a);
    this.listeners.add(w);
    return () => {
      this.listeners.delete(w);
    };
  }

  emit(...args: A): void {
    for (const l of [...this.listeners]) {
      try {
        l(...args);
      } catch (err) {
        // A listener's bug must not break the stream or other listeners.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  get size(): number {
    return this.listeners.size;
  }
}

/**
 * A tiny observable state container: an immutable snapshot, replaced on
 * every change, and listeners told after each change. It is what React's
 * useSyncExternalStore expects.
 */
export class Observable<S> {
  private state: S;
  private changed = new Emitter<[S, S]>();

  constructor(initial: S) {
    this.state = initial;
  }

  /** The current snapshot. */
  getState = (): S => this.state;

  /** Merges a partial state (or the result of fn) into a new snapshot. */
  protected setState(patch: Partial<S> | ((s: S) => Partial<S>)): void {
    const prev = this.state;
    const p = typeof patch === "function" ? patch(prev) : patch;
    let same = true;
    for (const k of Object.keys(p) as (keyof S)[]) {
      if (!Object.is(prev[k], p[k])) {
        same = false;
        break;
      }
    }
    if (same) return;
    this.state = { ...prev, ...p };
    this.changed.emit(this.state, prev);
  }

  /** Calls l after every change; returns the function that stops it. */
  subscribe = (l: (state: S, prev: S) => void): (() => void) => this.changed.add(l);
}
