// Float64 reference implementations of the ops, written from the formulas in
// docs/math.md and independent of the native kernels: plain
// loops, no online tricks, a different (textbook) entropy formula. Losses come
// with analytic gradients, which test/reference.test.ts checks against finite
// differences of the loss.

export type Arr = ArrayLike<number>

export function logSumExp(xs: number[]): number {
  const m = Math.max(...xs)
  if (m === -Infinity) return -Infinity
  if (!Number.isFinite(m)) return NaN
  let s = 0
  for (const x of xs) s += Math.exp(x - m)
  return m + Math.log(s)
}

/** Row r of a flat [rows, vocab] array, scaled by 1/T. */
function scaledRow(logits: Arr, vocab: number, r: number, temperature: number): number[] {
  const row = new Array<number>(vocab)
  for (let j = 0; j < vocab; j++) row[j] = logits[r * vocab + j] / temperature
  return row
}

export function logprobsRef(
  logits: Arr,
  vocab: number,
  targets: Arr,
  temperature = 1,
): { logp: number[]; entropy: number[] } {
  const rows = targets.length
  const logp: number[] = []
  const entropy: number[] = []
  for (let r = 0; r < rows; r++) {
    const x = scaledRow(logits, vocab, r, temperature)
    const lse = logSumExp(x)
    logp.push(x[targets[r]] - lse)
    // H = -sum p log p, skipping p = 0 (its limit is 0).
    let h = 0
    for (const xj of x) {
      const lp = xj - lse
      const p = Math.exp(lp)
      if (p > 0) h -= p * lp
      else if (Number.isNaN(p)) h = NaN
    }
    entropy.push(h)
  }
  return { logp, entropy }
}

export function logprobsGradRef(
  logits: Arr,
  vocab: number,
  targets: Arr,
  gradLogp: Arr | null,
  gradEntropy: Arr | null,
  temperature = 1,
): number[] {
  const rows = targets.length
  const out = new Array<number>(rows * vocab).fill(0)
  for (let r = 0; r < rows; r++) {
    const x = scaledRow(logits, vocab, r, temperature)
    const lse = logSumExp(x)
    let h = 0
    for (const xj of x) {
      const p = Math.exp(xj - lse)
      if (p > 0) h -= p * (xj - lse)
    }
    const g = gradLogp ? gradLogp[r] : 0
    const gh = gradEntropy ? gradEntropy[r] : 0
    for (let j = 0; j < vocab; j++) {
      const lp = x[j] - lse
      const p = Math.exp(lp)
      const dLogp = (j === targets[r] ? 1 : 0) - p
      const dEntropy = p > 0 ? -p * (lp + h) : 0
      out[r * vocab + j] = (g * dLogp + gh * dEntropy) / temperature
    }
  }
  return out
}

export function gaeRef(
  rewards: Arr,
  values: Arr,
  mask: Arr,
  rows: number,
  steps: number,
  gamma: number,
  lambda: number,
): { advantages: number[]; returns: number[] } {
  const advantages = new Array<number>(rows * steps).fill(0)
  const returns = new Array<number>(rows * steps).fill(0)
  for (let b = 0; b < rows; b++) {
    const at = (t: number) => b * steps + t
    const on = (t: number) => t < steps && mask[at(t)] !== 0
    // Straight from the definition: A_t = sum_k (gamma lambda)^k delta_{t+k}
    // until the first masked step.
    for (let t = 0; t < steps; t++) {
      if (!on(t)) continue
      let a = 0
      let discount = 1
      for (let k = t; on(k); k++) {
        const nextValue = on(k + 1) ? values[at(k + 1)] : 0
        const delta = rewards[at(k)] + gamma * nextValue - values[at(k)]
        a += discount * delta
        discount *= gamma * lambda
      }
      advantages[at(t)] = a
      returns[at(t)] = a + values[at(t)]
    }
  }
  return { advantages, returns }
}

export function whitenRef(x: Arr, mask: Arr, shiftMean = true): number[] {
  const picked: number[] = []
  for (let i = 0; i < x.length; i++) if (mask[i] !== 0) picked.push(x[i])
  if (picked.length === 0) return Array.from(x, () => 0)
  const mean = picked.reduce((a, b) => a + b, 0) / picked.length
  const sq = picked.reduce((a, b) => a + (b - mean) ** 2, 0)
  const variance = picked.length > 1 ? sq / (picked.length - 1) : 0
  return Array.from(x, (v, i) => (mask[i] !== 0 ? (v - mean) / Math.sqrt(variance + 1e-8) + (shiftMean ? 0 : mean) : 0))
}

