// One run of one algorithm, and pipelines of runs. A session builds the
// TrainerContext the trainers share: the run directory, the resolved config
// saved in it, a seeded RNG, metrics (JSONL and TensorBoard), progress, stop
// requests (Ctrl-C, an AbortSignal), checkpoints on a cadence and resume.
import fs from 'node:fs'
import path from 'node:path'
import { ConfigError, loadConfig, resolveConfig, resolvePaths, saveResolvedConfig } from '../config/index.js'
import type { PipelineConfig, PipelineConfigInput, RunConfig, RunConfigInput } from '../config/types.generated.js'
import type { StageResult, TrainerContext, TrainerState } from '../training/context.js'
import { checkModelDevices, RLFARM_META } from '../training/models.js'
import { trainSft } from '../algorithms/sft.js'
import { trainReward } from '../algorithms/reward.js'
import { trainPpo } from '../algorithms/ppo.js'
import { trainDpo } from '../algorithms/dpo.js'
import { trainGrpo } from '../algorithms/grpo.js'
import { trainRloo } from '../algorithms/rloo.js'
import { trainExpertIteration } from '../algorithms/expert-iteration.js'
import { runBestOfN } from '../algorithms/best-of-n.js'
import { trainWestOfN } from '../algorithms/west-of-n.js'
import { runEval } from '../stages/eval.js'
import { makeFarm } from '../stages/farm.js'
import { labelPreferences } from '../stages/label.js'
import type { Model } from '../model/model.js'
import type { AdamW } from '../model/optim.js'
import type { Tokenizer } from '../tokenizers/index.js'
import type { RewardFn } from '../rewards/types.js'
import { distributed } from '../distributed/index.js'
import { anyRank, checkSameRun, overlapBackward } from '../distributed/data-parallel.js'
import { optimizerState, shardOptimizer } from '../distributed/zero.js'
import { readRegularFileSync, resolveInside, writeFileAtomic } from '../util/fs.js'
import { firstDifference } from '../util/json.js'
import { checkKeys, describe } from '../util/options.js'
import { listCheckpoints, loadCheckpoint, saveCheckpoint } from './checkpoint.js'
import { onInterrupt, type Interrupt } from './interrupt.js'
import type { MetricsLogger } from './metrics.js'
import { Progress, type ProgressMode, type ProgressStream } from './progress.js'
import { Rng, type RngState } from '../util/rng.js'
import { emptyDirectory, existingRun, isRunName, RunDirectory, runExistsMessage } from './run-dir.js'
import { policyTable, type PolicyRow } from '../farm/report.js'
import { mean } from '../util/stats.js'

export type Algorithm = NonNullable<RunConfig['algorithm']>

const TRAINERS: Record<Algorithm, (ctx: TrainerContext) => Promise<StageResult>> = {
  sft: trainSft,
  reward: trainReward,
  ppo: trainPpo,
  dpo: trainDpo,
  grpo: trainGrpo,
  rloo: trainRloo,
  expert_iteration: trainExpertIteration,
  best_of_n: runBestOfN,
  west_of_n: trainWestOfN,
  eval: runEval,
  farm: makeFarm,
  label: labelPreferences,
}

/** A step's metrics, as train() and runPipeline() report them to onStep. */
export interface StepEvent {
  /** The pipeline stage (runPipeline), else undefined. */
  stage?: string
  algorithm: Algorithm
  step: number
  totalSteps?: number
  /** 'train' unless the trainer says otherwise ('eval', 'sample' ...). */
  phase: string
  metrics: Readonly<Record<string, number>>
}

export interface TrainOptions {
  /** Stops the run after the current step (a checkpoint is saved). */
  signal?: AbortSignal
  /** Called after each logged step. */
  onStep?: (event: StepEvent) => void
  /** Continue the run output_dir/name from its newest checkpoint. Default false. */
  resume?: boolean
  /** Start the run output_dir/name again from scratch when it exists (its directory is emptied). Default false. */
  overwrite?: boolean
  /** Overrides, `path=value` each, applied before validation (as `--set`). */
  set?: readonly string[]
  /** Overrides logging.progress. */
  progress?: ProgressMode
  /** Where progress and notes go. Default process.stderr. */
  stream?: ProgressStream
  /** Handle SIGINT/SIGTERM (save and stop) while the run lasts. Default false: the CLI turns it on. */
  handleSignals?: boolean
  /** Reward functions by name, for a config's `reward_function: { name }` (and reward_functions): called once per batch. */
  rewards?: Readonly<Record<string, RewardFn>>
}

