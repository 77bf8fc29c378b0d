// What a trainer needs to run data-parallel: its share of each batch, sums of
// statistics over every rank, gradients all-reduced before clipping and AdamW,
// and the start-of-run check that every rank runs the same thing.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import type { BackwardGradients, Model } from '../model/model.js'
import type { GradientReduceTimes } from '../native.js'
import * as ops from '../ops.js'
import { backend, Tensor } from '../tensor.js'
import { firstDifference } from '../util/json.js'
import { distributed, nativeGroup } from './index.js'
import { gradientsReducedByStep } from './zero.js'

// Models whose gradients are all-reduced in buckets of this many bytes during
// their step's last backward (distributed.overlap_backward).
const overlapped = new WeakMap<Model, number>()

/**
 * From now on, `model`'s gradient all-reduce overlaps its step's last
 * backward, in buckets of about bucketBytes (0: a bucket per layer). Every
 * rank must set the same; cuda models and ZeRO-1 keep reducing after backward.
 */
export function overlapBackward(model: Model, bucketBytes: number): void {
  if (!Number.isInteger(bucketBytes) || bucketBytes < 0) throw new RangeError(`overlapBackward: bucketBytes must be an integer >= 0; got ${bucketBytes}`)
  overlapped.set(model, bucketBytes)
}

export interface DataParallel {
  readonly rank: number
  readonly worldSize: number
  /** This rank's rows of a batch: rows rank, rank + worldSize, ... (possibly none). */
  shard<T>(rows: readonly T[]): T[]
  /** Element-wise sums of `values` over every rank ('i32' for exact counts). */
  sum(values: readonly number[], dtype?: 'f32' | 'i32'): Promise<number[]>
  /** Sums a Float32Array over every rank, in place. */
  sumInPlace(values: Float32Array): Promise<void>
  /**
   * Sums the model's gradients (one contiguous buffer) over every rank, in
   * place; under ZeRO-1 the optimizer's step does it. A rank whose step had
   * no rows calls this where the others call backwardAndReduce.
   */
  allReduceGradients(model: Model): Promise<GradientReduceTimes | undefined>
  /**
   * The backward of the step's last micro-batch on this rank, then
   * allReduceGradients; with overlapBackward set on the model (a cpu model
   * without ZeRO-1), each bucket of the gradients is summed while backward
   * works on the layers before it. Resolves to the bucketed reduce's times.
   */
  backwardAndReduce(model: Model, grads: BackwardGradients): Promise<GradientReduceTimes | undefined>
  /**
   * The whole batch's per-row values on every rank, in batch order: this
   * rank's row j (width values each) goes to row rows[j] of `total`. Exact:
   * each entry is one rank's value plus zeros.
   */
  gatherRows(local: Float32Array, rows: readonly number[], total: number, width?: number): Promise<Float32Array>
  /**
   * ops.whiten over the masked entries of every rank's x together (the mean
   * subtracted, unbiased variance), as one process whitens the whole batch;
   * x undefined on a rank with no rows (it still takes part).
   */
  whiten(x: Tensor | undefined, mask: Tensor | undefined): Promise<Tensor | undefined>
  /**
   * Metrics of this rank's `rows` rows pooled over every rank: a '/mean' and
   * its '/std' (population) as over all rows, counts ('reward_errors') summed,
   * anything else weighted by rows.
   */
  poolMetrics(metrics: Record<string, number>, rows: number): Promise<Record<string, number>>
  /** As gatherRows for JSON values (texts, samples): this rank's item j is item rows[j] of `total`, on every rank. */
  gatherItems<T>(local: readonly T[], rows: readonly number[], total: number): Promise<T[]>
  /**
   * What `compute` gives on rank 0, on every rank (work done once, such as
   * asking a judge); rank 0's error is every rank's.
   */
  fromRankZero<T>(what: string, compute: () => Promise<T>): Promise<T>
}

