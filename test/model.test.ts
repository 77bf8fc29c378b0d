// The transformer engine against PyTorch fixtures (test/fixtures/models, made
// by scripts/make_model_fixtures.py): logits, log-probs, values, every
// parameter gradient, AdamW steps and greedy generation; plus save/load,
// KV-cache generation, determinism and the errors a user can meet.
import t, { type Test } from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { AdamW, backend, Model, SafetensorsFile, Tensor } from 'rlfarm'
import { assertClose, assertThrowsWith, i32 } from './helpers/common'

const FIXTURES = path.resolve(__dirname, 'fixtures/models')
const FULL = ['gpt2-tiny', 'llama-tiny', 'qwen2-tiny', 'llama3-tiny']
const FORWARD_ONLY = ['gpt2-tiny-noprefix', 'llama-tiny-sharded', 'llama-tiny-bf16']

interface Fixture {
  dir: string
  expected: SafetensorsFile
  tokens: Tensor
  mask: Tensor
  maskValues: number[]
}

function fixture(name: string): Fixture {
  const dir = path.join(FIXTURES, name)
  const expected = SafetensorsFile.open(path.join(dir, 'expected.safetensors'))
  const mask = expected.tensor('attention_mask')
  return { dir, expected, tokens: expected.tensor('tokens'), mask, maskValues: mask.toArray() }
}

/** Values of `x` at real positions only ([B, T, ...] rows whose mask is 1). */
function realRows(x: number[], mask: number[], rowWidth: number, steps = 10, limit = steps): number[] {
  const out: number[] = []
  for (let b = 0; b < 2; b++) {
    for (let t = 0; t < limit; t++) {
      if (mask[b * steps + t]) out.push(...x.slice((b * limit + t) * rowWidth, (b * limit + t + 1) * rowWidth))
    }
  }
  return out
}

/** The fixture's loss as a gradient at the log-probs: -valid / count (valid: input and target are real). */
function lossGradient(mask: number[]): Tensor {
  const valid = Array.from({ length: 18 }, (_, i) => mask[Math.floor(i / 9) * 10 + (i % 9)] * mask[Math.floor(i / 9) * 10 + (i % 9) + 1])
  const count = valid.reduce((a, b) => a + b, 0)
  return Tensor.from(valid.map((v) => -v / count), [2, 9])
}

/** Relative to the largest magnitude of the reference tensor. */
function closeToMax(t: Test, got: number[], want: number[], what: string, rel = 1e-5): void {
  const scale = Math.max(...want.map(Math.abs), 1e-30)
  assertClose(t, got, want, what, { atol: rel * scale, rtol: 0 })
}

t.test('forward matches PyTorch: logits, log-probs, values', async (t) => {
  for (const name of [...FULL, ...FORWARD_ONLY]) {
    const f = fixture(name)
    const model = await Model.load(f.dir, { scalarHead: true })
    t.same(model.unusedTensors, [], `${name}: every checkpoint tensor is used (buffers ignored)`)
    const out = await model.forward(f.tokens, { attentionMask: f.mask, logits: true, values: true })
    const V = model.config.vocab
    assertClose(t, realRows(out.logits!.toArray(), f.maskValues, V), realRows(f.expected.tensor('logits').toArray(), f.maskValues, V), `${name}: logits`, { atol: 2e-5, rtol: 1e-5 })
    assertClose(t, realRows(out.logp!.toArray(), f.maskValues, 1, 10, 9), realRows(f.expected.tensor('logprobs').toArray(), f.maskValues, 1, 10, 9), `${name}: logprobs`, { atol: 2e-5, rtol: 1e-5 })
    assertClose(t, realRows(out.values!.toArray(), f.maskValues, 1), realRows(f.expected.tensor('values').toArray(), f.maskValues, 1), `${name}: values`, { atol: 2e-5, rtol: 1e-5 })
    const logp = await model.logprobs(f.tokens, { attentionMask: f.mask })
    t.same(logp.toArray(), out.logp!.toArray(), `${name}: model.logprobs equals forward's log-probs`)
  }
})

