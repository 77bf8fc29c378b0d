// npm run bench:gemm -- [--repeat 7] [--rounds 3] [--no-peer] [--no-vocab] [--only TEXT] [--json]
//
// --only keeps the products whose name contains TEXT (e.g. --only 50257).
//
// Times the CPU matrix multiply on the products of a transformer layer with
// 2048 tokens (forward y = x W^T, backward dx = dy W and dW = dy^T x, for
// Linear layers 256 <-> 768 and 256 <-> 1024 and the 768 -> 50257 LM head)
// and on per-head attention (64 heads of 128 x 128 x 64 and 128 x 64 x 128).
// Each available gemm backend (builtin, openblas) is timed in the same loop,
// one call of each in turn, so that a busy machine slows them alike; the peer
// is PyTorch's torch.matmul / torch.bmm on the same layouts
// (bench/torch_gemm.py, OPENBLAS_NUM_THREADS=2, torch threads 1 and 2, the
// faster per shape). rlfarm and the peer take turns shape by shape for
// --rounds rounds, so that a machine shared with other work slows both alike;
// each figure is the median over rounds of the median time of --repeat calls. Reports GFLOP/s =
// 2 M N K batch / time, and the machine's FMA peak measured by
// bench/fma_peak.c when a C compiler is found.
// Prints a table, a markdown block for bench/RESULTS.md, and with --json a
// last JSON line.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { backend, ops, setGemmBackend, Tensor } from 'rlfarm'
import { benchArgs, printTable } from './args'
import { median, runPython } from './peer'

interface Args {
  repeat: number
  rounds: number
  peer: boolean
  vocab: boolean
  only?: string
  json: boolean
}

function parseArgs(argv: string[]): Args {
  const { args } = benchArgs('gemm', argv, { repeat: 7, rounds: 3, peer: true, vocab: true, only: '', json: false })
  return { ...args, only: args.only === '' ? undefined : args.only }
}

interface Shape {
  name: string
  /** What the product is in a model. */
  role: string
  batch: number // 0: one 2-D product
  M: number
  N: number
  K: number
  transA: boolean
  transB: boolean
  /** Fewer repeats for the products that take a second each. */
  repeat?: number
}

const TOKENS = 2048

/** The three products of a Linear(inputs, outputs) layer over TOKENS tokens. */
function linear(inputs: number, outputs: number, repeat?: number): Shape[] {
  const layer = `Linear ${inputs}->${outputs}`
  return [
    { name: `${TOKENS}x${outputs}x${inputs} NT`, role: `${layer} forward y = x W^T`, batch: 0, M: TOKENS, N: outputs, K: inputs, transA: false, transB: true, repeat },
    { name: `${TOKENS}x${inputs}x${outputs} NN`, role: `${layer} backward dx = dy W`, batch: 0, M: TOKENS, N: inputs, K: outputs, transA: false, transB: false, repeat },
    { name: `${outputs}x${inputs}x${TOKENS} TN`, role: `${layer} backward dW = dy^T x`, batch: 0, M: outputs, N: inputs, K: TOKENS, transA: true, transB: false, repeat },
  ]
}

function shapes(args: Args): Shape[] {
  const heads = 64
  const out: Shape[] = [
    ...linear(256, 768),
    ...linear(768, 256),
    ...linear(256, 1024),
    ...linear(1024, 256),
    { name: `${heads} x 128x128x64 NT`, role: 'attention scores Q K^T, dP = dO V^T', batch: heads, M: 128, N: 128, K: 64, transA: false, transB: true },
    { name: `${heads} x 128x64x128 NN`, role: 'attention P V, dQ = dS K', batch: heads, M: 128, N: 64, K: 128, transA: false, transB: false },
    { name: `${heads} x 128x64x128 TN`, role: 'attention dV = P^T dO, dK = dS^T Q', batch: heads, M: 128, N: 64, K: 128, transA: true, transB: false },
  ]
  if (args.vocab) out.push(...linear(768, 50257, Math.min(args.repeat, 3)))
  const kept = args.only === undefined ? out : out.filter((s) => s.name.includes(args.only!))
  if (!kept.length) throw new Error(`--only ${args.only}: no product's name contains it (${out.map((s) => s.name).join(', ')})`)
  return kept
}

