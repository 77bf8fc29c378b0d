// AdamW over a model's parameters (PyTorch's update, decoupled weight decay),
// with global gradient-norm clipping, and the learning-rate schedules trainers
// use: constant, linear and cosine, each with linear warm-up.
import { native, type NativeAdamW, type NativeProcessGroup } from '../native.js'
import { Tensor } from '../tensor.js'
import { booleanOption, checkKeys, choiceOption, describe, numberOption, rangedOption } from '../util/options.js'
import type { Model } from './model.js'

export interface AdamWOptions {
  /** Default 1e-3. */
  lr?: number
  /** Default [0.9, 0.999]. */
  betas?: [number, number]
  /** Default 1e-8. */
  eps?: number
  /** Decoupled weight decay. Default 0.01. */
  weightDecay?: number
  /** Which parameters decay; default: matrices other than embeddings (no norms, biases, embeddings). */
  decay?: (name: string, defaultDecay: boolean) => boolean
}

export interface StepOptions {
  /** This step's learning rate (from a schedule); default the optimizer's lr. */
  lr?: number
  /** Clip the global gradient norm to this first; 0 or undefined: no clipping. */
  maxGradNorm?: number
  /** Clear the model's gradients after the update (as zeroGrad() would, in the same native call). Default false. */
  zeroGrad?: boolean
}

export interface AdamWState {
  step: number
  m: Tensor
  v: Tensor
}

export class AdamW {
  readonly model: Model
  readonly lr: number
  readonly betas: [number, number]
  readonly eps: number
  readonly weightDecay: number
  /** Steps taken so far. */
  stepCount = 0
  // The native optimizer owns the moments and the decay ranges (set once).
  // #moments() gives views of its host copy of the buffer's [begin, end),
  // allocated when first asked for (sharded first, a rank never holds the
  // whole model's) and, on a cuda model, brought up to date from the device
  // by each call (the moments live there between steps).
  readonly #native: NativeAdamW
  // Set by shardOver: steps go through the group, on every rank alike (a shard may be empty, or all of a tiny model).
  #shardedOver = false

  constructor(model: Model, options: AdamWOptions = {}) {
    const where = 'AdamW'
    if (model === null || typeof model !== 'object' || typeof (model as { parameters?: unknown }).parameters !== 'function') {
      throw new TypeError(`${where}: model must be a Model (Model.create or Model.load); got ${describe(model)}`)
    }
    checkKeys(where, options, ['lr', 'betas', 'eps', 'weightDecay', 'decay'])
    this.model = model
    this.lr = rangedOption(where, 'lr', options.lr, 1e-3, { min: 0 })
    const betas = options.betas ?? [0.9, 0.999]
    if (!Array.isArray(betas) || betas.length !== 2 || !betas.every((b) => typeof b === 'number' && b >= 0 && b < 1)) {
      throw new RangeError(`${where}: betas must be two numbers in [0, 1); got ${JSON.stringify(betas)}`)
    }
    this.betas = [betas[0], betas[1]]
    this.eps = rangedOption(where, 'eps', options.eps, 1e-8, { min: 0, minExclusive: true })
    this.weightDecay = rangedOption(where, 'weightDecay', options.weightDecay, 0.01, { min: 0 })
    const decide = options.decay ?? ((_: string, d: boolean) => d)
    const decay = model.parameters().map((p) => decide(p.name, p.decay))
    this.#native = new native.NativeAdamW(model.nativeModel, { beta1: this.betas[0], beta2: this.betas[1], eps: this.eps, weightDecay: this.weightDecay, decay })
  }

