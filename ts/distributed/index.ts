// Data-parallel runs: the process group of this process, joined the way
// torchrun's ranks join (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT), with collectives from native/distributed: Gloo for host
// tensors, NCCL (loaded where present; backend().ncclLibrary) for CUDA
// tensors, picked by the tensor's device. With one rank nothing native is
// needed: collectives return their input.
import { backend, Tensor, type Device } from '../tensor.js'
import { native, type NativeProcessGroup } from '../native.js'
import { checkKeys, choiceOption, describe, numberOption } from '../util/options.js'

export type ReduceOp = 'sum' | 'avg' | 'max' | 'min'
const REDUCE_OPS: readonly ReduceOp[] = ['sum', 'avg', 'max', 'min']

export interface InitOptions {
  /** This process's rank; default RANK, or 0. */
  rank?: number
  /** Processes in the run; default WORLD_SIZE, or 1. */
  worldSize?: number
  /** Rank on this machine; default LOCAL_RANK, or the rank. */
  localRank?: number
  /** Where rank 0 serves the rendezvous store; default MASTER_ADDR, or 127.0.0.1. */
  masterAddr?: string
  /** Its port; default MASTER_PORT, or 29500. */
  masterPort?: number
  /** 'tcp' (rank 0 serves a store) or 'file://DIR' (Gloo's FileStore on a shared filesystem); default RLFARM_RDZV, or 'tcp'. */
  rdzv?: string
  /** How long a collective may wait for the other ranks; default RLFARM_DIST_TIMEOUT_MS, or 300000 (5 minutes). */
  timeoutMs?: number
  /** How long init waits for every rank to join; default RLFARM_RDZV_TIMEOUT_MS, or 300000. */
  rendezvousTimeoutMs?: number
}

export interface CollectiveOptions {
  timeoutMs?: number
}
export interface AllReduceOptions extends CollectiveOptions {
  op?: ReduceOp
}
export interface BroadcastOptions extends CollectiveOptions {
  root?: number
}

const INIT_KEYS = ['rank', 'worldSize', 'localRank', 'masterAddr', 'masterPort', 'rdzv', 'timeoutMs', 'rendezvousTimeoutMs'] as const

/** What to do when the addon has no Gloo; said by every path that needs it. */
export const GLOO_MISSING =
  'this rlfarm addon was built without Gloo, which data-parallel runs need: install it ' +
  '(Debian/Ubuntu: `apt-get install libgloo-dev`) and rebuild the addon (`npm rebuild rlfarm`, or `npm run build:native` in a checkout)'

interface State {
  rank: number
  worldSize: number
  localRank: number
  group: NativeProcessGroup | undefined
  timeoutMs: number
  exchanges: number
  /** This rank's key of the exchange before the last, erased once the last is done. */
  previousKey: string | undefined
}
let state: State | undefined

function envInteger(name: string, fallback: number, min: number): number {
  const text = process.env[name]
  if (text === undefined || text === '') return fallback
  if (!/^\d+$/.test(text.trim())) throw new Error(`distributed: ${name} must be a non-negative integer; got '${text}'`)
  const value = Number(text)
  if (value < min) throw new Error(`distributed: ${name} must be at least ${min}; got ${value}`)
  return value
}

function integerOption(name: string, value: unknown, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = numberOption('distributed.init', name, value, fallback)
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new RangeError(`distributed.init: ${name} must be an integer in ${min}..${max}; got ${describe(value ?? n)}`)
  }
  return n
}

/** Whether Gloo was compiled into the addon (needed for more than one rank). */
export function glooAvailable(): boolean {
  return backend().glooVersion !== ''
}

/**
 * Joins the process group. Every rank calls it; it resolves when all have
 * joined and are connected, and fails naming the ranks that never came.
 */
