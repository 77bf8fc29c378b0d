// The checked arguments of the ops that other entry points share: a model
// forward computes PPO's and the value loss in its own call (ppoLoss,
// valueLoss) and passes their inputs as ops.ppoPolicyLoss and ops.valueLoss
// do, so one function checks them for both. Internal: ops.ts is the public
// face of these options and results.
import type { NativePpoLossArgs, NativePpoLossResult, NativeTensorHandle, NativeValueLossArgs, NativeValueLossResult, PpoLossStats } from './native.js'
import { Tensor } from './tensor.js'
import { choiceOption, describe, numberOption } from './util/options.js'

/** A tensor argument's handle; `where` names the call in errors (e.g. 'ops.gae', 'model.forward'). */
export function handleAt(where: string, name: string, t: unknown): NativeTensorHandle {
  if (t instanceof Tensor) {
    if (t.disposed) throw new Error(`${where}: ${name} was disposed`)
    return t.native
  }
  throw new TypeError(`${where}: ${name} must be a Tensor; got ${describe(t)}`)
}

export function wrap(h: NativeTensorHandle): Tensor {
  return new Tensor(h)
}

/** The mask to use: the given one, or all ones shaped like `like` on its device. */
export function maskAt(where: string, mask: Tensor | undefined, like: Tensor, names = { mask: 'mask', like: 'input' }): NativeTensorHandle {
  if (mask !== undefined && mask !== null) return handleAt(where, names.mask, mask)
  if (!(like instanceof Tensor)) return handleAt(where, names.like, like)
  return Tensor.full(like.shape, 1, { dtype: 'u8', device: like.device as 'cpu' }).native
}

export type Aggregate = 'token-mean' | 'seq-mean'

export interface PpoPolicyLossOptions {
  /** Lower clip: ratios below 1 - clipLow are clipped. Default 0.2. */
  clipLow?: number
  /** Upper clip: ratios above 1 + clipHigh are clipped. Default clipLow. */
  clipHigh?: number
  /** Dual clip c > 1: for A < 0 the loss is at most -c A. Default off. */
  dualClip?: number
  /** Mean over all tokens, or over sequences of their token means. Default token-mean. */
  aggregate?: Aggregate
  /** Multiplies the gradient (not the loss): e.g. a data-parallel rank's share of the minibatch. Default 1. */
  gradScale?: number
  /** The policy's entropy [B, T] (from the same forward), measured only: its masked mean comes back as `entropy`. */
  entropy?: Tensor
}

export interface PpoPolicyLossResult extends PpoLossStats {
  /** d loss / d logp, [B, T]. */
  grad: Tensor
}

/**
 * ppoPolicyLoss's checked arguments after logp: ops.ppoPolicyLoss and a model
 * forward's ppoLoss (which computes it in the same native call) share them.
 * `where` and `prefix` name the arguments in errors ('model.forward',
 * 'ppoLoss.'); without a mask, one shaped like `like` (logp, or oldLogp where
 * logp is yet to come).
 */
export function ppoPolicyLossArgs(
  where: string,
  prefix: string,
  oldLogp: Tensor,
  advantages: Tensor,
  mask: Tensor | undefined,
  like: Tensor,
  options: Omit<PpoPolicyLossOptions, 'entropy'>,
): NativePpoLossArgs {
  const clipLow = numberOption(where, `${prefix}clipLow`, options.clipLow, 0.2)
  return [
    handleAt(where, `${prefix}oldLogp`, oldLogp),
    handleAt(where, `${prefix}advantages`, advantages),
    maskAt(where, mask, like, { mask: `${prefix}mask`, like: prefix ? `${prefix}oldLogp` : 'logp' }),
    clipLow,
    numberOption(where, `${prefix}clipHigh`, options.clipHigh, clipLow),
    numberOption(where, `${prefix}dualClip`, options.dualClip, 0),
    choiceOption(where, `${prefix}aggregate`, options.aggregate, ['token-mean', 'seq-mean'] as const, 'token-mean'),
    gradScaleOption(where, options.gradScale, `${prefix}gradScale`),
  ]
}

export function ppoPolicyLossResult(r: NativePpoLossResult): PpoPolicyLossResult {
  return { ...r, grad: wrap(r.grad) }
}

export interface ValueLossOptions {
  /** Value clip epsilon; null turns clipping off. Default 0.2 (as TRL). */
  clip?: number | null
  /** Multiplies the gradient (not the loss): e.g. the value coefficient. Default 1. */
  gradScale?: number
}

/** A finite gradient multiplier. */
export function gradScaleOption(where: string, value: unknown, name = 'gradScale'): number {
  const scale = numberOption(where, name, value, 1)
  if (!Number.isFinite(scale)) throw new RangeError(`${where}: ${name} must be a finite number; got ${scale}`)
  return scale
}

export interface ValueLossResult {
  loss: number
  /** d loss / d values, shaped like the values. */
  grad: Tensor
  /** Share of tokens where the clipped term was the larger. */
  clipFraction: number
}

/** valueLoss's checked arguments after values, shared with a model forward's valueLoss (as ppoPolicyLossArgs). */
export function valueLossArgs(
  where: string,
  prefix: string,
  oldValues: Tensor,
  returns: Tensor,
  mask: Tensor | undefined,
  like: Tensor,
  options: ValueLossOptions,
): NativeValueLossArgs {
  const clip = options.clip === null ? -1 : numberOption(where, `${prefix}clip`, options.clip, 0.2)
  // NaN compares false with everything: only a finite clip >= 0 passes.
  if (options.clip !== null && !(Number.isFinite(clip) && clip >= 0)) throw new RangeError(`${where}: ${prefix}clip must be >= 0 (or null for no clipping); got ${clip}`)
  return [
    handleAt(where, `${prefix}oldValues`, oldValues),
    handleAt(where, `${prefix}returns`, returns),
    maskAt(where, mask, like, { mask: `${prefix}mask`, like: prefix ? `${prefix}oldValues` : 'values' }),
    clip,
    gradScaleOption(where, options.gradScale, `${prefix}gradScale`),
  ]
}

export function valueLossResult(r: NativeValueLossResult): ValueLossResult {
  return { ...r, grad: wrap(r.grad) }
}
