// Checkpoints: save then load restores parameters and optimizer moments
// bit-exactly (and training continues bit-identically), a save that dies half
// way leaves the previous checkpoint alone, pruning keeps the newest.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { execFileSync } from 'node:child_process'
import { AdamW, latestCheckpoint, listCheckpoints, loadCheckpoint, Model, Rng, saveCheckpoint, Tensor } from 'rlfarm'
import { assertRejectsWith, tempDir } from './helpers/common'


const GPT2 = { arch: 'gpt2', vocab: 50, dim: 16, layers: 2, heads: 2, maxPositions: 16 } as const
const LLAMA = { arch: 'llama', vocab: 50, dim: 16, layers: 1, heads: 2, kvHeads: 1, hidden: 32, maxPositions: 16 } as const

function models(seed: number) {
  const policy = Model.create(GPT2, { seed })
  const value = Model.create(LLAMA, { seed: seed + 1, scalarHead: true })
  return { policy, value, optimizers: { policy: new AdamW(policy, { lr: 1e-2 }), value: new AdamW(value, { lr: 1e-2 }) } }
}

/** One deterministic training step: SFT-like gradient for the policy, a value regression for the value model. */
async function trainStep(m: ReturnType<typeof models>, step: number): Promise<void> {
  const tokens = Tensor.from(Int32Array.from({ length: 16 }, (_, i) => (i * 7 + step * 3) % 50), [2, 8])
  await m.policy.forward(tokens, { train: true })
  await m.policy.backward({ gradLogp: Tensor.from(new Float32Array(14).fill(-1 / 14), [2, 7]) })
  await m.optimizers.policy.step()
  m.policy.zeroGrad()
  await m.value.forward(tokens, { train: true, logprobs: false, values: true })
  await m.value.backward({ gradValues: Tensor.from(new Float32Array(16).fill(0.1), [2, 8]) })
  await m.optimizers.value.step()
  m.value.zeroGrad()
}

function bytesOf(x: Tensor): Buffer {
  const d = x.data
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength)
}

function sameBits(a: Tensor, b: Tensor): boolean {
  return bytesOf(a).equals(bytesOf(b))
}

t.test('save then load: bit-identical parameters, moments, state; training continues identically', async (t) => {
  const run = tempDir(t, 'checkpoint')
  const original = models(1)
  for (let step = 1; step <= 3; step++) await trainStep(original, step)
  const rng = new Rng(9)
  rng.shuffle([1, 2, 3])
  const state = { rng: rng.state(), dataPosition: 37, klCoef: 0.0123456789, note: 'x', nested: [{ a: null }] }
  const dir = await saveCheckpoint(run, { step: 3, models: { policy: original.policy, value: original.value }, optimizers: original.optimizers, state })
  t.equal(dir, path.join(run, 'checkpoints', 'step-000003'))
  t.same(fs.readdirSync(dir).sort(), ['optimizer-policy.safetensors', 'optimizer-value.safetensors', 'policy', 'state.json', 'value'], 'the layout')
  t.same(fs.readdirSync(path.join(dir, 'policy')).sort(), ['config.json', 'model.safetensors'], 'each model as a Hugging Face directory')
  t.equal(latestCheckpoint(run), dir)

  const restored = models(100) // different weights, fresh optimizers
  t.notOk(sameBits(restored.policy.flatParameters(), original.policy.flatParameters()), 'the fresh models differ before loading')
  const loaded = await loadCheckpoint<typeof state>(dir, { models: { policy: restored.policy, value: restored.value }, optimizers: restored.optimizers })
  t.equal(loaded.step, 3)
  t.same(loaded.state, state, 'the trainer state comes back')
  for (const name of ['policy', 'value'] as const) {
    t.ok(sameBits(restored[name].flatParameters(), original[name].flatParameters()), `${name}: parameters bit-identical`)
    const [a, b] = [original.optimizers[name].state(), restored.optimizers[name].state()]
    t.ok(sameBits(a.m, b.m) && sameBits(a.v, b.v), `${name}: AdamW moments bit-identical`)
    t.equal(b.step, a.step, `${name}: optimizer step count`)
  }
  const continued = Rng.fromState(loaded.state.rng)
  t.equal(continued.next(), rng.next(), 'the RNG continues its stream')

  for (let step = 4; step <= 5; step++) {
    await trainStep(original, step)
    await trainStep(restored, step)
  }
  t.ok(sameBits(restored.policy.flatParameters(), original.policy.flatParameters()), 'two more steps: policy still bit-identical')
  t.ok(sameBits(restored.value.flatParameters(), original.value.flatParameters()), 'and the value model')

  const partial = await loadCheckpoint(dir, { models: { policy: models(5).policy } })
  t.equal(partial.step, 3, 'a subset of the saved models can be loaded')
})

