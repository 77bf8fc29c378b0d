// npm run bench:distributed -- [--ranks 2] [--sizes 1,4,16,64,256,500] [--repeat 5]
// npm run bench:distributed -- --step [--rows 2] [--tokens 64] [--steps 3]
//
// All-reduce bus bandwidth of the Gloo process group over loopback, the ranks
// being local processes (this script started again with RANK/WORLD_SIZE),
// beside the copy bandwidth of the same machine (one TypedArray.set of the
// same size, single-threaded, as Gloo's reduction loop is). Sizes are MB
// (1e6 bytes) of f32. Bus bandwidth is nccl-tests' figure: 2(n-1)/n x bytes /
// time, the bytes each rank sends and receives in a ring all-reduce. Each
// figure is the median of --repeat timed calls after one warm-up call.
// Prints a table and a markdown block for bench/RESULTS.md.
//
// --step: one training step of the GPT-2 124M shape (random weights) with a
// global batch of --rows rows of --tokens tokens, at 1 rank, at 2 ranks with
// the gradients all-reduced after backward, at 2 ranks with the all-reduce
// overlapped with backward (distributed.overlap_backward, 25 MB buckets, as
// the trainers do by default) and at 2 ranks with ZeRO-1
// (distributed.shard_optimizer). Each rank uses cores / ranks threads. It
// reports tokens/s, the step's phases (forward + backward, the all-reduce,
// AdamW; ZeRO-1's reduce-scatter and all-gather are inside its AdamW step),
// the share of the step spent waiting on collectives (overlapped: the wait
// after backward's own work, beside the time the buckets' all-reduces took
// in all), and each rank's peak RSS and AdamW moments. Each figure is the
// median of --steps steps after one warm-up step.
import { spawn } from 'node:child_process'
import net from 'node:net'
import os from 'node:os'
import { AdamW, backend, distributed, Model, Tensor } from 'rlfarm'
import { dataParallel, overlapBackward, shardOptimizer } from 'rlfarm/internal'
import { benchArgs } from './args'
import { median } from './peer'

interface Args {
  ranks: number
  sizes: number[]
  repeat: number
  step: boolean
  rows: number
  tokens: number
  steps: number
}

function parse(argv: string[]): Args {
  const defaults = { ranks: 2, sizes: [1, 4, 16, 64, 256, 500], repeat: 5, step: false, rows: 2, tokens: 64, steps: 3 }
  return benchArgs('distributed', argv, defaults, { min: { ranks: 2, tokens: 2 } }).args
}

const GPT2_124M = { arch: 'gpt2', vocab: 50257, dim: 768, layers: 12, heads: 12, maxPositions: 1024 } as const

const PHASES = ['step', 'compute', 'allReduce', 'reduceTotal', 'optimizer'] as const
type Phase = (typeof PHASES)[number]

/** How --step sums the gradients at 2 ranks (1 rank: not at all). */
type StepMode = 'after' | 'overlap' | 'zero'

interface StepRow {
  rank: number
  /**
   * Median milliseconds of each phase (step: all of it; compute: forward +
   * backward; allReduce: waiting on the gradient all-reduce after backward;
   * reduceTotal: the all-reduce's own time, hidden or not).
   */
  ms: Record<Phase, number>
  peakRssMB: number
  momentsMB: number
  parameters: number
}