export async function init(options: InitOptions = {}): Promise<void> {
  checkKeys('distributed.init', options, INIT_KEYS)
  if (state) throw new Error('distributed.init: already initialised (call distributed.destroy() first)')
  const worldSize = integerOption('worldSize', options.worldSize, envInteger('WORLD_SIZE', 1, 1), 1)
  const rank = integerOption('rank', options.rank, envInteger('RANK', 0, 0), 0)
  if (rank >= worldSize) {
    throw new RangeError(`distributed.init: rank ${rank} is outside 0..${worldSize - 1} for a world size of ${worldSize} (RANK / WORLD_SIZE)`)
  }
  const localRank = integerOption('localRank', options.localRank, envInteger('LOCAL_RANK', rank, 0), 0)
  const timeoutMs = integerOption('timeoutMs', options.timeoutMs, envInteger('RLFARM_DIST_TIMEOUT_MS', 300_000, 1), 1)
  const rendezvousTimeoutMs = integerOption(
    'rendezvousTimeoutMs', options.rendezvousTimeoutMs, envInteger('RLFARM_RDZV_TIMEOUT_MS', 300_000, 1), 1,
  )
  const masterAddr = options.masterAddr ?? process.env.MASTER_ADDR ?? '127.0.0.1'
  if (typeof masterAddr !== 'string' || masterAddr === '') throw new TypeError(`distributed.init: masterAddr must be a host name or address; got ${describe(masterAddr)}`)
  const masterPort = integerOption('masterPort', options.masterPort, envInteger('MASTER_PORT', 29500, 0), 1, 65535)
  const rdzv = options.rdzv ?? (process.env.RLFARM_RDZV || 'tcp')
  let fileDir = ''
  if (rdzv.startsWith('file://')) {
    fileDir = rdzv.slice('file://'.length)
    if (fileDir === '') throw new Error(`distributed.init: rdzv 'file://' needs a directory, as in file:///shared/rdzv`)
  } else if (rdzv !== 'tcp') {
    throw new Error(`distributed.init: rdzv must be 'tcp' or 'file://DIR'; got '${rdzv}'`)
  }
  let group: NativeProcessGroup | undefined
  if (worldSize > 1) {
    if (!glooAvailable()) throw new Error(`distributed.init: WORLD_SIZE=${worldSize} needs Gloo, but ${GLOO_MISSING}`)
    group = new native.NativeProcessGroup()
    await group.connect({
      rank, worldSize, localRank, rendezvous: fileDir ? 'file' : 'tcp', masterAddr, masterPort, fileDir,
      transportHost: process.env.RLFARM_TRANSPORT_HOST ?? '', timeoutMs, rendezvousTimeoutMs,
    })
  }
  state = { rank, worldSize, localRank, group, timeoutMs, exchanges: 0, previousKey: undefined }
}

function current(what: string): State {
  if (!state) throw new Error(`distributed.${what}: call distributed.init() first`)
  return state
}

function timeoutOf(what: string, options: CollectiveOptions): number | undefined {
  const t = options.timeoutMs
  if (t === undefined) return undefined
  if (typeof t !== 'number' || !(t > 0)) throw new RangeError(`distributed.${what}: timeoutMs must be a positive number; got ${describe(t)}`)
  return t
}

const NO_TENSOR = Symbol('no tensor')

// What every collective checks first: its options, init, its tensor.
function begin(what: string, t: unknown, options: CollectiveOptions, keys: readonly string[]): { s: State; timeoutMs: number | undefined } {
  checkKeys(`distributed.${what}`, options, keys)
  const s = current(what)
  if (t !== NO_TENSOR && !(t instanceof Tensor)) throw new TypeError(`distributed.${what}: expected a Tensor; got ${describe(t)}`)
  return { s, timeoutMs: timeoutOf(what, options) }
}

/** Reduces `t` over every rank, in place; resolves to `t`. avg divides the sum by the world size. */
export async function allReduce(t: Tensor, options: AllReduceOptions = {}): Promise<Tensor> {
  const { s, timeoutMs } = begin('allReduce', t, options, ['op', 'timeoutMs'])
  const op = choiceOption('distributed.allReduce', 'op', options.op, REDUCE_OPS, 'sum')
  if (s.group) await s.group.allReduce(t.native, op, timeoutMs)
  return t
}

/** Copies rank `root`'s values into `t` on every rank, in place; resolves to `t`. */
export async function broadcast(t: Tensor, options: BroadcastOptions = {}): Promise<Tensor> {
  const { s, timeoutMs } = begin('broadcast', t, options, ['root', 'timeoutMs'])
  const root = numberOption('distributed.broadcast', 'root', options.root, 0)
  if (!Number.isInteger(root) || root < 0 || root >= s.worldSize) {
    throw new RangeError(`distributed.broadcast: root must be a rank in 0..${s.worldSize - 1}; got ${describe(options.root)}`)
  }
  if (s.group) await s.group.broadcast(t.native, root, timeoutMs)
  return t
}

