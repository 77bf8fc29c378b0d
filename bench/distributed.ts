// npm run bench:distributed -- [--ranks 2] [--sizes 1,4,16,64,256,500] [--repeat 5]
//
// All-reduce bus bandwidth of the Gloo process group over loopback, the ranks
// being local processes (this script started again with RANK/WORLD_SIZE),
// beside the copy bandwidth of the same machine (one TypedArray.set of the
// same size, single-threaded, as Gloo's reduction loop is). Sizes are MB
// (1e6 bytes) of f32. Bus bandwidth is nccl-tests' figure: 2(n-1)/n x bytes /
// time, the bytes each rank sends and receives in a ring all-reduce. Each
// figure is the median of --repeat timed calls after one warm-up call.
// Prints a table and a markdown block for bench/RESULTS.md.
import { spawn } from 'node:child_process'
import net from 'node:net'
import os from 'node:os'
import { backend, distributed, Tensor } from 'rlfarm'
import { benchArgs } from './args'
import { median } from './peer'

interface Args {
  ranks: number
  sizes: number[]
  repeat: number
}

function parse(argv: string[]): Args {
  return benchArgs('distributed', argv, { ranks: 2, sizes: [1, 4, 16, 64, 256, 500], repeat: 5 }, { min: { ranks: 2 } }).args
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

async function main(): Promise<void> {
  const args = parse(process.argv.slice(2))
  if (process.env.RANK !== undefined) return rank(args)
  if (!distributed.glooAvailable()) throw new Error('bench:distributed: this addon was built without Gloo (apt-get install libgloo-dev, then npm run build:native)')
  const port = String(await freePort())
  const outputs = await Promise.all(
    [...Array(args.ranks).keys()].map(
      (r) =>
        new Promise<string>((resolve, reject) => {
          const child = spawn(process.execPath, [...process.execArgv, __filename, ...process.argv.slice(2)], {
            env: { ...process.env, RANK: String(r), WORLD_SIZE: String(args.ranks), MASTER_ADDR: '127.0.0.1', MASTER_PORT: port, RLFARM_THREADS: '1' },
            stdio: ['ignore', 'pipe', 'inherit'],
          })
          let out = ''
          child.stdout.on('data', (d) => (out += d))
          child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`rank ${r} exited with code ${code}`))))
        }),
    ),
  )
  const rows = JSON.parse(outputs[0].trim()) as Row[]
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
