// The RLHF ops: log-probs and entropy, GAE, whitening, KL penalties, PPO and
// value losses, the DPO family and the reward-model loss. Each runs natively on
// the device of its inputs (CPU or CUDA); formulas and their sources in
// docs/math.md and in the doc of each function below. Also matmul, the CPU
// matrix multiply exposed for its tests and benchmark.
//
// Losses return the loss and metrics as numbers and gradients as tensors; the
// gradients are of the returned (mean) loss. Masks are f32, i32 or u8 tensors
// whose nonzero entries mark the tokens that count; omitted, every token counts.
import { native, type NativeTensorHandle } from './native.js'
import {
  gradScaleOption,
  handleAt,
  maskAt,
  ppoPolicyLossArgs,
  ppoPolicyLossResult,
  valueLossArgs,
  valueLossResult,
  wrap,
  type PpoPolicyLossOptions,
  type PpoPolicyLossResult,
  type ValueLossOptions,
  type ValueLossResult,
} from './op-args.js'
import { Tensor } from './tensor.js'
import { booleanOption, checkKeys, choiceOption, describe, numberOption } from './util/options.js'

export type { Aggregate, PpoPolicyLossOptions, PpoPolicyLossResult, ValueLossOptions, ValueLossResult } from './op-args.js'

function handle(op: string, name: string, t: unknown): NativeTensorHandle {
  return handleAt(`ops.${op}`, name, t)
}

function optionalHandle(op: string, name: string, t: unknown): NativeTensorHandle | undefined {
  return t === undefined || t === null ? undefined : handle(op, name, t)
}

/** The mask to use: the given one, or all ones shaped like `like` on its device. */
function maskFor(op: string, mask: Tensor | undefined, like: Tensor): NativeTensorHandle {
  return maskAt(`ops.${op}`, mask, like)
}

export interface LogprobsOptions {
  /** Softmax temperature T: log-probs of softmax(z / T). Default 1. */
  temperature?: number
  /** Also return the entropy of softmax(z / T) per row. Default false. */
  entropy?: boolean
}

/**
 * Log-probability of each target under softmax(logits / T), in one pass with
 * an online log-sum-exp (the softmax is never stored).
 * logits [..., V] f32 or bf16; targets [...] i32 in [0, V) -> logp [...] f32.
 */
export function logprobs(logits: Tensor, targets: Tensor, options: LogprobsOptions = {}): { logp: Tensor; entropy?: Tensor } {
  const op = 'logprobs'
  checkKeys(`ops.${op}`, options, ['temperature', 'entropy'])
  const r = native.ops.logprobs(
    handle(op, 'logits', logits),
    handle(op, 'targets', targets),
    numberOption(`ops.${op}`, 'temperature', options.temperature, 1),
    booleanOption(`ops.${op}`, 'entropy', options.entropy, false),
  )
  return r.entropy ? { logp: wrap(r.logp), entropy: wrap(r.entropy) } : { logp: wrap(r.logp) }
}

export interface LogprobsBackwardOptions {
  temperature?: number
  /** Gradient with respect to the entropy of each row, [...] f32. */
  gradEntropy?: Tensor
}

/**
 * d(loss)/d(logits) given d(loss)/d(logp) (and optionally d(loss)/d(entropy)):
 * (g (1[j=y] - p_j) - gH p_j (log p_j + H)) / T. Shaped and typed as logits.
 * gradLogp may be null when only gradEntropy is given.
 */
export function logprobsBackward(
  logits: Tensor,
  targets: Tensor,
  gradLogp: Tensor | null,
  options: LogprobsBackwardOptions = {},
): Tensor {
  const op = 'logprobsBackward'
  checkKeys(`ops.${op}`, options, ['temperature', 'gradEntropy'])
  return wrap(
    native.ops.logprobsBackward(
      handle(op, 'logits', logits),
      handle(op, 'targets', targets),
      optionalHandle(op, 'gradLogp', gradLogp),
      optionalHandle(op, 'gradEntropy', options.gradEntropy),
      numberOption(`ops.${op}`, 'temperature', options.temperature, 1),
    ),
  )
}

