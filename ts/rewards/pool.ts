// Worker threads for module reward functions: calls are queued to the first
// idle worker; a call that takes longer than the timeout ends its worker
// (terminate() stops even a synchronous infinite loop) and a fresh one takes
// its place.
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import type { RewardBatch } from './types.js'

/**
 * A call that failed: `timeout` when it ran past the limit, else the
 * function's throw (or a bad reply); `whole`: the failure is the whole
 * call's (a timeout, a result of the wrong shape), not one row's.
 */
export class CallError extends Error {
  constructor(
    message: string,
    readonly timeout: boolean,
    readonly whole = timeout,
  ) {
    super(message)
  }
}

interface Task {
  batch: RewardBatch
  args: Record<string, unknown>
  resolve: (values: unknown) => void
  reject: (err: Error) => void
}

interface Slot {
  worker: Worker
  ready: Promise<void>
  task?: Task & { id: number; timer: NodeJS.Timeout }
}

export class RewardWorkerPool {
  readonly #slots: Slot[] = []
  readonly #queue: Task[] = []
  #nextId = 0
  #closed = false
  #loadError: Error | undefined

  constructor(
    readonly file: string,
    readonly exportName: string | undefined,
    readonly what: string,
    readonly size: number,
    readonly timeoutMs: number,
  ) {
    for (let i = 0; i < size; i++) this.#slots.push(this.#spawn())
  }

  #spawn(): Slot {
    const worker = new Worker(path.join(__dirname, 'worker.js'), { workerData: { file: this.file, exportName: this.exportName, what: this.what } })
    worker.unref()
    const slot: Slot = { worker, ready: Promise.resolve() }
    slot.ready = new Promise((resolve, reject) => {
      worker.on('message', (m: { kind: string; id?: number; values?: unknown; error?: string }) => {
        if (m.kind === 'ready') return resolve()
        if (m.kind === 'load-error') {
          this.#loadError = new Error(m.error)
          reject(this.#loadError)
          this.#failAll(this.#loadError)
          return
        }
        const task = slot.task
        if (!task || task.id !== m.id) return
        clearTimeout(task.timer)
        slot.task = undefined
        if (m.kind === 'result') task.resolve(m.values)
        else task.reject(new CallError(m.error ?? 'failed', false))
        this.#pump()
      })
      worker.on('error', (err) => {
        const task = slot.task
        slot.task = undefined
        reject(err)
        if (task) {
          clearTimeout(task.timer)
          task.reject(new CallError(`its worker failed: ${err.message}`, false))
        }
        this.#replace(slot)
      })
    })
    slot.ready.catch(() => {})
    return slot
  }

  #replace(slot: Slot): void {
    if (this.#closed) return
    void slot.worker.terminate()
    const i = this.#slots.indexOf(slot)
    if (i >= 0 && !this.#loadError) this.#slots[i] = this.#spawn()
    this.#pump()
  }

  #failAll(err: Error): void {
    for (const task of this.#queue.splice(0)) task.reject(err)
    for (const slot of this.#slots) {
      if (!slot.task) continue
      clearTimeout(slot.task.timer)
      slot.task.reject(err)
      slot.task = undefined
    }
  }

  #pump(): void {
    if (this.#closed) return
    for (const slot of this.#slots) {
      if (slot.task || this.#queue.length === 0) continue
      const task = this.#queue.shift()!
      const id = this.#nextId++
      const timer = setTimeout(() => {
        if (slot.task?.id !== id) return
        slot.task = undefined
        task.reject(new CallError(`timed out after ${this.timeoutMs / 1000} s (reward.timeout); its worker was ended`, true))
        this.#replace(slot)
      }, this.timeoutMs)
      slot.task = { ...task, id, timer }
      slot.worker.postMessage({ id, batch: task.batch, args: task.args })
    }
  }

  /** Resolves once a worker has loaded the module; rejects with the module's load error. */
  async ready(): Promise<void> {
    await Promise.race(this.#slots.map((s) => s.ready))
  }

  /**
   * Runs a batch in up to `size` workers at once: split into that many
   * contiguous parts, one call each, their values put back in order. A part
   * whose result is not an array of its length fails the whole call.
   */
  async callSplit(batch: RewardBatch, args: Record<string, unknown>): Promise<unknown> {
    const n = batch.completions.length
    const parts = Math.max(1, Math.min(this.size, n))
    if (parts === 1) return this.call(batch, args)
    const bounds = Array.from({ length: parts + 1 }, (_, k) => Math.round((k * n) / parts))
    const results = await Promise.all(
      bounds.slice(0, -1).map((start, k) => {
        const end = bounds[k + 1]
        const part: RewardBatch = {
          prompts: batch.prompts.slice(start, end),
          completions: batch.completions.slice(start, end),
          completionIds: batch.completionIds.slice(start, end),
          rows: batch.rows.slice(start, end),
          step: batch.step,
        }
        return this.call(part, args).then((values) => {
          if (!Array.isArray(values) || values.length !== end - start) {
            const got = Array.isArray(values) ? `${values.length} values` : `${values === null ? 'null' : typeof values}`
            throw new CallError(`returned ${got} for rows ${start}-${end - 1} (one worker's part of the batch, ${end - start} completions); expected an array of one number (or null) per completion`, false, true)
          }
          return values as unknown[]
        })
      }),
    )
    return results.flat()
  }

  /** Runs one call in the first idle worker; rejects with a CallError (or the module's load error). */
  async call(batch: RewardBatch, args: Record<string, unknown>): Promise<unknown> {
    if (this.#closed) throw new Error(`${this.what}: its workers are closed`)
    if (this.#loadError) throw this.#loadError
    // The first call waits for a worker to load the module, so a load error surfaces as itself.
    await this.ready()
    return new Promise((resolve, reject) => {
      this.#queue.push({ batch, args, resolve, reject })
      this.#pump()
    })
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#failAll(new Error(`${this.what}: its workers were closed`))
    await Promise.all(this.#slots.map((s) => s.worker.terminate()))
  }
}
