// Small host-side reductions and copies of per-row tensors ([B] or [B, T]
// rows picked for a minibatch); per-token work stays native.
import * as ops from '../ops.js'
import { Tensor } from '../tensor.js'

/** Sum over rows of a per-row tensor (B values; not per-token work). */
export function total(x: Tensor): number {
  let s = 0
  for (const v of x.data as Float32Array) s += v
  return s
}

/** Mean over the mask of a [B, T] tensor, computed natively. */
export function maskedMean(x: Tensor, mask: Tensor): number {
  const count = total(ops.rowSum(mask))
  return count > 0 ? total(ops.rowSum(x, mask)) / count : 0
}

/** Rows `rows` of a [B, ...] host tensor, copied (row by row) into a new tensor. */
export function selectRows(t: Tensor, rows: readonly number[]): Tensor {
  const width = t.numel / t.shape[0]
  const src = t.data
  const out = Tensor.empty([rows.length, ...t.shape.slice(1)], { dtype: t.dtype })
  const dst = out.data
  rows.forEach((r, i) => dst.set(src.subarray(r * width, (r + 1) * width), i * width))
  return out
}

/** The first `keep` columns of a [B, T] host tensor (values [B, T] -> [B, T - 1] for log-prob alignment). */
export function leadingColumns(t: Tensor, keep: number): Tensor {
  const [B, T] = t.shape
  const src = t.data as Float32Array
  const out = new Float32Array(B * keep)
  for (let b = 0; b < B; b++) out.set(src.subarray(b * T, b * T + keep), b * keep)
  return Tensor.from(out, [B, keep])
}

/** [B, T - 1] -> [B, T] with a zero last column (a log-prob-space gradient for per-position values). */
export function padLastColumn(t: Tensor): Tensor {
  const [B, K] = t.shape
  const src = t.data as Float32Array
  const out = new Float32Array(B * (K + 1))
  for (let b = 0; b < B; b++) out.set(src.subarray(b * K, (b + 1) * K), b * (K + 1))
  return Tensor.from(out, [B, K + 1])
}

/** Mean of a host f32 tensor's values (per-row results, not per-token work). */
export function meanOf(t: Tensor | Float32Array | number[]): number {
  const d = t instanceof Tensor ? (t.data as Float32Array) : t
  let s = 0
  for (const v of d) s += v
  return d.length > 0 ? s / d.length : 0
}