export interface GaeOptions {
  /** Discount. Default 1 (as TRL). */
  gamma?: number
  /** GAE lambda. Default 0.95 (as TRL). */
  lambda?: number
}

/**
 * Generalised advantage estimation over [B, T] rewards and values:
 * delta_t = r_t + gamma V_{t+1} m_{t+1} - V_t, A_t = delta_t + gamma lambda A_{t+1},
 * returns R_t = A_t + V_t. Masked tokens get 0 and end the recursion.
 */
export function gae(rewards: Tensor, values: Tensor, mask?: Tensor, options: GaeOptions = {}): { advantages: Tensor; returns: Tensor } {
  const op = 'gae'
  checkKeys(`ops.${op}`, options, ['gamma', 'lambda'])
  const r = native.ops.gae(
    handle(op, 'rewards', rewards),
    handle(op, 'values', values),
    maskFor(op, mask, rewards),
    numberOption(`ops.${op}`, 'gamma', options.gamma, 1),
    numberOption(`ops.${op}`, 'lambda', options.lambda, 0.95),
  )
  return { advantages: wrap(r.advantages), returns: wrap(r.returns) }
}

export interface WhitenOptions {
  /** Keep the result centred (default true); false adds the mean back. */
  shiftMean?: boolean
}

/**
 * (x - mean) / sqrt(var + 1e-8) over the masked tokens of the whole tensor,
 * with the unbiased variance (as TRL's masked_whiten). Masked tokens get 0.
 */
export function whiten(x: Tensor, mask?: Tensor, options: WhitenOptions = {}): Tensor {
  const op = 'whiten'
  checkKeys(`ops.${op}`, options, ['shiftMean'])
  return wrap(
    native.ops.whiten(handle(op, 'x', x), maskFor(op, mask, x), booleanOption(`ops.${op}`, 'shiftMean', options.shiftMean, true)),
  )
}

export type KlEstimator = 'k1' | 'k2' | 'k3'

export interface KlPenaltyOptions {
  /** k1 = l, k2 = l^2 / 2, k3 = e^-l - 1 + l with l = logp - refLogp. Default k1. */
  estimator?: KlEstimator
  /** Clamp each token's KL to [-clamp, clamp]; true means 10. Default none. */
  clamp?: number | boolean
}

function klArgs(op: string, options: KlPenaltyOptions): [KlEstimator, number] {
  checkKeys(`ops.${op}`, options, ['estimator', 'clamp'])
  const estimator = choiceOption(`ops.${op}`, 'estimator', options.estimator, ['k1', 'k2', 'k3'] as const, 'k1')
  let clamp = 0
  if (options.clamp === true) clamp = 10
  else if (options.clamp !== undefined && options.clamp !== false) clamp = numberOption(`ops.${op}`, 'clamp', options.clamp, 0)
  return [estimator, clamp]
}

/** Per-token KL estimate between the policy and the reference; masked tokens get 0. */
export function klPenalty(logp: Tensor, refLogp: Tensor, mask?: Tensor, options: KlPenaltyOptions = {}): Tensor {
  const op = 'klPenalty'
  const [estimator, clamp] = klArgs(op, options)
  return wrap(native.ops.klPenalty(handle(op, 'logp', logp), handle(op, 'refLogp', refLogp), maskFor(op, mask, logp), estimator, clamp))
}

/**
 * d klPenalty / d logp per token (k1: 1, k2: l, k3: 1 - e^-l), 0 for masked
 * tokens and where a clamp holds the estimate constant: the gradient of a KL
 * term added to a loss (GRPO).
 */
