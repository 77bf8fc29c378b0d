// The `rlfarm` command: train one stage, run a pipeline, generate, evaluate.
// Each command parses its flags with node:util parseArgs, answers --help with
// examples, and turns errors into one message and an exit code (2 for a bad
// command line or config, 1 for a failed run, 130 for a run stopped by Ctrl-C).
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { ConfigError } from '../config/errors.js'
import { encoderFor, loadModelSpec, sampleResponses } from '../algorithms/common.js'
import { runPipeline, train } from '../run/session.js'
import type { ProgressMode } from '../run/progress.js'
import { configSchema } from '../config/schema.js'
import { formatPolicyTable, makeLeaderboard, policyTable, writeReport } from '../farm/report.js'
import { distributed } from '../distributed/index.js'
import { LAUNCH_FLAGS, LAUNCH_HELP, launch, launchOptionsFrom } from '../distributed/launch.js'

const VERSION = (JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version

class UsageError extends Error {}

interface Command {
  summary: string
  usage: string
  options: NonNullable<ParseArgsConfig['options']>
  help: string
  run(values: Record<string, unknown>, positionals: string[]): Promise<number>
}

const common = {
  set: { type: 'string', multiple: true, short: 's' },
  resume: { type: 'boolean' },
  progress: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  ...LAUNCH_FLAGS,
} as const

function progressMode(value: unknown): ProgressMode | undefined {
  if (value === undefined) return undefined
  if (!['auto', 'bar', 'lines', 'none'].includes(value as string)) throw new UsageError(`--progress must be auto, bar, lines or none; got '${value}'`)
  return value as ProgressMode
}

function one(positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new UsageError(`expected one ${what}; got ${positionals.length === 0 ? 'none' : positionals.join(' ')}`)
  return positionals[0]
}

function sets(values: Record<string, unknown>, extra: string[] = []): string[] {
  return [...((values.set as string[] | undefined) ?? []), ...extra]
}

// --name and --output-dir, as --set overrides.
function nameSets(values: Record<string, unknown>): string[] {
  const extra: string[] = []
  if (values.name !== undefined) extra.push(`name=${values.name}`)
  if (values['output-dir'] !== undefined) extra.push(`output_dir=${values['output-dir']}`)
  return extra
}

function printResult(metrics: Record<string, number>, extra: Record<string, string | undefined>): void {
  for (const [k, v] of Object.entries(extra)) if (v) process.stdout.write(`${k}: ${v}\n`)
  const shown = Object.entries(metrics).map(([k, v]) => `${k}=${Number.isInteger(v) ? v : Number(v.toPrecision(4))}`)
  if (shown.length) process.stdout.write(`metrics: ${shown.join(' ')}\n`)
}

// The shipped examples (quickstart.yaml, compare.yaml) live beside dist/.
const EXAMPLES = path.join(__dirname, '..', '..', 'examples')

/** Runs a pipeline with --out as its output_dir. */
function runFarmPipeline(file: string, values: Record<string, unknown>) {
  const extra = values.out !== undefined ? [`output_dir=${path.resolve(values.out as string)}`] : []
  return runPipeline(file, { set: sets(values, extra), resume: values.resume as boolean | undefined, progress: progressMode(values.progress), handleSignals: true })
}

const farmOptions = { ...common, out: { type: 'string', short: 'o' } } as const

const COMMANDS: Record<string, Command> = {
  farm: {
    summary: "write the farm's splits as JSONL (sft, preference, unlabelled, eval)",
    usage: 'rlfarm farm --out DIR [--seed N] [--sft N] [--preference N] [--unlabelled N] [--eval N]',
    options: {
      out: { type: 'string', short: 'o' },
      seed: { type: 'string' },
      sft: { type: 'string' },
      preference: { type: 'string' },
      unlabelled: { type: 'string' },
      eval: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    help: `Makes the farm's instructions (nine families), the noisy demonstrator's SFT
data and the fixed reference outputs of the evaluation split, and writes
DIR/sft.jsonl, preference.jsonl, unlabelled.jsonl and eval.jsonl. No
instruction is in two splits; the same seed gives the same files.

Options:
  -o, --out DIR        where the files go
      --seed N         default 0
      --sft N          default 5000
      --preference N, --unlabelled N   default 3000 each
      --eval N         default 500

Examples:
  rlfarm farm --out farm
  rlfarm farm --out farm-small --sft 500 --eval 200 --seed 3`,
    async run(values) {
      const out = values.out as string | undefined
      if (!out) throw new UsageError('--out is required')
      const count = (name: string) => {
        const v = values[name]
        if (v === undefined) return undefined
        const n = Number(v)
        if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be a positive integer; got '${v}'`)
        return n
      }
      const { makeSplits, writeSplits } = await import('../farm/farm.js')
      const sizes = { sft: count('sft'), preference: count('preference'), unlabelled: count('unlabelled'), eval: count('eval') }
      const seed = values.seed === undefined ? 0 : Number(values.seed)
      if (!Number.isInteger(seed) || seed < 0) throw new UsageError(`--seed must be a non-negative integer; got '${values.seed}'`)
      const files = writeSplits(out, makeSplits(seed, sizes))
      for (const [split, file] of Object.entries(files)) process.stdout.write(`${split}: ${file}\n`)
      return 0
    },
  },
  quickstart: {
    summary: 'SFT -> simulated preferences -> reward model -> PPO -> win-rates, on the farm, in minutes',
    usage: 'rlfarm quickstart [--out DIR] [--set key=value ...] [--resume] [--progress MODE]',
    options: farmOptions,
    help: `Runs examples/quickstart.yaml: the farm writes its instructions and the noisy
demonstrator's data; a tiny byte-level GPT-2 is fine-tuned on them (SFT); two
SFT samples per preference instruction are labelled by the simulated annotator
pool; a reward model learns from those labels; PPO trains the SFT model against
it; SFT and PPO are evaluated on 500 held-out instructions against fixed
reference outputs, by the gold evaluator and by the pool. Prints the table and
writes DIR/quickstart/summary.json (each policy's winRate, stderr and n).
About six minutes on two CPU cores.

Options:
  -o, --out DIR         where the runs go (default: runs)
  -s, --set key=value   override a pipeline value: --set stages[4].run.ppo.kl_coef=0.1
      --resume          keep finished stages (each must have run the same config), resume the first unfinished one
      --progress MODE   auto, bar, lines, none

Examples:
  rlfarm quickstart
  rlfarm quickstart --out /tmp/farm --progress lines`,
    async run(values, positionals) {
      if (positionals.length > 0) throw new UsageError(`quickstart takes no file; got ${positionals.join(' ')}`)
      const result = await runFarmPipeline(path.join(EXAMPLES, 'quickstart.yaml'), values)
      if (result.interrupted) return 130
      process.stdout.write(`\n${formatPolicyTable(policyTable(result.stages))}\n\nsummary: ${path.join(result.dir, 'summary.json')}\n`)
      return 0
    },
  },
  compare: {
    summary: 'train several methods on the same feedback; leaderboard.json and report.html',
    usage: 'rlfarm compare <compare.yaml> [--out DIR] [--set key=value ...] [--resume] [--progress MODE]',
    options: farmOptions,
    help: `Runs a pipeline whose eval_<method> stages measure each method's win-rate
against the same references, then writes, in its directory, leaderboard.json
(method, win-rate and standard error by gold and by the pool, reward, KL to
the SFT model, wall time) and report.html (win-rates with error bars, the PPO
stages' curves), and prints the leaderboard with the Spearman rank
correlation between the pool's ranking and gold's.

Options:
  -o, --out DIR         where the runs go (default: the pipeline's output_dir)
  -s, --set key=value   override a pipeline value
      --resume          keep finished stages (each must have run the same config), resume the first unfinished one
      --progress MODE   auto, bar, lines, none

Examples:
  rlfarm compare examples/compare.yaml
  rlfarm compare examples/compare.yaml --out /tmp/compare --resume`,
    async run(values, positionals) {
      const file = one(positionals, 'pipeline file')
      const result = await runFarmPipeline(file, values)
      if (result.interrupted) return 130
      const board = makeLeaderboard(path.basename(result.dir), result.stages)
      if (board.entries.length === 0) process.stderr.write('rlfarm compare: no eval_<method> stage measured a win-rate (eval stages need prompts with a `reference` each; see examples/compare.yaml)\n')
      const curves = result.stages
        .filter((s) => (JSON.parse(fs.readFileSync(path.join(s.runDir, 'run.json'), 'utf8')) as { algorithm?: string }).algorithm === 'ppo')
        .map((s) => ({ title: `${s.name}: training curves`, metricsFile: path.join(s.runDir, 'metrics.jsonl'), metrics: ['score', 'kl', 'eval_win_rate', 'eval_reward', 'eval_pool_win_rate', 'response_length'] }))
      const written = await writeReport(result.dir, board, curves)
      const seconds = Object.fromEntries(board.entries.filter((e) => e.seconds !== undefined).map((e) => [e.method, e.seconds!]))
      // The leaderboard's rows: best-of-n's reward and KL come from its stage.
      const rows = board.entries.map((e) => ({ ...e, policy: e.method, stage: `eval_${e.method}` }))
      process.stdout.write(`\n${formatPolicyTable(rows, { seconds })}\n`)
      if (board.poolGoldSpearman !== undefined) process.stdout.write(`\nSpearman rank correlation, pool vs gold: ${board.poolGoldSpearman.toFixed(3)}\n`)
      if (board.baseline) process.stdout.write(`above ${board.baseline} by more than 2 standard errors: ${board.aboveBaseline!.join(', ') || 'none'}\n`)
      process.stdout.write(`\nleaderboard: ${written.leaderboard}\nreport: ${written.report}\n`)
      return 0
    },
  },
  train: {
    summary: 'train one stage from a config file',
    usage: 'rlfarm train <config.yaml> [--set key=value ...] [--name NAME] [--resume] [--progress MODE]',
    options: { ...common, name: { type: 'string' }, 'output-dir': { type: 'string' } },
    help: `Runs the algorithm of a RunConfig file (YAML or JSON; schema: proto/rlfarm.proto)
in output_dir/name: the resolved config, metrics.jsonl, TensorBoard events,
checkpoints and the final model. Ctrl-C saves a checkpoint and stops;
--resume continues the run from its newest checkpoint.

Options:
  -s, --set key=value   override a config value (repeatable): --set ppo.kl_coef=0.1
      --name NAME       the run's directory name (same as --set name=NAME)
      --output-dir DIR  parent of the run directory (same as --set output_dir=DIR)
      --resume          continue the run output_dir/name from its last checkpoint
      --progress MODE   auto (a bar on a terminal, lines otherwise), bar, lines, none

Examples:
  rlfarm train examples/ppo.yaml
  rlfarm train examples/dpo.yaml --set dpo.beta=0.05 --set optimizer.lr=5e-4
  rlfarm train examples/ppo.yaml --name ppo-1 --resume
  tensorboard --logdir runs`,
    async run(values, positionals) {
      const file = one(positionals, 'config file')
      const result = await train(file, { set: sets(values, nameSets(values)), resume: values.resume as boolean | undefined, progress: progressMode(values.progress), handleSignals: true })
      printResult(result.metrics, { run: result.runDir, model: result.model, ...result.files })
      return result.interrupted ? 130 : 0
    },
  },
  run: {
    summary: 'run a pipeline of stages (sft -> reward -> ppo -> eval ...)',
    usage: 'rlfarm run <pipeline.yaml> [--set key=value ...] [--resume] [--progress MODE]',
    options: { ...common },
    help: `Runs the stages of a PipelineConfig in order in output_dir/name/<stage>.
\${stage} in a later stage names that stage's model directory
(\${stage.outputs}: a file it wrote, \${stage.dir}: its run directory).
--resume keeps finished stages and resumes the first unfinished one.

Options:
  -s, --set key=value   override a pipeline value: --set stages[2].run.ppo.kl_coef=0.1
      --resume          continue the pipeline
      --progress MODE   auto, bar, lines, none

Examples:
  rlfarm run examples/pipeline.yaml
  rlfarm run examples/pipeline.yaml --resume`,
    async run(values, positionals) {
      const file = one(positionals, 'pipeline file')
      const result = await runPipeline(file, { set: sets(values), resume: values.resume as boolean | undefined, progress: progressMode(values.progress), handleSignals: true })
      for (const s of result.stages) printResult(s.metrics, { stage: s.name, model: s.model })
      process.stdout.write(`pipeline: ${result.dir}\n`)
      return result.interrupted ? 130 : 0
    },
  },
  eval: {
    summary: 'evaluate a policy (mean reward) or a reward model (pairwise accuracy)',
    usage: 'rlfarm eval <config.yaml> [--set key=value ...] [--name NAME] [--output-dir DIR]',
    options: { ...common, name: { type: 'string' }, 'output-dir': { type: 'string' } },
    help: `Runs a config as algorithm 'eval': a policy's responses to data.prompts
scored by reward_model or reward_function (outputs.jsonl, mean reward), or,
when policy.scalar_head is true, a reward model's accuracy on the pairs of
data.eval (or data.train).

Options:
  -s, --set key=value   override a config value (repeatable)
      --name NAME       the run's directory name
      --output-dir DIR  parent of the run directory

Examples:
  rlfarm eval examples/eval.yaml
  rlfarm eval examples/ppo.yaml --set policy.path=runs/ppo/model`,
    async run(values, positionals) {
      const file = one(positionals, 'config file')
      const result = await train(file, { set: sets(values, [...nameSets(values), 'algorithm=eval']), progress: progressMode(values.progress), handleSignals: true })
      printResult(result.metrics, { run: result.runDir, ...result.files })
      return result.interrupted ? 130 : 0
    },
  },
  generate: {
    summary: 'sample responses from a model',
    usage: 'rlfarm generate --model DIR (--prompt TEXT | --prompts FILE.jsonl) [options]',
    options: {
      model: { type: 'string', short: 'm' },
      tokenizer: { type: 'string' },
      prompt: { type: 'string', short: 'p', multiple: true },
      prompts: { type: 'string' },
      'max-new-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      seed: { type: 'string' },
      'chat-template': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    help: `Samples one response per prompt and prints it (JSONL with --prompts).

Options:
  -m, --model DIR           a model directory (Hugging Face, or a run's model/)
      --tokenizer T         a tokenizer directory or 'byte' (default: the model's)
  -p, --prompt TEXT         a prompt (repeatable)
      --prompts FILE        JSONL rows {prompt} | {messages} | {instruction, input}
      --max-new-tokens N    default 64
      --temperature T       default 1; 0 is greedy
      --top-k K, --top-p P  default off
      --seed S              default 0
      --chat-template       render prompts with the tokenizer's chat template

Examples:
  rlfarm generate -m runs/sft/model -p "Write a haiku about rain."
  rlfarm generate -m runs/ppo/model --prompts prompts.jsonl --temperature 0 > out.jsonl`,
    async run(values) {
      const model = values.model as string | undefined
      if (!model) throw new UsageError('--model is required')
      const texts = (values.prompt as string[] | undefined) ?? []
      const file = values.prompts as string | undefined
      if (texts.length === 0 && !file) throw new UsageError('give --prompt TEXT or --prompts FILE')
      const num = (name: string, fallback: number) => {
        const v = values[name]
        if (v === undefined) return fallback
        const n = Number(v)
        if (!Number.isFinite(n) || n < 0) throw new UsageError(`--${name} must be a non-negative number; got '${v}'`)
        return n
      }
      const { readTable } = await import('../data/jsonl.js')
      const { parsePromptRow } = await import('../data/examples.js')
      const rows = file ? (await readTable(file, parsePromptRow, 'stop')).rows : texts.map((prompt) => ({ prompt, extra: {} }))
      const policy = await loadModelSpec({ path: model, tokenizer: values.tokenizer as string | undefined, init: undefined, scalar_head: false }, 'model', { seed: 0 })
      const data = { train: undefined, eval: undefined, prompts: undefined, on_bad_row: 'stop' as const, max_length: policy.model.config.maxPositions, max_prompt_length: Math.floor(policy.model.config.maxPositions / 2), chat_template: values['chat-template'] === true, eval_size: 0, format: 'auto' as const, binarize: 'overall' as const }
      const encoder = encoderFor(policy.tokenizer, data)
      const generation = { max_new_tokens: num('max-new-tokens', 64), temperature: num('temperature', 1), top_k: num('top-k', 0), top_p: num('top-p', 1), stop_at_eos: true }
      const seed = num('seed', 0)
      for (let start = 0; start < rows.length; start += 16) {
        const chunk = rows.slice(start, start + 16)
        const out = await sampleResponses(policy.model, encoder, chunk.map((r) => encoder.prompt(r.prompt)), generation, seed + start)
        chunk.forEach((r, i) => process.stdout.write(file ? `${JSON.stringify({ prompt: r.prompt, response: out.texts[i], ...r.extra })}\n` : `${out.texts[i]}\n`))
      }
      return 0
    },
  },
}

function mainHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length))
  return `rlfarm ${VERSION}: RLHF for Node.js (SFT, reward models, PPO, DPO, GRPO, RLOO, best-of-n, expert iteration, West-of-N) and the farm

Usage: rlfarm <command> [options]      rlfarm <command> --help

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
  .join('\n')}

Examples:
  rlfarm quickstart
  rlfarm compare examples/compare.yaml
  rlfarm train examples/ppo.yaml
  rlfarm run examples/pipeline.yaml
  rlfarm generate -m runs/sft/model -p "Hello"

Config keys, defaults and ranges: proto/rlfarm.proto (${configSchema().messages.size} messages).`
}

/** Runs the command line `argv` (without node and the script); resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${mainHelp()}\n`)
    return name === undefined ? 2 : 0
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(`${VERSION}\n`)
    return 0
  }
  const command = COMMANDS[name]
  if (!command) {
    process.stderr.write(`rlfarm: unknown command '${name}'; the commands are ${Object.keys(COMMANDS).join(', ')} (rlfarm --help)\n`)
    return 2
  }
  try {
    const { values, positionals } = parseArgs({ args: rest, options: command.options, allowPositionals: true, strict: true })
    const dataParallel = 'nproc' in command.options
    if (values.help) {
      process.stdout.write(`Usage: ${command.usage}\n\n${command.help}\n${dataParallel ? `\n${LAUNCH_HELP}\n` : ''}`)
      return 0
    }
    let launching
    try {
      launching = dataParallel ? launchOptionsFrom(values as Record<string, unknown>, rest) : undefined
    } catch (err) {
      throw new UsageError((err as Error).message)
    }
    if (launching) return await launch({ ...launching, args: [name, ...launching.args] })
    // A rank of a data-parallel run (started by --nproc, torchrun-style env, srun or mpirun).
    const rankOfMany = dataParallel && Number(process.env.WORLD_SIZE ?? 1) > 1
    if (rankOfMany) await distributed.init()
    try {
      return await command.run(values as Record<string, unknown>, positionals)
    } finally {
      if (rankOfMany) await distributed.destroy()
    }
  } catch (err) {
    const e = err as Error & { code?: string }
    if (err instanceof UsageError || e.code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`rlfarm ${name}: ${e.message}\nUsage: ${command.usage}   (rlfarm ${name} --help)\n`)
      return 2
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`rlfarm ${name}: ${e.message}\n`)
      return 2
    }
    process.stderr.write(`rlfarm ${name}: ${process.env.RLFARM_DEBUG ? e.stack : e.message}\n`)
    return 1
  }
}