/** The data-parallel helpers of this run; undefined with one rank, so single-process paths stay as they are. */
export function dataParallel(): DataParallel | undefined {
  if (!distributed.initialized || distributed.worldSize === 1) return undefined
  const rank = distributed.rank
  const worldSize = distributed.worldSize
  return {
    rank,
    worldSize,
    shard: (rows) => rows.filter((_, i) => i % worldSize === rank),
    async sum(values, dtype = 'f32') {
      const t = dtype === 'i32' ? Tensor.from(Int32Array.from(values)) : Tensor.from(Float32Array.from(values))
      await distributed.allReduce(t, { op: 'sum' })
      return Array.from(t.data as Float32Array | Int32Array)
    },
    async sumInPlace(values) {
      await distributed.allReduce(Tensor.from(values), { op: 'sum' })
    },
    async allReduceGradients(model) {
      return reduceGradients(model, undefined)
    },
    async backwardAndReduce(model, grads) {
      return reduceGradients(model, grads)
    },
    async gatherRows(local, rows, total, width = 1) {
      if (local.length !== rows.length * width) throw new RangeError(`gatherRows: ${local.length} values for ${rows.length} rows of ${width}`)
      const out = new Float32Array(total * width)
      rows.forEach((r, j) => out.set(local.subarray(j * width, (j + 1) * width), r * width))
      await this.sumInPlace(out)
      return out
    },
    async whiten(x, mask) {
      // This rank's masked token count, sum and sum of squares of t (ops.rowMoments per row, added here in row order).
      const moments = (t: Tensor) => {
        const m = ops.rowMoments([t], mask!).data as Float32Array
        const out = [0, 0, 0]
        m.forEach((v, i) => (out[i % 3] += v))
        return out
      }
      const [count, sum] = await this.sum(x ? moments(x).slice(0, 2) : [0, 0])
      const mean = count > 0 ? sum / count : 0
      const centered = x && ops.add(x, ops.broadcastRows(Tensor.full([x.shape[0]], mean), mask!), { alpha: 1, beta: -1 })
      const [squares] = await this.sum([centered ? moments(centered)[2] : 0])
      if (!centered) return undefined
      if (count === 0) return Tensor.zeros(centered.shape)
      // As the native whiten: unbiased variance, a single token has variance 0.
      const variance = count > 1 ? squares / (count - 1) : 0
      return ops.mul(ops.add(centered, undefined, { alpha: 1 / Math.sqrt(variance + 1e-8) }), mask!)
    },
    async poolMetrics(metrics, rows) {
      const all = (await distributed.exchange('pool-metrics', JSON.stringify({ metrics, rows }))).map((s) => JSON.parse(s) as { metrics: Record<string, number>; rows: number })
      const n = all.reduce((a, r) => a + r.rows, 0)
      const weighted = (f: (m: Record<string, number>) => number) => all.reduce((a, r) => a + (r.rows > 0 ? f(r.metrics) * r.rows : 0), 0) / Math.max(n, 1)
      const out: Record<string, number> = {}
      for (const key of new Set(all.flatMap((r) => Object.keys(r.metrics)))) {
        const meanKey = key.replace(/\/std$/, '/mean')
        if (key.endsWith('/std') && meanKey !== key) {
          const mean = weighted((m) => m[meanKey])
          out[key] = Math.sqrt(Math.max(0, weighted((m) => m[key] ** 2 + m[meanKey] ** 2) - mean ** 2))
        } else if (key === 'reward_errors') {
          out[key] = all.reduce((a, r) => a + (r.metrics[key] ?? 0), 0)
        } else {
          out[key] = weighted((m) => m[key])
        }
      }
      return out
    },
    async gatherItems<T>(local: readonly T[], rows: readonly number[], total: number) {
      if (local.length !== rows.length) throw new RangeError(`gatherItems: ${local.length} items for ${rows.length} rows`)
      const out = new Array<T>(total)
      const all = await distributed.exchange('gather-items', JSON.stringify({ local, rows }))
      for (const text of all) {
        const part = JSON.parse(text) as { local: T[]; rows: number[] }
        part.rows.forEach((r, j) => (out[r] = part.local[j]))
      }
      return out
    },
    async fromRankZero<T>(what: string, compute: () => Promise<T>) {
      let mine = ''
      let failure: unknown
      if (rank === 0) {
        try {
          mine = JSON.stringify({ value: await compute() })
        } catch (err) {
          failure = err
          mine = JSON.stringify({ error: err instanceof Error ? err.message : String(err) })
        }
      }
      const [first] = (await distributed.exchange(`rank-zero/${what}`, mine)).map((t) => (t ? (JSON.parse(t) as { value?: T; error?: string }) : {}))
      if (failure !== undefined) throw failure
      if (first.error !== undefined) throw new Error(`${what} failed on rank 0: ${first.error}`)
      return first.value as T
    },
  }
}