export function klPenaltyGrad(logp: Tensor, refLogp: Tensor, mask?: Tensor, options: KlPenaltyOptions = {}): Tensor {
  const op = 'klPenaltyGrad'
  const [estimator, clamp] = klArgs(op, options)
  return wrap(native.ops.klPenaltyGrad(handle(op, 'logp', logp), handle(op, 'refLogp', refLogp), maskFor(op, mask, logp), estimator, clamp))
}

export interface ShapeRewardsOptions extends KlPenaltyOptions {
  /** beta of the KL penalty. Required. */
  klCoef?: number
}

/**
 * PPO's per-token rewards in one call (Ziegler et al. 2019; docs/math.md,
 * "Reward shaping"): kl = klPenalty(logp, refLogp, mask) and
 * rewards = -klCoef * kl, plus each row's score at the position where lastMask
 * is nonzero. logp, refLogp, mask, lastMask [B, T] (lastMask of mask's dtype),
 * scores [B] f32. Equal, bit for bit, to
 * add(kl, broadcastRows(scores, lastMask), { alpha: -klCoef }).
 */
export function shapeRewards(
  logp: Tensor,
  refLogp: Tensor,
  mask: Tensor,
  scores: Tensor,
  lastMask: Tensor,
  options: ShapeRewardsOptions = {},
): { kl: Tensor; rewards: Tensor } {
  const op = 'shapeRewards'
  const { klCoef, ...klOptions } = options
  if (typeof klCoef !== 'number') throw new TypeError(`ops.${op}: klCoef is required (a number); got ${describe(klCoef)}`)
  const [estimator, clamp] = klArgs(op, klOptions)
  const r = native.ops.shapeRewards(
    handle(op, 'logp', logp),
    handle(op, 'refLogp', refLogp),
    handle(op, 'mask', mask),
    handle(op, 'scores', scores),
    handle(op, 'lastMask', lastMask),
    klCoef,
    estimator,
    clamp,
  )
  return { kl: wrap(r.kl), rewards: wrap(r.rewards) }
}

/** alpha * a + beta * b element-wise (b omitted: alpha * a); f32 tensors of one shape. */
export function add(a: Tensor, b?: Tensor, options: { alpha?: number; beta?: number } = {}): Tensor {
  const op = 'add'
  checkKeys(`ops.${op}`, options, ['alpha', 'beta'])
  return wrap(
    native.ops.add(handle(op, 'a', a), optionalHandle(op, 'b', b), numberOption(`ops.${op}`, 'alpha', options.alpha, 1), numberOption(`ops.${op}`, 'beta', options.beta, 1)),
  )
}

/** a * b element-wise. */
export function mul(a: Tensor, b: Tensor): Tensor {
  return wrap(native.ops.mul(handle('mul', 'a', a), handle('mul', 'b', b)))
}

/** x [..., T] -> [...]: the sum over the last dimension of the entries where mask is nonzero (all, without a mask). */
export function rowSum(x: Tensor, mask?: Tensor): Tensor {
  return wrap(native.ops.rowSum(handle('rowSum', 'x', x), optionalHandle('rowSum', 'mask', mask)))
}

/** values [...] and mask [..., T] -> [..., T]: each row's value where the mask is nonzero, else 0. */
export function broadcastRows(values: Tensor, mask: Tensor): Tensor {
  return wrap(native.ops.broadcastRows(handle('broadcastRows', 'values', values), handle('broadcastRows', 'mask', mask)))
}

/**
 * Rows `rows` of each tensor ([B, ...] -> [rows.length, ...]), copied, in one
 * call: a minibatch of a rollout's tensors. Each row index must be inside
 * every tensor.
 */
