// The rlfarm command and the examples: help, exit codes, train/run/eval/
// generate on the example configs, Ctrl-C saving a checkpoint and --resume
// finishing the run, and examples/embed.ts.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import { tempDir } from './helpers/common'

const ROOT = path.join(__dirname, '..')
const BIN = path.join(ROOT, 'bin', 'rlfarm.js')


function rlfarm(args: string[], options: { cwd?: string } = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: options.cwd ?? ROOT, encoding: 'utf8', timeout: 300_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

t.test('--help on every command, with examples', async (t) => {
  const top = rlfarm(['--help'])
  t.equal(top.code, 0)
  for (const command of ['train', 'run', 'eval', 'generate', 'farm', 'quickstart', 'compare']) {
    t.match(top.stdout, new RegExp(`\\n  ${command} `), `lists ${command}`)
    const r = rlfarm([command, '--help'])
    t.equal(r.code, 0, `${command} --help`)
    t.match(r.stdout, /^Usage: rlfarm /)
    t.match(r.stdout, /Examples:\n  rlfarm /, `${command} --help has examples`)
  }
  t.equal(rlfarm([]).code, 2, 'no command: usage, exit 2')
  const unknown = rlfarm(['trian'])
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, /unknown command 'trian'/)
  t.match(rlfarm(['--version']).stdout, /^\d+\.\d+\.\d+/)
})