t.test('a save that fails half way leaves the last checkpoint; leftovers are ignored and cleaned', async (t) => {
  const run = tempDir(t, 'checkpoint')
  const m = models(2)
  const good = await saveCheckpoint(run, { step: 10, models: { policy: m.policy }, optimizers: { policy: m.optimizers.policy }, state: { k: 1 } })
  await trainStep(m, 11)

  // The disk fills up while the model is being written.
  const broken = Model.create(GPT2, { seed: 3 })
  broken.writeFiles = (dir: string) => { // what a checkpoint calls, holding the model's queue
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, 'model.safetensors'), 'half a file')
    throw new Error('ENOSPC: no space left on device')
  }
  await assertRejectsWith(
    t,
    () => saveCheckpoint(run, { step: 20, models: { policy: broken }, state: { k: 2 } }),
    ['saveCheckpoint: cannot write', path.join(run, 'checkpoints', 'step-000020'), 'no space left'],
    'the error names the checkpoint and the cause',
  )
  t.equal(latestCheckpoint(run), good, 'the previous checkpoint is still the latest')
  t.same(fs.readdirSync(path.join(run, 'checkpoints')), ['step-000010'], 'no step-000020, no temporary directory')
  t.same((await loadCheckpoint(good)).state, { k: 1 }, 'and it is intact')

  // A process killed mid-save leaves its temporary directory; a copy cut short has no state.json.
  const temp = path.join(run, 'checkpoints', '.step-000030.tmp-99999')
  fs.mkdirSync(path.join(temp, 'policy'), { recursive: true })
  fs.writeFileSync(path.join(temp, 'state.json'), '{}')
  fs.mkdirSync(path.join(run, 'checkpoints', 'step-000040', 'policy'), { recursive: true })
  t.equal(latestCheckpoint(run), good, 'latestCheckpoint ignores temporary and incomplete directories')
  await assertRejectsWith(t, () => loadCheckpoint(path.join(run, 'checkpoints', 'step-000040')), ['step-000040 is not a complete checkpoint'], 'loading an incomplete one')

  const next = await saveCheckpoint(run, { step: 30, models: { policy: m.policy }, state: { k: 3 } })
  t.equal(latestCheckpoint(run), next, 'the next save becomes the latest')
  t.notOk(fs.existsSync(temp), 'and removes the leftover temporary directory')
})

t.test('pruning keeps the newest `keep`; saving a step again replaces it', async (t) => {
  const run = tempDir(t, 'checkpoint')
  const m = models(4)
  for (const step of [1, 2, 3, 4, 5]) await saveCheckpoint(run, { step, models: { policy: m.policy }, state: { step }, keep: 2 })
  t.same(listCheckpoints(run).map((c) => c.step), [4, 5], 'two kept')
  t.same(fs.readdirSync(path.join(run, 'checkpoints')).sort(), ['step-000004', 'step-000005'], 'nothing else left')
  await saveCheckpoint(run, { step: 5, models: { policy: m.policy }, state: { again: true }, keep: 2 })
  t.same((await loadCheckpoint(latestCheckpoint(run)!)).state, { again: true }, 'the same step saved again replaces the old one')
  t.same(fs.readdirSync(path.join(run, 'checkpoints')).sort(), ['step-000004', 'step-000005'])
  t.equal(latestCheckpoint(path.join(run, 'elsewhere')), undefined, 'a run without checkpoints has no latest')
})

t.test('pruning never deletes the checkpoint just written: a run resumed from an earlier step keeps its new ones', async (t) => {
  const run = tempDir(t, 'checkpoint')
  const m = models(5)
  for (const step of [2, 4, 10]) await saveCheckpoint(run, { step, models: { policy: m.policy }, state: { step, timeline: 'first' } })
  // Resumed from step 4: its step 5 and 6 stay, with the newest others up to `keep`.
  await saveCheckpoint(run, { step: 5, models: { policy: m.policy }, state: { step: 5, timeline: 'resumed' }, keep: 2 })
  t.same(listCheckpoints(run).map((c) => c.step), [5, 10], 'keep 2: the new step 5 and the newest other')
  await saveCheckpoint(run, { step: 6, models: { policy: m.policy }, state: { step: 6, timeline: 'resumed' }, keep: 1 })
  t.same(listCheckpoints(run).map((c) => c.step), [6], 'keep 1: only the checkpoint just written (was: it was deleted, and step 10 of the left timeline kept)')
  t.same((await loadCheckpoint(latestCheckpoint(run)!)).state, { step: 6, timeline: 'resumed' }, 'the latest is the resumed run\'s')
})