export function selectRows(tensors: readonly Tensor[], rows: readonly number[] | Int32Array): Tensor[] {
  if (!Array.isArray(tensors)) throw new TypeError(`ops.selectRows: tensors must be an array of Tensors; got ${describe(tensors)}`)
  const handles = tensors.map((t, i) => handle('selectRows', `tensors[${i}]`, t))
  const picked = rows instanceof Int32Array ? rows : Array.isArray(rows) ? rowIndices(rows) : undefined
  if (!picked) throw new TypeError(`ops.selectRows: rows must be an array of row indices or an Int32Array; got ${describe(rows)}`)
  return native.ops.selectRows(handles, picked).map(wrap)
}

/** The rows of each tensor in turn ([B_i, ...] -> [sum of B_i, ...]), copied; one dtype, device and row shape. */
export function concat(tensors: readonly Tensor[]): Tensor {
  if (!Array.isArray(tensors)) throw new TypeError(`ops.concat: tensors must be an array of Tensors; got ${describe(tensors)}`)
  return wrap(native.ops.concat(tensors.map((t, i) => handle('concat', `tensors[${i}]`, t))))
}

/**
 * The sum of an f32 tensor's values as a number, added in order in double on
 * the tensor's device (the same number as summing its values in JavaScript):
 * one number comes back to the host, not the tensor.
 */
export function total(x: Tensor): number {
  return native.ops.total(handle('total', 'x', x))
}

function rowIndices(rows: readonly number[]): Int32Array {
  rows.forEach((r, i) => {
    if (!Number.isInteger(r) || r < 0 || r > 2 ** 31 - 1) throw new RangeError(`ops.selectRows: rows[${i}] must be a row index (an integer >= 0); got ${describe(r)}`)
  })
  return Int32Array.from(rows)
}

/**
 * Per row of f32 tensors shaped like `mask` [B, T]: the masked token count,
 * then for each x its masked sum and masked sum of squares, as [B, 1 + 2k]
 * (statistics a trainer logs, e.g. explained variance, in one call).
 */
export function rowMoments(xs: readonly Tensor[], mask: Tensor): Tensor {
  if (!Array.isArray(xs)) throw new TypeError(`ops.rowMoments: xs must be an array of Tensors; got ${describe(xs)}`)
  return wrap(native.ops.rowMoments(xs.map((x, i) => handle('rowMoments', `xs[${i}]`, x)), handle('rowMoments', 'mask', mask)))
}

/**
 * PPO's clipped surrogate: rho = exp(logp - oldLogp) (log-ratio clamped to +-20),
 * L = max(-A rho, -A clip(rho, 1 - clipLow, 1 + clipHigh)), and with a dual clip
 * min(L, -c A) where A < 0.
 */
export function ppoPolicyLoss(
  logp: Tensor,
  oldLogp: Tensor,
  advantages: Tensor,
  mask?: Tensor,
  options: PpoPolicyLossOptions = {},
): PpoPolicyLossResult {
  const op = 'ppoPolicyLoss'
  checkKeys(`ops.${op}`, options, ['clipLow', 'clipHigh', 'dualClip', 'aggregate', 'gradScale', 'entropy'])
  const r = native.ops.ppoPolicyLoss(
    handle(op, 'logp', logp),
    ...ppoPolicyLossArgs(`ops.${op}`, '', oldLogp, advantages, mask, logp, options),
    optionalHandle(op, 'entropy', options.entropy),
  )
  return ppoPolicyLossResult(r)
}

/** Clipped value loss, token mean of max((V - R)^2, (V_old + clip(V - V_old) - R)^2) / 2. */
export function valueLoss(
  values: Tensor,
  oldValues: Tensor,
  returns: Tensor,
  mask?: Tensor,
  options: ValueLossOptions = {},
): ValueLossResult {
  const op = 'valueLoss'
  checkKeys(`ops.${op}`, options, ['clip', 'gradScale'])
  return valueLossResult(native.ops.valueLoss(handle(op, 'values', values), ...valueLossArgs(`ops.${op}`, '', oldValues, returns, mask, values, options)))
}

export type DpoVariant =
  | 'sigmoid'
  | 'robust'
  | 'hinge'
  | 'ipo'
  | 'bco_pair'
  | 'sppo_hard'
  | 'nca_pair'
  | 'apo_zero'
  | 'simpo'

