// Small host-side reductions of per-row results ([B] values; per-token work
// stays native), read back from whichever device holds them.
import * as ops from '../ops.js'
import { Tensor } from '../tensor.js'
import { mean, sum } from '../util/stats.js'

/** Sum over rows of a per-row tensor (B values; not per-token work). */
export function total(x: Tensor): number {
  return sum(x.to('cpu').data as Float32Array)
}

/** Mean over the mask of a [B, T] tensor, computed natively. */
export function maskedMean(x: Tensor, mask: Tensor): number {
  const count = total(ops.rowSum(mask))
  return count > 0 ? total(ops.rowSum(x, mask)) / count : 0
}

/** Mean of a host f32 tensor's values (per-row results, not per-token work). */
export function meanOf(t: Tensor | Float32Array | number[]): number {
  const d = t instanceof Tensor ? (t.to('cpu').data as Float32Array) : t
  return d.length > 0 ? mean(d) : 0
}