export function klRef(logp: Arr, ref: Arr, mask: Arr, estimator: 'k1' | 'k2' | 'k3', clamp = 0): number[] {
  return Array.from(logp, (lp, i) => {
    if (mask[i] === 0) return 0
    const l = lp - ref[i]
    let kl: number
    if (estimator === 'k1') kl = l
    else if (estimator === 'k2') kl = 0.5 * l * l
    else {
      const lc = Math.min(20, Math.max(-20, l))
      kl = Math.exp(-lc) - 1 + lc
    }
    return clamp > 0 ? Math.min(clamp, Math.max(-clamp, kl)) : kl
  })
}

export interface PpoRefOptions {
  clipLow: number
  clipHigh: number
  dualClip: number
  aggregate: 'token-mean' | 'seq-mean'
}

/** Per-token PPO loss as a function of logp (for finite differences). */
export function ppoTokenLoss(logp: number, old: number, adv: number, o: PpoRefOptions): number {
  const l = Math.min(20, Math.max(-20, logp - old))
  const ratio = Math.exp(l)
  const clipped = Math.min(1 + o.clipHigh, Math.max(1 - o.clipLow, ratio))
  let loss = Math.max(-adv * ratio, -adv * clipped)
  if (o.dualClip > 0 && adv < 0) loss = Math.min(loss, -o.dualClip * adv)
  return loss
}

/** Weight of each token in the aggregate (0 for masked tokens). */
export function ppoWeights(mask: Arr, rows: number, steps: number, aggregate: PpoRefOptions['aggregate']): number[] {
  const counts = Array.from({ length: rows }, (_, r) => {
    let n = 0
    for (let t = 0; t < steps; t++) if (mask[r * steps + t] !== 0) n++
    return n
  })
  const tokens = counts.reduce((a, b) => a + b, 0)
  const nonEmpty = counts.filter((c) => c > 0).length
  const w = new Array<number>(rows * steps).fill(0)
  for (let r = 0; r < rows; r++) {
    for (let t = 0; t < steps; t++) {
      if (mask[r * steps + t] === 0) continue
      w[r * steps + t] = aggregate === 'token-mean' ? 1 / tokens : 1 / (counts[r] * nonEmpty)
    }
  }
  return w
}

export function ppoRef(
  logp: Arr,
  old: Arr,
  adv: Arr,
  mask: Arr,
  rows: number,
  steps: number,
  o: PpoRefOptions,
): { loss: number; grad: number[]; clipFraction: number; approxKl: number; dualClipFraction: number; clipLowFraction: number; clipHighFraction: number } {
  const w = ppoWeights(mask, rows, steps, o.aggregate)
  let loss = 0
  let tokens = 0
  let clippedCount = 0
  let dualCount = 0
  let lowCount = 0
  let highCount = 0
  let kl = 0
  const grad = new Array<number>(logp.length).fill(0)
  for (let i = 0; i < logp.length; i++) {
    if (mask[i] === 0) continue
    tokens++
    const lr = logp[i] - old[i]
    const l = Math.min(20, Math.max(-20, lr))
    const ratio = Math.exp(l)
    const unclipped = -adv[i] * ratio
    const clipped = -adv[i] * Math.min(1 + o.clipHigh, Math.max(1 - o.clipLow, ratio))
    let tokenLoss = Math.max(unclipped, clipped)
    let g = clipped > unclipped || Math.abs(lr) >= 20 ? 0 : unclipped
    if (clipped > unclipped) clippedCount++
    // TRL's clip_ratio/low_mean and high_mean: the ratio past a bound, on the side where the bound binds.
    if (ratio < 1 - o.clipLow && adv[i] < 0) lowCount++
    if (ratio > 1 + o.clipHigh && adv[i] > 0) highCount++
    if (o.dualClip > 0 && adv[i] < 0 && tokenLoss > -o.dualClip * adv[i]) {
      tokenLoss = -o.dualClip * adv[i]
      g = 0
      dualCount++
    }
    loss += w[i] * tokenLoss
    grad[i] = w[i] * g
    kl += 0.5 * lr * lr
  }
  const per = tokens > 0 ? 1 / tokens : 0
  return {
    loss,
    grad,
    clipFraction: clippedCount * per,
    approxKl: kl * per,
    dualClipFraction: dualCount * per,
    clipLowFraction: lowCount * per,
    clipHighFraction: highCount * per,
  }
}