// One rank of --step: this rank's rows of the global batch, forward and
// backward, the gradients summed over the ranks, one AdamW step.
async function stepRank(args: Args): Promise<void> {
  await distributed.init()
  const world = distributed.worldSize
  const model = Model.create(GPT2_124M, { seed: 1 })
  const optimizer = new AdamW(model, { lr: 1e-4 })
  const mode = process.env.BENCH_MODE as StepMode
  const sharded = mode === 'zero'
  if (sharded) shardOptimizer(optimizer)
  if (mode === 'overlap') overlapBackward(model, 25 * 2 ** 20)
  const rows = args.rows / world
  if (!Number.isInteger(rows)) throw new Error(`bench:distributed --step: --rows ${args.rows} must divide by the ranks (${world})`)
  const tokens = Tensor.from(Int32Array.from({ length: rows * args.tokens }, (_, i) => (i * 7919 + distributed.rank * 104729) % GPT2_124M.vocab), [rows, args.tokens])
  // The gradient of the mean negative log-likelihood over the global batch.
  const gradLogp = Tensor.full([rows, args.tokens - 1], -1 / (args.rows * (args.tokens - 1)))
  const phases = Object.fromEntries(PHASES.map((p) => [p, [] as number[]])) as Record<Phase, number[]>
  for (let k = 0; k <= args.steps; k++) {
    await distributed.barrier()
    const t0 = performance.now()
    model.zeroGrad()
    await model.forward(tokens, { train: true })
    let overlapped: { waitMs: number; reduceMs: number } | undefined
    if (mode === 'overlap') overlapped = await dataParallel()!.backwardAndReduce(model, { gradLogp })
    else await model.backward({ gradLogp })
    const t1 = performance.now()
    if (world > 1 && mode === 'after') await distributed.allReduce(model.flatGradients(), { op: 'sum' })
    const t2 = performance.now()
    await optimizer.step({ maxGradNorm: 1 })
    const t3 = performance.now()
    if (k === 0) continue
    phases.step.push(t3 - t0)
    // Overlapped, backward's promise includes the wait for the last buckets.
    phases.compute.push(t1 - t0 - (overlapped?.waitMs ?? 0))
    phases.allReduce.push(overlapped ? overlapped.waitMs : t2 - t1)
    phases.reduceTotal.push(overlapped ? overlapped.reduceMs : t2 - t1)
    phases.optimizer.push(t3 - t2)
  }
  const moments = optimizer.shardState().m.numel
  const row: StepRow = {
    rank: distributed.rank,
    ms: Object.fromEntries(PHASES.map((p) => [p, median(phases[p])])) as Record<Phase, number>,
    peakRssMB: process.resourceUsage().maxRSS / 1024,
    momentsMB: (2 * moments * 4) / 1e6,
    parameters: model.parameterCount,
  }
  const all = (await distributed.exchange('bench-step', JSON.stringify(row))).map((t) => JSON.parse(t) as StepRow)
  await distributed.destroy()
  if (distributed.rank === 0) process.stdout.write(`${JSON.stringify(all)}\n`)
}

interface Row {
  mb: number
  allReduceMs: number
  busGBs: number
  copyGBs: number
}

async function rank(args: Args): Promise<void> {
  await distributed.init()
  const rows: Row[] = []
  for (const mb of args.sizes) {
    const n = Math.floor((mb * 1e6) / 4)
    const t = Tensor.from(new Float32Array(n).fill(1))
    const times: number[] = []
    for (let k = 0; k <= args.repeat; k++) {
      await distributed.barrier()
      const start = performance.now()
      await distributed.allReduce(t)
      if (k > 0) times.push(performance.now() - start)
    }
    // Every rank waits for the slowest: rank 0's time is the collective's.
    const ms = median(times)
    const world = distributed.worldSize
    const busGBs = ((2 * (world - 1)) / world) * (n * 4) / (ms / 1000) / 1e9
    let copyGBs = 0
    if (distributed.rank === 0) {
      const src = new Float32Array(n).fill(2)
      const dst = new Float32Array(n)
      const copies: number[] = []
      for (let k = 0; k <= args.repeat; k++) {
        const start = performance.now()
        dst.set(src)
        if (k > 0) copies.push(performance.now() - start)
      }
      copyGBs = (n * 4) / (median(copies) / 1000) / 1e9
    }
    rows.push({ mb, allReduceMs: ms, busGBs, copyGBs })
  }
  await distributed.destroy()
  if (distributed.rank === 0) process.stdout.write(`${JSON.stringify(rows)}\n`)
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })
}

/** Starts this script as `ranks` local ranks; resolves to rank 0's stdout. */
async function startRanks(ranks: number, env: NodeJS.ProcessEnv): Promise<string> {
  const port = String(await freePort())
  const outputs = await Promise.all(
    [...Array(ranks).keys()].map(
      (r) =>
        new Promise<string>((resolve, reject) => {
          const child = spawn(process.execPath, [...process.execArgv, __filename, ...process.argv.slice(2)], {
            env: { ...process.env, RANK: String(r), WORLD_SIZE: String(ranks), MASTER_ADDR: '127.0.0.1', MASTER_PORT: port, ...env },
            stdio: ['ignore', 'pipe', 'inherit'],
          })
          let out = ''
          child.stdout.on('data', (d) => (out += d))
          child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`rank ${r} exited with code ${code}`))))
        }),
    ),
  )
  return outputs[0].trim()
}