t.test('checkpoint errors name the file and the problem', async (t) => {
  const run = tempDir(t, 'checkpoint')
  const m = models(6)
  await assertRejectsWith(t, () => saveCheckpoint(run, { step: 1, state: { kl: NaN } }), ['saveCheckpoint: state.kl is NaN, which JSON cannot hold'], 'NaN in the state')
  await assertRejectsWith(t, () => saveCheckpoint(run, { step: 1, state: { when: new Date() } }), ['state.when is Date', 'plain JSON'], 'class instances in the state')
  await assertRejectsWith(t, () => saveCheckpoint(run, { step: 1, models: { '../x': m.policy } }), ["models name '../x'"], 'names that are not file names')
  await assertRejectsWith(t, () => saveCheckpoint(run, { step: -1 }), ['step must be a non-negative integer'], 'negative steps')
  await assertRejectsWith(t, () => saveCheckpoint(run, { step: 1, keep: 0 }), ['keep must be at least 1'], 'keep 0')
  await assertRejectsWith(t, () => saveCheckpoint(run, { step: 1, model: {} } as never), ["unknown option 'model'", "Did you mean 'models'"], 'unknown options')
  t.notOk(fs.existsSync(path.join(run, 'checkpoints')), 'a refused save writes nothing')

  const dir = await saveCheckpoint(run, { step: 1, models: { policy: m.policy }, optimizers: { policy: m.optimizers.policy } })
  await assertRejectsWith(t, () => loadCheckpoint(dir, { models: { value: m.value } }), [dir, "no model 'value'", 'it holds: policy'], 'a model the checkpoint lacks')
  await assertRejectsWith(t, () => loadCheckpoint(dir, { optimizers: { value: m.optimizers.value } }), ["no optimizer 'value'"], 'an optimizer it lacks')
  await assertRejectsWith(
    t,
    () => loadCheckpoint(dir, { optimizers: { policy: m.optimizers.value } }),
    [path.join(dir, 'optimizer-policy.safetensors'), 'm must be an f32 tensor of 3168 elements', 'got f32 of 7648'],
    "moments that do not fit the optimizer's model",
  )
  await assertRejectsWith(t, () => loadCheckpoint(dir, { models: { policy: m.value } }), [path.join(dir, 'policy')], "weights that do not fit the model name the file")
})

t.test('a damaged or edited checkpoint is refused naming the file: state.json, the moments; a cyclic state is refused at save', async (t) => {
  const run = tempDir(t, 'checkpoint')
  const m = models(7)
  const cyclic: Record<string, unknown> = { q: 1 }
  cyclic.back = [cyclic]
  await assertRejectsWith(t, () => saveCheckpoint(run, { step: 1, state: { a: cyclic } }), ['saveCheckpoint: state.a.back[0] refers back to an object that holds it (a cycle)'], 'a cycle (was: Maximum call stack size exceeded)')
  const shared = { q: 1 }
  await saveCheckpoint(run, { step: 1, state: { a: shared, b: [shared, shared] } })
  t.same((await loadCheckpoint(latestCheckpoint(run)!)).state, { a: { q: 1 }, b: [{ q: 1 }, { q: 1 }] }, 'an object held twice is no cycle')

  const dir = await saveCheckpoint(run, { step: 3, models: { policy: m.policy }, optimizers: { policy: m.optimizers.policy }, state: { x: 1 } })
  const stateFile = path.join(dir, 'state.json')
  const good = JSON.parse(fs.readFileSync(stateFile, 'utf8'))
  for (const [edit, expected] of [
    [{ ...good, step: -5 }, 'step must be a non-negative integer; got -5'],
    [{ ...good, step: 7 }, 'says step 7 but its directory is step-000003'],
    [{ ...good, models: 'policy' }, "models must be a list of names; got 'policy'"],
    [null, 'expected an object, got null'],
  ] as const) {
    fs.writeFileSync(stateFile, JSON.stringify(edit))
    await assertRejectsWith(t, () => loadCheckpoint(dir, { models: { policy: m.policy } }), [stateFile, expected], `state.json: ${expected}`)
  }
  fs.rmSync(stateFile)
  execFileSync('mkfifo', [stateFile])
  await assertRejectsWith(t, () => loadCheckpoint(dir, { models: { policy: m.policy } }), [`cannot read ${stateFile}: it is a FIFO (named pipe), not a regular file`], 'state.json as a FIFO (was: a hang)')
  fs.rmSync(stateFile)
  fs.writeFileSync(stateFile, JSON.stringify(good))
  const moments = path.join(dir, 'optimizer-policy.safetensors')
  const bytes = fs.readFileSync(moments)
  const data = 8 + Number(bytes.readBigUInt64LE(0))
  for (const [at, value, expected] of [
    [data + 4, NaN, 'm[1] is NaN; the first moment must be finite'],
    [bytes.length - 4, -1, 'v[7647] is -1; the second moment must be finite and >= 0'],
  ] as const) {
    const damaged = Buffer.from(bytes)
    damaged.writeFloatLE(value, at)
    fs.writeFileSync(moments, damaged)
    await assertRejectsWith(t, () => loadCheckpoint(dir, { optimizers: { policy: m.optimizers.policy } }), [moments, expected], expected)
  }
  fs.writeFileSync(moments, bytes)
  t.equal((await loadCheckpoint(dir, { models: { policy: m.policy }, optimizers: { policy: m.optimizers.policy } })).step, 3, 'the undamaged checkpoint loads')
})
