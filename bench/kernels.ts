// npm run bench:kernels -- [--device cpu|cuda] [--repeat 9] [--no-peer] [--json]
//
// Times every op at realistic sizes (log-probs on [4096, 32000] f32 logits, GAE
// on [256, 512]), reports GB/s and the share of this machine's copy bandwidth
// measured in the same run, and runs the PyTorch peer (bench/torch_kernels.py,
// TRL-style eager code) on the same sizes for the speed-ups. Prints a table, a
// markdown block for bench/RESULTS.md, and with --json a last JSON line.
import os from 'node:os'
import { backend, devices, ops, synchronize, Tensor } from 'rlfarm'
import { benchArgs, printTable } from './args'
import { median, runPython } from './peer'

interface Args {
  device: 'cpu' | 'cuda:0'
  repeat: number
  peer: boolean
  json: boolean
  rows: number
  vocab: number
  batch: number
  steps: number
}

function parseArgs(argv: string[]): Args {
  const defaults = { device: 'cpu', repeat: 9, peer: true, json: false, rows: 4096, vocab: 32000, batch: 256, steps: 512 }
  const { args } = benchArgs('kernels', argv, defaults, { choices: { device: ['cpu', 'cuda'] } })
  return { ...args, device: args.device === 'cpu' ? 'cpu' : 'cuda:0' }
}

/** Tensors in an op's result, to dispose of them between runs as a training loop does. */
function disposeAll(result: unknown): void {
  if (result instanceof Tensor) result.dispose()
  else if (result && typeof result === 'object') Object.values(result).forEach(disposeAll)
}

/** Median wall time in ms of fn over `repeat` runs after one warm-up. */
function time(fn: () => unknown, repeat: number, device: string): number {
  const sync = () => device !== 'cpu' && synchronize(device as 'cuda:0')
  disposeAll(fn())
  sync()
  const times: number[] = []
  for (let i = 0; i < repeat; i++) {
    const start = process.hrtime.bigint()
    const result = fn()
    sync()
    times.push(Number(process.hrtime.bigint() - start) / 1e6)
    disposeAll(result)
  }
  return median(times)
}

/** Fast seeded uniform fill in [lo, hi): realistic values, not zeros. */
function fill(data: Float32Array, lo: number, hi: number, seed: number): void {
  let s = seed >>> 0 || 1
  for (let i = 0; i < data.length; i++) {
    s ^= s << 13
    s ^= s >>> 17
    s ^= s << 5
    data[i] = lo + ((s >>> 0) / 4294967296) * (hi - lo)
  }
}

function randomTensor(shape: number[], lo: number, hi: number, seed: number, device: string): Tensor {
  const host = Tensor.empty(shape)
  fill(host.data as Float32Array, lo, hi, seed)
  return host.to(device as 'cpu')
}

interface Row {
  op: string
  shape: string
  ms: number
  gbps?: number
  copyShare?: number
  peerMs?: number
  speedup?: number
  target?: number
}

interface PeerResult {
  torch: string
  device: string
  threads: number
  logprobs_ms: number
  logprobs_entropy_ms: number
  gae_ms: number
  copy_gbps?: number
}

function runPeer(args: Args): { best: Partial<Record<'logprobs_ms' | 'logprobs_entropy_ms' | 'gae_ms', { ms: number; threads: number }>>; runs: PeerResult[]; error?: string } {
  const settings = args.device === 'cpu' ? [1, 2, os.availableParallelism()].filter((v, i, a) => a.indexOf(v) === i) : [1]
  const runs: PeerResult[] = []
  for (const threads of settings) {
    const r = runPython<PeerResult>('torch_kernels.py', ['--device', args.device === 'cpu' ? 'cpu' : 'cuda', '--threads', threads,
      '--repeat', args.repeat, '--rows', args.rows, '--vocab', args.vocab, '--batch', args.batch, '--steps', args.steps])
    if ('error' in r) return { best: {}, runs, error: r.error }
    runs.push(r)
  }
  const best: ReturnType<typeof runPeer>['best'] = {}
  for (const key of ['logprobs_ms', 'logprobs_entropy_ms', 'gae_ms'] as const) {
    for (const run of runs) {
      if (!best[key] || run[key] < best[key]!.ms) best[key] = { ms: run[key], threads: run.threads }
    }
  }
  return { best, runs }
}