  #moments(): { m: Tensor; v: Tensor; begin: number; end: number } {
    const { m, v, begin, end } = this.#native.moments()
    return { m: new Tensor(m), v: new Tensor(v), begin, end }
  }

  /**
   * Clips (optionally), then applies one AdamW update from the accumulated
   * gradients. It is an operation of the model: it runs after the model's
   * operations called before it (a save called after it sees the update).
   */
  async step(options: StepOptions = {}): Promise<{ gradNorm: number; lr: number }> {
    const where = 'AdamW.step'
    checkKeys(where, options, ['lr', 'maxGradNorm', 'zeroGrad'])
    // A NaN, infinite or negative rate would turn every parameter into NaN or garbage.
    const lr = rangedOption(where, 'lr', options.lr, this.lr, { min: 0 })
    const maxGradNorm = rangedOption(where, 'maxGradNorm', options.maxGradNorm, 0, { min: 0 })
    const zeroGrad = booleanOption(where, 'zeroGrad', options.zeroGrad, false)
    return this.model.enqueue(where, async () => {
      const gradNorm = await this.model.nativeModel.adamwStep(this.#native, this.stepCount + 1, lr, maxGradNorm, zeroGrad)
      this.stepCount++
      return { gradNorm, lr }
    })
  }

  /** Whether this optimizer is sharded over a process group (ZeRO-1): each rank holds the moments of its shard only. */
  get sharded(): boolean {
    return this.#shardedOver
  }

  /**
   * The optimizer's state, for checkpoints: the moments are views of the
   * optimizer's host copy (on a cuda model brought up to date from the device
   * by this call; writes to them reach the device at the next step).
   */
  state(): AdamWState {
    if (this.sharded) {
      throw new Error('AdamW.state: this optimizer holds only its ZeRO-1 shard of the moments; gather them on every rank (optimizerState from \'rlfarm/internal\')')
    }
    this.model.checkIdle('AdamW.state', { besideWeightReaders: true }) // a step called before this must land first
    const { m, v } = this.#moments()
    return { step: this.stepCount, m, v }
  }

  /**
   * @internal This rank's moments: views of the buffer's [begin, end), padded
   * with zeros to the size every rank's shard has.
   */
  shardState(): { step: number; m: Tensor; v: Tensor; begin: number; end: number } {
    this.model.checkIdle('AdamW.shardState', { besideWeightReaders: true })
    return { step: this.stepCount, ...this.#moments() }
  }

  /**
   * @internal ZeRO-1 from now on: keeps the moments of this rank's shard of
   * the group (what it held there stays); each step then reduce-scatters the
   * gradients (they must not be all-reduced before it), updates the shard and
   * all-gathers the parameters.
   */
  shardOver(group: NativeProcessGroup): void {
    this.model.checkIdle('AdamW.shard')
    this.#native.shard(group)
    this.#shardedOver = true
  }

  /** Restores a state saved by state() (the whole model's moments; a sharded optimizer keeps its shard of them). */
  loadState(state: AdamWState): void {
    this.model.checkIdle('AdamW.loadState')
    const total = this.model.parameterCount
    for (const [name, t] of [['m', state.m], ['v', state.v]] as const) {
      if (!(t instanceof Tensor) || t.dtype !== 'f32' || t.numel !== total) {
        const got = t instanceof Tensor ? `${t.dtype} of ${t.numel}` : describe(t)
        throw new Error(`AdamW.loadState: ${name} must be an f32 tensor of ${total} elements (this model's parameters); got ${got}`)
      }
    }
    if (!Number.isInteger(state.step) || state.step < 0) throw new Error(`AdamW.loadState: step must be a non-negative integer`)
    const { m, v, begin, end } = this.#moments()
    // Damaged moments would turn every weight they touch into NaN at the next step: refuse them here.
    const given = { m: (state.m.data as Float32Array).subarray(begin, end), v: (state.v.data as Float32Array).subarray(begin, end) }
    for (const [name, values] of Object.entries(given)) {
      for (let i = 0; i < values.length; i++) {
        const x = values[i]
        if (!Number.isFinite(x) || (name === 'v' && x < 0)) {
          throw new Error(`AdamW.loadState: ${name}[${begin + i}] is ${x}; ${name === 'v' ? 'the second moment must be finite and >= 0' : 'the first moment must be finite'} (a damaged optimizer state)`)
        }
      }
    }
    ;(m.data as Float32Array).set(given.m)
    ;(v.data as Float32Array).set(given.v)
    this.stepCount = state.step
  }
}

export type ScheduleKind = 'constant' | 'linear' | 'cosine'

export interface Schedule {
  kind?: ScheduleKind
  /** Peak learning rate. */
  lr: number
  /** Linear warm-up from 0 over this many steps. Default 0. */
  warmupSteps?: number
  /** Steps in the run (linear and cosine decay reach minLr there). */
  totalSteps?: number
  /** The floor of the decay. Default 0. */
  minLr?: number
}

/** The learning rate at `step` (counting from 0), as Hugging Face's schedulers give it. */
export function learningRate(schedule: Schedule, step: number): number {
  const where = 'learningRate'
  if (schedule === null || typeof schedule !== 'object') throw new TypeError(`${where}: schedule must be an object { kind, lr, warmupSteps, totalSteps, minLr }; got ${describe(schedule)}`)
  checkKeys(where, schedule, ['kind', 'lr', 'warmupSteps', 'totalSteps', 'minLr'])
  const kind = choiceOption(where, 'kind', schedule.kind, ['constant', 'linear', 'cosine'] as const, 'constant')
  if (schedule.lr === undefined) throw new TypeError(`${where}: lr (the peak learning rate) is required`)
  const peak = rangedOption(where, 'lr', schedule.lr, NaN, { min: 0 })
  const warmup = rangedOption(where, 'warmupSteps', schedule.warmupSteps, 0, { min: 0, integer: true })
  const minLr = rangedOption(where, 'minLr', schedule.minLr, 0, { min: 0 })
  if (!Number.isFinite(step) || step < 0) throw new RangeError(`${where}: step must be a finite number >= 0; got ${step}`)
  if (step < warmup) return (peak * step) / Math.max(1, warmup)
  if (kind === 'constant') return peak
  const total = rangedOption(where, 'totalSteps', schedule.totalSteps, NaN, { min: 0 })
  if (!(total > warmup)) throw new RangeError(`${where}: totalSteps must be more than warmupSteps for a ${kind} schedule`)
  const progress = Math.min(1, (step - warmup) / (total - warmup))
  const factor = kind === 'linear' ? 1 - progress : 0.5 * (1 + Math.cos(Math.PI * progress))
  return minLr + (peak - minLr) * factor
}
