// Hardening of the model layer (issue 15): one operation at a time per model,
// in call order; the safetensors format's rules; files that name files stay in
// their directory; memory limits; non-finite and out-of-range numbers.
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { AdamW, loadCheckpoint, Model, saveCheckpoint, Tensor } from 'rlfarm'
import { assertThrowsWith, i32 } from './helpers/common'

const tmp = (tag: string) => fs.mkdtempSync(path.join(os.tmpdir(), `rlfarm-${tag}-`))

/** A model with accumulated gradients, large enough that a step takes a while on another thread. */
async function modelWithGradients(seed = 1) {
  const model = Model.create({ arch: 'llama', vocab: 64, dim: 128, layers: 4, heads: 4 }, { seed })
  const optimizer = new AdamW(model, { lr: 1e-2 })
  const tokens = i32(Array.from({ length: 32 }, (_, i) => (i * 7) % 64), [2, 16])
  await model.forward(tokens, { train: true })
  await model.backward({ gradLogp: Tensor.full([2, 15], -1 / 30) })
  return { model, optimizer, tokens }
}

const snapshot = (model: Model) => Float32Array.from(model.flatParameters().data as Float32Array)

function sameValues(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0
}

async function savedValues(dir: string): Promise<Float32Array> {
  return snapshot(await Model.load(dir))
}

t.test('a save racing an optimizer step saves the state of its place in call order', async (t) => {
  const dir = tmp('race')
  for (let trial = 0; trial < 5; trial++) {
    const { model, optimizer } = await modelWithGradients(trial + 1)
    const before = snapshot(model)
    const step = optimizer.step({})
    const save = model.save(path.join(dir, `after-${trial}`))
    await Promise.all([step, save])
    const after = snapshot(model)
    t.notOk(sameValues(before, after), 'the step changed the weights')
    t.ok(sameValues(await savedValues(path.join(dir, `after-${trial}`)), after), `trial ${trial}: step then save: every saved value is post-step`)

    const { model: m2, optimizer: o2 } = await modelWithGradients(trial + 1)
    const save2 = m2.save(path.join(dir, `before-${trial}`))
    const step2 = o2.step({})
    await Promise.all([save2, step2])
    t.ok(sameValues(await savedValues(path.join(dir, `before-${trial}`)), before), `trial ${trial}: save then step: every saved value is pre-step`)
  }
  fs.rmSync(dir, { recursive: true, force: true })
})

t.test('forward, step and forward called together run in call order', async (t) => {
  const { model, optimizer, tokens } = await modelWithGradients()
  const pre = await model.logprobs(tokens)
  const first = model.forward(tokens)
  const step = optimizer.step()
  const second = model.logprobs(tokens)
  const generated = model.generate(i32([1, 2], [1, 2]), { maxNewTokens: 2, temperature: 0 })
  const [a, , b] = await Promise.all([first, step, second, generated])
  t.same(a.logp!.toArray(), pre.toArray(), 'the forward called before the step sees pre-step weights')
  t.notSame(b.toArray(), pre.toArray(), 'the one called after it sees post-step weights')
  t.same(b.toArray(), (await model.logprobs(tokens)).toArray(), 'and equals a forward run alone afterwards')
})

t.test('a failed operation does not block the ones after it', async (t) => {
  const { model, tokens } = await modelWithGradients()
  const bad = model.forward(i32([1, 99], [1, 2]))
  const good = model.logprobs(tokens)
  await t.rejects(bad, /outside the vocabulary/, 'the bad call fails')
  t.equal((await good).shape.join(), '2,15', 'the next call runs')
})

t.test('synchronous calls refuse while an operation is pending, naming both', async (t) => {
  const { model, optimizer } = await modelWithGradients()
  const step = optimizer.step()
  const save = model.save(tmp('busy'))
  assertThrowsWith(t, () => model.zeroGrad(), ['model.zeroGrad', 'busy with AdamW.step', '1 more queued', 'await it first'], 'zeroGrad during a step')
  assertThrowsWith(t, () => model.parameter('model.norm.weight'), ['model.parameter', 'busy with AdamW.step'], 'reading a parameter during a step')
  assertThrowsWith(t, () => optimizer.loadState(optimizer.state()), ['AdamW.loadState', 'busy with AdamW.step'], 'loading optimizer state during a step')
  await Promise.all([step, save])
  model.zeroGrad()
  t.pass('idle again once both settle')
})

t.test('a checkpoint taken while a step and a user save are pending is all of one step', async (t) => {
  const { model, optimizer } = await modelWithGradients()
  const run = tmp('ckpt-race')
  const step = optimizer.step()
  const checkpoint = saveCheckpoint(run, { step: 1, models: { policy: model }, optimizers: { policy: optimizer }, state: { k: 1 } })
  const userSave = model.save(path.join(run, 'user'))
  const [, dir] = await Promise.all([step, checkpoint, userSave])
  const after = snapshot(model)
  t.ok(sameValues(await savedValues(path.join(dir, 'policy')), after), 'the checkpoint holds the post-step weights')
  t.ok(sameValues(await savedValues(path.join(run, 'user')), after), 'the user save too')
  const { model: fresh } = await modelWithGradients(7)
  const freshOptimizer = new AdamW(fresh, { lr: 1e-2 })
  await loadCheckpoint(dir, { models: { policy: fresh }, optimizers: { policy: freshOptimizer } })
  t.equal(freshOptimizer.stepCount, 1, 'and the optimizer state of that same step')
  t.ok(sameValues(freshOptimizer.state().m.data as Float32Array, optimizer.state().m.data as Float32Array), 'its first moments are the post-step ones')
  fs.rmSync(run, { recursive: true, force: true })
})