export const DPO_VARIANTS: readonly DpoVariant[] = [
  'sigmoid', 'robust', 'hinge', 'ipo', 'bco_pair', 'sppo_hard', 'nca_pair', 'apo_zero', 'simpo',
]

export interface DpoInputs {
  /** Sequence log-probs (sums over response tokens) under the policy, [B]. */
  policyChosen: Tensor
  policyRejected: Tensor
  /** Under the reference model; not needed with referenceFree or simpo. */
  refChosen?: Tensor
  refRejected?: Tensor
  /** Response lengths in tokens, [B] f32 or i32; needed by ipo and simpo. */
  chosenLength?: Tensor
  rejectedLength?: Tensor
}

export interface DpoOptions {
  /** Default 0.1. */
  beta?: number
  /** Default 'sigmoid' (with labelSmoothing > 0 it is cDPO). */
  variant?: DpoVariant
  /** Label smoothing epsilon for sigmoid (cDPO), robust and simpo. Default 0. */
  labelSmoothing?: number
  /** SimPO's target reward margin. Default 0.5. */
  gamma?: number
  /** Treat the reference log-probs as 0. Default false. */
  referenceFree?: boolean
  /**
   * Multiplies the gradients (not the loss), e.g. 1 / gradient-accumulation
   * steps: the same bits as multiplying the returned f32 gradients in double.
   * Default 1.
   */
  gradScale?: number
}

export interface DpoLossResult {
  /** Mean over the batch. */
  loss: number
  /** d loss / d policyChosen and d loss / d policyRejected (times gradScale), [B]. */
  gradChosen: Tensor
  gradRejected: Tensor
  /** Implicit rewards beta (logpi - logpi_ref) (length-normalised for ipo and simpo), [B]. */
  chosenReward: Tensor
  rejectedReward: Tensor
  /** Share of pairs whose chosen reward exceeds the rejected one. */
  accuracy: number
}

/** The DPO family of preference losses; formulas and sources in docs/math.md ("dpoLoss"). */
export function dpoLoss(inputs: DpoInputs, options: DpoOptions = {}): DpoLossResult {
  const op = 'dpoLoss'
  const where = `ops.${op}`
  checkKeys(where, options, ['beta', 'variant', 'labelSmoothing', 'gamma', 'referenceFree', 'gradScale'])
  if (inputs === null || typeof inputs !== 'object') throw new TypeError(`${where}: inputs must be an object of tensors`)
  const names = ['policyChosen', 'policyRejected', 'refChosen', 'refRejected', 'chosenLength', 'rejectedLength'] as const
  checkKeys(`${where} inputs`, inputs, names)
  const handles: Record<string, NativeTensorHandle | undefined> = {}
  for (const name of names) handles[name] = optionalHandle(op, name, inputs[name])
  const r = native.ops.dpoLoss(
    handles,
    choiceOption(where, 'variant', options.variant, DPO_VARIANTS, 'sigmoid'),
    numberOption(where, 'beta', options.beta, 0.1),
    numberOption(where, 'labelSmoothing', options.labelSmoothing, 0),
    numberOption(where, 'gamma', options.gamma, 0.5),
    booleanOption(where, 'referenceFree', options.referenceFree, false),
    gradScaleOption(where, options.gradScale),
  )
  return {
    loss: r.loss,
    gradChosen: wrap(r.gradChosen),
    gradRejected: wrap(r.gradRejected),
    chosenReward: wrap(r.chosenReward),
    rejectedReward: wrap(r.rejectedReward),
    accuracy: r.accuracy,
  }
}

export interface RewardLossOptions {
  /** Margin subtracted from r_c - r_r: one number, or a [B] tensor. Default 0. */
  margin?: number | Tensor
  /** Coefficient of mean((r_c + r_r)^2), which centres the rewards. Default 0. */
  centerCoef?: number
  /** Multiplies the gradients (not the loss), as dpoLoss's gradScale. Default 1. */
  gradScale?: number
}