export function valueTokenLoss(v: number, old: number, ret: number, clip: number): number {
  const unclipped = 0.5 * (v - ret) ** 2
  if (clip < 0) return unclipped
  const vc = Math.abs(v - old) <= clip ? v : old + Math.sign(v - old) * clip
  return Math.max(unclipped, 0.5 * (vc - ret) ** 2)
}

export function valueRef(
  values: Arr,
  old: Arr,
  returns: Arr,
  mask: Arr,
  clip: number,
): { loss: number; grad: number[]; clipFraction: number } {
  let tokens = 0
  for (let i = 0; i < values.length; i++) if (mask[i] !== 0) tokens++
  const w = tokens > 0 ? 1 / tokens : 0
  let loss = 0
  let clipped = 0
  const grad = new Array<number>(values.length).fill(0)
  for (let i = 0; i < values.length; i++) {
    if (mask[i] === 0) continue
    const unclipped = 0.5 * (values[i] - returns[i]) ** 2
    const tokenLoss = valueTokenLoss(values[i], old[i], returns[i], clip)
    loss += w * tokenLoss
    if (tokenLoss > unclipped) clipped++
    else grad[i] = w * (values[i] - returns[i])
  }
  return { loss, grad, clipFraction: clipped * w }
}

const logSigmoid = (x: number) => (x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x)))
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x))

export interface DpoRefOptions {
  variant: string
  beta: number
  labelSmoothing: number
  gamma: number
}

/** Loss of one pair; pc, pr policy log-probs; rc, rr reference; lc, lr lengths. */
export function dpoPairLoss(pc: number, pr: number, rc: number, rr: number, lc: number, lr: number, o: DpoRefOptions): number {
  const { beta, labelSmoothing: eps, gamma } = o
  const dc = pc - rc
  const dr = pr - rr
  const h = dc - dr
  switch (o.variant) {
    case 'sigmoid':
      return -(1 - eps) * logSigmoid(beta * h) - eps * logSigmoid(-beta * h)
    case 'robust':
      return (-(1 - eps) * logSigmoid(beta * h) + eps * logSigmoid(-beta * h)) / (1 - 2 * eps)
    case 'hinge':
      return Math.max(0, 1 - beta * h)
    case 'ipo':
      return (dc / lc - dr / lr - 1 / (2 * beta)) ** 2
    case 'bco_pair':
      return -logSigmoid(beta * dc) - logSigmoid(-beta * dr)
    case 'sppo_hard':
      return (dc - 1 / (2 * beta)) ** 2 + (dr + 1 / (2 * beta)) ** 2
    case 'nca_pair':
      return -logSigmoid(beta * dc) - 0.5 * logSigmoid(-beta * dc) - 0.5 * logSigmoid(-beta * dr)
    case 'apo_zero':
      return 1 - sigmoid(beta * dc) + sigmoid(beta * dr)
    case 'simpo': {
      const x = beta * (pc / lc - pr / lr) - gamma
      return -(1 - eps) * logSigmoid(x) - eps * logSigmoid(-x)
    }
    default:
      throw new Error(`unknown variant ${o.variant}`)
  }
}

