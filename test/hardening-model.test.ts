// Hardening of the model layer (issue 15): one operation at a time per model,
// in call order; the safetensors format's rules; files that name files stay in
// their directory; memory limits; non-finite and out-of-range numbers.
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { AdamW, HfTokenizer, learningRate, listCheckpoints, loadCheckpoint, loadConfig, Model, NonFiniteError, ops, SafetensorsFile, saveCheckpoint, Tensor, train } from 'rlfarm'
import { assertThrowsWith, i32 } from './helpers/common'
import { TINY_POLICY, toyData } from './helpers/toy-data'

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
  const saved = optimizer.state()
  const step = optimizer.step()
  const save = model.save(tmp('busy'))
  assertThrowsWith(t, () => model.zeroGrad(), ['model.zeroGrad', 'busy with AdamW.step', '1 more queued', 'await it first'], 'zeroGrad during a step')
  assertThrowsWith(t, () => model.parameter('model.norm.weight'), ['model.parameter', 'busy with AdamW.step'], 'reading a parameter during a step')
  assertThrowsWith(t, () => optimizer.loadState(saved), ['AdamW.loadState', 'busy with AdamW.step'], 'loading optimizer state during a step')
  assertThrowsWith(t, () => optimizer.state(), ['AdamW.state', 'busy with AdamW.step'], 'reading optimizer state during a step (it would miss the step)')
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

/** A safetensors file from a header given as text and a data region. */
function rawSafetensors(file: string, header: string, data: Uint8Array, lengthDelta = 0): string {
  const json = Buffer.from(header, 'utf8')
  const length = Buffer.alloc(8)
  length.writeBigUInt64LE(BigInt(json.length + lengthDelta))
  fs.writeFileSync(file, Buffer.concat([length, json, data]))
  return file
}

const floats = (...v: number[]) => new Uint8Array(Float32Array.from(v).buffer)
const padded = (json: string, to = 8) => json + ' '.repeat((to - (json.length % to)) % to)