t.test('backward matches PyTorch: every parameter gradient', async (t) => {
  for (const name of [...FULL, 'llama-tiny-bf16']) {
    const f = fixture(name)
    const model = await Model.load(f.dir, { scalarHead: true })
    await model.forward(f.tokens, { attentionMask: f.mask, train: true })
    await model.backward({ gradLogp: lossGradient(f.maskValues) })
    for (const p of model.parameters()) {
      if (p.name === 'score.weight') continue
      closeToMax(t, model.gradient(p.name).toArray(), f.expected.tensor(`grad.${p.name}`).toArray(), `${name}: grad ${p.name}`)
    }
    if (!f.expected.entries.has('grad_values.score.weight')) continue
    model.zeroGrad()
    await model.forward(f.tokens, { attentionMask: f.mask, train: true, logprobs: false, values: true })
    await model.backward({ gradValues: f.expected.tensor('value_weights') })
    for (const p of model.parameters()) {
      closeToMax(t, model.gradient(p.name).toArray(), f.expected.tensor(`grad_values.${p.name}`).toArray(), `${name}: value-head grad ${p.name}`)
    }
  }
})

t.test('a 150-token batch (several attention blocks) matches PyTorch', async (t) => {
  const dir = path.join(FIXTURES, 'llama-tiny')
  const long = SafetensorsFile.open(path.join(dir, 'long.safetensors'))
  const model = await Model.load(dir)
  const tokens = long.tensor('tokens')
  const mask = long.tensor('attention_mask')
  const m = mask.toArray()
  const T = tokens.shape[1]
  const out = await model.forward(tokens, { attentionMask: mask, train: true })
  const real = (x: number[]) => x.filter((_, i) => m[Math.floor(i / (T - 1)) * T + (i % (T - 1))])
  assertClose(t, real(out.logp!.toArray()), real(long.tensor('logprobs').toArray()), 'logprobs', { atol: 2e-5, rtol: 1e-5 })
  const valid = Array.from({ length: 2 * (T - 1) }, (_, i) => m[Math.floor(i / (T - 1)) * T + (i % (T - 1))] * m[Math.floor(i / (T - 1)) * T + (i % (T - 1)) + 1])
  const count = valid.reduce((a, b) => a + b, 0)
  await model.backward({ gradLogp: Tensor.from(valid.map((v) => -v / count), [2, T - 1]) })
  for (const p of model.parameters()) {
    closeToMax(t, model.gradient(p.name).toArray(), long.tensor(`grad.${p.name}`).toArray(), `grad ${p.name}`)
  }
})

/**
 * Adam's first steps move each weight by about lr * sign(gradient); where the
 * true gradient is 0 (k biases, say) the sign is rounding noise in both
 * engines, so entries whose reference gradient is under 1e-4 of the largest
 * are left out of the comparison.
 */
function compareStep(t: Test, model: Model, f: Fixture, prefix: string, label: string): void {
  for (const p of model.parameters()) {
    const g = f.expected.tensor(`grad.${p.name}`).toArray()
    const gmax = Math.max(...g.map(Math.abs))
    const keep = g.map((v) => Math.abs(v) > 1e-4 * gmax)
    const got = model.parameter(p.name).toArray().filter((_, i) => keep[i])
    const want = f.expected.tensor(`${prefix}.${p.name}`).toArray().filter((_, i) => keep[i])
    assertClose(t, got, want, `${label}, ${p.name}`, { atol: 2e-5, rtol: 1e-5 })
  }
}

t.test('AdamW and gradient clipping match torch.optim.AdamW', async (t) => {
  for (const name of FULL) {
    const f = fixture(name)
    const model = await Model.load(f.dir)
    const opt = new AdamW(model, { lr: 1e-2, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1 })
    const grad = lossGradient(f.maskValues)
    for (const step of [1, 2]) {
      model.zeroGrad()
      await model.forward(f.tokens, { attentionMask: f.mask, train: true })
      await model.backward({ gradLogp: grad })
      await opt.step()
      compareStep(t, model, f, `adamw${step}`, `${name}: AdamW step ${step}`)
    }
    const clipped = await Model.load(f.dir)
    const clipOpt = new AdamW(clipped, { lr: 1e-2, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1 })
    await clipped.forward(f.tokens, { attentionMask: f.mask, train: true })
    await clipped.backward({ gradLogp: grad })
    const { gradNorm } = await clipOpt.step({ maxGradNorm: 0.05 })
    assertClose(t, [gradNorm], f.expected.tensor('grad_norm').toArray(), `${name}: gradient norm before clipping`, { rtol: 1e-5 })
    compareStep(t, clipped, f, 'clipped', `${name}: clipped step`)
  }
})

