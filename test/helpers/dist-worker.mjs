// One rank of the distributed tests (test/distributed.test.ts): joins the
// group from RANK/WORLD_SIZE/MASTER_* (and RLFARM_RDZV), runs the scenario
// named by argv[2], and writes one JSON line, what it saw or { error }, to
// the file TEST_RESULT_FILE (or stdout).
import fs from 'node:fs'
import { AdamW, distributed, Model, Tensor } from 'rlfarm'
import { dataParallel, nativeGroup, optimizerState, overlapBackward, shardOptimizer } from 'rlfarm/internal'

const scenario = process.argv[2]
const rank = Number(process.env.RANK)
const worldSize = Number(process.env.WORLD_SIZE)

// Small integers: exact in f32, bf16 and i32 whatever the order of the sums.
const value = (r, i) => ((i * 7 + r * 5) % 23) - 11
const bf16 = (x) => new Uint32Array(new Float32Array([x]).buffer)[0] >>> 16
const fromBf16 = (h) => new Float32Array(new Uint32Array([h << 16]).buffer)[0]

function make(dtype, n, r) {
  if (dtype === 'f32') return Tensor.from(Float32Array.from({ length: n }, (_, i) => value(r, i)))
  if (dtype === 'i32') return Tensor.from(Int32Array.from({ length: n }, (_, i) => value(r, i)))
  return Tensor.from(Uint16Array.from({ length: n }, (_, i) => bf16(value(r, i))))
}
const read = (t) => (t.dtype === 'bf16' ? Array.from(t.data, fromBf16) : Array.from(t.data))

// A 3-layer model and this rank's gradient at its log-probs, for the overlap scenarios.
const OVERLAP_MODEL = { arch: 'gpt2', vocab: 64, dim: 32, layers: 3, heads: 2, maxPositions: 16 }
async function overlapForward(model) {
  const tokens = Tensor.from(Int32Array.from({ length: 2 * 12 }, (_, i) => (i * 7 + rank * 13) % 64), [2, 12])
  const { logp } = await model.forward(tokens, { train: true })
  return { gradLogp: Tensor.from(Float32Array.from({ length: 2 * 11 }, (_, i) => Math.sin(i + 3 * rank)), logp.shape) }
}