/** What runPipeline tells the train() of each stage (not public options). */
interface StageOptions {
  /** The stage's name. */
  stage?: string
  /** Where the stage stands in its pipeline, for progress. */
  pipeline?: PipelinePosition
}

/** Stage k of n, and the seconds of the stages this session ran before it (for the pipeline's ETA). */
interface PipelinePosition {
  index: number
  count: number
  /** Seconds each stage run so far in this session took (kept stages are not counted). */
  ranSeconds: number[]
}

export interface TrainResult extends StageResult {
  /** The run directory (absolute). */
  runDir: string
  /** The last optimizer step (or sampling step) completed. */
  step: number
  /** True when the run stopped early on a signal or an AbortSignal; resume it with { resume: true }. */
  interrupted: boolean
  /** Wall-clock seconds of the run (all its sessions, when resumed). */
  seconds: number
}

/** train({ rewards }) must map names to functions. */
function checkRewards(rewards: unknown): void {
  if (rewards === undefined) return
  if (rewards === null || typeof rewards !== 'object' || Array.isArray(rewards)) throw new TypeError(`rewards must be an object of reward functions by name; got ${describe(rewards)}`)
  for (const [name, fn] of Object.entries(rewards)) {
    if (typeof fn !== 'function') throw new TypeError(`rewards.${name} must be a function ({ prompts, completions, completionIds, rows, step }) => number[]; got ${describe(fn)}`)
  }
}

function isConfigFile(value: unknown): value is string {
  return typeof value === 'string'
}

/** A RunConfig from a file (paths relative to it), an input object or a resolved config. */
export async function runConfigFrom(config: string | RunConfig | RunConfigInput, set: readonly string[] = []): Promise<RunConfig> {
  if (isConfigFile(config)) {
    const loaded = await loadConfig(config, { set })
    return resolvePaths(loaded, path.dirname(path.resolve(config)))
  }
  if (config === null || typeof config !== 'object') throw new TypeError(`train: config must be a config file's path or a config object; got ${describe(config)}`)
  return resolveConfig(config as RunConfigInput, { source: 'train(config)', set })
}


// Files of a Hugging Face tokenizer directory that a saved model carries along.
const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'chat_template.jinja', 'vocab.json', 'merges.txt', 'generation_config.json']

/** Writes a model and what reads its tokens: the tokenizer's files, or rlfarm.json naming the byte tokenizer. */
export async function saveModelWithTokenizer(model: Model, tokenizerSource: string, dir: string): Promise<void> {
  // Checked before the model is written: a source with no tokenizer.json would save a model nothing can load with its tokenizer.
  if (typeof tokenizerSource !== 'string' || (tokenizerSource !== 'byte' && !fs.existsSync(path.join(tokenizerSource, 'tokenizer.json')))) {
    throw new Error(`saveModelWithTokenizer: tokenizerSource must be 'byte' or a directory that holds tokenizer.json; got ${JSON.stringify(tokenizerSource)}`)
  }
  await model.save(dir)
  if (tokenizerSource === 'byte') {
    writeFileAtomic(path.join(dir, RLFARM_META), `${JSON.stringify({ tokenizer: 'byte' }, null, 2)}\n`)
    return
  }
  if (path.resolve(tokenizerSource) === path.resolve(dir)) return
  for (const name of TOKENIZER_FILES) {
    const from = resolveInside(tokenizerSource, name, `${tokenizerSource}: tokenizer file`)
    if (fs.existsSync(from)) writeFileAtomic(path.join(dir, name), readRegularFileSync(from))
  }
}

/**
 * The pipeline's ETA after the current stage: each later stage is guessed to
 * take the mean time of the stages run so far (this one as projected), since
 * a stage's length is known only once it has loaded its data.
 */
