// The `rlfarm` command: train one stage, run a pipeline, generate, evaluate.
// Every flag is declared once in FLAGS (its parseArgs type and its help line);
// each command lists the flags it takes, so its parseArgs options, its
// "Options:" help and the "did you mean" for a mistyped flag all come from one
// table. Errors become one message and an exit code (2 for a bad command line
// or config, 1 for a failed run, 130 for a run stopped by Ctrl-C).
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { ConfigError } from '../config/errors.js'
import { absoluteSetPaths } from '../config/paths.js'
import type { TopLevelType } from '../config/resolve.js'
import { encoderFor, loadModelSpec } from '../training/models.js'
import { promptText, sampleResponses } from '../training/rollout.js'
import { runPipeline, train } from '../run/session.js'
import type { ProgressMode } from '../run/progress.js'
import { configSchema } from '../config/schema.js'
import { formatPolicyTable, formatRewardModels, formatValidation, makeLeaderboard, pipelineValidation, policyTable, rewardModelAccuracies, writeReport } from '../farm/report.js'
import { closestKey } from '../util/options.js'
import { distributed } from '../distributed/index.js'
import { LAUNCH_FLAGS, launch, launchOptionsFrom } from '../distributed/launch.js'

const VERSION = (JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version

class UsageError extends Error {}

/** A flag: its parseArgs type, its short form, the name of its value in help, and its help line. */
interface Flag {
  type: 'string' | 'boolean'
  short?: string
  multiple?: boolean
  /** The value's name in help ('DIR', 'key=value'); none for a boolean. */
  value?: string
  help: string
}

const FLAGS = {
  set: { type: 'string', short: 's', multiple: true, value: 'key=value', help: 'override a config value (repeatable); a path is taken from the current directory' },
  name: { type: 'string', value: 'NAME', help: "the run's directory name (same as --set name=NAME)" },
  'output-dir': { type: 'string', value: 'DIR', help: 'parent of the run directory (same as --set output_dir=DIR)' },
  out: { type: 'string', short: 'o', value: 'DIR', help: 'where the runs go (default: the pipeline\'s output_dir, "runs")' },
  resume: { type: 'boolean', help: 'continue the run of this name from its last checkpoint, or begin it (a pipeline: keep its finished stages)' },
  overwrite: { type: 'boolean', help: 'start the run of this name again from scratch, deleting what it wrote' },
  progress: { type: 'string', value: 'MODE', help: 'auto (a bar on a terminal, lines otherwise), bar, lines, none' },
  help: { type: 'boolean', short: 'h', help: 'this help' },
} as const satisfies Record<string, Flag>

type Values = Record<string, unknown>

interface Command {
  summary: string
  usage: string
  /** What the command does (help, before the options). */
  description: string
  /** The flags it takes: names of FLAGS, or flags of its own. */
  flags: Record<string, Flag>
  examples: string[]
  run(values: Values, positionals: string[]): Promise<number>
}

/** The shared flags `names`, from FLAGS. */
function shared(...names: (keyof typeof FLAGS)[]): Record<string, Flag> {
  return Object.fromEntries(names.map((n) => [n, FLAGS[n]]))
}

function progressMode(value: unknown): ProgressMode | undefined {
  if (value === undefined) return undefined
  if (!['auto', 'bar', 'lines', 'none'].includes(value as string)) throw new UsageError(`--progress must be auto, bar, lines or none; got '${value}'`)
  return value as ProgressMode
}

function one(positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new UsageError(`expected one ${what}; got ${positionals.length === 0 ? 'none' : positionals.join(' ')}`)
  return positionals[0]
}

/**
 * The --set overrides, then --name, --output-dir and --out as overrides. A
 * path in them is taken from the current directory, as on any command line
 * (paths inside the config file stay relative to the file).
 */
function sets(values: Values, type: TopLevelType, before: string[] = [], after: string[] = []): string[] {
  const extra: string[] = []
  if (values.name !== undefined) extra.push(`name=${values.name}`)
  if (values['output-dir'] !== undefined) extra.push(`output_dir=${values['output-dir']}`)
  if (values.out !== undefined) extra.push(`output_dir=${path.resolve(values.out as string)}`)
  return [...before, ...absoluteSetPaths(type, (values.set as string[] | undefined) ?? [], process.cwd()), ...extra, ...after]
}

/** --resume and --overwrite, which exclude each other. */
function rerun(values: Values): { resume?: boolean; overwrite?: boolean } {
  if (values.resume && values.overwrite) throw new UsageError('--resume continues a run and --overwrite starts it again: give one of them')
  return { resume: values.resume as boolean | undefined, overwrite: values.overwrite as boolean | undefined }
}

function printResult(metrics: Record<string, number>, extra: Record<string, string | undefined>): void {
  for (const [k, v] of Object.entries(extra)) if (v) process.stdout.write(`${k}: ${v}\n`)
  const shown = Object.entries(metrics).map(([k, v]) => `${k}=${Number.isInteger(v) ? v : Number(v.toPrecision(4))}`)
  if (shown.length) process.stdout.write(`metrics: ${shown.join(' ')}\n`)
}

// The shipped examples (quickstart.yaml, compare.yaml) live beside dist/.
const EXAMPLES = path.join(__dirname, '..', '..', 'examples')

/** Runs a farm pipeline; a second run of a finished one shows its results unless --overwrite or --resume says otherwise. */
function runFarmPipeline(file: string, values: Values) {
  return runPipeline(file, { set: sets(values, 'PipelineConfig'), ...rerun(values), reuseFinished: true, progress: progressMode(values.progress), handleSignals: true })
}

const farmFlags = { ...shared('out', 'name', 'set', 'resume', 'overwrite', 'progress'), ...LAUNCH_FLAGS, ...shared('help') }

const COMMANDS: Record<string, Command> = {
  farm: {
    summary: "write the farm's splits as JSONL (sft, preference, unlabelled, eval)",
    usage: 'rlfarm farm --out DIR [--seed N] [--sft N] [--preference N] [--unlabelled N] [--eval N]',
    description: `Makes the farm's instructions (nine families), the noisy demonstrator's SFT
data and the fixed reference outputs of the evaluation split, and writes
DIR/sft.jsonl, preference.jsonl, unlabelled.jsonl and eval.jsonl. No
instruction is in two splits; the same seed gives the same files.`,
    flags: {
      out: { type: 'string', short: 'o', value: 'DIR', help: 'where the files go' },
      seed: { type: 'string', value: 'N', help: 'default 0' },
      sft: { type: 'string', value: 'N', help: 'default 5000' },
      preference: { type: 'string', value: 'N', help: 'default 3000' },
      unlabelled: { type: 'string', value: 'N', help: 'default 3000' },
      eval: { type: 'string', value: 'N', help: 'default 500' },
      ...shared('help'),
    },
    examples: ['rlfarm farm --out farm', 'rlfarm farm --out farm-small --sft 500 --eval 200 --seed 3'],
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
    usage: 'rlfarm quickstart [--out DIR] [--set key=value ...] [--resume | --overwrite] [--progress MODE]',
    description: `Runs examples/quickstart.yaml: the farm writes its instructions and the noisy
demonstrator's data; a tiny byte-level GPT-2 is fine-tuned on them (SFT); two
SFT samples per preference instruction are labelled by the simulated annotator
pool; a reward model learns from those labels; PPO trains the SFT model against
it; SFT and PPO are evaluated on 500 held-out instructions against fixed
reference outputs, by the gold evaluator and by the pool. Prints the table and
writes DIR/quickstart/summary.json (each policy's winRate, stderr and n).
About six minutes on two CPU cores. Run again, it prints the finished run's
table (--overwrite trains it all again).`,
    flags: farmFlags,
    examples: ['rlfarm quickstart', 'rlfarm quickstart --out /tmp/farm --progress lines'],
    async run(values, positionals) {
      if (positionals.length > 0) throw new UsageError(`quickstart takes no file; got ${positionals.join(' ')}`)
      const result = await runFarmPipeline(path.join(EXAMPLES, 'quickstart.yaml'), values)
      if (result.interrupted) return 130
      // The reward model's accuracy on gold labels goes below the table, which stays as it was.
      const rewardModels = formatRewardModels(rewardModelAccuracies(result.stages))
      process.stdout.write(`\n${formatPolicyTable(policyTable(result.stages))}\n${rewardModels ? `\n${rewardModels}\n` : ''}\nsummary: ${path.join(result.dir, 'summary.json')}\n`)
      return 0
    },
  },
  compare: {
    summary: 'train several methods on the same feedback; leaderboard.json and report.html',
    usage: 'rlfarm compare <compare.yaml> [--out DIR] [--set key=value ...] [--resume | --overwrite] [--progress MODE]',
    description: `Runs a pipeline whose eval_<method> stages measure each method's win-rate
against the same references, then writes, in its directory, leaderboard.json
(method, win-rate and standard error by gold and by the pool, reward, KL to
the SFT model, wall time) and report.html (win-rates with error bars, the PPO
stages' curves), and prints the leaderboard with the Spearman rank
correlation between the pool's ranking and gold's (for three methods or
more), and each reward model's held-out accuracy on gold-labelled pairs.
A validation pipeline (examples/validation.yaml) names its eval stages
eval_simulated_<method> and eval_human_<method>: compare then prints both
worlds' leaderboards side by side with their Spearman and Kendall rank
correlations and a bootstrap interval, writes validation.json, and plots
simulated against human win-rates in report.html. A method trained at
several settings has eval_<world>_<method>__<setting> stages, each with a
select_<world>_<method>__<setting> stage on the farm's validation split
(farm.validation_size): each world takes the setting its own judge prefers
there. Run again, it prints the
finished run's leaderboard (--overwrite trains it all again).`,
    flags: farmFlags,
    examples: ['rlfarm compare examples/compare.yaml', 'rlfarm compare examples/compare.yaml --out /tmp/compare --resume'],
    async run(values, positionals) {
      const file = one(positionals, 'pipeline file')
      const result = await runFarmPipeline(file, values)
      if (result.interrupted) return 130
      const board = makeLeaderboard(path.basename(result.dir), result.stages)
      if (board.entries.length === 0) process.stderr.write('rlfarm compare: no eval_<method> stage measured a win-rate (eval stages need prompts with a `reference` each; see examples/compare.yaml)\n')
      const curves = result.stages
        .filter((s) => (JSON.parse(fs.readFileSync(path.join(s.runDir, 'run.json'), 'utf8')) as { algorithm?: string }).algorithm === 'ppo')
        .map((s) => ({ title: `${s.name}: training curves`, metricsFile: path.join(s.runDir, 'metrics.jsonl'), metrics: ['score', 'kl', 'eval_win_rate', 'eval_reward', 'eval_pool_win_rate', 'response_length'] }))
      const validation = pipelineValidation(result.stages, { seed: 0 })
      const written = await writeReport(result.dir, board, curves, validation)
      const seconds = Object.fromEntries(board.entries.filter((e) => e.seconds !== undefined).map((e) => [e.method, e.seconds!]))
      // The leaderboard's rows: best-of-n's reward and KL come from its stage.
      const rows = board.entries.map((e) => ({ ...e, policy: e.method, stage: `eval_${e.method}` }))
      process.stdout.write(`\n${formatPolicyTable(rows, { seconds })}\n`)
      if (board.poolGoldSpearman !== undefined) process.stdout.write(`\nSpearman rank correlation, pool vs gold: ${board.poolGoldSpearman.toFixed(3)}\n`)
      if (board.baseline) process.stdout.write(`above ${board.baseline} by more than 2 standard errors: ${board.aboveBaseline!.join(', ') || 'none'}\n`)
      if (board.rewardModels) process.stdout.write(`\n${formatRewardModels(board.rewardModels)}\n`)
      if (validation) process.stdout.write(`\nValidation, the same methods in two worlds:\n${formatValidation(validation)}\n`)
      process.stdout.write(`\nleaderboard: ${written.leaderboard}\nreport: ${written.report}\n${written.validation ? `validation: ${written.validation}\n` : ''}`)
      return 0
    },
  },
  train: {
    summary: 'train one stage from a config file',
    usage: 'rlfarm train <config.yaml> [--set key=value ...] [--name NAME] [--resume | --overwrite] [--progress MODE]',
    description: `Runs the algorithm of a RunConfig file (YAML or JSON; schema: proto/rlfarm.proto)
in output_dir/name: the resolved config, metrics.jsonl, TensorBoard events,
checkpoints and the final model. Ctrl-C saves a checkpoint and stops;
--resume continues the run from its newest checkpoint. A run of the same name
that has begun is not run over: give --resume, --overwrite or a new --name.`,
    flags: { ...shared('set', 'name', 'output-dir', 'resume', 'overwrite', 'progress'), ...LAUNCH_FLAGS, ...shared('help') },
    examples: [
      'rlfarm train examples/ppo.yaml',
      'rlfarm train examples/dpo.yaml --set dpo.beta=0.05 --set optimizer.lr=5e-4',
      'rlfarm train examples/ppo.yaml --name ppo-1 --resume',
      'rlfarm train examples/ppo.yaml --overwrite',
    ],
    async run(values, positionals) {
      const file = one(positionals, 'config file')
      const result = await train(file, { set: sets(values, 'RunConfig'), ...rerun(values), progress: progressMode(values.progress), handleSignals: true })
      printResult(result.metrics, { run: result.runDir, model: result.model, ...result.files })
      return result.interrupted ? 130 : 0
    },
  },
  run: {
    summary: 'run a pipeline of stages (sft -> reward -> ppo -> eval ...)',
    usage: 'rlfarm run <pipeline.yaml> [--out DIR] [--set key=value ...] [--name NAME] [--resume | --overwrite] [--progress MODE]',
    description: `Runs the stages of a PipelineConfig in order in output_dir/name/<stage>.
\${stage} in a later stage names that stage's model directory
(\${stage.outputs}: a file it wrote, \${stage.dir}: its run directory).
--resume keeps finished stages and resumes the first unfinished one. A
pipeline of the same name that has begun is not run over: give --resume,
--overwrite or a new --name.`,
    flags: { ...shared('out', 'set', 'name', 'resume', 'overwrite', 'progress'), ...LAUNCH_FLAGS, ...shared('help') },
    examples: ['rlfarm run examples/pipeline.yaml', 'rlfarm run examples/pipeline.yaml --resume', 'rlfarm run examples/pipeline.yaml --out other-runs --name pipeline-2'],
    async run(values, positionals) {
      const file = one(positionals, 'pipeline file')
      const result = await runPipeline(file, { set: sets(values, 'PipelineConfig'), ...rerun(values), progress: progressMode(values.progress), handleSignals: true })
      for (const s of result.stages) printResult(s.metrics, { stage: s.name, model: s.model })
      process.stdout.write(`pipeline: ${result.dir}\n`)
      return result.interrupted ? 130 : 0
    },
  },
  eval: {
    summary: 'evaluate a policy (mean reward) or a reward model (pairwise accuracy)',
    usage: 'rlfarm eval <config.yaml> [--set key=value ...] [--name NAME] [--output-dir DIR]',
    description: `Runs a config as algorithm 'eval': a policy's responses to data.prompts
scored by reward_model or reward_function (outputs.jsonl, mean reward), or,
when policy.scalar_head is true, a reward model's accuracy on the pairs of
data.eval (or data.train). The evaluation is a run of its own, named
eval-<time> unless --name says otherwise, so it never meets the training run
of the config's name.`,
    flags: shared('set', 'name', 'output-dir', 'progress', 'help'),
    examples: [
      'rlfarm eval examples/ppo.yaml --set policy.path=runs/ppo/model --set policy.init=null',
      'rlfarm eval examples/ppo.yaml --set policy.path=runs/pipeline/ppo/model --set policy.init=null --name eval-pipeline-ppo',
    ],
    async run(values, positionals) {
      const file = one(positionals, 'config file')
      // name= first: the config's name is its training run's; an evaluation gets its own (the user's --set or --name may still give one).
      const result = await train(file, { set: sets(values, 'RunConfig', ['name='], ['algorithm=eval']), progress: progressMode(values.progress), handleSignals: true })
      printResult(result.metrics, { run: result.runDir, ...result.files })
      return result.interrupted ? 130 : 0
    },
  },
  generate: {
    summary: 'sample responses from a model',
    usage: 'rlfarm generate --model DIR (--prompt TEXT | --prompts FILE.jsonl) [options]',
    description: `Samples one response per prompt and prints each prompt with its response
(JSONL rows {prompt, response, ...} with --prompts). New tokens stop where the
model's context ends (a note says so).`,
    flags: {
      model: { type: 'string', short: 'm', value: 'DIR', help: "a model directory (Hugging Face, or a run's model/)" },
      tokenizer: { type: 'string', value: 'T', help: "a tokenizer directory or 'byte' (default: the model's)" },
      prompt: { type: 'string', short: 'p', multiple: true, value: 'TEXT', help: 'a prompt (repeatable)' },
      prompts: { type: 'string', value: 'FILE', help: 'JSONL rows {prompt} | {messages} | {instruction, input}' },
      'max-new-tokens': { type: 'string', value: 'N', help: 'default 64' },
      temperature: { type: 'string', value: 'T', help: 'default 1; 0 is greedy' },
      'top-k': { type: 'string', value: 'K', help: 'default off' },
      'top-p': { type: 'string', value: 'P', help: 'default off' },
      seed: { type: 'string', value: 'S', help: 'default 0' },
      'chat-template': { type: 'boolean', help: "render prompts with the tokenizer's chat template" },
      ...shared('help'),
    },
    examples: [
      'rlfarm generate -m runs/pipeline/sft/model -p "copy: hello" -p "copy: abc" --temperature 0',
      'rlfarm generate -m runs/pipeline/ppo/model --prompts examples/data/prompts.jsonl --temperature 0 > out.jsonl',
    ],
    async run(values) {
      const model = values.model as string | undefined
      if (!model) throw new UsageError('--model is required')
      const texts = (values.prompt as string[] | undefined) ?? []
      const file = values.prompts as string | undefined
      if (texts.length === 0 && !file) throw new UsageError('give --prompt TEXT or --prompts FILE')
      // Checked here, before the model loads, so a bad flag is a usage error (exit 2) that names the flag.
      const num = (name: string, fallback: number, check: { integer?: boolean; max?: number; positive?: boolean } = {}) => {
        const v = values[name]
        if (v === undefined) return fallback
        const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN
        const what = check.positive ? `a number in (0, ${check.max}]` : check.integer ? 'a non-negative integer' : 'a non-negative number'
        const bound = check.integer && check.max !== undefined ? ` up to ${check.max}` : ''
        if (!Number.isFinite(n) || n < 0 || (check.positive && n === 0) || (check.integer && !Number.isInteger(n)) || (check.max !== undefined && n > check.max)) {
          throw new UsageError(`--${name} must be ${what}${bound}; got '${v}'`)
        }
        return n
      }
      const generation = {
        max_new_tokens: num('max-new-tokens', 64, { integer: true }),
        temperature: num('temperature', 1),
        top_k: num('top-k', 0, { integer: true }),
        top_p: num('top-p', 1, { positive: true, max: 1 }),
        stop_at_eos: true,
      }
      const seed = num('seed', 0, { integer: true, max: 2 ** 32 - 1 })
      const { readTable, DEFAULT_MAX_ROW_BYTES } = await import('../data/jsonl.js')
      const { parsePromptRow } = await import('../data/examples.js')
      const rows = file ? (await readTable(file, (value) => parsePromptRow(value), 'stop')).rows : texts.map((prompt) => ({ prompt, extra: {} }))
      const policy = await loadModelSpec({ path: model, tokenizer: values.tokenizer as string | undefined, init: undefined, scalar_head: false, device: 'cpu', precision: 'bf16' }, 'model', { seed: 0 })
      const data = { train: undefined, eval: undefined, prompts: undefined, on_bad_row: 'stop' as const, max_length: policy.model.config.maxPositions, max_prompt_length: Math.floor(policy.model.config.maxPositions / 2), chat_template: values['chat-template'] === true, eval_size: 0, format: 'auto' as const, binarize: 'overall' as const, max_row_bytes: DEFAULT_MAX_ROW_BYTES, allow_special_files: false, check_text: true }
      const encoder = encoderFor(policy.tokenizer, data, policy.model)
      // Like transformers: the cap is said once, not per batch.
      let capNoted = false
      const onCap = (message: string) => {
        if (!capNoted) process.stderr.write(`rlfarm generate: ${message}\n`)
        capNoted = true
      }
      for (let start = 0; start < rows.length; start += 16) {
        const chunk = rows.slice(start, start + 16)
        const out = await sampleResponses(policy.model, encoder, chunk.map((r) => encoder.prompt(r.prompt)), generation, seed + start, undefined, { onCap })
        chunk.forEach((r, i) => {
          if (file) process.stdout.write(`${JSON.stringify({ prompt: r.prompt, response: out.texts[i], ...r.extra })}\n`)
          else process.stdout.write(`${rows.length > 1 ? `[${start + i + 1}] ` : ''}${promptText(r.prompt)}\n=> ${out.texts[i]}\n${start + i + 1 < rows.length ? '\n' : ''}`)
        })
      }
      return 0
    },
  },
  dashboard: {
    summary: 'a local web page of the runs under a folder: states, live curves, outputs, comparisons',
    usage: 'rlfarm dashboard [runs/] [--port 6006] [--host 127.0.0.1]',
    description: `Serves a web page of every run under the folder (default runs/, searched
recursively, so a pipeline's stages show too): its state, algorithm and step;
training curves from metrics.jsonl, several runs on one chart; the last
samples of outputs.jsonl; and the leaderboard and win-rate chart of each
compare result. The page follows the runs as they train. It reads only files
under the folder and listens on this machine only, unless --host says otherwise.
Ctrl-C stops it.`,
    flags: {
      port: { type: 'string', value: 'N', help: 'default 6006 (0: any free port)' },
      host: { type: 'string', value: 'ADDR', help: 'default 127.0.0.1; 0.0.0.0 shows it to the network' },
      ...shared('help'),
    },
    examples: ['rlfarm dashboard', 'rlfarm dashboard runs/quickstart --port 8080'],
    async run(values, positionals) {
      if (positionals.length > 1) throw new UsageError(`expected one folder; got ${positionals.join(' ')}`)
      const port = values.port === undefined ? 6006 : Number(values.port)
      if (!/^\d+$/.test(String(values.port ?? 6006)) || port > 65535) throw new UsageError(`--port must be an integer from 0 to 65535; got '${values.port}'`)
      const { startDashboard } = await import('../dashboard/server.js')
      const dashboard = await startDashboard({ dir: positionals[0] ?? 'runs', port, host: values.host as string | undefined })
      process.stdout.write(`rlfarm dashboard: ${dashboard.url} (runs under ${dashboard.root}; Ctrl-C stops it)\n`)
      await new Promise<void>((resolve) => process.once('SIGINT', resolve).once('SIGTERM', resolve))
      await dashboard.close()
      return 0
    },
  },
}

/** parseArgs options of a command. */
function parseOptions(command: Command) {
  return Object.fromEntries(
    Object.entries(command.flags).map(([name, f]) => [name, { type: f.type, ...(f.short ? { short: f.short } : {}), ...(f.multiple ? { multiple: true } : {}) }]),
  )
}

/** The "Options:" lines of a command's help, from its flags. */
function optionsHelp(command: Command): string {
  const left = Object.entries(command.flags).map(([name, f]) => `${f.short ? `-${f.short}, ` : '    '}--${name}${f.value ? ` ${f.value}` : ''}`)
  const width = Math.max(...left.map((l) => l.length))
  return Object.values(command.flags)
    .map((f, i) => `  ${left[i].padEnd(width)}  ${f.help}`)
    .join('\n')
}

function commandHelp(command: Command): string {
  return `Usage: ${command.usage}\n\n${command.description}\n\nOptions:\n${optionsHelp(command)}\n\nExamples:\n${command.examples.map((e) => `  ${e}`).join('\n')}\n`
}

/** "unknown option '--epoch'; did you mean '--epochs'?", for a flag parseArgs refused. */
function unknownFlag(name: string, command: Command, given: string): string {
  const flag = given.replace(/^-+/, '').split('=')[0]
  const known = Object.keys(command.flags)
  // A flag cut short (--out for --output-dir) before a typo's nearest spelling.
  const near = (flag.length >= 3 ? known.find((k) => k.startsWith(flag)) : undefined) ?? closestKey(flag, known)
  const elsewhere = Object.entries(COMMANDS)
    .filter(([, c]) => c !== command && flag in c.flags)
    .map(([n]) => n)
  const hint = [near ? `; did you mean '--${near}'?` : '', elsewhere.length ? ` (--${flag} is an option of ${elsewhere.join(', ')})` : ''].join('')
  return `unknown option '${given}' for ${name}${hint} (its options: ${Object.keys(command.flags).map((f) => `--${f}`).join(', ')})`
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
  rlfarm generate -m runs/pipeline/ppo/model -p "copy: hello" --temperature 0

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
    const near = closestKey(name, Object.keys(COMMANDS))
    process.stderr.write(`rlfarm: unknown command '${name}'${near ? `; did you mean '${near}'?` : ''} The commands are ${Object.keys(COMMANDS).join(', ')} (rlfarm --help)\n`)
    return 2
  }
  try {
    let parsed: ReturnType<typeof parseArgs>
    try {
      parsed = parseArgs({ args: rest, options: parseOptions(command), allowPositionals: true, strict: true })
    } catch (err) {
      const e = err as Error & { code?: string }
      const given = e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /'(-[^']*)'/.exec(e.message)?.[1] : undefined
      throw new UsageError(given ? unknownFlag(name, command, given) : e.message)
    }
    const { values, positionals } = parsed
    if (values.help) {
      process.stdout.write(commandHelp(command))
      return 0
    }
    const dataParallel = 'nproc' in command.flags
    let launching
    try {
      launching = dataParallel ? launchOptionsFrom(values as Values, rest) : undefined
    } catch (err) {
      throw new UsageError((err as Error).message)
    }
    if (launching) return await launch({ ...launching, args: [name, ...launching.args] })
    // A rank of a data-parallel run (started by --nproc, torchrun-style env, srun or mpirun).
    const rankOfMany = dataParallel && Number(process.env.WORLD_SIZE ?? 1) > 1
    if (rankOfMany) await distributed.init()
    try {
      return await command.run(values as Values, positionals)
    } finally {
      if (rankOfMany) await distributed.destroy()
    }
  } catch (err) {
    const failure = describeFailure(err)
    if (err instanceof UsageError || failure.code.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`rlfarm ${name}: ${failure.message}\nUsage: ${command.usage}   (rlfarm ${name} --help)\n`)
      return EXIT.usage
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`rlfarm ${name}: ${failure.message}\n`)
      return EXIT.usage
    }
    process.stderr.write(`rlfarm ${name}: ${process.env.RLFARM_DEBUG && failure.stack ? failure.stack : failure.message}\n`)
    return EXIT.failed
  }
}