async function stepTable(args: Args): Promise<void> {
  const cores = os.availableParallelism()
  const lines: string[] = []
  let parameters = 0
  const modes: [number, StepMode][] = [[1, 'after'], [2, 'after'], [2, 'overlap'], [2, 'zero']]
  for (const [ranks, mode] of modes) {
    const all = JSON.parse(await startRanks(ranks, { RLFARM_THREADS: String(Math.max(1, Math.floor(cores / ranks))), BENCH_MODE: mode })) as StepRow[]
    const slowest = Math.max(...all.map((r) => r.ms.step))
    const zero = all[0]
    parameters = zero.parameters
    const share = (ms: number) => `${((ms / zero.ms.step) * 100).toFixed(1)}%`
    const collective = ranks === 1 ? '-' : mode === 'zero' ? `${share(zero.ms.optimizer)} (all of AdamW's step)` : share(zero.ms.allReduce)
    const reduce = ranks === 1 || mode === 'zero' ? '-' : mode === 'overlap' ? `${zero.ms.allReduce.toFixed(0)} waited of ${zero.ms.reduceTotal.toFixed(0)}` : zero.ms.allReduce.toFixed(0)
    const gradients = ranks === 1 ? '-' : { after: 'all-reduce after backward', overlap: 'all-reduce overlapped with backward', zero: 'ZeRO-1' }[mode]
    lines.push(
      `| ${ranks} | ${gradients} | ${((args.rows * args.tokens) / (slowest / 1000)).toFixed(0)} | ${slowest.toFixed(0)} | ${zero.ms.compute.toFixed(0)} | ` +
        `${reduce} | ${zero.ms.optimizer.toFixed(0)} | ${collective} | ${all.map((r) => r.peakRssMB.toFixed(0)).join(' / ')} | ${all.map((r) => r.momentsMB.toFixed(0)).join(' / ')} |`,
    )
    process.stderr.write(`${lines.at(-1)}\n`)
  }
  const head =
    '| ranks | gradients | tokens/s | step (ms) | forward + backward (ms) | all-reduce (ms) | AdamW (ms) | share of the step waiting on collectives | peak RSS per rank (MB) | AdamW moments per rank (MB) |\n' +
    '| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |'
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU'
  process.stdout.write(
    `\nOne training step of the GPT-2 124M shape (${parameters} parameters), global batch ${args.rows} x ${args.tokens} tokens, ` +
      `Gloo ${backend().glooVersion} over 127.0.0.1; ${cpu}, ${cores} cores; median of ${args.steps} steps\n\n${head}\n${lines.join('\n')}\n`,
  )
}

async function main(): Promise<void> {
  const args = parse(process.argv.slice(2))
  if (process.env.RANK !== undefined) return args.step ? stepRank(args) : rank(args)
  if (!distributed.glooAvailable()) throw new Error('bench:distributed: this addon was built without Gloo (apt-get install libgloo-dev, then npm run build:native)')
  if (args.step) return stepTable(args)
  const rows = JSON.parse(await startRanks(args.ranks, { RLFARM_THREADS: '1' })) as Row[]
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU'
  const head = `| size (MB) | all-reduce (ms) | bus bandwidth (GB/s) | copy bandwidth (GB/s) |\n| ---: | ---: | ---: | ---: |`
  const lines = rows.map((r) => `| ${r.mb} | ${r.allReduceMs.toFixed(2)} | ${r.busGBs.toFixed(2)} | ${r.copyGBs.toFixed(2)} |`)
  process.stdout.write(
    `\nAll-reduce (sum, f32) over Gloo ${backend().glooVersion}'s TCP transport on 127.0.0.1, ${args.ranks} ranks; ` +
      `${cpu}, ${os.availableParallelism()} cores; median of ${args.repeat}\n\n${head}\n${lines.join('\n')}\n`,
  )
}

main().catch((err: Error) => {
  process.stderr.write(`${err.message}\n`)
  process.exitCode = 1
})