/** Every rank's `t`, stacked in rank order: a new tensor of shape [worldSize, ...t.shape]. */
export async function allGather(t: Tensor, options: CollectiveOptions = {}): Promise<Tensor> {
  const { s, timeoutMs } = begin('allGather', t, options, ['timeoutMs'])
  if (!s.group) return t.clone().reshape([1, ...t.shape])
  // On t's device: a CUDA tensor's collectives run on NCCL, which takes every tensor of the call there.
  const out = Tensor.empty([s.worldSize, ...t.shape], { dtype: t.dtype, device: t.device as Device })
  await s.group.allGather(t.native, out.native, timeoutMs)
  return out
}

/**
 * Reduces `t` over every rank and gives rank r the r-th of worldSize equal
 * slices of its first dimension: a new tensor of shape [t.shape[0] / worldSize, ...].
 */
export async function reduceScatter(t: Tensor, options: AllReduceOptions = {}): Promise<Tensor> {
  const { s, timeoutMs } = begin('reduceScatter', t, options, ['op', 'timeoutMs'])
  const op = choiceOption('distributed.reduceScatter', 'op', options.op, REDUCE_OPS, 'sum')
  const rows = t.shape[0]
  if (t.shape.length === 0 || rows % s.worldSize !== 0) {
    throw new RangeError(`distributed.reduceScatter: the first dimension (${t.shape.length ? rows : 'none'}) must divide by the world size ${s.worldSize}; shape [${t.shape.join(', ')}]`)
  }
  if (!s.group) return t.clone()
  const out = Tensor.empty([rows / s.worldSize, ...t.shape.slice(1)], { dtype: t.dtype, device: t.device as Device })
  await s.group.reduceScatter(t.native, out.native, op, timeoutMs)
  return out
}

/** Resolves when every rank has called it. */
export async function barrier(options: CollectiveOptions = {}): Promise<void> {
  const { s, timeoutMs } = begin('barrier', NO_TENSOR, options, ['timeoutMs'])
  if (s.group) await s.group.barrier(timeoutMs)
}

/**
 * Every rank's `value`, in rank order, through the rendezvous store (for
 * small control messages such as configs). Ranks must call it in the same
 * order, awaiting each: a rank's key of one exchange is erased once the next is done.
 */
export async function exchange(name: string, value: string): Promise<string[]> {
  const s = current('exchange')
  if (!s.group) return [value]
  const key = `exchange/${s.exchanges++}/${name}`
  await s.group.storeSet(`${key}/${s.rank}`, value)
  const out: string[] = []
  for (let r = 0; r < s.worldSize; r++) out.push(r === s.rank ? value : await s.group.storeGet(`${key}/${r}`, s.timeoutMs))
  // Every rank has set its key of this exchange, so every rank has read all
  // of the one before: this rank's key there is no longer needed.
  if (s.previousKey !== undefined) await s.group.storeErase(s.previousKey)
  s.previousKey = `${key}/${s.rank}`
  return out
}

/** @internal The native group of this process (undefined with one rank), for native work that takes its turn among the collectives. */
export function nativeGroup(what: string): NativeProcessGroup | undefined {
  return current(what).group
}

/** Leaves the group (after every call already made); init may be called again. */
export async function destroy(): Promise<void> {
  const s = state
  state = undefined
  if (s?.group) await s.group.destroy()
}

export const distributed = {
  init,
  destroy,
  allReduce,
  broadcast,
  allGather,
  reduceScatter,
  barrier,
  exchange,
  glooAvailable,
  /** Whether init has run (and destroy has not). */
  get initialized(): boolean {
    return state !== undefined
  },
  /** This process's rank (0 before init). */
  get rank(): number {
    return state?.rank ?? 0
  },
  /** The number of ranks (1 before init). */
  get worldSize(): number {
    return state?.worldSize ?? 1
  },
  /** The rank on this machine (0 before init). */
  get localRank(): number {
    return state?.localRank ?? 0
  },
}