function main() {
  const args = parseArgs(process.argv.slice(2))
  const { device, repeat, rows, vocab, batch, steps } = args
  const info = backend()
  const machine = device === 'cpu'
    ? `${os.cpus()[0]?.model ?? 'cpu'}, ${info.threads} threads, ${info.simd}`
    : (devices().find((d) => d.kind === 'cuda') as { name: string } | undefined)?.name ?? device
  const results: Row[] = []
  const gb = (bytes: number, ms: number) => bytes / (ms / 1e3) / 1e9

  // Copy bandwidth: a large tensor clone (read + write), split over the thread pool.
  const big = randomTensor([rows * vocab], -1, 1, 1, device)
  const copyMs = time(() => big.clone(), repeat, device)
  const copyGbps = gb(2 * rows * vocab * 4, copyMs)
  results.push({ op: 'copy (clone)', shape: `[${rows * vocab}] f32`, ms: copyMs, gbps: copyGbps, copyShare: 1 })

  const logits = big.reshape([rows, vocab])
  const targetsHost = Tensor.empty([rows], { dtype: 'i32' })
  for (let i = 0; i < rows; i++) targetsHost.data[i] = (i * 7919) % vocab
  const targets = targetsHost.to(device)
  const logitBytes = rows * vocab * 4
  const add = (op: string, shape: string, ms: number, bytes?: number) => {
    const row: Row = { op, shape, ms }
    if (bytes !== undefined) {
      row.gbps = gb(bytes, ms)
      row.copyShare = row.gbps / copyGbps
    }
    results.push(row)
    return row
  }
  const lp = add('logprobs', `[${rows}, ${vocab}] f32`, time(() => ops.logprobs(logits, targets), repeat, device), logitBytes + rows * 12)
  const lpe = add('logprobs + entropy', `[${rows}, ${vocab}] f32`, time(() => ops.logprobs(logits, targets, { entropy: true }), repeat, device), logitBytes + rows * 16)
  const grad = randomTensor([rows], -1, 1, 2, device)
  add('logprobsBackward', `[${rows}, ${vocab}] f32`, time(() => ops.logprobsBackward(logits, targets, grad), Math.max(3, repeat >> 1), device), 2 * logitBytes + rows * 8)
  const bf16 = logits.cast('bf16')
  add('logprobs (bf16 logits)', `[${rows}, ${vocab}] bf16`, time(() => ops.logprobs(bf16, targets), repeat, device), logitBytes / 2 + rows * 12)

  const tokens = batch * steps
  const shape = `[${batch}, ${steps}]`
  const r = randomTensor([batch, steps], -1, 1, 3, device)
  const v = randomTensor([batch, steps], -1, 1, 4, device)
  const old = randomTensor([batch, steps], -1, 1, 5, device)
  const mask = Tensor.full([batch, steps], 1, { dtype: 'u8', device })
  const g = add('gae', shape, time(() => ops.gae(r, v, mask, { gamma: 1, lambda: 0.95 }), repeat * 5, device), tokens * (4 + 4 + 1 + 4 + 4))
  add('whiten', shape, time(() => ops.whiten(r, mask), repeat * 5, device), tokens * (4 + 1) * 2 + tokens * 4)
  add('klPenalty k3', shape, time(() => ops.klPenalty(r, v, mask, { estimator: 'k3' }), repeat * 5, device), tokens * 13)
  add('ppoPolicyLoss', shape, time(() => ops.ppoPolicyLoss(r, old, v, mask, { clipLow: 0.2, clipHigh: 0.28, dualClip: 3 }), repeat * 5, device), tokens * 17)
  add('valueLoss', shape, time(() => ops.valueLoss(r, old, v, mask), repeat * 5, device), tokens * 17)
  const pc = randomTensor([64], -80, -20, 6, device)
  const pr = randomTensor([64], -80, -20, 7, device)
  add('dpoLoss sigmoid', '[64]', time(() => ops.dpoLoss({ policyChosen: pc, policyRejected: pr, refChosen: pr, refRejected: pc }), repeat * 5, device))
  add('rewardLoss', '[64]', time(() => ops.rewardLoss(pc, pr, { centerCoef: 0.01 }), repeat * 5, device))

  let peerNote = 'peer not run (--no-peer)'
  let peerRuns: PeerResult[] = []
  if (args.peer) {
    const peer = runPeer(args)
    peerRuns = peer.runs
    if (peer.error) {
      peerNote = `peer failed: ${peer.error}`
    } else {
      const first = peer.runs[0]
      peerNote = `PyTorch ${first.torch} eager on ${first.device}${device === 'cpu' ? `, best of torch.set_num_threads(${peer.runs.map((x) => x.threads).join(', ')}) per op, OPENBLAS_NUM_THREADS=${process.env.OPENBLAS_NUM_THREADS ?? '2'}` : ''}`
      const link = (row: Row, best: { ms: number } | undefined, target: number) => {
        if (!best) return
        row.peerMs = best.ms
        row.speedup = best.ms / row.ms
        row.target = target
      }
      link(lp, peer.best.logprobs_ms, device === 'cpu' ? 5 : 1)
      link(lpe, peer.best.logprobs_entropy_ms, device === 'cpu' ? 10 : 1)
      link(g, peer.best.gae_ms, device === 'cpu' ? 20 : 1)
    }
  }

  const fmt = (x: number | undefined, digits = 2) => (x === undefined ? '' : x.toFixed(digits))
  console.log(`rlfarm kernels on ${machine} (${device}); ${peerNote}`)
  const header = ['op', 'shape', 'ms (median)', 'GB/s', 'of copy bw', 'torch ms', 'speed-up', 'target']
  const lines = results.map((row) => [
    row.op, row.shape, fmt(row.ms, 3), fmt(row.gbps, 1), row.copyShare === undefined ? '' : `${(row.copyShare * 100).toFixed(0)}%`,
    fmt(row.peerMs, 1), row.speedup === undefined ? '' : `${row.speedup.toFixed(1)}x`,
    row.target === undefined ? '' : `>= ${row.target}x ${row.speedup! >= row.target ? 'met' : 'MISSED'}`,
  ])
  printTable(header, lines, { markdown: true })
  if (args.json) {
    console.log(JSON.stringify({ machine, device, simd: info.simd, threads: info.threads, copyGbps, results, peer: peerRuns }))
  }
}

main()