/** Fast seeded uniform fill in [-1, 1). */
function randomTensor(shape: number[], seed: number): Tensor {
  const t = Tensor.empty(shape)
  const data = t.data as Float32Array
  let s = seed >>> 0 || 1
  for (let i = 0; i < data.length; i++) {
    s ^= s << 13
    s ^= s >>> 17
    s ^= s << 5
    data[i] = (s >>> 0) / 2147483648 - 1
  }
  return t
}

/** A rows x cols operand stored as sgemm reads it: [cols, rows] when transposed, with a batch dimension first. */
function operand(batch: number, rows: number, cols: number, transposed: boolean, seed: number): Tensor {
  const stored = transposed ? [cols, rows] : [rows, cols]
  return randomTensor(batch ? [batch, ...stored] : stored, seed)
}

const flops = (s: Shape) => 2 * s.M * s.N * s.K * Math.max(1, s.batch)

/** Median ms per backend, the backends timed in turn within each repeat. */
function timeBackends(s: Shape, gemms: string[], repeat: number): Record<string, number> {
  const a = operand(s.batch, s.M, s.K, s.transA, 1)
  const b = operand(s.batch, s.K, s.N, s.transB, 2)
  const c = Tensor.empty(s.batch ? [s.batch, s.M, s.N] : [s.M, s.N])
  const call = () => ops.matmul(a, b, { transA: s.transA, transB: s.transB, c })
  const times: Record<string, number[]> = Object.fromEntries(gemms.map((g) => [g, []]))
  for (const gemm of gemms) {
    setGemmBackend(gemm as 'builtin')
    call() // warm-up: packing buffers, OpenBLAS's first call
  }
  for (let r = 0; r < repeat; r++) {
    for (const gemm of gemms) {
      setGemmBackend(gemm as 'builtin')
      const start = process.hrtime.bigint()
      call()
      times[gemm].push(Number(process.hrtime.bigint() - start) / 1e6)
    }
  }
  for (const t of [a, b, c]) t.dispose()
  return Object.fromEntries(gemms.map((g) => [g, median(times[g])]))
}

interface PeerRun {
  torch: string
  threads: number
  ms: Record<string, number>
}

/** One round of the peer: torch threads 1 and 2; per shape the faster, in ms. */
function runPeer(list: Shape[], repeat: number): { best: Record<string, { ms: number; threads: number }>; runs: PeerRun[]; error?: string } {
  const runs: PeerRun[] = []
  for (const threads of [1, 2]) {
    const r = runPython<PeerRun>('torch_gemm.py', ['--threads', threads, '--repeat', repeat, '--shapes', JSON.stringify(list)])
    if ('error' in r) return { best: {}, runs, error: r.error }
    runs.push(r)
  }
  const best: Record<string, { ms: number; threads: number }> = {}
  for (const run of runs) {
    for (const [name, ms] of Object.entries(run.ms)) {
      if (!best[name] || ms < best[name].ms) best[name] = { ms, threads: run.threads }
    }
  }
  return { best, runs }
}

type Peak = { avx512_gflops: number | null; avx2_gflops: number | null }

/**
 * Compiles bench/fma_peak.c and runs it with one thread per thread of
 * rlfarm's pool, `runs` times: the highest rate is the peak (a run that
 * shares the cores with other work only comes out lower).
 */