/** The exit codes of `rlfarm` (README "Exit codes"). */
export const EXIT = { ok: 0, failed: 1, usage: 2, interrupted: 130 } as const

/**
 * What the user is shown of anything thrown: its message (or, for a value
 * that is not an Error, the value), never empty, and its code as a string
 * (`.code` may be a number, an errno, or missing).
 */
export function describeFailure(err: unknown): { message: string; code: string; stack?: string } {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code
    const message = err.message.trim() || `${err.name || err.constructor?.name || 'Error'}${code !== undefined ? ` (code ${String(code)})` : ''} without a message`
    return { message, code: code === undefined || code === null ? '' : String(code), stack: err.stack }
  }
  let shown: string
  try {
    shown = typeof err === 'string' ? err : (JSON.stringify(err) ?? String(err))
  } catch {
    shown = String(err)
  }
  return { message: `failed with a thrown ${err === null ? 'null' : typeof err}: ${shown.slice(0, 300)}`, code: '' }
}

/**
 * For the `rlfarm` binary: an error that escapes every handler (an event
 * emitter's 'error', a rejected promise nobody awaited) still ends the
 * process with one line and exit code 1, not a stack trace or a hang.
 */
export function installFatalHandlers(argv: readonly string[]): void {
  const fatal = (err: unknown) => {
    const failure = describeFailure(err)
    process.stderr.write(`rlfarm${argv[0] ? ` ${argv[0]}` : ''}: ${process.env.RLFARM_DEBUG && failure.stack ? failure.stack : failure.message}\n`)
    process.exit(EXIT.failed)
  }
  process.on('uncaughtException', fatal)
  process.on('unhandledRejection', fatal)
}

/** Each command's help examples, for the test that runs them. */
export function helpExamples(): { command: string; example: string }[] {
  return Object.entries(COMMANDS).flatMap(([command, c]) => c.examples.map((example) => ({ command, example })))
}