const scenarios = {
  async collectives() {
    const out = { reduce: {}, broadcast: {}, gather: {}, scatter: {} }
    for (const dtype of ['f32', 'bf16', 'i32']) {
      for (const n of [1, 7, 1001, 65537]) {
        for (const op of ['sum', 'avg', 'max', 'min']) {
          const t = make(dtype, n, rank)
          await distributed.allReduce(t, { op })
          out.reduce[`${dtype}/${n}/${op}`] = read(t)
        }
        const b = make(dtype, n, rank)
        await distributed.broadcast(b, { root: worldSize - 1 })
        out.broadcast[`${dtype}/${n}`] = read(b)
        const g = await distributed.allGather(make(dtype, n, rank))
        out.gather[`${dtype}/${n}`] = { shape: g.shape, values: read(g) }
        const s = await distributed.reduceScatter(make(dtype, n * worldSize, rank).reshape([worldSize, n]))
        out.scatter[`${dtype}/${n}`] = { shape: s.shape, values: read(s) }
      }
    }
    // Calls made without waiting run in the order they were made, on every rank.
    const sizes = [3, 70001, 5, 1000, 2, 40000, 9, 17]
    const pending = sizes.map((n) => distributed.allReduce(make('i32', n, rank)))
    out.concurrent = (await Promise.all(pending)).map((t) => read(t).slice(0, 3))
    await distributed.barrier()
    return out
  },
  async silent() {
    // Rank 0 reduces; the others never make the call, then wait to be stopped.
    if (rank === 0) {
      const started = Date.now()
      try {
        await distributed.allReduce(make('f32', 4, 0), { timeoutMs: 1500 })
        return { error: 'no error' }
      } catch (err) {
        return { error: err.message, seconds: (Date.now() - started) / 1000 }
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 8000))
    return {}
  },
  async exchange() {
    return { values: await distributed.exchange('hello', `from ${rank}`) }
  },
  async exchanges() {
    // The files of the file store after 10 and after 40 exchanges: each rank erases its old keys.
    const dir = process.env.RLFARM_RDZV.slice('file://'.length)
    const files = []
    for (let k = 1; k <= 40; k++) {
      await distributed.exchange('step', `${rank}/${k}`)
      if (k === 10 || k === 40) {
        await distributed.barrier()
        files.push(fs.readdirSync(dir).length)
        await distributed.barrier()
      }
    }
    return { files }
  },
  async rankZeroExits() {
    // Rank 0 leaves (a moment after both are in, so rank 1 is waiting on the
    // store by then); rank 1 waits for a message rank 0 never sends.
    await distributed.exchange('ready', '')
    if (rank === 0) {
      await new Promise((resolve) => setTimeout(resolve, 2000))
      return {}
    }
    const started = Date.now()
    try {
      await distributed.exchange('never', 'from 1')
      return { error: 'no error' }
    } catch (err) {
      return { error: err.message, seconds: (Date.now() - started) / 1000 }
    }
  },
  async overlap() {
    // The gradients summed bucket by bucket during backward against one
    // all-reduce after it, with buckets per layer and one bucket; with 3
    // ranks the last has no rows and only takes part in the sums.
    const dp = dataParallel()
    const hasRows = !(worldSize === 3 && rank === worldSize - 1)
    const reference = Model.create(OVERLAP_MODEL, { seed: 3 })
    if (hasRows) await dp.backwardAndReduce(reference, await overlapForward(reference))
    else await dp.allReduceGradients(reference)
    const expected = reference.flatGradients().data
    const out = { buckets: [], differences: [], largest: expected.reduce((m, x) => Math.max(m, Math.abs(x)), 0) }
    for (const bucketBytes of [0, 1 << 30]) {
      const model = Model.create(OVERLAP_MODEL, { seed: 3 })
      overlapBackward(model, bucketBytes)
      const times = hasRows ? await dp.backwardAndReduce(model, await overlapForward(model)) : await dp.allReduceGradients(model)
      out.buckets.push(times.buckets)
      const got = model.flatGradients().data
      out.differences.push(got.reduce((m, x, i) => Math.max(m, Math.abs(x - expected[i])), 0))
    }
    return out
  },
  async overlapPeerFails() {
    // Rank 1 leaves (TEST_PEER=exits) or stops calling (silent) while rank 0 runs an overlapped backward.
    const model = Model.create(OVERLAP_MODEL, { seed: 3 })
    overlapBackward(model, 0)
    const grads = await overlapForward(model)
    await distributed.barrier()
    if (rank === 1) {
      if (process.env.TEST_PEER === 'exits') {
        report({})
        process.exit(0)
      }
      await new Promise((resolve) => setTimeout(resolve, 8000))
      return {}
    }
    const started = Date.now()
    try {
      await dataParallel().backwardAndReduce(model, grads)
      return { error: 'no error' }
    } catch (err) {
      return { error: err.message, seconds: (Date.now() - started) / 1000 }
    }
  },
  async shareId() {
    // Rank 0's 128 bytes (an ncclUniqueId's size) reach every rank through the
    // store; TEST_ID_BYTES makes rank 0 give another size.
    const size = 128
    const made = Uint8Array.from({ length: Number(process.env.TEST_ID_BYTES ?? size) }, (_, i) => (i * 37 + 11) % 256)
    const started = Date.now()
    try {
      const got = await nativeGroup('shareId').shareFromRankZero('nccl-id', rank === 0 ? Tensor.from(made).native : undefined, size)
      const bytes = Array.from(new Tensor(got).data)
      // The key was erased once every rank had it: a second exchange under it gets the new bytes.
      const again = await nativeGroup('shareId').shareFromRankZero('nccl-id', rank === 0 ? Tensor.from(made.map((b) => 255 - b)).native : undefined, size)
      return { same: bytes.every((b, i) => b === made[i]) && bytes.length === size, second: Array.from(new Tensor(again).data).every((b, i) => b === 255 - made[i]) }
    } catch (err) {
      // Rank 0 serves the store: it stays until the others have timed out waiting.
      if (rank === 0) await new Promise((resolve) => setTimeout(resolve, 4000))
      return { error: err.message, seconds: (Date.now() - started) / 1000 }
    }
  },
  async zero() {
    // ZeRO-1's step against one process's AdamW on the summed gradients: a
    // model of over 2M parameters, so the ring moves each shard in pieces.
    const config = { arch: 'gpt2', vocab: 16000, dim: 128, layers: 1, heads: 2, maxPositions: 16 }
    const sharded = Model.create(config, { seed: 5 })
    const whole = Model.create(config, { seed: 5 })
    const options = { lr: 1e-2, betas: [0.9, 0.95], weightDecay: 0.1 }
    const zero = new AdamW(sharded, options)
    const plain = new AdamW(whole, options)
    shardOptimizer(zero)
    const grad = (r, i, step) => Math.fround(Math.sin(i * 0.37 + r * 1.3 + step) * 1e-2)
    // The ring's order of the sum: block b starts on rank b + 1 and each rank adds its own term.
    const block = Math.ceil(Math.ceil(sharded.parameterCount / worldSize) / 16) * 16
    const norms = []
    for (let step = 0; step < 2; step++) {
      const mine = sharded.flatGradients().data
      const summed = whole.flatGradients().data
      for (let i = 0; i < mine.length; i++) {
        mine[i] = grad(rank, i, step)
        const b = Math.floor(i / block)
        let s = grad((b + 1) % worldSize, i, step)
        for (let j = 2; j <= worldSize; j++) s = Math.fround(grad((b + j) % worldSize, i, step) + s)
        summed[i] = s
      }
      // The clip binds on the first step only.
      const maxGradNorm = step === 0 ? 1 : 1e9
      norms.push([(await zero.step({ maxGradNorm })).gradNorm, (await plain.step({ maxGradNorm })).gradNorm])
    }
    const largest = (a, b) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0)
    const gathered = await optimizerState(zero)
    const reference = plain.state()
    return {
      total: sharded.parameterCount,
      moments: zero.shardState().m.numel,
      norms,
      params: largest(sharded.flatParameters().data, whole.flatParameters().data),
      moved: largest(whole.flatParameters().data, Model.create(config, { seed: 5 }).flatParameters().data),
      m: largest(gathered.m.data, reference.m.data),
      v: largest(gathered.v.data, reference.v.data),
      step: gathered.step,
    }
  },
}

const report = (result) => {
  const line = `${JSON.stringify({ rank, ...result })}\n`
  if (process.env.TEST_RESULT_FILE) fs.writeFileSync(process.env.TEST_RESULT_FILE, line)
  else process.stdout.write(line)
}
try {
  await distributed.init({
    rendezvousTimeoutMs: Number(process.env.TEST_RDZV_TIMEOUT_MS ?? 60000),
    ...(process.env.TEST_TIMEOUT_MS ? { timeoutMs: Number(process.env.TEST_TIMEOUT_MS) } : {}),
  })
  report(await scenarios[scenario]())
  // The silent ranks' group is left to exit with the process (rank 0's call broke it).
  if (scenario !== 'silent') await distributed.destroy()
} catch (err) {
  report({ error: err.message })
  process.exitCode = 1
}