t.test('greedy generation matches PyTorch; the KV cache equals full forwards', async (t) => {
  for (const name of FULL) {
    const f = fixture(name)
    const model = await Model.load(f.dir)
    const out = await model.generate(f.tokens, { attentionMask: f.mask, maxNewTokens: 6, temperature: 0 })
    t.same(out.tokens.toArray(), f.expected.tensor('greedy').toArray(), `${name}: six greedy tokens`)
    t.same(out.lengths.toArray(), [6, 6], `${name}: lengths`)
  }
  // A longer check: at every step, the cached decode picks the argmax of a full forward.
  for (const arch of ['gpt2', 'llama'] as const) {
    const model = Model.create({ arch, vocab: 50, dim: 32, layers: 2, heads: 4, kvHeads: arch === 'llama' ? 2 : 4, maxPositions: 64 }, { seed: 7 })
    // Row 0 left-padded, row 1 right-padded, row 2 full.
    const tokens = i32([0, 0, 5, 6, 7, 8, 9, 10, 0, 0, 13, 14, 15, 16, 17], [3, 5])
    const mask = i32([0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1], [3, 5])
    const steps = 12
    const gen = await model.generate(tokens, { attentionMask: mask, maxNewTokens: steps, temperature: 0 })
    const generated = gen.tokens.toArray()
    let agree = true
    for (let b = 0; b < 3; b++) {
      const real = [...Array(5).keys()].filter((i) => mask.toArray()[b * 5 + i]).map((i) => tokens.toArray()[b * 5 + i])
      const sequence = [...real]
      for (let s = 0; s < steps; s++) {
        const full = await model.forward(i32(sequence, [1, sequence.length]), { logits: true, logprobs: false })
        const last = full.logits!.toArray().slice((sequence.length - 1) * 50)
        const argmax = last.indexOf(Math.max(...last))
        if (argmax !== generated[b * (5 + steps) + 5 + s]) agree = false
        sequence.push(argmax)
      }
    }
    t.ok(agree, `${arch}: ${steps} cached steps equal the argmax of a full forward, with left and right padding`)
  }
})

t.test('sampling: seeds, top-k, top-p, stop tokens, log-probs', async (t) => {
  const model = Model.create({ arch: 'llama', vocab: 40, dim: 32, layers: 2, heads: 4, kvHeads: 2 }, { seed: 3 })
  const prompts = i32([1, 2, 3, 4, 5, 6], [2, 3])
  const a = await model.generate(prompts, { maxNewTokens: 10, temperature: 1, seeds: [11, 12] })
  const b = await model.generate(prompts, { maxNewTokens: 10, temperature: 1, seeds: [11, 12] })
  t.same(a.tokens.toArray(), b.tokens.toArray(), 'the same seeds give the same tokens')
  const alone = await model.generate(i32([4, 5, 6], [1, 3]), { maxNewTokens: 10, temperature: 1, seeds: [12] })
  t.same(alone.tokens.toArray(), a.tokens.toArray().slice(13), "a row's tokens depend on its own seed, not on the batch")
  const other = await model.generate(prompts, { maxNewTokens: 10, temperature: 1, seeds: [99, 98] })
  t.notSame(other.tokens.toArray(), a.tokens.toArray(), 'other seeds give other tokens')
  const greedy = await model.generate(prompts, { maxNewTokens: 10, temperature: 0 })
  const top1 = await model.generate(prompts, { maxNewTokens: 10, temperature: 1.5, topK: 1, seed: 5 })
  t.same(top1.tokens.toArray(), greedy.tokens.toArray(), 'topK 1 is greedy')
  const tinyP = await model.generate(prompts, { maxNewTokens: 10, temperature: 1, topP: 1e-6, seed: 5 })
  t.same(tinyP.tokens.toArray(), greedy.tokens.toArray(), 'a tiny topP is greedy')
  // Log-probs of sampled tokens equal a forward's log-probs of the sequence at the same temperature.
  const hot = await model.generate(prompts, { maxNewTokens: 8, temperature: 0.7, seed: 1 })
  const lp = await model.logprobs(hot.tokens, { temperature: 0.7 })
  const forwardLp = lp.toArray()
  const sampledLp = hot.logprobs.toArray()
  const picked: number[] = []
  for (let r = 0; r < 2; r++) for (let s = 0; s < 8; s++) picked.push(forwardLp[r * 10 + 2 + s])
  assertClose(t, sampledLp, picked, 'sampled-token log-probs equal the forward log-probs', { atol: 1e-4, rtol: 1e-4 })
  // A stop token ends its row; the rest is padding.
  const first = a.tokens.toArray()[3 + 2]
  const stopped = await model.generate(prompts, { maxNewTokens: 10, temperature: 1, seeds: [11, 12], stopTokens: [first], padToken: 39 })
  const row0 = stopped.tokens.toArray().slice(0, stopped.tokens.shape[1])
  t.equal(stopped.lengths.toArray()[0], 3, 'row 0 stops after its third token (the stop token counts)')
  t.ok(row0.slice(3 + 3).every((x) => x === 39), 'and is padded after it')
  t.same(stopped.logprobs.toArray().slice(3, stopped.logprobs.shape[1]).filter((x) => x !== 0), [], 'with log-prob 0 after the stop')
})

