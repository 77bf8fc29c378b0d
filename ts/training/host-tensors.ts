// Means of per-row results that trainers log: summed natively where the
// values are (ops.total: one number comes back, not the rows).
import * as ops from '../ops.js'
import { Tensor } from '../tensor.js'
import { mean } from '../util/stats.js'

/** Mean over the mask of a [B, T] tensor, computed natively. */
export function maskedMean(x: Tensor, mask: Tensor): number {
  const count = ops.total(ops.rowSum(mask))
  return count > 0 ? ops.total(ops.rowSum(x, mask)) / count : 0
}

/** Mean of an f32 tensor's values (on any device) or of host numbers; 0 when there are none. */
export function meanOf(t: Tensor | Float32Array | number[]): number {
  if (t instanceof Tensor) return t.numel > 0 ? ops.total(t) / t.numel : 0
  return t.length > 0 ? mean(t) : 0
}