/** Mean loss, its gradient by central differences in float64, rewards and accuracy. */
export function dpoRef(
  pc: Arr,
  pr: Arr,
  rc: Arr | null,
  rr: Arr | null,
  lc: Arr | null,
  lr: Arr | null,
  o: DpoRefOptions,
): { loss: number; gradChosen: number[]; gradRejected: number[]; chosenReward: number[]; rejectedReward: number[]; accuracy: number } {
  const n = pc.length
  const simpo = o.variant === 'simpo'
  const refC = (i: number) => (rc && !simpo ? rc[i] : 0)
  const refR = (i: number) => (rr && !simpo ? rr[i] : 0)
  const lenC = (i: number) => (lc ? lc[i] : 1)
  const lenR = (i: number) => (lr ? lr[i] : 1)
  let loss = 0
  let correct = 0
  const gradChosen: number[] = []
  const gradRejected: number[] = []
  const chosenReward: number[] = []
  const rejectedReward: number[] = []
  for (let i = 0; i < n; i++) {
    const f = (a: number, b: number) => dpoPairLoss(a, b, refC(i), refR(i), lenC(i), lenR(i), o)
    loss += f(pc[i], pr[i]) / n
    const h = 1e-6 * Math.max(1, Math.abs(pc[i]), Math.abs(pr[i]))
    gradChosen.push((f(pc[i] + h, pr[i]) - f(pc[i] - h, pr[i])) / (2 * h) / n)
    gradRejected.push((f(pc[i], pr[i] + h) - f(pc[i], pr[i] - h)) / (2 * h) / n)
    let cr = o.beta * (pc[i] - refC(i))
    let rj = o.beta * (pr[i] - refR(i))
    if (o.variant === 'ipo' || simpo) {
      cr /= lenC(i)
      rj /= lenR(i)
    }
    chosenReward.push(cr)
    rejectedReward.push(rj)
    if (cr > rj) correct++
  }
  return { loss, gradChosen, gradRejected, chosenReward, rejectedReward, accuracy: correct / n }
}

export function rewardRef(
  chosen: Arr,
  rejected: Arr,
  margin: Arr | number,
  centerCoef: number,
): { loss: number; gradChosen: number[]; gradRejected: number[]; accuracy: number } {
  const n = chosen.length
  const m = (i: number) => (typeof margin === 'number' ? margin : margin[i])
  const pairLoss = (c: number, r: number, i: number) => -logSigmoid(c - r - m(i)) + centerCoef * (c + r) ** 2
  let loss = 0
  let correct = 0
  const gradChosen: number[] = []
  const gradRejected: number[] = []
  for (let i = 0; i < n; i++) {
    loss += pairLoss(chosen[i], rejected[i], i) / n
    const d = chosen[i] - rejected[i] - m(i)
    const s = sigmoid(-d)
    gradChosen.push((-s + 2 * centerCoef * (chosen[i] + rejected[i])) / n)
    gradRejected.push((s + 2 * centerCoef * (chosen[i] + rejected[i])) / n)
    if (chosen[i] > rejected[i]) correct++
  }
  return { loss, gradChosen, gradRejected, accuracy: correct / n }
}

/** PPO's shaped rewards (docs/math.md, "Reward shaping"): -klCoef * kl, plus each row's score at its last token. */
export function shapedRewardsRef(
  logp: Arr,
  ref: Arr,
  mask: Arr,
  scores: Arr,
  last: Arr,
  steps: number,
  klCoef: number,
  estimator: 'k1' | 'k2' | 'k3',
): { kl: number[]; rewards: number[] } {
  const kl = klRef(logp, ref, mask, estimator)
  return { kl, rewards: kl.map((k, i) => -klCoef * k + (last[i] !== 0 ? scores[Math.floor(i / steps)] : 0)) }
}

export interface GrpoRefOptions {
  lossType: 'grpo' | 'bnpo' | 'dr_grpo' | 'dapo'
  level: 'token' | 'sequence'
  clipLow: number
  clipHigh: number
  /** beta of the k3 KL to the reference in each token's loss. */
  beta: number
  maxCompletionLength: number
}

/**
 * TRL's GRPOTrainer._compute_loss (trl/trainer/grpo_trainer.py), in float64,
 * over a rollout batch of `rows` x `steps` split into `microBatches` (lists of
 * rows) whose losses accumulate into one optimizer step: each micro-batch's
 * loss is divided by the number of micro-batches, except dapo's, which is
 * divided by the batch's token count. Returns the accumulated loss, its
 * gradient with respect to logp (analytic; checked by finite differences in
 * grpo.test.ts), and the shares of tokens (of sequences, at sequence level)
 * clipped low, high, and either.
 */