t.test('save and load: bit-exact, Hugging Face layout', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rlfarm-model-'))
  for (const name of ['gpt2-tiny', 'llama-tiny', 'qwen2-tiny']) {
    const f = fixture(name)
    const model = await Model.load(f.dir, { scalarHead: true })
    const out = path.join(dir, name)
    await model.save(out)
    const again = await Model.load(out, { scalarHead: true })
    let exact = true
    for (const p of model.parameters()) {
      const x = model.parameter(p.name).toArray()
      const y = again.parameter(p.name).toArray()
      if (x.some((v, i) => !Object.is(v, y[i]))) exact = false
    }
    t.ok(exact, `${name}: every parameter survives save -> load bit-exactly`)
    const saved = SafetensorsFile.open(path.join(out, 'model.safetensors'))
    const original = SafetensorsFile.open(path.join(f.dir, 'model.safetensors'))
    let sameFile = true
    for (const [key, entry] of original.entries) {
      const mine = saved.entries.get(key)
      if (!mine || mine.dtype !== entry.dtype || mine.shape.join() !== entry.shape.join()) sameFile = false
      else {
        const want = original.tensor(key).toArray()
        if (saved.tensor(key).toArray().some((v, i) => !Object.is(v, want[i]))) sameFile = false
      }
    }
    t.ok(sameFile, `${name}: the saved file has the original's names, shapes, orientation and values`)
    t.equal(saved.metadata.format, 'pt', `${name}: metadata format pt, as transformers requires`)
    t.same(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).model_type, model.hfConfig.model_type, `${name}: config.json kept`)
  }
  fs.rmSync(dir, { recursive: true, force: true })
})

t.test('training is deterministic and learns', async (t) => {
  const run = async () => {
    const model = Model.create({ arch: 'llama', vocab: 32, dim: 32, layers: 2, heads: 4, kvHeads: 2 }, { seed: 42 })
    const opt = new AdamW(model, { lr: 3e-3 })
    const tokens = i32(Array.from({ length: 4 * 16 }, (_, i) => (i * 7 + Math.floor(i / 16)) % 32), [4, 16])
    const losses: number[] = []
    for (let step = 0; step < 15; step++) {
      model.zeroGrad()
      const { logp } = await model.forward(tokens, { train: true })
      const values = logp!.toArray()
      losses.push(-values.reduce((a, b) => a + b, 0) / values.length)
      await model.backward({ gradLogp: Tensor.full(logp!.shape, -1 / values.length) })
      await opt.step({ maxGradNorm: 1 })
    }
    return { losses, params: model.flatParameters().toArray() }
  }
  const a = await run()
  const b = await run()
  t.ok(a.params.every((v, i) => Object.is(v, b.params[i])), 'two runs from the same seed are bit-identical')
  t.ok(a.losses[14] < a.losses[0] * 0.7, `the loss goes down (${a.losses[0].toFixed(3)} -> ${a.losses[14].toFixed(3)})`)
})