function pipelineRemaining(at: PipelinePosition, projectedSeconds: number): { label: string; secondsAfter: number } {
  const seen = [...at.ranSeconds, projectedSeconds]
  return { label: 'pipeline', secondsAfter: mean(seen) * (at.count - at.index - 1) }
}

// Between checkpoints, run.json's step is brought up to date at most this often.
const STATUS_EVERY_MS = 2000

// In a data-parallel run (distributed.worldSize > 1) every rank has a Session;
// only rank 0's has a RunDirectory and writes (metrics, progress, notes,
// checkpoints, the model), and stop requests are agreed at each step's end.
class Session implements TrainerContext {
  readonly rng: Rng
  readonly runDir: string
  resumed?: TrainerState
  #tracked: { models: Record<string, Model>; optimizers: Record<string, AdamW> } | undefined
  #lastState: (() => TrainerState) | undefined
  #lastSaved = -1
  #lastStatusWrite = Date.now()
  #step = 0
  #progress: Progress | undefined
  readonly #cleanups: (() => void | Promise<void>)[] = []
  #stopAgreed = false
  readonly #metrics: MetricsLogger | undefined
  readonly #logFile: string

  constructor(
    readonly config: RunConfig,
    /** Undefined on ranks other than 0, which write nothing. */
    readonly run: RunDirectory | undefined,
    runDir: string,
    readonly interrupt: Interrupt,
    readonly options: TrainOptions & StageOptions,
    /** The checkpoint a resumed run continues from: its step is known before any model is loaded. */
    readonly resumeFrom: { step: number; path: string } | undefined,
  ) {
    this.rng = new Rng(config.seed)
    this.runDir = runDir
    this.#logFile = path.join(runDir, 'run.log')
    this.#metrics = run?.metrics({ jsonl: config.logging.jsonl, tensorboard: config.logging.tensorboard, resumeStep: resumeFrom?.step ?? (run?.resumed ? 0 : undefined) })
    if (resumeFrom) this.#step = resumeFrom.step
  }

  get rewards(): Readonly<Record<string, RewardFn>> | undefined {
    return this.options.rewards
  }

  defer(cleanup: () => void | Promise<void>): void {
    this.#cleanups.push(cleanup)
  }

  /** Runs the deferred cleanups (latest first); a failing one is noted, not thrown over the run's own outcome. */
  async cleanUp(): Promise<void> {
    for (const cleanup of this.#cleanups.splice(0).reverse()) {
      try {
        await cleanup()
      } catch (err) {
        this.note(`cleanup failed: ${(err as Error)?.message ?? String(err)}`)
      }
    }
  }

  get algorithm(): Algorithm {
    return this.config.algorithm!
  }

  log(step: number, metrics: Record<string, number>, info: { tokens?: number; totalSteps?: number; phase?: string } = {}): void {
    const phase = info.phase ?? 'train'
    const every = this.config.logging.every
    if (phase === 'train' && step % every !== 0 && step !== info.totalSteps) {
      this.#progressFor(info.totalSteps)?.update(step, { tokens: info.tokens })
      return
    }
    this.#metrics?.log(step, phase === 'train' ? metrics : Object.fromEntries(Object.entries(metrics).map(([k, v]) => [k.startsWith(`${phase}_`) ? k : `${phase}/${k}`, v])))
    this.#progressFor(info.totalSteps)?.update(step, { tokens: info.tokens, metrics })
    this.options.onStep?.({ stage: this.options.stage, algorithm: this.algorithm, step, totalSteps: info.totalSteps, phase, metrics: { ...metrics } })
  }