t.test('bad command lines and configs: exit 2 and a message naming the problem', async (t) => {
  const out = tempDir(t, 'cli')
  const missing = rlfarm(['train'])
  t.equal(missing.code, 2)
  t.match(missing.stderr, /expected one config file/)
  const flag = rlfarm(['train', 'examples/sft.yaml', '--epochs', '3'])
  t.equal(flag.code, 2)
  t.match(flag.stderr, /unknown option '--epochs' for train \(its options: --set, --name/)
  const typoFlag = rlfarm(['train', 'examples/sft.yaml', '--overwite'])
  t.equal(typoFlag.code, 2)
  t.match(typoFlag.stderr, /unknown option '--overwite' for train; did you mean '--overwrite'\?/, 'a mistyped flag: did you mean')
  const otherCommand = rlfarm(['train', 'examples/sft.yaml', '--out', out])
  t.match(otherCommand.stderr, /unknown option '--out' for train; did you mean '--output-dir'\? \(--out is an option of .*\brun\b/, "another command's flag")
  t.match(rlfarm(['generate', '-m', out, '--temprature', '0']).stderr, /did you mean '--temperature'/)
  t.match(rlfarm(['trian']).stderr, /unknown command 'trian'; did you mean 'train'\?/)
  const both = rlfarm(['train', 'examples/sft.yaml', '--resume', '--overwrite'])
  t.equal(both.code, 2)
  t.match(both.stderr, /give one of them/)
  const typo = rlfarm(['train', 'examples/sft.yaml', '--set', 'optimizer.lrate=1e-3', '--output-dir', out])
  t.equal(typo.code, 2)
  t.match(typo.stderr, /--set 'optimizer\.lrate=1e-3': unknown key 'lrate' in optimizer.*\blr\b/)
  const bad = path.join(out, 'bad.yaml')
  fs.writeFileSync(bad, 'algorithm: sft\ntraining:\n  batch_size: -4\n')
  const badType = rlfarm(['train', bad])
  t.equal(badType.code, 2)
  t.match(badType.stderr, /bad\.yaml:3:\d+: training\.batch_size/)
  const noModel = rlfarm(['train', 'examples/sft.yaml', '--output-dir', out, '--set', 'policy.init=null', '--set', `policy.path=${path.join(out, 'nowhere')}`])
  t.equal(noModel.code, 1, 'a run that fails: exit 1')
  t.match(noModel.stderr, /nowhere/)
})

t.test('train, eval and generate on the example configs', async (t) => {
  const out = tempDir(t, 'cli')
  const r = rlfarm(['train', 'examples/sft.yaml', '--output-dir', out, '--name', 'sft', '--set', 'training.max_steps=20', '--progress', 'lines'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, `model: ${path.join(out, 'sft', 'model')}`)
  t.match(r.stderr, /sft step 20\/20 +100%/, 'progress lines with step, total and percentage')
  t.match(r.stderr, /tok\/s/)
  for (const f of ['config.yaml', 'run.json', 'metrics.jsonl', 'model/model.safetensors', 'model/config.json']) t.ok(fs.existsSync(path.join(out, 'sft', f)), f)

  const g = rlfarm(['generate', '-m', path.join(out, 'sft', 'model'), '-p', 'copy: abc', '-p', 'copy: xyz', '--max-new-tokens', '6', '--temperature', '0'])
  t.equal(g.code, 0, g.stderr)
  t.match(g.stdout, /^\[1\] copy: abc\n=> [^\n]*\n\n\[2\] copy: xyz\n=> [^\n]*\n$/, 'each response under the prompt it answers')
  t.equal(g.stderr, '', 'no note when the context has room')
  // The model has 64 positions; "copy: hello" is 12 tokens: 64 new tokens are cut to 52, said once.
  const capped = rlfarm(['generate', '-m', path.join(out, 'sft', 'model'), '-p', 'copy: hello', '-p', 'copy: hello', '--temperature', '0'])
  t.equal(capped.code, 0, capped.stderr)
  t.equal(capped.stderr, "rlfarm generate: max new tokens cut from 64 to 52: prompts of 12 tokens leave 52 of the model's 64 positions\n", 'the cap is said once')
  const one = rlfarm(['generate', '-m', path.join(out, 'sft', 'model'), '-p', 'copy: hello', '--temperature', '0', '--max-new-tokens', '52'])
  t.match(one.stdout, /^copy: hello\n=> /, 'one prompt: no number')
  t.equal(one.stdout, capped.stdout.split('\n\n')[0].replace('[1] ', '') + '\n', 'the capped response is the one 52 new tokens give')
  const missing = rlfarm(['generate', '-m', path.join(out, 'no-such-model'), '-p', 'hi'])
  t.equal(missing.code, 1)
  t.match(missing.stderr, `model.path: ${path.join(out, 'no-such-model')} is not a model directory (nothing is there)`, 'a missing model folder is named, not its tokenizer')
  t.notMatch(missing.stderr, /tokenizer/)
  const gj = rlfarm(['generate', '-m', path.join(out, 'sft', 'model'), '--prompts', 'examples/data/prompts.jsonl', '--max-new-tokens', '4'])
  const rows = gj.stdout.trim().split('\n').map((l) => JSON.parse(l))
  t.equal(rows.length, 100)
  t.ok(rows.every((row) => typeof row.response === 'string' && row.prompt.startsWith('copy: ')))

  const e = rlfarm(['eval', 'examples/ppo.yaml', '--output-dir', out, '--name', 'eval', '--set', `policy.path=${path.join(out, 'sft', 'model')}`, '--set', 'policy.init=null', '--progress', 'none'])
  t.equal(e.code, 0, e.stderr)
  t.match(e.stdout, /metrics: reward=[\d.]+ response_length=/)
  t.ok(fs.existsSync(path.join(out, 'eval', 'outputs.jsonl')))

  // As the README writes it, from another directory: a relative --set path is taken from there,
  // and the evaluation is a run of its own beside the training run of the config's name (ppo).
  fs.mkdirSync(path.join(out, 'runs', 'ppo'), { recursive: true })
  fs.cpSync(path.join(out, 'sft', 'model'), path.join(out, 'runs', 'ppo', 'model'), { recursive: true })
  fs.writeFileSync(path.join(out, 'runs', 'ppo', 'run.json'), JSON.stringify({ name: 'ppo', state: 'finished', step: 40 }))
  const readme = ['eval', path.join(ROOT, 'examples', 'ppo.yaml'), '--set', 'policy.path=runs/ppo/model', '--set', 'policy.init=null', '--progress', 'none']
  const first = rlfarm(readme, { cwd: out })
  t.equal(first.code, 0, first.stderr)
  const second = rlfarm(readme, { cwd: out })
  t.equal(second.code, 0, second.stderr)
  const runOf = (r: { stdout: string }) => /^run: (.*)$/m.exec(r.stdout)?.[1] ?? ''
  t.match(runOf(first), new RegExp(`^${path.join(fs.realpathSync(out), 'runs', 'eval-')}`), `an eval-<time> run in ./runs: ${runOf(first)}`)
  t.not(runOf(first), runOf(second), 'a second evaluation is another run')
  t.same(fs.readdirSync(path.join(out, 'runs', 'ppo')).sort(), ['model', 'run.json'], 'the training run is left alone')
})

t.test('re-running: refused with the three ways on, --overwrite, a failed start reused, --set paths from the current directory', async (t) => {
  const out = tempDir(t, 'cli')
  fs.copyFileSync(path.join(ROOT, 'examples', 'data', 'sft.jsonl'), path.join(out, 'mine.jsonl'))
  const args = ['train', path.join(ROOT, 'examples', 'sft.yaml'), '--set', 'training.max_steps=3', '--progress', 'none']
  const failed = rlfarm([...args, '--set', 'data.train=missing.jsonl'], { cwd: out })
  t.equal(failed.code, 1)
  t.match(failed.stderr, path.join(fs.realpathSync(out), 'missing.jsonl'), 'a --set path is taken from the current directory')
  t.match(JSON.parse(fs.readFileSync(path.join(out, 'runs', 'sft', 'run.json'), 'utf8')), { state: 'failed', step: 0 })
  const retry = rlfarm([...args, '--set', 'data.train=mine.jsonl'], { cwd: out })
  t.equal(retry.code, 0, `a run that failed at step 0 does not block its retry: ${retry.stderr}`)
  const again = rlfarm([...args, '--set', 'data.train=mine.jsonl'], { cwd: out })
  t.equal(again.code, 1)
  t.match(again.stderr, /runs\/sft already exists: a finished run \(step 3\)\. To go on: --resume .*, --overwrite .*, or --name NEW/)
  t.notMatch(again.stderr, /resume: true/)
  const before = fs.statSync(path.join(out, 'runs', 'sft', 'model', 'model.safetensors')).mtimeMs
  const over = rlfarm([...args, '--set', 'data.train=mine.jsonl', '--overwrite'], { cwd: out })
  t.equal(over.code, 0, over.stderr)
  t.ok(fs.statSync(path.join(out, 'runs', 'sft', 'model', 'model.safetensors')).mtimeMs > before, '--overwrite trains it again')
  const named = rlfarm([...args, '--set', 'data.train=mine.jsonl', '--name', 'sft-2'], { cwd: out })
  t.equal(named.code, 0, named.stderr)
  t.ok(fs.existsSync(path.join(out, 'runs', 'sft-2', 'model')), 'a new --name: a new run beside it')
})

t.test('Ctrl-C saves a checkpoint and exits 130; --resume finishes the run', async (t) => {
  const out = tempDir(t, 'cli')
  const args = [BIN, 'train', 'examples/ppo.yaml', '--output-dir', out, '--name', 'ppo', '--progress', 'lines', '--set', 'training.max_steps=400', '--set', 'logging.every=1']
  const child = spawn(process.execPath, args, { cwd: ROOT })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk
  })
  const metrics = path.join(out, 'ppo', 'metrics.jsonl')
  // Wait for a few logged steps, then interrupt.
  while (!/ppo step \d+\/400/.test(stderr)) {
    await new Promise((r) => setTimeout(r, 100))
    if (child.exitCode !== null) break
  }
  child.kill('SIGINT')
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
  t.equal(code, 130, 'exit 130 after an interrupt')
  t.match(stderr, /SIGINT: stopping after this step and saving a checkpoint/)
  const status = JSON.parse(fs.readFileSync(path.join(out, 'ppo', 'run.json'), 'utf8'))
  t.equal(status.state, 'interrupted')
  const checkpoints = fs.readdirSync(path.join(out, 'ppo', 'checkpoints'))
  t.equal(checkpoints.at(-1), `step-${String(status.step).padStart(6, '0')}`, 'a checkpoint at the step it stopped after')
  t.ok(status.step < 400)

  const resumed = rlfarm(['train', 'examples/ppo.yaml', '--output-dir', out, '--name', 'ppo', '--resume', '--progress', 'none', '--set', 'training.max_steps=' + (status.step + 3)])
  t.equal(resumed.code, 0, resumed.stderr)
  const after = JSON.parse(fs.readFileSync(path.join(out, 'ppo', 'run.json'), 'utf8'))
  t.equal(after.state, 'finished')
  t.equal(after.step, status.step + 3)
  const steps = fs.readFileSync(metrics, 'utf8').trim().split('\n').map((l) => JSON.parse(l).step)
  t.same(steps, Array.from({ length: status.step + 3 }, (_, i) => i + 1), 'metrics.jsonl holds each step once')
})

t.test('rlfarm run examples/pipeline.yaml', async (t) => {
  const out = tempDir(t, 'cli')
  const r = rlfarm(['run', 'examples/pipeline.yaml', '--set', `output_dir=${out}`, '--set', 'stages[0].run.training.max_steps=20', '--progress', 'none'])
  t.equal(r.code, 0, r.stderr)
  for (const stage of ['sft', 'reward', 'ppo', 'eval']) t.match(r.stdout, `stage: ${stage}`)
  t.match(r.stdout, /stage: eval\nmetrics: reward=/)
  t.ok(fs.existsSync(path.join(out, 'pipeline', 'summary.json')))
  const again = rlfarm(['run', 'examples/pipeline.yaml', '--out', out, '--set', 'stages[0].run.training.max_steps=20', '--progress', 'none'])
  t.equal(again.code, 1, 'a finished pipeline is not run over')
  t.match(again.stderr, /pipeline already exists: a finished pipeline\. To go on: --resume .*--overwrite .*--name NEW/)
  const resumed = rlfarm(['run', 'examples/pipeline.yaml', '--out', out, '--set', 'stages[0].run.training.max_steps=20', '--resume', '--progress', 'none'])
  t.equal(resumed.code, 0, resumed.stderr)
  t.equal(resumed.stdout, r.stdout, '--resume: the finished stages, as they were')
  const lines = rlfarm(['run', 'examples/pipeline.yaml', '--out', out, '--name', 'pipeline-2', '--set', 'stages[0].run.training.max_steps=20', '--progress', 'lines'])
  t.equal(lines.code, 0, lines.stderr)
  t.ok(fs.existsSync(path.join(out, 'pipeline-2', 'summary.json')), '--out and --name')
  for (const [k, stage] of ['sft', 'reward', 'ppo', 'eval'].entries()) {
    const last = lines.stderr.split('\n').filter((l) => l.startsWith(`stage ${k + 1}/4 ${stage} (`)).at(-1) ?? ''
    t.match(last, / step (\d+)\/\1 +100% .*ETA 0s/, `stage ${k + 1}/4 shows its total and ETA: ${last}`)
    if (k < 3) t.match(lines.stderr, new RegExp(`stage ${k + 1}/4 ${stage} .*pipeline ETA \\d`), 'and the pipeline ETA')
  }
  // A reward model's evaluation goes by pairs, with a total and an ETA too.
  const rm = rlfarm(['eval', 'examples/dpo.yaml', '--output-dir', out, '--set', `policy.path=${path.join(out, 'pipeline', 'reward', 'model')}`, '--set', 'policy.init=null', '--set', 'policy.scalar_head=true', '--set', 'data.eval_size=0', '--progress', 'lines'])
  t.equal(rm.code, 0, rm.stderr)
  t.match(rm.stderr, /eval step 80\/100 +80% +ETA \S+ +accuracy [\d.]+\n/, "lines as batches of pairs are done")
  t.match(rm.stderr, /eval step 100\/100 +100% +ETA 0s +accuracy [\d.]+ +margin /)
  t.match(rm.stdout, /metrics: accuracy=[\d.]+ margin=[-\d.]+ pairs=100/)
})

t.test('rlfarm run examples/algorithms.yaml: several algorithms from one SFT model, evaluated alike', async (t) => {
  const out = tempDir(t, 'cli')
  const r = rlfarm(['run', 'examples/algorithms.yaml', '--set', `output_dir=${out}`, '--progress', 'none'])
  t.equal(r.code, 0, r.stderr)
  const summary = JSON.parse(fs.readFileSync(path.join(out, 'algorithms', 'summary.json'), 'utf8')) as { stages: { name: string; metrics: Record<string, number> }[] }
  const reward = (name: string) => summary.stages.find((s) => s.name === name)!.metrics.reward
  for (const method of ['dpo', 'ppo', 'grpo']) {
    t.ok(reward(`eval_${method}`) > reward('eval_sft'), `${method} beats SFT under the reward model: ${reward(`eval_${method}`)} > ${reward('eval_sft')}`)
  }
})

t.test('rlfarm farm writes the splits, and a trainer reads them', async (t) => {
  const out = tempDir(t, 'cli')
  const r = rlfarm(['farm', '--out', out, '--seed', '0', '--sft', '64', '--preference', '8', '--unlabelled', '8', '--eval', '20'])
  t.equal(r.code, 0, r.stderr)
  const lines = (name: string) => fs.readFileSync(path.join(out, `${name}.jsonl`), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  t.same([lines('sft').length, lines('preference').length, lines('unlabelled').length, lines('eval').length], [64, 8, 8, 20])
  t.ok(lines('eval').every((row) => typeof row.reference === 'string' && typeof row.family === 'string'))
  t.equal(rlfarm(['farm', '--out', out, '--eval', 'many']).code, 2, 'a bad count: exit 2')
  const sft = rlfarm(['train', 'examples/sft.yaml', '--output-dir', out, '--name', 'farm-sft', '--set', `data.train=${path.join(out, 'sft.jsonl')}`, '--set', 'training.max_steps=5', '--progress', 'none'])
  t.equal(sft.code, 0, sft.stderr)
})

t.test('examples/embed.ts runs: steps, a stop on an AbortSignal, and a resume', async (t) => {
  const out = tempDir(t, 'cli')
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'examples', 'embed.ts')], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, RLFARM_EXAMPLE_OUT: out },
    timeout: 300_000,
  })
  t.equal(r.status, 0, r.stderr)
  t.match(r.stdout, /step 10: loss [\d.]+\nstep 20: loss [\d.]+\nstopped: true at step 20/)
  t.match(r.stdout, /finished at step 30: held-out accuracy [\d.]+/)
})