t.test('safetensors: the format rules are enforced as the reference implementation does', async (t) => {
  const dir = tmp('st')
  const f = (name: string) => path.join(dir, name)
  const good = padded('{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}')
  const data = floats(1.5, -2, 3)
  const ok = SafetensorsFile.open(rawSafetensors(f('good.safetensors'), good, data))
  t.same(ok.tensor('a').toArray(), [1.5, -2], 'a well-formed file reads')
  t.same(ok.metadata, { format: 'pt' }, 'with its metadata')

  // The reported bug: a header length short by the padding loaded data shifted by 1 or 2 bytes.
  for (const delta of [-1, -2, 1, 2]) {
    const file = rawSafetensors(f(`len${delta}.safetensors`), good, data, delta)
    t.throws(() => SafetensorsFile.open(file), { message: new RegExp(`len${delta}\\.safetensors: .*(header length|cover|does not end with)`) }, `a header length ${delta > 0 ? '+' : ''}${delta} bytes off is an error`)
  }
  const cases: [string, string, Uint8Array, RegExp][] = [
    ['nul-padding', '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}\0\0\0\0\0\0\0', floats(1), /does not end with '\}' before its padding/],
    ['newline-padding', '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}\n', floats(1), /does not end with '\}'/],
    ['leading-space', ' {"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', floats(1), /does not start with '\{'/],
    ['gap', padded('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}'), floats(1, 2, 3), /bytes 4 to 8 of the data lie between tensors/],
    ['overlap', padded('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'), floats(1, 2), /tensor b's data_offsets \[4, 8\] overlap/],
    ['not-at-zero', padded('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'), floats(1, 2), /bytes 0 to 4 of the data lie between tensors/],
    ['trailing-data', padded('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'), floats(1, 2), /cover 4 bytes of data but the file holds 8/],
    ['backwards', padded('{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}'), floats(1), /end before they begin/],
    ['duplicate', padded('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'), floats(1), /gives the key 'a' twice/],
    ['duplicate-field', padded('{"a":{"dtype":"F32","dtype":"I32","shape":[1],"data_offsets":[0,4]}}'), floats(1), /gives the key 'a\.dtype' twice/],
    ['wrong-size', padded('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}'), floats(1, 2), /tensor a \(F32 \[3\]\) needs 12 bytes but its data_offsets span 8/],
    ['huge-shape', padded('{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}'), floats(1), /needs 73786976294838206464 bytes/],
    ['metadata-number', padded('{"__metadata__":{"step":3},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'), floats(1), /__metadata__\.step must be a string; got number/],
    ['metadata-list', padded('{"__metadata__":["x"],"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'), floats(1), /__metadata__ must be an object of strings/],
    ['not-object', padded('["a"]'), new Uint8Array(0), /does not start with '\{'/],
    ['bad-json', padded('{"a":{"dtype":"F32",}}'), new Uint8Array(0), /the safetensors header is not valid JSON/],
    ['entry-not-object', padded('{"a":3}'), new Uint8Array(0), /tensor a must be an object/],
  ]
  for (const [name, header, bytes, message] of cases) {
    const file = rawSafetensors(f(`${name}.safetensors`), header, bytes)
    t.throws(() => SafetensorsFile.open(file), { message }, name)
  }
  const utf8 = path.join(dir, 'bad-utf8.safetensors')
  const length = Buffer.alloc(8)
  length.writeBigUInt64LE(8n)
  fs.writeFileSync(utf8, Buffer.concat([length, Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x20, 0x20, 0x20, 0x20])]))
  t.throws(() => SafetensorsFile.open(utf8), { message: /not valid UTF-8/ }, 'invalid UTF-8 in the header')
  const big = path.join(dir, 'big.safetensors')
  length.writeBigUInt64LE(100_000_001n)
  fs.writeFileSync(big, Buffer.concat([length, Buffer.from('{}')]))
  t.throws(() => SafetensorsFile.open(big), { message: /header length 100000001 is over the format's limit of 100000000 bytes/ }, 'a header over the limit')

  // A text file read as safetensors: the error never quotes it.
  const text = path.join(dir, 'passwd.safetensors')
  fs.writeFileSync(text, 'root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n')
  const secretish = path.join(dir, 'json-like.safetensors')
  length.writeBigUInt64LE(24n)
  fs.writeFileSync(secretish, Buffer.concat([length, Buffer.from('{"password": hunter2 }  ')]))
  for (const file of [text, secretish]) {
    try {
      SafetensorsFile.open(file)
      t.fail(`${file}: did not throw`)
    } catch (err) {
      const message = (err as Error).message
      t.notMatch(message, /root|daemon|hunter2|password/, `the error shows none of the file's text: ${message}`)
    }
  }
  fs.rmSync(dir, { recursive: true, force: true })
})

const FIXTURES = path.resolve(__dirname, 'fixtures')

t.test('files that name files never lead out of their directory', async (t) => {
  const dir = tmp('escape')
  const outside = path.join(dir, 'outside')
  fs.mkdirSync(outside)
  fs.writeFileSync(path.join(outside, 'secret.txt'), 'root:x:0:0:root:/root:/bin/bash\n')
  const sharded = (name: string) => {
    const to = path.join(dir, name, 'model')
    fs.cpSync(path.join(FIXTURES, 'models', 'llama-tiny-sharded'), to, { recursive: true })
    return to
  }
  const setShard = (modelDir: string, file: string) => {
    const indexFile = path.join(modelDir, 'model.safetensors.index.json')
    const index = JSON.parse(fs.readFileSync(indexFile, 'utf8'))
    const first = Object.keys(index.weight_map)[0]
    index.weight_map[first] = file
    fs.writeFileSync(indexFile, JSON.stringify(index))
    return first
  }

  // The reported escapes: a shard outside the model directory, and a system file (whose bytes were echoed).
  const up = sharded('up')
  fs.copyFileSync(path.join(up, 'model-00001-of-00002.safetensors'), path.join(outside, 'w.safetensors'))
  const tensor = setShard(up, '../../outside/w.safetensors')
  await t.rejects(Model.load(up), { message: `${path.join(up, 'model.safetensors.index.json')}: weight_map['${tensor}']: "../../outside/w.safetensors" leads out of the directory (to ${path.join(outside, 'w.safetensors')}); a file may only name files inside ${up}` }, 'a shard named with ..')
  const passwd = sharded('passwd')
  setShard(passwd, '../../outside/secret.txt')
  const refused = await Model.load(passwd).then(() => undefined, (err: Error) => err.message)
  t.match(refused, /leads out of the directory/, 'a system file named by a shard is refused')
  t.notMatch(refused, /root:/, 'and its contents are not shown')
  const absolute = sharded('absolute')
  setShard(absolute, path.join(outside, 'w.safetensors'))
  await t.rejects(Model.load(absolute), /is an absolute path; a file may only name files inside/, 'an absolute shard path')
  const notString = sharded('not-string')
  setShard(notString, 5 as unknown as string)
  await t.rejects(Model.load(notString), /weight_map\['.*'\] must be a file name; got 5/, 'a shard that is not a string')

  // Symbolic links: one leading out is refused, whether the file or a folder on the way is the link.
  const linkedFile = sharded('linked-file')
  fs.symlinkSync(path.join(outside, 'w.safetensors'), path.join(linkedFile, 'linked.safetensors'))
  setShard(linkedFile, 'linked.safetensors')
  await t.rejects(Model.load(linkedFile), /"linked\.safetensors" is a symbolic link \(or lies under one\) that leads out of the directory/, 'a shard that links out')
  const linkedDir = sharded('linked-dir')
  fs.symlinkSync(outside, path.join(linkedDir, 'sub'))
  setShard(linkedDir, 'sub/w.safetensors')
  await t.rejects(Model.load(linkedDir), /"sub\/w\.safetensors" is a symbolic link \(or lies under one\) that leads out/, 'a shard under a folder that links out')
  const linkedSingle = path.join(dir, 'linked-single')
  fs.cpSync(path.join(FIXTURES, 'models', 'llama-tiny'), linkedSingle, { recursive: true })
  fs.renameSync(path.join(linkedSingle, 'model.safetensors'), path.join(outside, 'model.safetensors'))
  fs.symlinkSync(path.join(outside, 'model.safetensors'), path.join(linkedSingle, 'model.safetensors'))
  await t.rejects(Model.load(linkedSingle), /"model\.safetensors" is a symbolic link .* leads out/, 'model.safetensors that links out')

  // Allowed: a link inside the directory, a `..` that stays inside, and the Hugging Face hub cache's layout.
  const inside = sharded('inside')
  fs.mkdirSync(path.join(inside, 'shards'))
  fs.renameSync(path.join(inside, 'model-00001-of-00002.safetensors'), path.join(inside, 'shards', 'one.safetensors'))
  const index = JSON.parse(fs.readFileSync(path.join(inside, 'model.safetensors.index.json'), 'utf8'))
  for (const [k, v] of Object.entries(index.weight_map)) if (v === 'model-00001-of-00002.safetensors') index.weight_map[k] = 'shards/../shards/one.safetensors'
  fs.writeFileSync(path.join(inside, 'model.safetensors.index.json'), JSON.stringify(index))
  fs.symlinkSync('model-00002-of-00002.safetensors', path.join(inside, 'two.safetensors'))
  for (const [k, v] of Object.entries(index.weight_map)) if (v === 'model-00002-of-00002.safetensors') index.weight_map[k] = 'two.safetensors'
  fs.writeFileSync(path.join(inside, 'model.safetensors.index.json'), JSON.stringify(index))
  const reference = await Model.load(path.join(FIXTURES, 'models', 'llama-tiny-sharded'))
  t.ok(sameValues(snapshot(await Model.load(inside)), snapshot(reference)), 'links and .. that stay inside load the same weights')
  const repo = path.join(dir, 'hub', 'models--org--tiny')
  const snap = path.join(repo, 'snapshots', 'abc123')
  fs.mkdirSync(path.join(repo, 'blobs'), { recursive: true })
  fs.mkdirSync(snap, { recursive: true })
  for (const name of fs.readdirSync(path.join(FIXTURES, 'models', 'llama-tiny-sharded'))) {
    fs.copyFileSync(path.join(FIXTURES, 'models', 'llama-tiny-sharded', name), path.join(repo, 'blobs', `blob-${name}`))
    fs.symlinkSync(path.join('..', '..', 'blobs', `blob-${name}`), path.join(snap, name))
  }
  t.ok(sameValues(snapshot(await Model.load(snap)), snapshot(reference)), "a Hugging Face hub cache snapshot (links into the repository's blobs) loads")

  // Tokenizer files.
  const tok = path.join(dir, 'tokenizer')
  fs.cpSync(path.join(FIXTURES, 'tokenizers', 'gpt2-bpe'), tok, { recursive: true })
  fs.renameSync(path.join(tok, 'tokenizer.json'), path.join(outside, 'tokenizer.json'))
  fs.symlinkSync(path.join(outside, 'tokenizer.json'), path.join(tok, 'tokenizer.json'))
  await t.rejects(HfTokenizer.load(tok), /HfTokenizer\.load: .*tokenizer file: "tokenizer\.json" is a symbolic link .* leads out of the directory/, 'a tokenizer file that links out')

  // Config extends.
  const configs = path.join(dir, 'configs')
  fs.mkdirSync(configs)
  fs.writeFileSync(path.join(dir, 'base.yaml'), 'stages: []\n')
  fs.writeFileSync(path.join(configs, 'child.yaml'), 'name: c\nextends: ../base.yaml\nstages: []\n')
  await t.rejects(loadConfig(path.join(configs, 'child.yaml'), { type: 'PipelineConfig' }), /child\.yaml:2:10: extends: the base pipeline: "\.\.\/base\.yaml" leads out of the directory/, 'a base outside the config\'s directory (a config outside the working directory)')
  fs.writeFileSync(path.join(configs, 'abs.yaml'), `name: c\nextends: ${path.join(configs, 'own.yaml')}\nstages: []\n`)
  await t.rejects(loadConfig(path.join(configs, 'abs.yaml'), { type: 'PipelineConfig' }), /extends: the base pipeline: ".*own\.yaml" is an absolute path/, 'an absolute base path')
  fs.symlinkSync(path.join(dir, 'base.yaml'), path.join(configs, 'link.yaml'))
  fs.writeFileSync(path.join(configs, 'via-link.yaml'), 'name: c\nextends: link.yaml\nstages: []\n')
  await t.rejects(loadConfig(path.join(configs, 'via-link.yaml'), { type: 'PipelineConfig' }), /"link\.yaml" is a symbolic link .* leads out/, 'a base that links out')
  fs.writeFileSync(path.join(configs, 'base.yaml'), 'stages: []\n')
  fs.mkdirSync(path.join(configs, 'sub'))
  fs.writeFileSync(path.join(configs, 'sub', 'child.yaml'), 'name: c\nextends: ../base.yaml\nstages: []\n')
  fs.writeFileSync(path.join(configs, 'top.yaml'), 'name: t\nextends: sub/child.yaml\nstages: []\n')
  t.same((await loadConfig(path.join(configs, 'top.yaml'), { type: 'PipelineConfig' })).stages, [], "a base's base may go up to the top config's directory")
  fs.rmSync(dir, { recursive: true, force: true })
})

/** Runs `body` with RLFARM_MAX_MODEL_BYTES set to `value`, then restores it. */
async function withModelLimit<T>(value: string | undefined, body: () => T | Promise<T>): Promise<T> {
  const before = process.env.RLFARM_MAX_MODEL_BYTES
  if (value === undefined) delete process.env.RLFARM_MAX_MODEL_BYTES
  else process.env.RLFARM_MAX_MODEL_BYTES = value
  try {
    return await body()
  } finally {
    if (before === undefined) delete process.env.RLFARM_MAX_MODEL_BYTES
    else process.env.RLFARM_MAX_MODEL_BYTES = before
  }
}

t.test('huge sizes fail fast, before anything is allocated', async (t) => {
  const started = Date.now()
  assertThrowsWith(t, () => Model.create({ arch: 'gpt2', vocab: 20, dim: 16, layers: 1e7, heads: 2 }), ['Model.create: layers is 10000000, over the largest rlfarm accepts (4096)'], 'layers: 1e7 in Model.create')
  assertThrowsWith(t, () => Model.create({ arch: 'llama', vocab: 2 ** 24, dim: 2 ** 17, layers: 4096, heads: 4096 }), ['Model.create: this model needs', 'bytes', 'for its weights', 'over the limit of', 'RLFARM_MAX_MODEL_BYTES', "by default the machine's memory"], 'sizes within bounds whose product exceeds memory')
  assertThrowsWith(t, () => Model.create({ arch: 'gpt2', vocab: 20, dim: 16, layers: 1.5, heads: 2 }), ['Model.create: layers must be a positive integer; got 1.5'], 'a fractional size')
  assertThrowsWith(t, () => Model.create({ arch: 'gpt2', vocab: 20, dim: 16, layers: 1, heads: 0 }), ['Model.create: heads must be a positive integer; got 0'], 'a zero size')

  await withModelLimit('100000', () => {
    const small = { arch: 'gpt2', vocab: 20, dim: 16, layers: 1, heads: 2 } as const
    const fits = Model.create(small)
    t.ok(fits.parameterCount * 4 <= 100000, `a model under the limit is made (${fits.parameterCount * 4} bytes)`)
    assertThrowsWith(t, () => Model.create({ ...small, layers: 40 }), ['Model.create: this model needs 591,744 bytes for its weights (147,936 parameters), over the limit of 100,000 bytes (RLFARM_MAX_MODEL_BYTES)'], 'RLFARM_MAX_MODEL_BYTES bounds the weights')
  })
  await withModelLimit('lots', () => assertThrowsWith(t, () => Model.create({ arch: 'gpt2', vocab: 20, dim: 16, layers: 1, heads: 2 }), ['RLFARM_MAX_MODEL_BYTES must be a positive whole number of bytes; got "lots"'], 'a bad limit is an error'))

  const dir = tmp('huge')
  const copy = (name: string, edit: Record<string, unknown>) => {
    const to = path.join(dir, name)
    fs.cpSync(path.join(FIXTURES, 'models', 'llama-tiny'), to, { recursive: true })
    const config = JSON.parse(fs.readFileSync(path.join(to, 'config.json'), 'utf8'))
    fs.writeFileSync(path.join(to, 'config.json'), JSON.stringify({ ...config, ...edit }))
    return to
  }
  const layers = copy('layers', { num_hidden_layers: 1e9 })
  await t.rejects(Model.load(layers), { message: `${path.join(layers, 'config.json')}: num_hidden_layers is 1000000000, over the largest rlfarm accepts (4096)` }, 'num_hidden_layers: 1e9 in config.json')
  const wide = copy('wide', { vocab_size: 2 ** 24, hidden_size: 2 ** 16, intermediate_size: 2 ** 20, num_attention_heads: 1024, num_key_value_heads: 1024, head_dim: 64 })
  await t.rejects(Model.load(wide), /config\.json: this model needs [\d,]+ bytes \([\d.]+ GiB\) for its weights .* over the limit of .*; check num_hidden_layers, hidden_size, vocab_size and intermediate_size/, 'a config.json whose weights exceed memory')
  t.ok(Date.now() - started < 60_000, 'all of it without allocating (no test above took long)')

  // The estimate is the engine's own count.
  for (const name of ['gpt2-tiny', 'llama-tiny', 'qwen2-tiny', 'llama3-tiny']) {
    const m = await Model.load(path.join(FIXTURES, 'models', name), { scalarHead: true })
    await withModelLimit(String(m.parameterCount * 4), () => Model.load(path.join(FIXTURES, 'models', name), { scalarHead: true }))
    await t.rejects(withModelLimit(String(m.parameterCount * 4 - 1), () => Model.load(path.join(FIXTURES, 'models', name), { scalarHead: true })), /over the limit of/, `${name}: the limit is exact at the engine's parameter count (${m.parameterCount})`)
  }
  fs.rmSync(dir, { recursive: true, force: true })
})

t.test('a YAML config with layers: 100000000 fails fast', async (t) => {
  const dir = tmp('yaml-huge')
  fs.writeFileSync(path.join(dir, 'sft.jsonl'), '{"prompt": "a", "response": "b"}\n{"prompt": "c", "response": "d"}\n')
  const file = path.join(dir, 'run.yaml')
  fs.writeFileSync(file, ['algorithm: sft', `output_dir: ${dir}`, 'name: huge', 'policy:', '  tokenizer: byte', '  init: { arch: gpt2, hidden_size: 16, heads: 2, layers: 100000000 }', 'data: { train: sft.jsonl }', 'logging: { progress: none }', ''].join('\n'))
  await t.rejects(train(file), { message: 'policy.init: Model.create: layers is 100000000, over the largest rlfarm accepts (4096)' }, 'refused before allocating')
  fs.rmSync(dir, { recursive: true, force: true })
})

t.test('non-finite numbers are errors, not NaN weights or token 0', async (t) => {
  const { model, optimizer } = await modelWithGradients()
  const before = snapshot(model)
  for (const lr of [NaN, -1, Infinity]) {
    await t.rejects(optimizer.step({ lr }), { message: `AdamW.step: lr must be a finite number >= 0; got ${lr}` }, `opt.step({ lr: ${lr} })`)
  }
  await t.rejects(optimizer.step({ maxGradNorm: NaN }), /maxGradNorm must be a finite number >= 0; got NaN/, 'maxGradNorm: NaN')
  t.ok(sameValues(snapshot(model), before), 'no parameter changed')
  t.equal(optimizer.stepCount, 0, 'no step counted')
  assertThrowsWith(t, () => new AdamW(model, { lr: Infinity }), ['AdamW: lr must be a finite number >= 0; got Infinity'], 'AdamW({ lr: Infinity })')
  assertThrowsWith(t, () => new AdamW(model, { eps: 0 }), ['AdamW: eps must be a finite number > 0; got 0'], 'AdamW({ eps: 0 })')
  assertThrowsWith(t, () => learningRate({ lr: NaN }, 3), ['learningRate: lr must be a finite number >= 0; got NaN'], 'a NaN schedule')
  assertThrowsWith(t, () => learningRate({} as never, 3), ['learningRate: lr (the peak learning rate) is required'], 'a schedule without lr')

  // generate on NaN weights: a NonFiniteError naming the tensor, for greedy and sampled decoding.
  for (const arch of ['gpt2', 'llama'] as const) {
    const m = Model.create({ arch, vocab: 20, dim: 16, layers: 1, heads: 2, maxPositions: 32 })
    const name = arch === 'gpt2' ? 'transformer.h.0.ln_1.weight' : 'model.layers.0.input_layernorm.weight'
    m.parameter(name).data[3] = NaN
    for (const temperature of [0, 1]) {
      const err = await m.generate(i32([1, 2, 3, 4], [2, 2]), { maxNewTokens: 3, temperature }).then(() => undefined, (e: Error) => e)
      t.ok(err instanceof NonFiniteError, `${arch}, temperature ${temperature}: a NonFiniteError`)
      t.match(err?.message, `model.generate: parameter ${name} (element 3 is NaN) is not finite`, 'naming the tensor')
    }
  }

  // Attention masks: NaN, values other than 0 and 1, and a row with nothing to attend to.
  const m = Model.create({ arch: 'llama', vocab: 20, dim: 16, layers: 1, heads: 2, maxPositions: 32 })
  const tokens = i32([1, 2, 3, 4], [2, 2])
  await t.rejects(m.forward(tokens, { attentionMask: Tensor.from([1, NaN, 1, 1], [2, 2]) }), { message: 'model.forward: attentionMask[0][1] = NaN; a mask holds 1 (a real token) or 0 (padding)' }, 'a NaN mask')
  await t.rejects(m.forward(tokens, { attentionMask: Tensor.from([1, 1, 0, 0], [2, 2]) }), { message: 'model.forward: attentionMask row 1 is all 0: the row has no real token to attend to' }, 'an all-zero row')
  await t.rejects(m.logprobs(tokens, { attentionMask: Tensor.from([1, 2, 1, 1], [2, 2], { dtype: 'i32' }) }), /model\.logprobs: attentionMask\[0\]\[1\] = 2/, 'a 2 in the mask')
  await t.rejects(m.generate(tokens, { attentionMask: Tensor.from([0, 0, 1, 1], [2, 2], { dtype: 'u8' }) }), /model\.generate: attentionMask row 0 is all 0/, 'generate with an empty prompt row')
  t.same((await m.logprobs(tokens, { attentionMask: Tensor.from([0, 1, 1, 1], [2, 2], { dtype: 'u8' }) })).shape, [2, 1], 'a padded row is fine')
  for (const [key, value, message] of [
    ['temperature', NaN, 'temperature must be a finite number >= 0; got NaN'],
    ['topK', 1.5, 'topK must be an integer >= 0; got 1.5'],
    ['padToken', NaN, 'padToken must be an integer >= 0; got NaN'],
    ['maxNewTokens', 1e9, "maxNewTokens is 1000000000, but the longest prompt has 2 tokens and the model's context length (maxPositions) is 32: at most 30 new tokens fit"],
    ['maxNewTokens', -1, 'maxNewTokens must be an integer >= 0; got -1'],
  ] as const) {
    await t.rejects(m.generate(tokens, { [key]: value }), { message: `model.generate: ${message}` }, `generate ${key}: ${value}`)
  }
  t.same((await m.generate(tokens, { maxNewTokens: 30, temperature: 0 })).tokens.shape, [2, 32], 'up to the context length is fine')
})

t.test('every numeric option of every op refuses NaN and infinities', async (t) => {
  const x = Tensor.from([0.1, 0.2, 0.3, 0.4], [2, 2])
  const mask = Tensor.from([1, 1, 1, 1], [2, 2], { dtype: 'u8' })
  const y = Tensor.from([0, 1], [2], { dtype: 'i32' })
  const v = Tensor.from([0.1, -0.2], [2])
  const pair = { policyChosen: v, policyRejected: v, refChosen: v, refRejected: v, chosenLength: Tensor.from([2, 3], [2]), rejectedLength: Tensor.from([2, 3], [2]) }
  const options: [string, string, (n: number) => unknown][] = [
    ['logprobs', 'temperature', (n) => ops.logprobs(x, y, { temperature: n })],
    ['logprobsBackward', 'temperature', (n) => ops.logprobsBackward(x, y, v, { temperature: n })],
    ['gae', 'gamma', (n) => ops.gae(x, x, mask, { gamma: n })],
    ['gae', 'lambda', (n) => ops.gae(x, x, mask, { lambda: n })],
    ['klPenalty', 'clamp', (n) => ops.klPenalty(x, x, mask, { clamp: n })],
    ['klPenaltyGrad', 'clamp', (n) => ops.klPenaltyGrad(x, x, mask, { clamp: n })],
    ['add', 'alpha', (n) => ops.add(x, x, { alpha: n })],
    ['add', 'beta', (n) => ops.add(x, x, { beta: n })],
    ['ppoPolicyLoss', 'clipLow', (n) => ops.ppoPolicyLoss(x, x, x, mask, { clipLow: n })],
    ['ppoPolicyLoss', 'clipHigh', (n) => ops.ppoPolicyLoss(x, x, x, mask, { clipHigh: n })],
    ['ppoPolicyLoss', 'dualClip', (n) => ops.ppoPolicyLoss(x, x, x, mask, { dualClip: n })],
    ['valueLoss', 'clip', (n) => ops.valueLoss(x, x, x, mask, { clip: n })],
    ['dpoLoss', 'beta', (n) => ops.dpoLoss(pair, { beta: n })],
    ['dpoLoss', 'labelSmoothing', (n) => ops.dpoLoss(pair, { labelSmoothing: n })],
    ['dpoLoss', 'gamma', (n) => ops.dpoLoss(pair, { variant: 'simpo', gamma: n })],
    ['rewardLoss', 'margin', (n) => ops.rewardLoss(v, v, { margin: n })],
    ['rewardLoss', 'centerCoef', (n) => ops.rewardLoss(v, v, { centerCoef: n })],
    ['matmul', 'alpha', (n) => ops.matmul(x, x, { alpha: n })],
    ['matmul', 'beta', (n) => ops.matmul(x, x, { beta: n, c: Tensor.zeros([2, 2]) })],
  ]
  for (const [op, name, call] of options) {
    t.doesNotThrow(() => call(op === 'ppoPolicyLoss' && name === 'dualClip' ? 2 : 0.1), `ops.${op} ${name}: a sane value works`)
    for (const n of [NaN, Infinity, -Infinity]) assertThrowsWith(t, () => call(n), [`ops.${op}`, name], `ops.${op} ${name}: ${n}`)
  }
  assertThrowsWith(t, () => ops.valueLoss(x, x, x, mask, { clip: NaN }), ['ops.valueLoss: clip must be >= 0 (or null for no clipping); got NaN'], 'the reported one: valueLoss clip NaN')
  t.doesNotThrow(() => ops.valueLoss(x, x, x, mask, { clip: null }), 'clip: null still turns clipping off')
  assertThrowsWith(t, () => ops.dpoLoss(pair, { variant: 'robust', labelSmoothing: 0.5 }), ['labelSmoothing'], 'robust DPO with labelSmoothing 0.5 (a division by 1 - 2 eps)')
})

t.test('silent coercions, unknown keys and null arguments are errors', async (t) => {
  assertThrowsWith(t, () => Tensor.from([2 ** 40, 1.7, NaN], [3], { dtype: 'i32' }), ['Tensor.from: data[0] = 1099511627776 does not fit i32, which holds integers in [-2147483648, 2147483647]'], 'i32 from 2**40')
  assertThrowsWith(t, () => Tensor.from([1, 1.7], [2], { dtype: 'i32' }), ['Tensor.from: data[1] = 1.7 does not fit i32'], 'i32 from 1.7: refused, not truncated')
  assertThrowsWith(t, () => Tensor.from([1, NaN], [2], { dtype: 'i32' }), ['Tensor.from: data[1] = NaN does not fit i32'], 'i32 from NaN')
  assertThrowsWith(t, () => Tensor.from([300, -1], [2], { dtype: 'u8' }), ['Tensor.from: data[0] = 300 does not fit u8, which holds integers in [0, 255]'], 'u8 from 300')
  assertThrowsWith(t, () => Tensor.from([3, -1], [2], { dtype: 'u8' }), ['Tensor.from: data[1] = -1 does not fit u8'], 'u8 from -1')
  assertThrowsWith(t, () => Tensor.from([1, 1e39], [2]), ['Tensor.from: data[1] = 1e+39 does not fit f32'], 'f32 from 1e39')
  assertThrowsWith(t, () => Tensor.full([2], 300, { dtype: 'u8' }), ['Tensor.full: value = 300 does not fit u8'], 'Tensor.full too')
  t.same(Tensor.from([-(2 ** 31), 2 ** 31 - 1], [2], { dtype: 'i32' }).toArray(), [-(2 ** 31), 2 ** 31 - 1], 'the ends of i32 fit')
  t.same(Tensor.from([NaN, Infinity, -3.5], [3]).toArray(), [NaN, Infinity, -3.5], 'f32 keeps NaN and infinities')

  assertThrowsWith(t, () => Model.create({ arch: 'gpt2', vocab: 20, dim: 16, layers: 1, heads: 2, hiddn: 5 } as never), ["Model.create config: unknown option 'hiddn'. Did you mean 'hidden'?"], 'Model.create with hiddn')
  assertThrowsWith(t, () => Model.create(null as never), ['Model.create: config must be an object', 'got null'], 'Model.create(null)')

  const x = Tensor.from([0.1, 0.2], [1, 2])
  const mask = Tensor.from([1, 1], [1, 2], { dtype: 'u8' })
  const y = Tensor.from([0], [1], { dtype: 'i32' })
  const nulls: [string, () => unknown][] = [
    ['ops.logprobs', () => ops.logprobs(x, y, null as never)],
    ['ops.logprobsBackward', () => ops.logprobsBackward(x, y, Tensor.from([1], [1]), null as never)],
    ['ops.gae', () => ops.gae(x, x, mask, null as never)],
    ['ops.whiten', () => ops.whiten(x, mask, null as never)],
    ['ops.klPenalty', () => ops.klPenalty(x, x, mask, null as never)],
    ['ops.klPenaltyGrad', () => ops.klPenaltyGrad(x, x, mask, null as never)],
    ['ops.add', () => ops.add(x, x, null as never)],
    ['ops.ppoPolicyLoss', () => ops.ppoPolicyLoss(x, x, x, mask, null as never)],
    ['ops.valueLoss', () => ops.valueLoss(x, x, x, mask, null as never)],
    ['ops.dpoLoss', () => ops.dpoLoss({ policyChosen: y, policyRejected: y }, null as never)],
    ['ops.rewardLoss', () => ops.rewardLoss(x, x, null as never)],
    ['ops.matmul', () => ops.matmul(x, x, null as never)],
  ]
  for (const [op, call] of nulls) assertThrowsWith(t, call, [op, 'options must be an object; got null'], `${op}(..., null)`)
  for (const [op, call] of [['ops.ppoPolicyLoss', () => ops.ppoPolicyLoss(x, null as never, x)], ['ops.dpoLoss', () => ops.dpoLoss(null as never)], ['ops.logprobs', () => ops.logprobs(null as never, y)]] as const) {
    assertThrowsWith(t, call, [op], `${op} with a null tensor`)
  }
  const model = Model.create({ arch: 'gpt2', vocab: 20, dim: 16, layers: 1, heads: 2, maxPositions: 8 })
  await t.rejects(model.forward(i32([1, 2], [1, 2]), null as never), { message: 'model.forward: options must be an object; got null' }, 'model.forward(tokens, null)')
  await t.rejects(model.generate(i32([1, 2], [1, 2]), null as never), { message: 'model.generate: options must be an object; got null' }, 'model.generate(prompts, null)')
  await t.rejects(optimizerFor(model).step(null as never), { message: 'AdamW.step: options must be an object; got null' }, 'opt.step(null)')
})

const optimizerFor = (model: Model) => new AdamW(model)

t.test("a user's onStep handler that saves the trainer's model beside the trainer's checkpoints", async (t) => {
  const data = toyData()
  const out = tmp('onstep')
  // A spy on Model.create (the real one runs) hands the test the trainer's policy.
  const created: Model[] = []
  const create = Model.create
  Model.create = ((...args: Parameters<typeof Model.create>) => {
    const m = create.apply(Model, args)
    created.push(m)
    return m
  }) as typeof Model.create
  const saves: Promise<void>[] = []
  try {
    const result = await train(
      {
        algorithm: 'sft', output_dir: out, name: 'sft', seed: 1, policy: TINY_POLICY, data: { train: data.sft, chat_template: false, max_length: 40 },
        training: { batch_size: 8, max_steps: 6 }, checkpoint: { every: 1, keep: 100 }, logging: { progress: 'none' },
      },
      {
        onStep: (e) => {
          // At once (before the trainer's checkpoint and next step) and after an await (in the middle of a later step).
          saves.push(created[0].save(path.join(out, 'user', `now-${e.step}`)))
          saves.push(new Promise<void>((done) => setImmediate(done)).then(() => created[0].save(path.join(out, 'user', `later-${e.step}`))))
        },
      },
    )
    await Promise.all(saves)
    t.equal(result.step, 6, 'the run finished: the saves did not break its steps')
  } finally {
    Model.create = create
  }
  const checkpoints = await Promise.all(listCheckpoints(path.join(out, 'sft')).map(async (c) => ({ step: c.step, weights: await savedValues(path.join(c.path, 'policy')) })))
  t.equal(checkpoints.length, 6, 'a checkpoint per step')
  for (let step = 1; step <= 6; step++) {
    const now = await savedValues(path.join(out, 'user', `now-${step}`))
    t.ok(sameValues(now, checkpoints[step - 1].weights), `step ${step}: the handler's immediate save holds exactly the checkpoint's weights`)
    const later = await savedValues(path.join(out, 'user', `later-${step}`))
    t.ok(checkpoints.some((c) => c.step >= step && sameValues(later, c.weights)), `step ${step}: its later save holds the weights of one whole step, never a mixture`)
  }
  fs.rmSync(out, { recursive: true, force: true })
  fs.rmSync(data.dir, { recursive: true, force: true })
})

t.test('a safetensors path that is not a regular file is refused without waiting', { skip: process.platform === 'win32' && 'no FIFOs' }, async (t) => {
  const dir = tmp('fifo')
  const fifo = path.join(dir, 'model.safetensors')
  const { execFileSync } = await import('node:child_process')
  execFileSync('mkfifo', [fifo])
  t.throws(() => SafetensorsFile.open(fifo), { message: `cannot read ${fifo}: it is a FIFO (named pipe), not a regular file` }, 'a FIFO')
  t.throws(() => SafetensorsFile.open(dir), { message: /not a regular file/ }, 'a directory')
  fs.rmSync(dir, { recursive: true, force: true })
})

t.test('Tensor shapes: not an array, or so many elements that the count wraps, are refused (found by the fuzz suite)', async (t) => {
  for (const [what, call] of [
    ['Tensor.from(data, 0)', () => Tensor.from(new Float32Array(2), 0 as never)],
    ['Tensor.from(data, {})', () => Tensor.from([1, 2], {} as never)],
    ['Tensor.zeros(null)', () => Tensor.zeros(null as never)],
    ['Tensor.zeros(0)', () => Tensor.zeros(0 as never)],
    ['Tensor.empty(2)', () => Tensor.empty(2 as never)],
    ['Tensor.full(null, 1)', () => Tensor.full(null as never, 1)],
    ['reshape(3)', () => Tensor.zeros([3]).reshape(3 as never)],
  ] as const) {
    assertThrowsWith(t, call, [what.split('(')[0].replace('reshape', 'Tensor.reshape'), 'shape must be an array of dimensions'], what)
  }
  // 2^31 * 4 * 2^31 = 2^64, which is 0 in 64-bit arithmetic: it must not pass for an empty tensor.
  assertThrowsWith(t, () => Tensor.from([], [2147483648, 4, 2147483648]), ['[2147483648, 4, 2147483648]', 'more elements than a tensor can hold'], 'a wrapping element count')
  assertThrowsWith(t, () => Tensor.zeros([2 ** 27, 2 ** 27]), ['more elements than a tensor can hold'], '2^54 elements')
  t.same(Tensor.zeros([0, 2 ** 40, 2 ** 40]).shape, [0, 2 ** 40, 2 ** 40], 'a zero dimension makes any shape empty')
})

t.test('AdamW of something that is not a model, configFromHf of a non-object, configToHf of another arch: errors naming them', async (t) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { configFromHf, configToHf } = require('rlfarm') as typeof import('rlfarm')
  t.throws(() => new AdamW({} as never, { lr: 1e-3 }), { message: 'AdamW: model must be a Model (Model.create or Model.load); got Object' }, 'was: model.parameters is not a function')
  t.throws(() => new AdamW(undefined as never), { message: /AdamW: model must be a Model .*; got undefined/ })
  t.throws(() => configFromHf(null as never, 'x/config.json'), { message: 'x/config.json: expected a JSON object (a Hugging Face config.json); got null' }, "was: Cannot read properties of null (reading 'model_type')")
  t.throws(() => configFromHf([1] as never), { message: 'configFromHf: expected a JSON object (a Hugging Face config.json); got an array' }, 'was: model_type undefined is not supported')
  t.throws(() => configToHf({ arch: 'bert' } as never), { message: `configToHf: expected a complete ModelConfig with arch 'gpt2' or 'llama'; got arch "bert"` }, 'was: a llama config.json without sizes')
  t.throws(() => configToHf({ arch: 'llama', vocab: 8 } as never), { message: 'configToHf: dim must be a number; got undefined' }, 'a config that lacks sizes')
  const dir = tmp('config-array')
  fs.writeFileSync(path.join(dir, 'config.json'), '[1]')
  await t.rejects(Model.load(dir), { message: `${path.join(dir, 'config.json')}: expected a JSON object (a Hugging Face config.json); got an array` })
  fs.rmSync(dir, { recursive: true, force: true })
})