// backward(grads) when given, and the gradients summed over every rank.
async function reduceGradients(model: Model, grads: BackwardGradients | undefined): Promise<GradientReduceTimes | undefined> {
  // Under ZeRO-1 the optimizer step reduce-scatters them itself.
  if (gradientsReducedByStep(model)) {
    if (grads) await model.backward(grads)
    return undefined
  }
  const bucketBytes = overlapped.get(model)
  if (bucketBytes !== undefined && model.device === 'cpu') return model.backwardReduced(grads, nativeGroup('backwardAndReduce')!, bucketBytes)
  if (grads) await model.backward(grads)
  // One call for the whole buffer (Gloo's ring and NCCL cut it into segments
  // themselves); a cuda model's gradients stay on its device, for NCCL.
  await distributed.allReduce(model.device === 'cpu' ? model.flatGradients() : model.deviceGradients(), { op: 'sum' })
  return undefined
}

/**
 * model.backward(grads), or with `reduceOver` (the step's last micro-batch on
 * this rank of a data-parallel run) its backwardAndReduce.
 */
export async function microBatchBackward(model: Model, grads: BackwardGradients, reduceOver: DataParallel | undefined): Promise<void> {
  if (reduceOver) await reduceOver.backwardAndReduce(model, grads)
  else await model.backward(grads)
}

/** The index of the last micro-batch in which this rank has rows (-1: none); its backward is the one that reduces. */
export function lastWithRows(shards: readonly (readonly unknown[])[]): number {
  return shards.reduce((found: number, rows, k) => (rows.length > 0 ? k : found), -1)
}

/** True on every rank when `flag` is true on any (a stop request seen by one rank stops all at the same step). */
export async function anyRank(flag: boolean): Promise<boolean> {
  if (!distributed.initialized || distributed.worldSize === 1) return flag
  const t = Tensor.from(Int32Array.of(flag ? 1 : 0))
  await distributed.allReduce(t, { op: 'max' })
  return (t.data as Int32Array)[0] === 1
}

/** What identifies the native build: the addon file's hash and what it was built with. */
export function addonBuild(): Record<string, string> {
  const info = backend()
  let file = process.env.RLFARM_ADDON ? path.resolve(process.env.RLFARM_ADDON) : ''
  if (!file) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const gypBuild = require('node-gyp-build') as { resolve(dir: string): string }
    file = gypBuild.resolve(path.join(__dirname, '..', '..'))
  }
  const sha256 = crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex')
  return { sha256, gloo: info.glooVersion, cuda: info.cudaCompiled ? info.cudaArchs : 'off' }
}

/**
 * Every rank must run the same resolved config on the same addon build; the
 * error names the first rank that differs from rank 0 and the first field.
 */
export async function checkSameRun(what: string, config: unknown): Promise<void> {
  if (!distributed.initialized || distributed.worldSize === 1) return
  const mine = { config, build: addonBuild() }
  const all = (await distributed.exchange(`same-run/${what}`, JSON.stringify(mine))).map((s) => JSON.parse(s) as typeof mine)
  for (let r = 1; r < all.length; r++) {
    const d = firstDifference(all[0], all[r])
    if (!d) continue
    const show = (v: unknown) => (v === undefined ? 'nothing' : JSON.stringify(v))
    const field = d.path.startsWith('build.') ? `the addon build (${d.path.slice('build.'.length)})` : `the ${what} field ${d.path.replace(/^config\.?/, '') || '(root)'}`
    // Every rank finds the same difference; none leaves (rank 0 taking the
    // store with it) before all have read every rank's value.
    await distributed.barrier().catch(() => undefined)
    throw new Error(
      `distributed: rank ${r} differs from rank 0 in ${field}: ${show(d.now)} on rank ${r}, ${show(d.was)} on rank 0; ` +
        'every rank must run the same config with the same rlfarm build',
    )
  }
}