/** Bradley-Terry reward-model loss: mean(-log sigmoid(r_c - r_r - margin)) + centerCoef mean((r_c + r_r)^2). */
export function rewardLoss(
  chosen: Tensor,
  rejected: Tensor,
  options: RewardLossOptions = {},
): { loss: number; gradChosen: Tensor; gradRejected: Tensor; accuracy: number } {
  const op = 'rewardLoss'
  const where = `ops.${op}`
  checkKeys(where, options, ['margin', 'centerCoef', 'gradScale'])
  const margin = options.margin instanceof Tensor ? options.margin.native : numberOption(where, 'margin', options.margin, 0)
  const r = native.ops.rewardLoss(
    handle(op, 'chosen', chosen),
    handle(op, 'rejected', rejected),
    margin,
    numberOption(where, 'centerCoef', options.centerCoef, 0),
    gradScaleOption(where, options.gradScale),
  )
  return { ...r, gradChosen: wrap(r.gradChosen), gradRejected: wrap(r.gradRejected) }
}

export interface MatmulOptions {
  /** Multiply by a^T (a stored [K, M]). Default false. */
  transA?: boolean
  /** Multiply by b^T (b stored [N, K]). Default false. */
  transB?: boolean
  /** Default 1. */
  alpha?: number
  /** Scale of c added to the product; needs c. Default 0 (c is then not read, NaN in it is ignored). */
  beta?: number
  /** The output: written in place and returned. Default a new [M, N] tensor. */
  c?: Tensor
  /**
   * f32 [N], added to every row after the product, as a Linear layer's bias
   * (2-D products only). The result equals the product followed by a separate
   * add, bit for bit; the builtin multiply adds it while the result is still in
   * registers.
   */
  bias?: Tensor
  /**
   * The product's sizes, by default those of op(a) and op(b). Given, they pick
   * the top-left blocks of a, b and c, whose row lengths then act as leading
   * dimensions: this is how a submatrix is multiplied.
   */
  m?: number
  n?: number
  k?: number
}

function sizeOption(where: string, name: string, value: unknown): number {
  if (value === undefined) return -1
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new TypeError(`${where}: ${name} must be an integer >= 0; got ${describe(value)}`)
  }
  return value
}

/**
 * c = alpha op(a) op(b) + beta c (+ bias), op(x) = x or x^T, on the tensors'
 * device: f32 CPU tensors with the CPU matrix multiply in use (see
 * setGemmBackend), or CUDA tensors with the CUDA engine's GEMM (a and b f32,
 * or bf16 for its tensor-core kernel; c and bias f32). a [M, K] (or [K, M] with
 * transA), b [K, N] (or [N, K] with transB); 3-D tensors [batch, rows, cols]
 * multiply a batch of matrices, a 2-D a or b then being shared by all of them.
 * For testing and benchmarking that multiply; models call it natively.
 */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const op = 'matmul'
  const where = `ops.${op}`
  checkKeys(where, options, ['transA', 'transB', 'alpha', 'beta', 'c', 'bias', 'm', 'n', 'k'])
  const c = optionalHandle(op, 'c', options.c)
  const bias = optionalHandle(op, 'bias', options.bias)
  const out = native.ops.matmul(
    handle(op, 'a', a),
    handle(op, 'b', b),
    booleanOption(where, 'transA', options.transA, false),
    booleanOption(where, 'transB', options.transB, false),
    numberOption(where, 'alpha', options.alpha, 1),
    numberOption(where, 'beta', options.beta, 0),
    c,
    sizeOption(where, 'm', options.m),
    sizeOption(where, 'n', options.n),
    sizeOption(where, 'k', options.k),
    bias,
  )
  return options.c ?? wrap(out)
}