t.test('writeSafetensors writes nothing its reader would refuse: metadata of strings, named tensors', async (t) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { writeSafetensors } = require('rlfarm') as typeof import('rlfarm')
  const dir = tmp('write-st')
  const file = path.join(dir, 'a.safetensors')
  t.throws(() => writeSafetensors(file, [{ name: 'a', tensor: Tensor.zeros([2]) }], { step: 5 } as never), { message: 'writeSafetensors: metadata.step must be a string; got 5' }, 'was: a file SafetensorsFile.open refuses')
  t.throws(() => writeSafetensors(file, [{ name: '', tensor: Tensor.zeros([2]) }]), { message: /tensors\[0\] must be \{ name: a non-empty string, tensor: a Tensor \}/ })
  t.throws(() => writeSafetensors(file, [{ name: 'a', tensor: [1, 2] }] as never), { message: /tensors\[0\] must be/ })
  t.throws(() => writeSafetensors(file, [{ name: '__metadata__', tensor: Tensor.zeros([2]) }]), { message: /'__metadata__' is the header's metadata key/ })
  const gone = Tensor.zeros([2])
  gone.dispose()
  t.throws(() => writeSafetensors(file, [{ name: 'w', tensor: gone }]), { message: 'writeSafetensors: tensor w was disposed' })
  t.notOk(fs.existsSync(file), 'nothing was written')
  writeSafetensors(file, [{ name: 'a', tensor: Tensor.zeros([2]) }], { step: '5' })
  t.same(SafetensorsFile.open(file).metadata, { step: '5' }, 'a good file reads back')
  const folder = path.join(dir, 'folder.safetensors')
  fs.mkdirSync(folder)
  t.throws(() => writeSafetensors(folder, [{ name: 'a', tensor: Tensor.zeros([2]) }]), { message: `writeSafetensors: cannot write ${folder}: it is a directory` }, 'onto a directory')
  t.throws(() => writeSafetensors(path.join(dir, 'no', 'such', 'x.safetensors'), [{ name: 'a', tensor: Tensor.zeros([2]) }]), { message: /^writeSafetensors: cannot write .*x\.safetensors: ENOENT/ }, 'into a missing directory')
  t.same(fs.readdirSync(dir).sort(), ['a.safetensors', 'folder.safetensors'], 'no temporary file is left behind')
  const model = Model.create({ arch: 'llama', vocab: 20, dim: 16, layers: 1, heads: 2 })
  await t.rejects(model.save(file), { message: `model.save: cannot make the directory ${file}: EEXIST: file already exists, mkdir '${file}'` }, 'save onto a file names the directory')
  fs.rmSync(dir, { recursive: true, force: true })
})

t.test('saveModelWithTokenizer of a source with no tokenizer.json: an error, and nothing saved', async (t) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { saveModelWithTokenizer } = require('rlfarm') as typeof import('rlfarm')
  const dir = tmp('save-tok')
  const model = Model.create({ arch: 'gpt2', vocab: 259, dim: 8, layers: 1, heads: 2 })
  const out = path.join(dir, 'model')
  await t.rejects(saveModelWithTokenizer(model, path.join(dir, 'nope'), out), { message: `saveModelWithTokenizer: tokenizerSource must be 'byte' or a directory that holds tokenizer.json; got ${JSON.stringify(path.join(dir, 'nope'))}` }, 'was: the model saved without a tokenizer')
  t.notOk(fs.existsSync(out), 'nothing was saved')
  await saveModelWithTokenizer(model, 'byte', out)
  t.same(JSON.parse(fs.readFileSync(path.join(out, 'rlfarm.json'), 'utf8')), { tokenizer: 'byte' })
  fs.rmSync(dir, { recursive: true, force: true })
})

t.test('a model.safetensors that is a link to nowhere, or to itself, is named as such (was: "no model.safetensors")', async (t) => {
  const dir = tmp('dangling')
  await Model.create({ arch: 'gpt2', vocab: 8, dim: 8, layers: 1, heads: 2 }).save(dir)
  const file = path.join(dir, 'model.safetensors')
  fs.rmSync(file)
  fs.symlinkSync('gone.safetensors', file)
  await t.rejects(Model.load(dir), { message: `cannot read ${file}: it is a symbolic link to gone.safetensors, which does not exist or links in a loop` })
  fs.rmSync(file)
  fs.symlinkSync('model.safetensors', file)
  await t.rejects(Model.load(dir), { message: `cannot read ${file}: it is a symbolic link to model.safetensors, which does not exist or links in a loop` })
  fs.rmSync(dir, { recursive: true, force: true })
})