t.test('errors name the file, the tensor or the argument', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rlfarm-bad-'))
  const copy = (name: string) => {
    const to = path.join(dir, name)
    fs.cpSync(path.join(FIXTURES, 'llama-tiny'), to, { recursive: true })
    return to
  }
  await t.rejects(Model.load(path.join(dir, 'nothing')), /no config\.json/, 'missing directory or config.json')
  const noWeights = copy('no-weights')
  fs.rmSync(path.join(noWeights, 'model.safetensors'))
  await t.rejects(Model.load(noWeights), /no model\.safetensors or model\.safetensors\.index\.json/, 'missing weights')
  const truncated = copy('truncated')
  const file = path.join(truncated, 'model.safetensors')
  fs.truncateSync(file, fs.statSync(file).size - 100)
  await t.rejects(Model.load(truncated), /model\.safetensors: truncated: tensor .* ends at byte \d+ but the file has \d+ bytes/, 'truncated file')
  const wrongShape = copy('wrong-shape')
  const config = JSON.parse(fs.readFileSync(path.join(wrongShape, 'config.json'), 'utf8'))
  fs.writeFileSync(path.join(wrongShape, 'config.json'), JSON.stringify({ ...config, intermediate_size: 81 }))
  await t.rejects(Model.load(wrongShape), /model\.safetensors: tensor model\.layers\.0\.mlp\.gate_proj\.weight: shape \[80, 48\] does not match the config's \[81, 48\]/, 'shape that disagrees with config.json')
  const unknown = copy('unknown-arch')
  fs.writeFileSync(path.join(unknown, 'config.json'), JSON.stringify({ ...config, model_type: 'mamba' }))
  await t.rejects(Model.load(unknown), /config\.json: model_type "mamba" is not supported/, 'unknown architecture')
  const badField = copy('bad-field')
  fs.writeFileSync(path.join(badField, 'config.json'), JSON.stringify({ ...config, num_attention_heads: 'four' }))
  await t.rejects(Model.load(badField), /config\.json: num_attention_heads must be a positive integer; got "four"/, 'wrong field type')
  const badJson = copy('bad-json')
  fs.writeFileSync(path.join(badJson, 'config.json'), '{"model_type": "llama",')
  await t.rejects(Model.load(badJson), /config\.json is not valid JSON: .* at line 1, column \d+/, 'malformed config.json names the line and column')
  fs.rmSync(dir, { recursive: true, force: true })

  const model = Model.create({ arch: 'gpt2', vocab: 20, dim: 16, layers: 1, heads: 2, maxPositions: 8 })
  await t.rejects(model.forward(i32([1, 2, 25], [1, 3])), /tokens\[0\]\[2\] = 25 is outside the vocabulary \[0, 20\)/, 'token outside the vocabulary')
  await t.rejects(model.forward(i32(new Array(9).fill(1), [1, 9])), /position 8 is past GPT-2's n_positions \(8\)/, 'sequence longer than GPT-2 allows')
  await t.rejects(model.backward({ gradLogp: Tensor.zeros([1, 2]) }), /run a forward with train: true first/, 'backward before a training forward')
  await t.rejects(model.forward(i32([1, 2], [1, 2]), { values: true }), /values need a scalar head/, 'values without a scalar head')
  const pending = model.forward(i32([1, 2], [1, 2]))
  assertThrowsWith(t, () => model.zeroGrad(), ['model.zeroGrad', 'busy with forward', 'await it first'], 'a second call while one runs')
  await pending
  assertThrowsWith(t, () => Model.create({ arch: 'llama', vocab: 10, dim: 16, layers: 1, heads: 3 }), ['head_dim'], 'bad created config')
  await t.rejects(model.generate(i32([1, 2], [1, 2]), { maxNewTokens: 4, topP: 0 }), /topP must be in \(0, 1\]/, 'bad sampling option')
  if (backend().cudaDevices === 0) {
    await t.rejects(Model.load(path.join(FIXTURES, 'llama-tiny'), { device: 'cuda' }), { message: `Model.load: device 'cuda' is not available: ${backend().cudaUnavailableReason}` }, 'no GPU: a cuda model says why')
  }
})

t.test('a model directory given relative to the working directory loads (its files are checked to stay inside it)', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rlfarm-relative-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const model = Model.create({ arch: 'gpt2', vocab: 32, dim: 16, layers: 1, heads: 2, maxPositions: 16 }, { seed: 3 })
  await model.save(path.join(dir, 'nested', 'model'))
  const cwd = process.cwd()
  process.chdir(dir)
  t.teardown(() => process.chdir(cwd))
  const loaded = await Model.load(path.join('nested', 'model'))
  t.same(loaded.config, model.config, 'the same config')
  const name = model.parameters()[0].name
  t.same(Array.from(loaded.parameter(name).data as Float32Array), Array.from(model.parameter(name).data as Float32Array), 'the same weights')
})