export function grpoRef(
  logp: Arr,
  old: Arr,
  ref: Arr,
  adv: Arr,
  mask: Arr,
  rows: number,
  steps: number,
  microBatches: number[][],
  o: GrpoRefOptions,
): { loss: number; grad: number[]; clipLow: number; clipHigh: number; clipRegion: number } {
  const at = (r: number, t: number) => r * steps + t
  const count = (r: number) => Array.from({ length: steps }, (_, t) => (mask[at(r, t)] !== 0 ? 1 : 0) as number).reduce((a, b) => a + b, 0)
  let allTokens = 0
  for (let r = 0; r < rows; r++) allTokens += count(r)
  const accumulation = microBatches.length
  let loss = 0
  const grad = new Array<number>(rows * steps).fill(0)
  let low = 0
  let high = 0
  let region = 0
  for (const mb of microBatches) {
    const mbTokens = mb.reduce((a, r) => a + count(r), 0)
    // Weight of each token of row r in this micro-batch's normalised loss.
    const weight = (r: number): number => {
      switch (o.lossType) {
        case 'grpo':
          return 1 / Math.max(count(r), 1) / mb.length / accumulation
        case 'bnpo':
          return 1 / Math.max(mbTokens, 1) / accumulation
        case 'dr_grpo':
          return 1 / (mb.length * o.maxCompletionLength) / accumulation
        case 'dapo':
          return 1 / Math.max(allTokens, 1)
      }
    }
    for (const r of mb) {
      const n = count(r)
      const w = weight(r)
      let seqLogRatio = 0
      for (let t = 0; t < steps; t++) if (mask[at(r, t)] !== 0) seqLogRatio += logp[at(r, t)] - old[at(r, t)]
      seqLogRatio /= Math.max(n, 1)
      // d (token loss) / d (log importance weight), and the clip flags.
      const surrogate = (logWeight: number) => {
        const coef1 = Math.exp(logWeight)
        const coef2 = Math.min(1 + o.clipHigh, Math.max(1 - o.clipLow, coef1))
        const a = adv[r]
        const unclipped = coef1 * a
        const clipped = coef2 * a
        return {
          loss: -Math.min(unclipped, clipped),
          dLogWeight: unclipped <= clipped ? -a * coef1 : 0,
          low: coef1 < 1 - o.clipLow && a < 0,
          high: coef1 > 1 + o.clipHigh && a > 0,
        }
      }
      const seq = surrogate(seqLogRatio)
      if (o.level === 'sequence') {
        low += seq.low ? 1 / rows : 0
        high += seq.high ? 1 / rows : 0
        region += seq.low || seq.high ? 1 / rows : 0
      }
      for (let t = 0; t < steps; t++) {
        const i = at(r, t)
        if (mask[i] === 0) continue
        const s = o.level === 'token' ? surrogate(logp[i] - old[i]) : seq
        const d = ref[i] - logp[i]
        const kl = Math.exp(d) - d - 1
        loss += w * (s.loss + o.beta * kl)
        // Sequence level: every token of the row carries the row's loss; the
        // mean log-ratio moves by 1/n with this token's logp.
        grad[i] += o.level === 'token' ? w * s.dLogWeight : (w * n * s.dLogWeight) / n
        grad[i] += w * o.beta * (1 - Math.exp(d))
        if (o.level === 'token') {
          low += s.low ? 1 / allTokens : 0
          high += s.high ? 1 / allTokens : 0
          region += s.low || s.high ? 1 / allTokens : 0
        }
      }
    }
  }
  return { loss, grad, clipLow: low, clipHigh: high, clipRegion: region }
}

/**
 * GRPO's advantages as TRL computes them (grpo_trainer.py, sum_then_normalize):
 * r - mean(group), divided by nanstd(group) + 1e-4 ('group'), by nanstd(all) +
 * 1e-4 ('batch'), or by nothing ('none'); nanstd is torch.std's unbiased one.
 */
export function grpoAdvantagesRef(rewards: Arr, size: number, scale: 'group' | 'batch' | 'none'): number[] {
  const std = (xs: number[]) => {
    const m = xs.reduce((a, b) => a + b, 0) / xs.length
    return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1))
  }
  const all = Array.from(rewards)
  const out: number[] = []
  for (let g = 0; g < all.length; g += size) {
    const group = all.slice(g, g + size)
    const mean = group.reduce((a, b) => a + b, 0) / size
    const divisor = scale === 'group' ? std(group) + 1e-4 : scale === 'batch' ? std(all) + 1e-4 : 1
    for (const r of group) out.push((r - mean) / divisor)
  }
  return out
}
