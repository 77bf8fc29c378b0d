// Batches as tensors. Training sequences are right-padded; their loss masks
// live in log-prob space: position t of a [B, T-1] log-prob tensor scores
// token t + 1, so the response of a sequence whose prompt has P tokens covers
// positions P - 1 .. length - 2. Prompts for generation are left-padded, so
// every row's reply starts in the same column.
import { Tensor } from '../tensor.js'
import type { EncodedPair } from './encode.js'

export interface SequenceBatch {
  /** [B, T] i32, right-padded with padId. */
  tokens: Tensor
  /** [B, T] u8: 1 for real tokens. */
  attentionMask: Tensor
  /** [B, T-1] f32: 1 at log-prob positions whose target is a response token. */
  responseMask: Tensor
  /** Response tokens per row. */
  responseLengths: number[]
  /** Tokens per row (without padding). */
  lengths: number[]
}

export function collateSequences(pairs: readonly EncodedPair[], padId: number): SequenceBatch {
  if (pairs.length === 0) throw new Error('collateSequences: empty batch')
  const width = Math.max(2, ...pairs.map((p) => p.ids.length))
  const B = pairs.length
  const tokens = new Int32Array(B * width).fill(padId)
  const attention = new Uint8Array(B * width)
  const response = new Float32Array(B * (width - 1))
  const responseLengths: number[] = []
  pairs.forEach((p, b) => {
    tokens.set(p.ids, b * width)
    attention.fill(1, b * width, b * width + p.ids.length)
    let count = 0
    for (let t = 0; t + 1 < p.ids.length; t++) {
      // position t scores token t + 1
      const target = p.targets ? p.targets[t + 1] === 1 : t + 1 >= p.promptLength
      if (target) {
        response[b * (width - 1) + t] = 1
        count++
      }
    }
    responseLengths.push(count)
  })
  return {
    tokens: Tensor.from(tokens, [B, width]),
    attentionMask: Tensor.from(attention, [B, width]),
    responseMask: Tensor.from(response, [B, width - 1]),
    responseLengths,
    lengths: pairs.map((p) => p.ids.length),
  }
}

/**
 * [B, width] f32 with a 1 at position lengths[b] - 1 of each row: with
 * ops.rowSum it picks a per-position output (a reward model's value) at each
 * sequence's last token, and with ops.broadcastRows it puts a gradient there.
 */
export function lastPositionMask(lengths: readonly number[], width: number): Tensor {
  const mask = new Float32Array(lengths.length * width)
  lengths.forEach((n, b) => {
    if (n < 1 || n > width) throw new Error(`lastPositionMask: row ${b} has length ${n}, outside [1, ${width}]`)
    mask[b * width + n - 1] = 1
  })
  return Tensor.from(mask, [lengths.length, width])
}

export interface PromptBatch {
  /** [B, P] i32, left-padded with padId. */
  tokens: Tensor
  /** [B, P] u8. */
  attentionMask: Tensor
  /** P: the column where replies start. */
  width: number
}

export function collatePrompts(prompts: readonly number[][], padId: number, minWidth = 1): PromptBatch {
  if (prompts.length === 0) throw new Error('collatePrompts: empty batch')
  const width = Math.max(minWidth, ...prompts.map((p) => p.length))
  const B = prompts.length
  const tokens = new Int32Array(B * width).fill(padId)
  const attention = new Uint8Array(B * width)
  prompts.forEach((p, b) => {
    if (p.length === 0) throw new Error(`collatePrompts: prompt ${b} is empty`)
    tokens.set(p, b * width + width - p.length)
    attention.fill(1, b * width + width - p.length, (b + 1) * width)
  })
  return { tokens: Tensor.from(tokens, [B, width]), attentionMask: Tensor.from(attention, [B, width]), width }
}

/** Splits [0, n) into consecutive batches of `size` (the last may be shorter). */
export function batches<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}