  #progressFor(total: number | undefined): Progress | undefined {
    const mode = this.options.progress ?? this.config.logging.progress
    if (mode === 'none' || !this.run) return undefined
    if (!this.#progress) {
      const at = this.options.pipeline
      const label = this.options.stage ? `${at ? `stage ${at.index + 1}/${at.count} ` : ''}${this.options.stage} (${this.algorithm})` : this.algorithm
      this.#progress = new Progress({
        total,
        mode,
        label,
        start: this.resumeFrom?.step ?? 0,
        ...(at && at.index + 1 < at.count ? { overall: (projected: number) => pipelineRemaining(at, projected) } : {}),
        ...(this.options.stream ? { stream: this.options.stream } : {}),
      })
    } else if (total !== undefined && total > 0) {
      // A stage may report before it knows its length (a baseline evaluation at step 0).
      this.#progress.setTotal(total)
    }
    return this.#progress
  }

  note(message: string): void {
    if (!this.run) return
    fs.appendFileSync(this.#logFile, `${new Date().toISOString()} ${message}\n`)
    const mode = this.options.progress ?? this.config.logging.progress
    if (mode === 'none') return
    if (this.#progress) this.#progress.log(message)
    else (this.options.stream ?? process.stderr).write(`${message}\n`)
  }

  stopRequested(): boolean {
    return distributed.worldSize > 1 ? this.#stopAgreed : this.interrupt.requested
  }

  async track(parts: { models: Record<string, Model>; optimizers?: Record<string, AdamW> }): Promise<void> {
    if (this.#tracked) throw new Error('TrainerContext.track: called twice; a trainer tracks its models once')
    this.#tracked = { models: parts.models, optimizers: parts.optimizers ?? {} }
    const { shard_optimizer, overlap_backward, bucket_mb } = this.config.distributed
    for (const optimizer of Object.values(this.#tracked.optimizers)) {
      if (shard_optimizer) shardOptimizer(optimizer)
      else if (overlap_backward) overlapBackward(optimizer.model, Math.round(bucket_mb * 2 ** 20))
    }
    if (!this.resumeFrom) return
    const dir = this.resumeFrom.path
    const { step, state } = await loadCheckpoint<{ trainer: TrainerState; rng: RngState }>(dir, this.#tracked)
    if (!state || typeof state !== 'object' || !state.trainer || state.trainer.step !== step) {
      throw new Error(`${dir}: state.json does not hold this trainer's state (was it written by another kind of run?)`)
    }
    this.rng.restore(state.rng)
    this.resumed = state.trainer
    this.#step = step
    this.#lastSaved = step
    this.note(`resumed from ${dir} (step ${step})`)
  }

  async afterStep(state: () => TrainerState): Promise<void> {
    this.#lastState = state
    const step = state().step
    this.#step = step
    if (distributed.worldSize > 1) this.#stopAgreed = await anyRank(this.interrupt.requested)
    const every = this.config.checkpoint.every
    if ((every > 0 && step % every === 0) || this.stopRequested()) await this.checkpoint()
    else if (this.run && Date.now() - this.#lastStatusWrite >= STATUS_EVERY_MS) {
      // run.json is read, rewritten and synced: keep that off the per-step path of fast runs.
      this.run.update({ step })
      this.#lastStatusWrite = Date.now()
    }
  }

  /** Saves a checkpoint of the tracked models at the last reported step (once per step). */
  async checkpoint(): Promise<void> {
    if (!this.#tracked || !this.#lastState) return
    const trainer = this.#lastState()
    if (trainer.step === this.#lastSaved) return
    // Sharded (ZeRO-1) moments are gathered by every rank; rank 0 writes them.
    const optimizers: Record<string, Pick<AdamW, 'model' | 'state'>> = {}
    for (const [name, optimizer] of Object.entries(this.#tracked.optimizers)) {
      const state = optimizer.sharded ? await optimizerState(optimizer) : undefined
      optimizers[name] = state ? { model: optimizer.model, state: () => state } : optimizer
    }
    if (!this.run) {
      this.#lastSaved = trainer.step
      return
    }
    this.#metrics?.flush()
    await saveCheckpoint(this.runDir, {
      step: trainer.step,
      models: this.#tracked.models,
      optimizers,
      state: { trainer, rng: this.rng.state() },
      keep: this.config.checkpoint.keep,
    })
    this.#lastSaved = trainer.step
    this.run.update({ step: trainer.step })
  }

  async saveModel(model: Model, _tokenizer: Tokenizer, tokenizerSource: string, name = 'model'): Promise<string> {
    const dir = path.join(this.runDir, name) // 'model' is run.modelDir
    if ((!this.config.checkpoint.save_final && name === 'model') || !this.run) return dir
    await saveModelWithTokenizer(model, tokenizerSource, dir)
    return dir
  }

  get step(): number {
    return this.#step
  }

  close(): void {
    this.#progress?.done()
    this.#metrics?.close()
  }
}

/**
 * Runs one stage: `config` is a config file (YAML or JSON; relative paths are
 * taken from its directory), a config object as a user writes it, or a
 * resolved RunConfig. The run goes into output_dir/name (name defaults to the
 * algorithm and the time); with `resume` it continues that run from its newest
 * checkpoint. Resolves when the run finishes or stops on the signal.
 */
export async function train(config: string | RunConfig | RunConfigInput, options: TrainOptions & StageOptions = {}): Promise<TrainResult> {
  checkKeys('train', options, ['signal', 'onStep', 'resume', 'overwrite', 'set', 'progress', 'stream', 'handleSignals', 'stage', 'pipeline', 'rewards'])
  checkRewards(options.rewards)
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw new TypeError(`train: signal must be an AbortSignal; got ${describe(options.signal)}`)
  if (options.onStep !== undefined && typeof options.onStep !== 'function') throw new TypeError(`train: onStep must be a function; got ${describe(options.onStep)}`)
  const resolved = await runConfigFrom(config, options.set)
  const source = isConfigFile(config) ? config : 'train(config)'
  if (!resolved.algorithm) throw new ConfigError([{ file: source, path: 'algorithm', message: `is required (one of ${Object.keys(TRAINERS).join(', ')})` }])
  if (resolved.name !== undefined && !isRunName(resolved.name)) {
    throw new ConfigError([{ file: source, path: 'name', message: `must be a directory name (not empty, no '/' or '\\', not '.' or '..'); got ${JSON.stringify(resolved.name)}` }])
  }
  checkModelDevices(resolved, source)
  const resume = options.resume ?? false
  if (resume && !resolved.name) throw new ConfigError([{ file: source, path: 'name', message: "is required to resume (config name, or --set name=...): the run to continue is output_dir/name" }])

  await checkSameRun('config', resolved)
  // Rank 0 makes the run directory and writes it; it names the directory and
  // the checkpoint every rank resumes from, or why it could not start.
  const writer = distributed.rank === 0
  let run: RunDirectory | undefined
  // From here on, whatever ends the run is recorded in run.json.
  const recordFailure = (err: unknown) => {
    if (!run) return
    try {
      run.update({ state: 'failed', error: err })
    } catch (statusError) {
      // The run's own error is the one to report; that run.json could not say so is told beside it.
      ;(options.stream ?? process.stderr).write(`rlfarm: could not record the failure in ${run.statusFile}: ${(statusError as Error).message}\n`)
    }
  }
  let startError: unknown
  if (writer) {
    try {
      run = RunDirectory.create(path.resolve(resolved.output_dir), { name: resolved.name, algorithm: resolved.algorithm, resume, overwrite: options.overwrite ?? false })
      await saveResolvedConfig(resolved, run.configFile)
    } catch (err) {
      recordFailure(err)
      startError = err
    }
  }
  let runDir = run?.path ?? ''
  let resumeFrom = resume && run ? listCheckpoints(run.path).at(-1) : undefined
  if (distributed.worldSize > 1) {
    const error = startError === undefined ? undefined : startError instanceof Error ? startError.message : String(startError)
    const [first] = (await distributed.exchange('run', JSON.stringify({ runDir, resumeFrom, error }))).map((s) => JSON.parse(s) as { runDir: string; resumeFrom: typeof resumeFrom; error?: string })
    if (!writer && first.error !== undefined) throw new Error(`rank 0 could not start the run: ${first.error}`)
    ;({ runDir, resumeFrom } = first)
  }
  if (startError !== undefined) throw startError
  const interrupt = onInterrupt(undefined, { signal: options.signal, signals: options.handleSignals ? undefined : [], quiet: !options.handleSignals })
  const started = performance.now()
  // A resumed run adds the time its earlier sessions spent (elapsed.json, written as each session ends).
  const earlier = resume ? ((readJsonMaybe(path.join(runDir, 'elapsed.json')) as { seconds?: number } | undefined)?.seconds ?? 0) : 0
  const elapsed = () => earlier + (performance.now() - started) / 1000
  let session: Session
  try {
    session = new Session(resolved, run, runDir, interrupt, options, resumeFrom)
  } catch (err) {
    interrupt.dispose()
    recordFailure(err)
    throw err
  }
  if (resume && !resumeFrom) session.note(`${runDir}: nothing to resume yet (no checkpoint: the run had not begun, or stopped before its first one); starting from the beginning`)
  try {
    const result = await TRAINERS[resolved.algorithm](session)
    await session.checkpoint()
    const interrupted = session.stopRequested()
    run?.update({ state: interrupted ? 'interrupted' : 'finished', step: session.step })
    if (interrupted) session.note(`stopped at step ${session.step}; continue it with --resume${options.stage ? '' : ` --name ${path.basename(runDir)}`}`)
    const seconds = elapsed()
    if (run) writeFileAtomic(path.join(runDir, 'result.json'), `${JSON.stringify({ ...result, step: session.step, interrupted, seconds }, null, 2)}\n`)
    return { ...result, runDir, step: session.step, interrupted, seconds }
  } catch (err) {
    recordFailure(err)
    throw err
  } finally {
    if (run) {
      try {
        writeFileAtomic(path.join(runDir, 'elapsed.json'), `${JSON.stringify({ seconds: elapsed() })}\n`)
      } catch {
        // Best effort (a full disk): a resumed run then counts only its own time.
      }
    }
    interrupt.dispose()
    await session.cleanUp()
    session.close()
  }
}

export interface PipelineOptions extends Omit<TrainOptions, 'set'> {
  /** Overrides of the pipeline config (`stages[1].run.ppo.kl_coef=0.1`). */
  set?: readonly string[]
  /**
   * When the pipeline output_dir/name has finished before with this config,
   * return its results (as `resume` would, running nothing) instead of
   * refusing to run over it. Default false; quickstart and compare set it.
   */
  reuseFinished?: boolean
}

/** summary.json of a pipeline: each stage, and the win-rates of the policies its eval stages measured. */
export interface PipelineSummary {
  name: string
  dir: string
  stages: { name: string; model?: string; files?: Record<string, string>; metrics: Record<string, number>; runDir: string; seconds: number }[]
  policies: PolicyRow[]
}

export interface PipelineResult {
  /** The pipeline's directory: output_dir/name. */
  dir: string
  stages: (TrainResult & { name: string })[]
  interrupted: boolean
}

const REFERENCE = /\$\{([A-Za-z0-9_-]+)(?:\.([A-Za-z0-9_]+))?\}/g

// Replaces ${stage} (the stage's model) and ${stage.file} (a file it wrote) in every string of `value`.
function substitute(value: unknown, results: Map<string, StageResult & { runDir: string }>, where: string): unknown {
  if (typeof value === 'string') {
    return value.replace(REFERENCE, (_, stage: string, file: string | undefined) => {
      const result = results.get(stage)
      if (!result) throw new Error(`${where}: \${${stage}} names no earlier stage (earlier: ${[...results.keys()].join(', ') || 'none'})`)
      const target = file === undefined ? result.model : file === 'dir' ? result.runDir : result.files?.[file]
      if (!target) throw new Error(`${where}: stage ${stage} left no ${file ?? 'model'} for \${${stage}${file ? `.${file}` : ''}}`)
      return target
    })
  }
  if (Array.isArray(value)) return value.map((v) => substitute(v, results, where))
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, results, `${where}.${k}`)]))
  return value
}

/**
 * Runs a pipeline's stages in order in output_dir/name/<stage>; `${stage}` in
 * a later stage's strings becomes that stage's model directory
 * (`${stage.outputs}` a file it wrote, `${stage.dir}` its run directory). With
 * `resume`, finished stages are kept (each must have run the config it has now:
 * one that ran another is an error) and the first unfinished one resumes.
 */
export async function runPipeline(config: string | PipelineConfig | PipelineConfigInput, options: PipelineOptions = {}): Promise<PipelineResult> {
  checkKeys('runPipeline', options, ['signal', 'onStep', 'resume', 'overwrite', 'reuseFinished', 'set', 'progress', 'stream', 'handleSignals', 'rewards'])
  checkRewards(options.rewards)
  let pipeline: PipelineConfig
  let baseDir = process.cwd()
  if (isConfigFile(config)) {
    baseDir = path.dirname(path.resolve(config))
    pipeline = resolvePaths(await loadConfig(config, { type: 'PipelineConfig', set: options.set }), baseDir, { type: 'PipelineConfig' })
  } else {
    pipeline = resolvePaths(resolveConfig(config as PipelineConfigInput, { type: 'PipelineConfig', source: 'runPipeline(config)', set: options.set }), baseDir, { type: 'PipelineConfig' })
  }
  const source = isConfigFile(config) ? config : 'runPipeline(config)'
  if (!pipeline.name || !isRunName(pipeline.name)) throw new ConfigError([{ file: source, path: 'name', message: `must be a directory name (its stages go into output_dir/name); got ${JSON.stringify(pipeline.name)}` }])
  if (pipeline.stages.length === 0) throw new ConfigError([{ file: source, path: 'stages', message: 'the pipeline has no stages' }])
  const dir = path.resolve(pipeline.output_dir, pipeline.name)
  const names = new Set<string>()
  pipeline.stages.forEach((s, i) => {
    if (!s.name || !isRunName(s.name)) throw new ConfigError([{ file: source, path: `stages[${i}].name`, message: `must be a directory name; got ${JSON.stringify(s.name)}` }])
    if (names.has(s.name)) throw new ConfigError([{ file: source, path: `stages[${i}].name`, message: `${s.name} is used twice` }])
    names.add(s.name)
  })
  if (options.resume && options.overwrite) throw new TypeError('runPipeline: resume and overwrite exclude each other (continue the pipeline, or start it again)')
  const { reuseFinished, overwrite, ...stageOptions } = options
  let resume = options.resume ?? false
  // Rank 0 alone looks at (and may empty) the pipeline's directory, and tells the others what it found.
  const writer = distributed.rank === 0
  let startError: unknown
  if (writer) {
    try {
      if (!resume && fs.existsSync(dir) && fs.readdirSync(dir).length > 0) {
        const keep = [...names].filter((name) => {
          const existing = existingRun(path.join(dir, name))
          return existing !== undefined && !existing.reusable
        })
        if (overwrite) {
          if (!fs.existsSync(path.join(dir, 'pipeline.yaml'))) throw new Error(`runPipeline: ${dir} is not a pipeline's directory (no pipeline.yaml); --overwrite deletes only a pipeline's own directory`)
          emptyDirectory(dir, 'runPipeline')
        } else if (reuseFinished && fs.existsSync(path.join(dir, 'summary.json'))) resume = true
        else if (keep.length > 0) {
          const finished = fs.existsSync(path.join(dir, 'summary.json')) ? 'a finished pipeline' : `a pipeline whose stage${keep.length > 1 ? 's' : ''} ${keep.join(', ')} ran`
          throw new Error(`runPipeline: ${runExistsMessage(dir, finished)}`)
        }
      }
      fs.mkdirSync(dir, { recursive: true })
      await saveResolvedConfig(pipeline, path.join(dir, 'pipeline.yaml'), { type: 'PipelineConfig' })
    } catch (err) {
      startError = err
    }
  }
  if (distributed.initialized && distributed.worldSize > 1) {
    const error = startError === undefined ? undefined : startError instanceof Error ? startError.message : String(startError)
    const [first] = (await distributed.exchange('pipeline', JSON.stringify({ resume, error }))).map((s) => JSON.parse(s) as { resume: boolean; error?: string })
    if (!writer && first.error !== undefined) throw new Error(`rank 0 could not start the pipeline: ${first.error}`)
    resume = first.resume
  }
  if (startError !== undefined) throw startError

  const results = new Map<string, StageResult & { runDir: string }>()
  const done: PipelineResult['stages'] = []
  const ranSeconds: number[] = []
  for (const [i, stage] of pipeline.stages.entries()) {
    const name = stage.name!
    if (options.signal?.aborted) return { dir, stages: done, interrupted: true }
    const stageDir = path.join(dir, name)
    const finished = readJsonMaybe(path.join(stageDir, 'run.json')) as { state?: string } | undefined
    const saved = readJsonMaybe(path.join(stageDir, 'result.json')) as (StageResult & { step: number; seconds: number }) | undefined
    const raw = stage.config ? resolvePaths(await loadConfig(stage.config), path.dirname(stage.config)) : stage.run
    const withRefs = substitute(raw, results, `stages[${i}] (${name})`) as RunConfig
    const seed = withRefs.seed === 0 ? pipeline.seed : withRefs.seed
    const run: RunConfig = { ...withRefs, seed, output_dir: dir, name }
    if (resume && finished?.state === 'finished' && saved) {
      // A finished stage is kept only if it ran this very config: outputs of another are not this pipeline's.
      await checkSameConfig(stageDir, run, `stages[${i}] (${name})`)
      const kept = { ...saved, ...stageOutputsInside(saved, stageDir) }
      results.set(name, { ...kept, runDir: stageDir })
      done.push({ ...kept, name, runDir: stageDir, interrupted: false })
      continue
    }
    const resumeStage = resume && finished !== undefined
    const result = await train(run, { ...stageOptions, set: undefined, resume: resumeStage, stage: name, pipeline: { index: i, count: pipeline.stages.length, ranSeconds } })
    ranSeconds.push(result.seconds)
    results.set(name, result)
    done.push({ ...result, name })
    if (result.interrupted) return { dir, stages: done, interrupted: true }
  }
  const summary: PipelineSummary = {
    name: pipeline.name,
    dir,
    stages: done.map((s) => ({ name: s.name, model: s.model, files: s.files, metrics: s.metrics, runDir: s.runDir, seconds: s.seconds })),
    policies: policyTable(done),
  }
  if (writer) writeFileAtomic(path.join(dir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`)
  return { dir, stages: done, interrupted: false }
}

/**
 * The model and files that a finished stage's result.json names, each of which
 * must lie inside the stage's directory: a later stage's ${stage} reads them.
 */
function stageOutputsInside(saved: StageResult, stageDir: string): Pick<StageResult, 'model' | 'files'> {
  const where = path.join(stageDir, 'result.json')
  const inside = (p: unknown, field: string) =>
    resolveInside(stageDir, typeof p === 'string' && p !== '' ? path.relative(stageDir, path.resolve(stageDir, p)) || '.' : p, `${where}: ${field}`)
  const out: Pick<StageResult, 'model' | 'files'> = {}
  if (saved.model !== undefined) out.model = inside(saved.model, 'model')
  if (saved.files !== undefined) {
    if (saved.files === null || typeof saved.files !== 'object') throw new Error(`${where}: files must be an object { name: file }; got ${describe(saved.files)}`)
    out.files = Object.fromEntries(Object.entries(saved.files).map(([key, file]) => [key, inside(file, `files.${key}`)]))
  }
  return out
}

/** Refuses to keep a finished stage whose saved config.yaml differs from `run` (its output_dir aside: the directory may have moved). */
async function checkSameConfig(stageDir: string, run: RunConfig, where: string) {
  const file = path.join(stageDir, 'config.yaml')
  let before: RunConfig
  try {
    before = await loadConfig(file)
  } catch (err) {
    throw new Error(`runPipeline: ${where}: cannot tell whether the finished stage in ${stageDir} ran this config: ${(err as Error).message}`, { cause: err })
  }
  const now = resolveConfig(run, { source: where })
  const d = firstDifference({ ...before, output_dir: '' }, { ...now, output_dir: '' })
  if (d) {
    const show = (v: unknown) => (v === undefined ? 'nothing' : JSON.stringify(v))
    throw new Error(
      `runPipeline: ${where}: the finished stage in ${stageDir} ran another config (${d.path}: ${show(d.was)} then, ${show(d.now)} now); ` +
        'run the pipeline again from scratch with --overwrite, give it a new --name, or resume with the config it ran',
    )
  }
}

function readJsonMaybe(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch {
    return undefined
  }
}
