// The config layer: proto/rlfarm.proto as the schema, YAML and JSON files,
// --set overrides, defaults, error messages (file, line, column, field path,
// expected/actual, suggestion), saving the resolved config, relative paths,
// and the generated types staying in step with the proto.
import t from 'tap'
import type { Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { isAbsolute, join } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { ConfigError, loadConfig, resolveConfig, resolvePaths, saveResolvedConfig, type PipelineConfig, type RunConfig, type RunConfigInput } from 'rlfarm'
import { configSchema, messageSpec } from 'rlfarm/internal'
import { assertRejectsWith, assertThrowsWith } from './helpers/common'

const ROOT = join(__dirname, '..')
const FIXTURES = join(__dirname, 'fixtures', 'configs')
const ALGORITHMS = ['sft', 'reward', 'ppo', 'dpo', 'expert_iteration', 'best_of_n', 'west_of_n', 'grpo', 'rloo', 'eval'] as const

/** A scratch directory, removed when the test ends. */
function scratch(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'rlfarm-config-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Writes `text` to `name` in a fresh scratch directory and returns the path. */
function writeConfig(t: Test, name: string, text: string): string {
  const file = join(scratch(t), name)
  writeFileSync(file, text)
  return file
}

/**
 * Asserts that every field the raw config leaves out has the proto's default
 * (or is undefined when the proto gives none), at every level.
 */
function checkDefaults(t: Test, type: string, raw: unknown, resolved: Record<string, unknown>, path = '') {
  const spec = messageSpec(type)
  const given = (raw ?? {}) as Record<string, unknown>
  t.same(Object.keys(resolved).sort(), spec.fields.map((f) => f.name).sort(), `${path || type}: every field present`)
  for (const field of spec.fields) {
    const p = path ? `${path}.${field.name}` : field.name
    const value = resolved[field.name]
    if (field.kind === 'message' && !field.repeated && field.presence && given[field.name] == null) {
      t.equal(value, undefined, `${p}: left out, a (presence) field stays unset`)
    } else if (field.kind === 'message' && !field.repeated) {
      t.ok(value !== null && typeof value === 'object' && !Array.isArray(value), `${p} is an object`)
      checkDefaults(t, field.message!, given[field.name], value as Record<string, unknown>, p)
    } else if (field.repeated) {
      t.ok(Array.isArray(value), `${p} is a list`)
      if (field.kind === 'message') {
        const items = (given[field.name] ?? []) as unknown[]
        ;(value as Record<string, unknown>[]).forEach((item, i) => checkDefaults(t, field.message!, items[i], item, `${p}[${i}]`))
      }
    } else if (!(field.name in given)) {
      if (value !== field.default) t.fail(`${p}: ${String(value)}, expected the proto default ${String(field.default)}`)
    }
  }
}

t.test('the schema comes from proto/rlfarm.proto', async (t) => {
  const schema = configSchema()
  const type = schema.root.lookupType('rlfarm.PpoConfig')
  t.ok(type.fields.kl_coef, 'protobufjs reflection with snake_case names (keepCase)')
  t.equal(type.fields.kl_coef.options?.['(help)'], 'initial beta of the KL penalty', 'custom options read')
  const ppo = messageSpec('PpoConfig')
  t.equal(ppo.byName.get('kl_coef')!.default, 0.05)
  t.equal(ppo.byName.get('clip_high')!.default, undefined, 'no default: undefined')
  t.same(ppo.byName.get('kl_estimator')!.choices, ['k1', 'k2', 'k3'])
  t.equal(messageSpec('OptimizerConfig').byName.get('eps')!.minExclusive, true)
  t.equal(messageSpec('ModelSpec').byName.get('path')!.path, true)
  t.equal(messageSpec('PipelineConfig').byName.get('stages')!.repeated, true)
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
  t.ok(pkg.files.includes('proto'), 'the proto ships in the package')
  t.ok(pkg.dependencies.protobufjs && pkg.dependencies.yaml, 'protobufjs and yaml are dependencies')
})

t.test('an example config of each algorithm loads, with the proto defaults filled in', async (t) => {
  for (const algorithm of ALGORITHMS) {
    const file = join(FIXTURES, `${algorithm}.yaml`)
    const config: RunConfig = await loadConfig(file)
    t.equal(config.algorithm, algorithm, `${algorithm}.yaml`)
    checkDefaults(t, 'RunConfig', parseYaml(readFileSync(file, 'utf8')), config as unknown as Record<string, unknown>)
  }
  const ppo = await loadConfig(join(FIXTURES, 'ppo.yaml'))
  // Values the file gives...
  t.equal(ppo.policy.path, './runs/sft-smollm/model')
  t.equal(ppo.ppo.kl_coef, 0.05)
  t.equal(ppo.ppo.clip_high, 0.28)
  t.equal(ppo.ppo.kl_estimator, 'k3')
  t.equal(ppo.optimizer.lr, 1e-6)
  t.equal(ppo.generation.top_p, 0.9)
  // ...and defaults, as written in the proto.
  t.equal(ppo.output_dir, 'runs')
  t.equal(ppo.seed, 0)
  t.equal(ppo.optimizer.beta2, 0.999)
  t.equal(ppo.optimizer.eps, 1e-8)
  t.equal(ppo.optimizer.schedule, 'constant')
  t.equal(ppo.ppo.lam, 0.95)
  t.equal(ppo.ppo.kl_horizon, 10000)
  t.equal(ppo.ppo.aggregate, 'token-mean')
  t.equal(ppo.ppo.missing_eos_penalty, undefined)
  t.equal(ppo.data.on_bad_row, 'stop')
  t.equal(ppo.data.max_length, 512)
  t.equal(ppo.data.chat_template, true)
  t.equal(ppo.generation.stop_at_eos, true)
  t.equal(ppo.dpo.variant, 'sigmoid', 'sections the file leaves out are there with their defaults')
  t.equal(ppo.reference.scalar_head, false)
  t.equal(ppo.reference.path, undefined)
  t.equal(ppo.value_model.init, undefined, 'init stays unset unless given: a model is loaded, not made')
  t.equal(ppo.logging.progress, 'auto')
  t.equal(ppo.checkpoint.keep, 3)
  t.equal(ppo.checkpoint.save_final, true)

  const grpo = await loadConfig(join(FIXTURES, 'grpo.yaml'))
  t.equal(grpo.policy.init.arch, 'llama')
  t.equal(grpo.policy.init.kv_heads, 2)
  t.equal(grpo.policy.init.max_positions, 512)
  t.equal(grpo.policy.tokenizer, 'byte')
  t.equal(grpo.reward_function.name, 'count_token')
  t.equal(grpo.group.kl_estimator, 'k3')
  t.equal(grpo.group.clip_high, undefined)
  const evalConfig = await loadConfig(join(FIXTURES, 'eval.yaml'))
  t.equal(evalConfig.generation.temperature, 0, 'temperature 0 (greedy) is allowed')

  const json = await loadConfig(join(FIXTURES, 'ppo.json'))
  t.equal(json.ppo.kl_coef, 0.02)
  t.equal(json.ppo.clip_low, 0.2)
  checkDefaults(t, 'RunConfig', JSON.parse(readFileSync(join(FIXTURES, 'ppo.json'), 'utf8')), json as unknown as Record<string, unknown>)
})

t.test('a pipeline loads as PipelineConfig', async (t) => {
  const file = join(FIXTURES, 'pipeline.yaml')
  const pipeline: PipelineConfig = await loadConfig(file, { type: 'PipelineConfig' })
  t.equal(pipeline.name, 'farm-rlhf')
  t.equal(pipeline.seed, 7)
  t.same(
    pipeline.stages.map((s) => s.name),
    ['sft', 'rm', 'ppo', 'ppo-low-kl'],
  )
  t.equal(pipeline.stages[0].config, 'sft.yaml')
  t.equal(pipeline.stages[1].run.algorithm, 'reward')
  t.equal(pipeline.stages[1].run.policy.path, '${sft}', 'stage references stay as written')
  t.equal(pipeline.stages[1].run.optimizer.lr, 1e-5, 'inline runs get their defaults')
  t.equal(pipeline.stages[3].run.ppo.kl_coef, 0.001)
  t.equal(pipeline.stages[3].run.ppo.kl_estimator, 'k1')
  checkDefaults(t, 'PipelineConfig', parseYaml(readFileSync(file, 'utf8')), pipeline as unknown as Record<string, unknown>)
  await assertRejectsWith(t, () => loadConfig(file), [`${file}:5:1: stages: unknown key 'stages' in RunConfig`, 'is this a PipelineConfig file?'], 'a pipeline loaded as a RunConfig says so')
})

t.test('unknown keys: file, line, column, field path and the closest key', async (t) => {
  const yaml = writeConfig(t, 'ppo.yaml', ['algorithm: ppo', 'ppo:', '  epochs: 2', '  kl_coeff: 0.1', 'optimiser:', '  lr: 1e-5', ''].join('\n'))
  await assertRejectsWith(
    t,
    () => loadConfig(yaml),
    [`${yaml}: 2 problems:`, `${yaml}:4:3: ppo.kl_coeff: unknown key 'kl_coeff' in PpoConfig; did you mean 'kl_coef'?`, `${yaml}:5:1: optimiser: unknown key 'optimiser' in RunConfig; did you mean 'optimizer'?`],
    'YAML',
  )
  const json = writeConfig(t, 'ppo.json', ['{', '  "algorithm": "ppo",', '  "ppo": {', '    "epochs": 2,', '    "kl_coeff": 0.1', '  }', '}', ''].join('\n'))
  await assertRejectsWith(t, () => loadConfig(json), [`${json}:5:5: ppo.kl_coeff: unknown key 'kl_coeff' in PpoConfig; did you mean 'kl_coef'?`], 'JSON')
  const nested = writeConfig(t, 'n.yaml', ['policy:', '  init:', '    hiden_size: 32', ''].join('\n'))
  await assertRejectsWith(t, () => loadConfig(nested), [`${nested}:3:5: policy.init.hiden_size: unknown key 'hiden_size' in ModelShape; did you mean 'hidden_size'?`], 'nested two levels')
  const level = writeConfig(t, 'l.yaml', ['algorithm: ppo', 'kl_coef: 0.1', ''].join('\n'))
  await assertRejectsWith(t, () => loadConfig(level), [`${level}:2:1: kl_coef: unknown key 'kl_coef' in RunConfig; did you mean 'ppo.kl_coef' or 'group.kl_coef'?`], 'a key one level too high')
  const far = writeConfig(t, 'f.yaml', ['data:', '  shuffle: true', ''].join('\n'))
  await assertRejectsWith(t, () => loadConfig(far), [`${far}:2:3: data.shuffle: unknown key 'shuffle' in DataConfig; its keys are train, eval, prompts, on_bad_row`], 'no close key: the known keys are listed')
})

t.test('wrong types and values: file, line, field path, expected and actual', async (t) => {
  const lines = [
    'algorithm: ppo', //                  1
    'ppo:', //                            2
    '  kl_coef: high', //                 3 string for a number
    '  epochs: 2.5', //                   4 float for an integer
    '  clip_low: 1.5', //                 5 above (max)
    '  kl_estimator: k33', //             6 not in (choices)
    '  whiten_advantages: "yes"', //      7 string for a bool
    'training: [1, 2]', //                8 list for a message
    'seed: -1', //                        9 negative for uint32
    'optimizer:', //                      10
    '  eps: 0', //                        11 (min_exclusive)
    '  lr: "1e-5"', //                    12 quoted number
    'data:', //                           13
    '  on_bad_row: skipp', //             14 not in (choices), close
    '  max_length: 1', //                 15 below (min)
    'generation:', //                     16
    '  top_p: 0', //                      17 (min_exclusive) with (max)
    '  max_new_tokens: 5000000000', //    18 past uint32
    'checkpoint: 3', //                   19 number for a message
    '',
  ]
  const file = writeConfig(t, 'bad.yaml', lines.join('\n'))
  const err = await loadConfig(file).then(
    () => undefined,
    (e: unknown) => e,
  )
  t.ok(err instanceof ConfigError, 'a ConfigError')
  const message = (err as ConfigError).message
  const expect = [
    `${file}:3:12: ppo.kl_coef: expected a number >= 0, got the string 'high'`,
    `${file}:4:11: ppo.epochs: expected an integer >= 1, got 2.5`,
    `${file}:5:13: ppo.clip_low: expected a number in [0, 1], got 1.5`,
    `${file}:6:17: ppo.kl_estimator: expected one of 'k1', 'k2', 'k3', got the string 'k33'; did you mean 'k3'?`,
    `${file}:7:22: ppo.whiten_advantages: expected true or false, got the string 'yes'`,
    `${file}:8:11: training: expected a mapping (TrainingConfig), got a list`,
    `${file}:9:7: seed: expected a non-negative integer (uint32: 0 to 4294967295), got -1`,
    `${file}:11:8: optimizer.eps: expected a number > 0, got 0`,
    `${file}:12:7: optimizer.lr: expected a number >= 0, got the string '1e-5' (a quoted number is a string; write it without quotes)`,
    `${file}:14:15: data.on_bad_row: expected one of 'stop', 'skip', got the string 'skipp'; did you mean 'skip'?`,
    `${file}:15:15: data.max_length: expected an integer >= 2, got 1`,
    `${file}:17:10: generation.top_p: expected a number in (0, 1], got 0`,
    `${file}:18:19: generation.max_new_tokens: expected an integer >= 1 (uint32: 0 to 4294967295), got 5000000000`,
    `${file}:19:13: checkpoint: expected a mapping (CheckpointConfig), got 3`,
  ]
  for (const line of expect) t.ok(message.includes(line), line)
  t.equal((err as ConfigError).problems.length, expect.length, 'every problem is reported, each once')
  t.match(message, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: 14 problems:\n`), 'a summary line first')

  const json = writeConfig(t, 'bad.json', ['{', '  "seed": 1.5,', '  "ppo": { "gamma": 2 },', '  "stages": 3,', '  "policy": []', '}', ''].join('\n'))
  await assertRejectsWith(
    t,
    () => loadConfig(json),
    [
      `${json}:2:11: seed: expected a non-negative integer, got 1.5`,
      `${json}:3:21: ppo.gamma: expected a number in [0, 1], got 2`,
      `${json}:4:3: stages: unknown key 'stages' in RunConfig`,
      `${json}:5:13: policy: expected a mapping (ModelSpec), got a list`,
    ],
    'JSON',
  )
  const strictJson = writeConfig(t, 'name.json', '{ "name": 2024, "policy": { "scalar_head": "true" } }\n')
  await assertRejectsWith(
    t,
    () => loadConfig(strictJson),
    [`${strictJson}:1:11: name: expected a string, got 2024`, `${strictJson}:1:44: policy.scalar_head: expected true or false, got the string 'true' (write true or false without quotes)`],
    'JSON has no plain scalars: a number is not a string',
  )
  const plain = writeConfig(t, 'name.yaml', 'name: 2024\nalgorithm: dpo\n')
  t.equal((await loadConfig(plain)).name, '2024', 'a plain YAML scalar in a string field is taken as written')

  const pipeline = writeConfig(
    t,
    'pipe.yaml',
    ['stages:', '  - name: sft', '    config: sft.yaml', '  - name: rm', '    run:', '      policy:', '        path: ${sfft}', '  - name: sft', '    config: x.yaml', '  - name: empty', ''].join('\n'),
  )
  await assertRejectsWith(t, () => loadConfig(pipeline, { type: 'PipelineConfig' }), [`${pipeline}:10:5: stages[3]: a stage needs 'config' (a RunConfig file) or 'run' (a RunConfig inline)`], 'a stage with neither config nor run')
  writeFileSync(pipeline, ['stages:', '  - name: sft', '    config: sft.yaml', '  - name: rm', '    run:', '      policy:', '        path: ${sfft}', '  - name: sft', '    config: x.yaml', ''].join('\n'))
  await assertRejectsWith(
    t,
    () => loadConfig(pipeline, { type: 'PipelineConfig' }),
    [`${pipeline}:7:15: stages[1].run.policy.path: '\${sfft}' names no earlier stage (earlier stages: sft); did you mean '\${sft}'?`, `${pipeline}:8:11: stages[2].name: the stage name 'sft' is already used by stages[0]`],
    'stage references and names',
  )
})

t.test('malformed YAML and JSON: file, line, column and the reason', async (t) => {
  const yaml = writeConfig(t, 'broken.yaml', ['algorithm: ppo', 'ppo:', '  kl_coef: 0.1', '   epochs: [1, 2', ''].join('\n'))
  await assertRejectsWith(t, () => loadConfig(yaml), [`${yaml}:3:12: not valid YAML: `], 'YAML syntax')
  const flow = writeConfig(t, 'flow.yaml', ['algorithm: ppo', 'ppo: {kl_coef: 0.1', ''].join('\n'))
  await assertRejectsWith(t, () => loadConfig(flow), [`${flow}:`, 'not valid YAML: ', 'flow'], 'an unclosed flow mapping')
  const duplicate = writeConfig(t, 'dup.yaml', ['algorithm: ppo', 'seed: 1', 'seed: 2', ''].join('\n'))
  await assertRejectsWith(t, () => loadConfig(duplicate), [`${duplicate}:3:1: not valid YAML: Map keys must be unique`], 'a YAML key given twice')
  const tab = writeConfig(t, 'tab.yaml', 'ppo:\n\tkl_coef: 1\n')
  await assertRejectsWith(t, () => loadConfig(tab), [`${tab}:2:1: not valid YAML: Tabs are not allowed as indentation`], 'a tab as indentation')
  const json = writeConfig(t, 'broken.json', ['{', '  "algorithm": "ppo",', '  "ppo": { "kl_coef": 0.1 }', '  "seed": 1', '}', ''].join('\n'))
  await assertRejectsWith(t, () => loadConfig(json), [`${json}:4:3: not valid JSON: Expected ',' or '}' after property value`], 'JSON syntax')
  const trailing = writeConfig(t, 'trailing.json', '{ "seed": 1, }\n')
  await assertRejectsWith(t, () => loadConfig(trailing), [`${trailing}:1:14: not valid JSON: `], 'a trailing comma')
  const twice = writeConfig(t, 'twice.json', '{\n  "seed": 1,\n  "seed": 2\n}\n')
  await assertRejectsWith(t, () => loadConfig(twice), [`${twice}:3:3: seed: the key 'seed' is given twice (first at line 2)`], 'a JSON key given twice')
  const list = writeConfig(t, 'list.yaml', '- algorithm: ppo\n')
  await assertRejectsWith(t, () => loadConfig(list), [`${list}:1:1: expected a mapping (RunConfig), got a list`], 'a list at the top')
  const empty = writeConfig(t, 'empty.yaml', '# nothing yet\n')
  t.equal((await loadConfig(empty)).ppo.kl_coef, 0.05, 'an empty file is all defaults')
  const missing = join(scratch(t), 'missing.yaml')
  await assertRejectsWith(t, () => loadConfig(missing), [`${missing}: cannot read the config: no such file`], 'a missing file')
  // A FIFO where a config (or an extends base) should be: refused at once; reading it waited for a writer for good.
  const fifoDir = scratch(t)
  const fifo = join(fifoDir, 'fifo.yaml')
  execFileSync('mkfifo', [fifo])
  await assertRejectsWith(t, () => loadConfig(fifo), [`${fifo}: cannot read the config: it is a FIFO (named pipe), not a regular file`], 'a FIFO (was: a hang)')
  writeFileSync(join(fifoDir, 'pipeline.yaml'), 'extends: fifo.yaml\nstages: []\n')
  await assertRejectsWith(t, () => loadConfig(join(fifoDir, 'pipeline.yaml'), { type: 'PipelineConfig' }), ['extends: cannot read the base pipeline', 'fifo.yaml: it is a FIFO (named pipe), not a regular file'], 'a FIFO as a base (was: a hang)')
  const dirConfig = join(fifoDir, 'dir.yaml')
  execFileSync('mkdir', [dirConfig])
  await assertRejectsWith(t, () => loadConfig(dirConfig), [`${dirConfig}: cannot read the config: it is a directory`], 'a directory')
  await assertRejectsWith(t, () => loadConfig(fifoDir), [`${fifoDir}: cannot read the config: it is a directory (give a .yaml, .yml or .json file)`], "a directory without an extension (was: cannot tell the format from the extension '')")
  const toml = writeConfig(t, 'ppo.toml', 'algorithm = "ppo"\n')
  await assertRejectsWith(t, () => loadConfig(toml), [`${toml}: cannot tell the format from the extension '.toml': expected .yaml, .yml, .json`], 'an unknown extension')
  await assertRejectsWith(t, () => loadConfig(yaml, { sets: [] } as never), ["loadConfig: unknown option 'sets'. Did you mean 'set'?"], 'options are checked too')
})

t.test('--set overrides', async (t) => {
  const ppo = join(FIXTURES, 'ppo.yaml')
  const config = await loadConfig(ppo, { set: ['ppo.kl_coef=0.2', 'optimizer.lr=3e-6', 'generation.stop_at_eos=false', 'name=2024', 'ppo.kl_estimator=k2'] })
  t.equal(config.ppo.kl_coef, 0.2, 'a number')
  t.equal(config.optimizer.lr, 3e-6, 'a number in exponent form')
  t.equal(config.generation.stop_at_eos, false, 'a boolean')
  t.equal(config.name, '2024', 'a string field takes the text as written')
  t.equal(config.ppo.kl_estimator, 'k2', 'a string')
  t.equal(config.ppo.epochs, 4, 'the rest of the file stays')

  const created = await loadConfig(join(FIXTURES, 'sft.yaml'), { set: ['value_model.init.layers=6', 'reward_function.name=length', 'ppo.clip_high=0.3'] })
  t.equal(created.value_model.init.layers, 6, 'missing parents are created')
  t.equal(created.value_model.init.heads, 4, 'with their defaults')
  t.equal(created.reward_function.name, 'length')
  t.equal(created.ppo.clip_high, 0.3)

  const unset = await loadConfig(ppo, { set: ['ppo.clip_high=null', 'ppo.kl_coef='] })
  t.equal(unset.ppo.clip_high, undefined, 'null unsets a value')
  t.equal(unset.ppo.kl_coef, 0.05, 'an empty value goes back to the default')

  const pipe = await loadConfig(join(FIXTURES, 'pipeline.yaml'), { type: 'PipelineConfig', set: ['stages[1].run.seed=3', 'stages.3.run.ppo.kl_coef=0.01', 'stages[4].name=eval', 'stages[4].config=eval.yaml'] })
  t.equal(pipe.stages[1].run.seed, 3, 'list items by [index]')
  t.equal(pipe.stages[3].run.ppo.kl_coef, 0.01, 'or by .index')
  t.equal(pipe.stages.length, 5, 'an index one past the end adds an item')
  t.equal(pipe.stages[4].config, 'eval.yaml')

  await assertRejectsWith(t, () => loadConfig(ppo, { set: ['ppo.kl_coeff=0.1'] }), [`${ppo}: in --set 'ppo.kl_coeff=0.1': unknown key 'kl_coeff' in ppo (PpoConfig); did you mean 'ppo.kl_coef'?`], 'an unknown path suggests the closest key')
  await assertRejectsWith(t, () => loadConfig(ppo, { set: ['optimzer.lr=1'] }), [`in --set 'optimzer.lr=1': unknown key 'optimzer' in RunConfig; did you mean 'optimizer'?`], 'an unknown top-level key')
  await assertRejectsWith(t, () => loadConfig(ppo, { set: ['ppo.kl_coef.x=1'] }), [`in --set 'ppo.kl_coef.x=1': ppo.kl_coef is a number >= 0; it has no keys`], 'a path through a number')
  await assertRejectsWith(t, () => loadConfig(ppo, { set: ['ppo.kl_coef'] }), [`in --set 'ppo.kl_coef': expected path=value, e.g. ppo.kl_coef=0.1`], 'no =')
  await assertRejectsWith(t, () => loadConfig(ppo, { set: ['ppo..x=1'] }), [`in --set 'ppo..x=1': 'ppo..x' is not a path`], 'a malformed path')
  await assertRejectsWith(
    t,
    () => loadConfig(join(FIXTURES, 'pipeline.yaml'), { type: 'PipelineConfig', set: ['stages[9].name=x'] }),
    [`in --set 'stages[9].name=x': stages has 4 items; [9] is past its end (use [4] to add one)`],
    'an index past the end',
  )
  await assertRejectsWith(t, () => loadConfig(join(FIXTURES, 'pipeline.yaml'), { type: 'PipelineConfig', set: ['stages.name=x'] }), [`in --set 'stages.name=x': stages is a list; give an item's index, e.g. stages[0].name`], 'a list without an index')

  // Type errors in an override name the --set argument, not the file's line;
  // the file's own problems keep their lines.
  const file = writeConfig(t, 'ppo.yaml', ['algorithm: ppo', 'ppo:', '  kl_coef: 0.1', '  epochs: zero', ''].join('\n'))
  await assertRejectsWith(
    t,
    () => loadConfig(file, { set: ['ppo.kl_coef=-1', 'training.batch_size=big', 'generation.top_p=1.5', 'data.on_bad_row=skipp'] }),
    [
      `${file}: 5 problems:`,
      `${file}:4:11: ppo.epochs: expected an integer >= 1, got the string 'zero'`,
      `${file}: in --set 'ppo.kl_coef=-1': ppo.kl_coef: expected a number >= 0, got -1`,
      `${file}: in --set 'training.batch_size=big': training.batch_size: expected an integer >= 1, got the string 'big'`,
      `${file}: in --set 'generation.top_p=1.5': generation.top_p: expected a number in (0, 1], got 1.5`,
      `${file}: in --set 'data.on_bad_row=skipp': data.on_bad_row: expected one of 'stop', 'skip', got the string 'skipp'; did you mean 'skip'?`,
    ],
    'type errors in overrides, next to the file\'s',
  )
  const aliased = writeConfig(t, 'alias.yml', ['policy: &model', '  path: ./sft', 'reference: *model', ''].join('\n'))
  const shared = await loadConfig(aliased, { set: ['policy.path=./other'] })
  t.equal(shared.reference.path, './sft', 'an override of one alias leaves the other (.yml, anchors)')
  t.equal(shared.policy.path, './other')
  const replaced = writeConfig(t, 'r.yaml', ['ppo: 3', ''].join('\n'))
  await assertRejectsWith(t, () => loadConfig(replaced, { set: ['ppo.kl_coef=1'] }), [`in --set 'ppo.kl_coef=1': ppo is 3 in ${replaced}, not a mapping`, `${replaced}:1:6: ppo: expected a mapping (PpoConfig), got 3`], 'an override into a value that is not a mapping')
  const whole = writeConfig(t, 'w.yaml', ['ppo:', '  kl_coef: 0.1', ''].join('\n'))
  await assertRejectsWith(t, () => loadConfig(whole, { set: ['ppo={kl_coeff: 1}'] }), [`${whole}: in --set 'ppo={kl_coeff: 1}': ppo.kl_coeff: unknown key 'kl_coeff' in PpoConfig; did you mean 'kl_coef'?`], 'a whole section from --set')
})

t.test('resolveConfig: objects built in code', async (t) => {
  const input: RunConfigInput = { algorithm: 'dpo', policy: { path: './m' }, dpo: { beta: 0.2 } }
  const config = resolveConfig(input)
  t.equal(config.dpo.beta, 0.2)
  t.equal(config.dpo.variant, 'sigmoid')
  t.equal(config.optimizer.lr, 1e-5)
  t.same(input, { algorithm: 'dpo', policy: { path: './m' }, dpo: { beta: 0.2 } }, 'the input is not changed')
  t.same(resolveConfig(config), config, 'a resolved config resolves to itself')

  assertThrowsWith(t, () => resolveConfig({ ppo: { kl_coeff: 1 } } as never), [`config: ppo.kl_coeff: unknown key 'kl_coeff' in PpoConfig; did you mean 'kl_coef'?`], 'unknown key, no file: the path')
  assertThrowsWith(
    t,
    () => resolveConfig({ ppo: { epochs: 1.5, kl_estimator: 'k9' } } as never, { source: 'train.ts' }),
    ['train.ts: 2 problems:', 'train.ts: ppo.epochs: expected an integer >= 1, got 1.5', `train.ts: ppo.kl_estimator: expected one of 'k1', 'k2', 'k3', got the string 'k9'`],
    'the source names the config',
  )
  assertThrowsWith(t, () => resolveConfig({ training: { batch_size: Number.NaN } }), ['config: training.batch_size: expected a finite integer >= 1, got NaN'], 'NaN')
  assertThrowsWith(t, () => resolveConfig({ data: new Map() } as never), ['config: data: expected a mapping (DataConfig), got a Map'], 'a class instance is not a mapping')
  assertThrowsWith(t, () => resolveConfig({ name: 7 } as never), ['config: name: expected a string, got 7'], 'objects get no YAML leniency')
  assertThrowsWith(t, () => resolveConfig({} as never, { type: 'Run' as never }), ["resolveConfig: type must be one of 'RunConfig', 'PipelineConfig'; got the string 'Run'"], 'the type is checked')

  const withSet = resolveConfig(input, { set: ['dpo.beta=0.5', 'optimizer.lr=1e-4'], source: 'train.ts' })
  t.equal(withSet.dpo.beta, 0.5)
  t.equal(withSet.optimizer.lr, 1e-4)
  t.same(input.dpo, { beta: 0.2 }, 'overrides do not touch the input')
  assertThrowsWith(t, () => resolveConfig(input, { set: ['dpo.beta=0'], source: 'train.ts' }), [`train.ts: in --set 'dpo.beta=0': dpo.beta: expected a number > 0, got 0`], '--set in resolveConfig')

  const pipeline = resolveConfig({ stages: [{ name: 'sft', run: { algorithm: 'sft' } }, { name: 'dpo', run: { algorithm: 'dpo', policy: { path: '${sft}' } } }] }, { type: 'PipelineConfig' })
  t.equal(pipeline.stages[1].run.policy.path, '${sft}')
  t.equal(pipeline.output_dir, 'runs')
  assertThrowsWith(t, () => resolveConfig({ stages: [{ name: 'a', run: { policy: { path: '${a}' } } }] }, { type: 'PipelineConfig' }), [`config: stages[0].run.policy.path: '\${a}' names no earlier stage (it is the first stage)`], 'a stage cannot name itself')
})

t.test('saveResolvedConfig writes what ran, atomically, and loads back equal', async (t) => {
  const dir = scratch(t)
  for (const algorithm of ALGORITHMS) {
    const config = await loadConfig(join(FIXTURES, `${algorithm}.yaml`), { set: ['name=a: b # not a comment', 'ppo.kl_coef=1e-7'] })
    const file = join(dir, 'runs', algorithm, 'config.yaml')
    await saveResolvedConfig(config, file)
    const again = await loadConfig(file)
    t.strictSame(again, config, `${algorithm}: round trip`)
  }
  const saved = readFileSync(join(dir, 'runs', 'ppo', 'config.yaml'), 'utf8')
  t.match(saved, /^# The resolved RunConfig/, 'a header comment')
  t.match(saved, /\n {2}kl_coef: 1e-7\n/, 'every value written')
  t.match(saved, /\n {2}beta2: 0.999\n/, 'defaults included')

  const pipeline = await loadConfig(join(FIXTURES, 'pipeline.yaml'), { type: 'PipelineConfig' })
  const pipeFile = join(dir, 'pipeline.yaml')
  await saveResolvedConfig(pipeline, pipeFile)
  t.strictSame(await loadConfig(pipeFile, { type: 'PipelineConfig' }), pipeline, 'a pipeline round trip (type inferred from stages)')
  const jsonFile = join(dir, 'ppo.json')
  const ppo = await loadConfig(join(FIXTURES, 'ppo.yaml'))
  await saveResolvedConfig(ppo, jsonFile)
  t.strictSame(await loadConfig(jsonFile), ppo, 'JSON when the name ends in .json')

  await saveResolvedConfig({ ...ppo, seed: 5 }, jsonFile)
  t.equal((await loadConfig(jsonFile)).seed, 5, 'an existing file is replaced')
  const bad = join(dir, 'bad.yaml')
  await assertRejectsWith(t, () => saveResolvedConfig({ ...ppo, seed: -1 }, bad), ['saveResolvedConfig(', 'seed: expected a non-negative integer'], 'an invalid config is not written')
  t.notOk(existsSync(bad), 'no file for it')
  t.same(
    readdirSync(dir).filter((f) => f.endsWith('.tmp')),
    [],
    'no temp files left',
  )
})

t.test('resolvePaths makes paths relative to the config file absolute', async (t) => {
  const file = join(FIXTURES, 'ppo.yaml')
  const config = await loadConfig(file, { set: ['reference.path=/abs/ref', 'reference.tokenizer=byte', 'value_model.tokenizer=tok'] })
  const resolved = resolvePaths(config, FIXTURES)
  t.equal(resolved.policy.path, join(FIXTURES, 'runs/sft-smollm/model'))
  t.equal(resolved.reward_model.path, join(FIXTURES, 'runs/rm/model'))
  t.equal(resolved.data.prompts, join(FIXTURES, 'data/prompts.jsonl'))
  t.equal(resolved.reference.path, '/abs/ref', 'absolute paths stay')
  t.equal(resolved.reference.tokenizer, 'byte', "the 'byte' tokenizer stays")
  t.equal(resolved.value_model.tokenizer, join(FIXTURES, 'tok'), 'tokenizer directories resolve')
  t.equal(resolved.data.train, undefined, 'unset paths stay unset')
  t.equal(resolved.output_dir, 'runs', 'output_dir is not a config-relative path')
  t.equal(config.policy.path, './runs/sft-smollm/model', 'the input is not changed')
  t.strictSame(resolveConfig(resolved), resolved, 'the result is still a valid config')

  const bestOfN = resolvePaths(await loadConfig(join(FIXTURES, 'best_of_n.yaml')), 'configs')
  t.ok(isAbsolute(bestOfN.best_of_n.output!), 'a relative base directory is made absolute first')
  t.equal(bestOfN.best_of_n.output, join(process.cwd(), 'configs', 'out/best-of-64.jsonl'))

  const pipeline = resolvePaths(await loadConfig(join(FIXTURES, 'pipeline.yaml'), { type: 'PipelineConfig' }), FIXTURES)
  t.equal(pipeline.stages[0].config, join(FIXTURES, 'sft.yaml'), 'stage config files')
  t.equal(pipeline.stages[1].run.policy.path, '${sft}', '${stage} references stay')
  t.equal(pipeline.stages[1].run.data.train, join(FIXTURES, 'data/pairs.jsonl'), 'paths of inline runs')
  t.equal(pipeline.stages[3].run.reward_model.path, '${rm}')
})

t.test('types.generated.ts is what the generator makes from the proto', async (t) => {
  const out = join(scratch(t), 'types.generated.ts')
  execFileSync(process.execPath, [join(ROOT, 'scripts', 'gen-config-types.mjs'), '--out', out], { cwd: ROOT, stdio: 'pipe' })
  const committed = readFileSync(join(ROOT, 'ts', 'config', 'types.generated.ts'), 'utf8')
  const fresh = readFileSync(out, 'utf8')
  t.ok(fresh === committed, 'ts/config/types.generated.ts is up to date (run `npm run gen:config` after changing proto/rlfarm.proto)')
  t.match(fresh, /export interface RunConfig \{/)
  t.match(fresh, /kl_estimator: 'k1' \| 'k2' \| 'k3'\n/, 'choices as a union')
  t.match(fresh, /clip_high: number \| undefined\n/, 'no default: possibly undefined')
  t.match(fresh, /stages: Stage\[\]\n/, 'repeated: an array')
  t.match(fresh, /export interface RunConfigInput \{/)
  t.match(fresh, /ppo\?: PpoConfigInput\n/)
  t.match(fresh, /\/\*\* initial beta of the KL penalty\. `double`, default `0\.05`, range >= 0\. \*\//, 'help as JSDoc')
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
  t.match(pkg.scripts['gen:config'], /gen-config-types\.mjs/, 'npm run gen:config')
})

t.test('pipelines extend others: the bases\' stages first, shared ones once, errors in the file at fault', async (t) => {
  const dir = scratch(t)
  const write = (name: string, lines: string[]) => {
    const file = join(dir, name)
    writeFileSync(file, `${lines.join('\n')}\n`)
    return file
  }
  write('base.yaml', [
    'name: base',
    'seed: 3',
    'output_dir: out',
    'stages:',
    '  - name: farm',
    '    run: { algorithm: farm }',
    '  - name: sft',
    '    run:',
    '      algorithm: sft',
    '      data: { train: "data/sft.jsonl" }',
  ])
  const child = write('child.yaml', ['name: child', 'extends: base.yaml', 'stages:', '  - name: ppo', '    run: { algorithm: ppo, policy: { path: "${sft}" }, data: { prompts: prompts.jsonl } }'])
  const loaded = await loadConfig(child, { type: 'PipelineConfig' })
  t.same(loaded.stages.map((s) => s.name), ['farm', 'sft', 'ppo'], "the base's stages run first")
  t.equal(loaded.name, 'child', 'the name is the file\'s own')
  t.equal(loaded.seed, 3, 'the seed comes from the base when the file leaves it out')
  t.equal(loaded.output_dir, 'out', 'and so does output_dir')
  t.same(loaded.extends, [], 'the resolved config has no extends left (its stages are all there)')
  t.equal(loaded.stages[1].run!.data.train, join(dir, 'data', 'sft.jsonl'), "a base's relative paths are taken from the base's directory")
  t.equal(loaded.stages[2].run!.data.prompts, 'prompts.jsonl', "the file's own paths are left for resolvePaths")
  const set = await loadConfig(child, { type: 'PipelineConfig', set: ['stages[1].run.training.max_steps=7', 'seed=5'] })
  t.equal(set.stages[1].run!.training.max_steps, 7, '--set indexes the merged stages')
  t.equal(set.seed, 5, '--set overrides an inherited seed')
  const saved = join(dir, 'saved', 'pipeline.yaml')
  await saveResolvedConfig(loaded, saved)
  t.same(await loadConfig(saved, { type: 'PipelineConfig' }), loaded, 'the saved pipeline loads back equal')
  const object = resolveConfig({ name: 'obj', extends: [join(dir, 'base.yaml')], stages: [] }, { type: 'PipelineConfig' })
  t.same(object.stages.map((s) => s.name), ['farm', 'sft'], 'a pipeline object extends a file too (relative to the working directory)')

  // Two bases that extend the same pipeline share its stages.
  write('a.yaml', ['extends: base.yaml', 'stages:', '  - name: a', '    run: { algorithm: eval, policy: { path: "${sft}" } }'])
  write('b.yaml', ['extends: [base.yaml]', 'seed: 9', 'stages:', '  - name: b', '    run: { algorithm: eval, policy: { path: "${sft}" } }'])
  const both = await loadConfig(write('both.yaml', ['name: both', 'extends: [a.yaml, b.yaml]']), { type: 'PipelineConfig' })
  t.same(both.stages.map((s) => s.name), ['farm', 'sft', 'a', 'b'], 'a stage two bases share runs once')
  t.equal(both.seed, 3, 'the first base that sets the seed gives it')

  // Errors.
  write('x.yaml', ['stages:', '  - name: s', '    run: { algorithm: sft }'])
  const y = write('y.yaml', ['stages:', '  - name: s', '    run: { algorithm: dpo }'])
  await assertRejectsWith(t, () => loadConfig(write('xy.yaml', ['name: xy', 'extends: [x.yaml, y.yaml]']), { type: 'PipelineConfig' }), [`${y}:2:5: stages[0]: the stage 's' differs from the stage of that name in ${join(dir, 'x.yaml')}`], 'two bases with different stages of one name')
  const bad = write('bad-base.yaml', ['stages:', '  - name: s', '    run:', '      polcy: {}'])
  await assertRejectsWith(t, () => loadConfig(write('uses-bad.yaml', ['name: u', 'extends: bad-base.yaml']), { type: 'PipelineConfig' }), [`${bad}:4:7: stages[0].run.polcy: unknown key 'polcy' in RunConfig; did you mean 'policy'?`], 'an error in a base names the base file and line')
  const own = write('own.yaml', ['name: o', 'extends: base.yaml', 'stages:', '  - name: sft', '    run: { algorithm: sft }', '  - name: r', '    run: { algorithm: eval, policy: { path: "${sfft}" } }'])
  await assertRejectsWith(
    t,
    () => loadConfig(own, { type: 'PipelineConfig' }),
    [`${own}:4:11: stages[2].name: the stage name 'sft' is already used by stages[1] (from ${join(dir, 'base.yaml')})`, `${own}:7:45: stages[3].run.policy.path: '\${sfft}' names no earlier stage (earlier stages: farm, sft); did you mean '\${sft}'?`],
    "the file's own stages are checked against the bases' (names, references), at the file's own lines",
  )
  write('loop1.yaml', ['extends: loop2.yaml', 'stages: []'])
  const loop2 = write('loop2.yaml', ['extends: loop1.yaml', 'stages: []'])
  await assertRejectsWith(t, () => loadConfig(join(dir, 'loop1.yaml'), { type: 'PipelineConfig' }), [`${loop2}:1:10: extends: `, 'loop1.yaml extends itself', 'loop2.yaml -> '], 'a cycle')
  const missing = write('missing.yaml', ['name: m', 'extends: [base.yaml, nowhere.yaml]'])
  await assertRejectsWith(t, () => loadConfig(missing, { type: 'PipelineConfig' }), [`${missing}:2:22: extends[1]: cannot read the base pipeline `, 'nowhere.yaml: no such file'], 'a missing base')
  const notList = write('not-list.yaml', ['name: n', 'extends: 3'])
  await assertRejectsWith(t, () => loadConfig(notList, { type: 'PipelineConfig' }), [`${notList}:2:10: extends: expected a pipeline file or a list of them, got 3`], 'extends of the wrong type')
  write('run.yaml', ['algorithm: sft'])
  await assertRejectsWith(t, () => loadConfig(write('of-run.yaml', ['name: r', 'extends: run.yaml']), { type: 'PipelineConfig' }), ['extends: ', 'run.yaml is not a pipeline: it has no list of stages'], 'a base that is a RunConfig')
})

t.test('every example config loads, and the farm examples share farm-base.yaml\'s stages', async (t) => {
  const dir = join(ROOT, 'examples')
  const files = ['', 'fidelity', 'real'].flatMap((sub) => readdirSync(join(dir, sub)).filter((f) => f.endsWith('.yaml')).map((f) => join(dir, sub, f)))
  t.ok(files.length >= 15, `${files.length} example configs`)
  for (const file of files) {
    // The loader's alias limit (validation.yaml's candidate stages use many aliases).
    const raw = parseYaml(readFileSync(file, 'utf8'), { maxAliasCount: 1000 }) as Record<string, unknown>
    const type = 'stages' in raw || 'extends' in raw ? 'PipelineConfig' : 'RunConfig'
    const config = await loadConfig(file, { type })
    t.ok(config, `${file.slice(dir.length + 1)} loads as a ${type}`)
  }
  const base = await loadConfig(join(dir, 'farm-base.yaml'), { type: 'PipelineConfig' })
  for (const name of ['quickstart.yaml', 'compare.yaml', 'fidelity.yaml', 'fidelity/over-optimisation.yaml', 'fidelity/west-of-n.yaml', 'fidelity/best-of-n.yaml']) {
    const pipeline = await loadConfig(join(dir, name), { type: 'PipelineConfig' })
    t.same(pipeline.stages.slice(0, base.stages.length), base.stages, `${name} begins with farm-base.yaml's stages`)
    t.equal(pipeline.seed, base.seed, `${name} has farm-base.yaml's seed`)
    t.equal(new Set(pipeline.stages.map((s) => s.name)).size, pipeline.stages.length, `${name}: every stage once`)
  }
})