t.test('rlfarm quickstart (shrunk with --set): the table and summary.json', async (t) => {
  const out = tempDir(t, 'cli')
  const small = [
    'stages[0].run.farm.sft_size=300',
    'stages[0].run.farm.preference_size=40',
    'stages[0].run.farm.unlabelled_size=40',
    'stages[0].run.farm.eval_size=30',
    'stages[1].run.training.max_steps=10',
    'stages[3].run.training.epochs=1',
    'stages[3].run.data.eval_size=5',
    'stages[4].run.training.max_steps=2',
    'stages[4].run.training.batch_size=8',
    'stages[4].run.ppo.minibatch_size=8',
  ].flatMap((s) => ['--set', s])
  const r = rlfarm(['quickstart', '--out', out, '--progress', 'none', ...small])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /policy\s+win-rate \(gold\)\s+pool win-rate/)
  t.match(r.stdout, /\nsft\s+[\d.]+ ± [\d.]+/)
  t.match(r.stdout, /\nppo\s+[\d.]+ ± [\d.]+/)
  const summary = JSON.parse(fs.readFileSync(path.join(out, 'quickstart', 'summary.json'), 'utf8')) as { policies: { policy: string; winRate: number; stderr: number; n: number }[] }
  t.same(summary.policies.map((p) => p.policy), ['sft', 'ppo'])
  t.ok(summary.policies.every((p) => p.n === 30 && p.winRate >= 0 && p.winRate <= 1 && p.stderr > 0), 'each policy: winRate, stderr and n')
  const modelFile = path.join(out, 'quickstart', 'ppo', 'model', 'model.safetensors')
  const trained = fs.statSync(modelFile).mtimeMs
  const again = rlfarm(['quickstart', '--out', out, '--progress', 'none', ...small])
  t.equal(again.code, 0, again.stderr)
  t.equal(again.stdout, r.stdout, 'a second quickstart prints the finished run\'s table')
  t.equal(fs.statSync(modelFile).mtimeMs, trained, 'without training again')
  const changed = rlfarm(['quickstart', '--out', out, '--progress', 'none', ...small, '--set', 'stages[4].run.ppo.kl_coef=0.5'])
  t.equal(changed.code, 1)
  t.match(changed.stderr, /stages\[4\] \(ppo\): the finished stage in .* ran another config \(ppo\.kl_coef: .*\); run the pipeline again from scratch with --overwrite/)
  t.equal(rlfarm(['quickstart', 'extra.yaml']).code, 2, 'quickstart takes no file')
})