function fmaPeak(threads: number, runs: number): Peak | undefined {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rlfarm-fma-'))
  try {
    const binary = path.join(dir, 'fma_peak')
    const compiled = spawnSync(process.env.CC ?? 'cc', ['-O2', '-pthread', path.join(__dirname, 'fma_peak.c'), '-o', binary], { encoding: 'utf8' })
    if (compiled.status !== 0) return undefined
    const measured: Peak[] = []
    for (let i = 0; i < runs; i++) {
      const r = spawnSync(binary, [String(threads)], { encoding: 'utf8' })
      if (r.status !== 0) return undefined
      measured.push(JSON.parse(r.stdout))
    }
    const highest = (key: keyof Peak) => (measured[0][key] === null ? null : Math.max(...measured.map((m) => m[key] ?? 0)))
    return { avx512_gflops: highest('avx512_gflops'), avx2_gflops: highest('avx2_gflops') }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

function main() {
  const args = parseArgs(process.argv.slice(2))
  const info = backend()
  const gemms = info.gemmAvailable
  const original = info.gemm
  const list = shapes(args)
  const machine = `${os.cpus()[0]?.model ?? 'cpu'}, rlfarm ${info.threads} threads, ${info.simd}`
  const peak = fmaPeak(info.threads, 5)
  const peakGflops = peak ? peak.avx512_gflops ?? peak.avx2_gflops ?? undefined : undefined

  // Rounds over the shapes: rlfarm's backends on a shape, then the peer on it.
  const rlfarmMs: Record<string, Record<string, number[]>> = Object.fromEntries(list.map((s) => [s.name, Object.fromEntries(gemms.map((g) => [g, []]))]))
  const peerMs: Record<string, Array<{ ms: number; threads: number }>> = Object.fromEntries(list.map((s) => [s.name, []]))
  const peerRuns: PeerRun[] = []
  let peerError: string | undefined
  for (let round = 0; round < args.rounds; round++) {
    for (const s of list) {
      const ms = timeBackends(s, gemms, s.repeat ?? args.repeat)
      for (const g of gemms) rlfarmMs[s.name][g].push(ms[g])
      if (args.peer && !peerError) {
        const peer = runPeer([s], args.repeat)
        peerError = peer.error
        peerRuns.push(...peer.runs)
        if (peer.best[s.name]) peerMs[s.name].push(peer.best[s.name])
      }
    }
  }
  setGemmBackend(original as 'builtin')
  const gflopsOf = (s: Shape, ms: number) => flops(s) / (ms / 1e3) / 1e9
  const results = list.map((s) => {
    const ms = Object.fromEntries(gemms.map((g) => [g, median(rlfarmMs[s.name][g])]))
    const peer = peerMs[s.name].length ? [...peerMs[s.name]].sort((a, b) => a.ms - b.ms)[peerMs[s.name].length >> 1] : undefined
    return {
      ...s,
      ms,
      gflops: Object.fromEntries(gemms.map((g) => [g, gflopsOf(s, ms[g])])),
      torch: peer ? { gflops: gflopsOf(s, peer.ms), threads: peer.threads } : undefined,
    }
  })

  const peerNote = !args.peer
    ? 'peer not run (--no-peer)'
    : peerError
      ? `peer failed: ${peerError}`
      : `PyTorch ${peerRuns[0].torch} torch.matmul/bmm, best of torch.set_num_threads(1, 2) per shape, OPENBLAS_NUM_THREADS=${process.env.OPENBLAS_NUM_THREADS ?? '2'}`

  const fmt = (x: number | undefined, digits = 1) => (x === undefined || !Number.isFinite(x) ? '' : x.toFixed(digits))
  const header = ['product', 'role', ...gemms.map((g) => `${g} GF/s`), 'torch GF/s', ...(gemms.includes('openblas') ? ['builtin / openblas'] : []), 'builtin / torch']
  if (peakGflops) header.push('builtin of peak')
  const lines = results.map((r) => {
    const torchGflops = r.torch?.gflops
    const row = [r.name, r.role, ...gemms.map((g) => fmt(r.gflops[g]))]
    row.push(r.torch ? `${fmt(r.torch.gflops)} (${r.torch.threads}t)` : '')
    if (gemms.includes('openblas')) row.push(`${fmt(r.gflops.builtin / r.gflops.openblas, 2)}x`)
    row.push(torchGflops ? `${fmt(r.gflops.builtin / torchGflops, 2)}x` : '')
    if (peakGflops) row.push(`${fmt((100 * r.gflops.builtin) / peakGflops, 0)}%`)
    return row
  })
  console.log(`rlfarm gemm on ${machine}; ${args.rounds} rounds of ${args.repeat} calls; ${peerNote}`)
  if (peak) console.log(`FMA peak with ${info.threads} threads: AVX-512 ${peak.avx512_gflops ?? 'n/a'} GFLOP/s, AVX2 ${peak.avx2_gflops ?? 'n/a'} GFLOP/s (bench/fma_peak.c, best of 5)`)
  printTable(header, lines, { markdown: true })
  if (args.json) console.log(JSON.stringify({ machine, peak, rounds: args.rounds, results, rlfarmMs, peer: peerRuns }))
}

main()
