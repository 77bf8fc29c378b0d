// One operation at a time per model, in call order. Async operations (forward,
// backward, generate, an optimizer step, save, loading weights, a checkpoint)
// wait for the ones called before them; a synchronous call that reads or
// changes the model while any is pending refuses with a "busy" error that names
// both, since it cannot wait and running it at once would break call order.

export class OperationQueue {
  #tail: Promise<unknown> = Promise.resolve()
  /** The operations called and not yet settled, oldest (the running one) first. */
  readonly #pending: { label: string; readsWeightsOnly: boolean }[] = []

  /**
   * Runs `operation` after every operation enqueued before it has settled
   * (fulfilled or rejected: a failure does not block the ones after it).
   */
  enqueue<T>(label: string, operation: () => T | Promise<T>, options: { readsWeightsOnly?: boolean } = {}): Promise<T> {
    this.#pending.push({ label, readsWeightsOnly: options.readsWeightsOnly ?? false })
    // Operations settle in the order they were enqueued, so the one settling is the oldest.
    const result = this.#tail.then(operation).finally(() => this.#pending.shift())
    this.#tail = result.catch(() => undefined)
    return result
  }

  /**
   * Throws when an operation is pending: `call` would otherwise interleave
   * with it, or run before operations called earlier. With
   * `besideWeightReaders` (a call that touches neither the weights nor the
   * optimizer state: zeroGrad, reading gradients), pending operations that only read those
   * (saves, checkpoints) do not count: running the call now changes nothing
   * they see.
   */
  checkIdle(call: string, options: { besideWeightReaders?: boolean } = {}): void {
    if (this.#pending.length === 0) return
    if (options.besideWeightReaders && this.#pending.every((p) => p.readsWeightsOnly)) return
    const waiting = this.#pending.length > 1 ? ` (and ${this.#pending.length - 1} more queued after it)` : ''
    throw new Error(`${call}: the model is busy with ${this.#pending[0].label}${waiting}; await it first (one operation at a time per model)`)
  }
}
