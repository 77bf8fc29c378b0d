// `rlfarm <command> ... --nproc N`: starts this node's ranks as child
// processes with torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), shows local rank 0's output as
// it is (its progress bar included) and the others' stderr prefixed with their rank,
// and fails as a whole: when a rank fails the others are stopped, and the exit
// code and the message name the rank that failed first.
import { spawn, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { GLOO_MISSING, glooAvailable } from './index.js'

export interface LaunchOptions {
  nproc: number
  nnodes: number
  nodeRank: number
  masterAddr: string
  /** Default: a free port when nnodes is 1, else 29500 (as torchrun). */
  masterPort?: number
  /** 'tcp' or 'file://DIR'. */
  rdzv: string
  /** The command line each rank runs, without the launcher's flags. */
  args: string[]
  /** Seconds the other ranks get to stop after a failure before SIGKILL. */
  graceSeconds?: number
}

/** The launcher's flags, as node:util parseArgs options. */
/** The launcher's flags (README "Data-parallel"; needs Gloo), as the CLI's flag table takes them. */
export const LAUNCH_FLAGS = {
  nproc: { type: 'string', value: 'N', help: 'data-parallel: start N ranks on this machine (default 1; README "Data-parallel")' },
  nnodes: { type: 'string', value: 'M', help: 'machines in the run, each running this same command (default 1)' },
  'node-rank': { type: 'string', value: 'R', help: "this machine's index in 0..M-1 (default 0)" },
  'master-addr': { type: 'string', value: 'H', help: "where node 0's rank 0 serves the rendezvous (default 127.0.0.1)" },
  'master-port': { type: 'string', value: 'P', help: 'its port (default: a free port with one node, else 29500)' },
  rdzv: { type: 'string', value: 'file://DIR', help: 'rendezvous through files in DIR on a shared filesystem instead' },
} as const

/** Parses the launcher's flags; undefined when none is given (a plain single-process run). */
export function launchOptionsFrom(values: Record<string, unknown>, argv: readonly string[]): LaunchOptions | undefined {
  const given = Object.keys(LAUNCH_FLAGS).filter((k) => values[k] !== undefined)
  if (given.length === 0) return undefined
  const int = (name: string, fallback: number, min: number, max = 1 << 20) => {
    const v = values[name]
    if (v === undefined) return fallback
    const n = Number(v)
    if (!Number.isInteger(n) || n < min || n > max) throw new RangeError(`--${name} must be an integer in ${min}..${max}; got '${v}'`)
    return n
  }
  const nnodes = int('nnodes', 1, 1)
  const options: LaunchOptions = {
    nproc: int('nproc', 1, 1, 1024),
    nnodes,
    nodeRank: int('node-rank', 0, 0, nnodes - 1),
    masterAddr: (values['master-addr'] as string | undefined) ?? '127.0.0.1',
    masterPort: values['master-port'] === undefined ? undefined : int('master-port', 0, 1, 65535),
    rdzv: (values.rdzv as string | undefined) ?? 'tcp',
    args: withoutLaunchFlags(argv),
  }
  if (options.rdzv !== 'tcp' && !/^file:\/\/.+/.test(options.rdzv)) throw new RangeError(`--rdzv must be tcp or file://DIR; got '${options.rdzv}'`)
  if (nnodes > 1 && options.masterAddr === '127.0.0.1' && values['master-addr'] === undefined) {
    process.stderr.write('rlfarm: --nnodes > 1 without --master-addr: using 127.0.0.1 (only right when every "node" is this machine)\n')
  }
  return options
}

/** `argv` without the launcher's flags (both `--flag value` and `--flag=value`). */
export function withoutLaunchFlags(argv: readonly string[]): string[] {
  const names = Object.keys(LAUNCH_FLAGS).map((k) => `--${k}`)
  const out: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (names.includes(a)) {
      i++
      continue
    }
    if (names.some((n) => a.startsWith(`${n}=`))) continue
    out.push(a)
  }
  return out
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `was killed by ${signal}` : `exited with code ${code}`
}

/** Runs this node's ranks; resolves to the exit code of the whole. */
export async function launch(o: LaunchOptions): Promise<number> {
  const worldSize = o.nproc * o.nnodes
  if (worldSize > 1 && !glooAvailable()) throw new Error(`--nproc ${o.nproc} --nnodes ${o.nnodes}: ${GLOO_MISSING}`)
  const masterPort = o.masterPort ?? (o.nnodes === 1 ? await freePort() : 29500)
  const bin = path.join(__dirname, '..', '..', 'bin', 'rlfarm.js')
  const children: { rank: number; child: ChildProcess; done: boolean }[] = []
  let failure: { rank: number; code: number | null; signal: NodeJS.Signals | null } | undefined
  let killTimer: NodeJS.Timeout | undefined

  const stopOthers = () => {
    for (const c of children) if (!c.done) c.child.kill('SIGTERM')
    killTimer = setTimeout(() => {
      for (const c of children) if (!c.done) c.child.kill('SIGKILL')
    }, (o.graceSeconds ?? 10) * 1000)
    killTimer.unref()
  }
  // Ctrl-C reaches every rank of the terminal's process group by itself; a
  // SIGTERM sent to the launcher alone is passed on.
  const onTerm = () => {
    for (const c of children) if (!c.done) c.child.kill('SIGTERM')
  }
  const onInt = () => {}
  process.on('SIGTERM', onTerm)
  process.on('SIGINT', onInt)

  const exits: Promise<void>[] = []
  for (let local = 0; local < o.nproc; local++) {
    const rank = o.nodeRank * o.nproc + local
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      RANK: String(rank),
      WORLD_SIZE: String(worldSize),
      LOCAL_RANK: String(local),
      LOCAL_WORLD_SIZE: String(o.nproc),
      MASTER_ADDR: o.masterAddr,
      MASTER_PORT: String(masterPort),
      RLFARM_RDZV: o.rdzv,
      // Ranks share this machine's cores rather than each taking all of them.
      RLFARM_THREADS: process.env.RLFARM_THREADS ?? String(Math.max(1, Math.floor(os.availableParallelism() / o.nproc))),
    }
    // The other ranks' stdout would repeat rank 0's results; their stderr (notes, errors) is shown.
    const child = spawn(process.execPath, [bin, ...o.args], { env, stdio: local === 0 ? 'inherit' : ['ignore', 'ignore', 'pipe'] })
    const entry = { rank, child, done: false }
    children.push(entry)
    if (local !== 0) {
      readline.createInterface({ input: child.stderr! }).on('line', (line) => process.stderr.write(`[rank ${rank}] ${line}\n`))
    }
    exits.push(
      new Promise((resolve) => {
        const ended = (code: number | null, signal: NodeJS.Signals | null) => {
          if (entry.done) return
          entry.done = true
          if ((code !== 0 || signal) && !failure) {
            failure = { rank, code, signal }
            stopOthers()
          }
          resolve()
        }
        // A process that could not be started emits no 'exit'.
        child.on('error', (err) => {
          process.stderr.write(`rlfarm: rank ${rank} could not start: ${err.message}\n`)
          if (child.pid === undefined) ended(1, null)
        })
        child.on('exit', ended)
      }),
    )
  }
  await Promise.all(exits)
  if (killTimer) clearTimeout(killTimer)
  process.off('SIGTERM', onTerm)
  process.off('SIGINT', onInt)
  if (!failure) return 0
  process.stderr.write(`rlfarm: rank ${failure.rank} of ${worldSize} ${describeExit(failure.code, failure.signal)}; the other ranks of this node were stopped\n`)
  return failure.code && failure.code > 0 ? failure.code : 1
}
