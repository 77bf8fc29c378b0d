// The farm: a small instruction-following world in which RLHF methods are
// trained and compared cheaply, as AlpacaFarm does with LLM annotators.
//   gold evaluator   deterministic score in [0, 1]: correctness with partial
//                    credit, minus junk after the answer
//   demonstrator     writes the SFT data: right with a per-family probability,
//                    plausible mistakes otherwise; often chatty (trailing
//                    words the gold evaluator marks down), sometimes formal
//   annotator pool   simulated labellers: gold plus their own length, position
//                    and format biases and noise, then AlpacaFarm's label noise
//                    (the label is a coin flip with probability 2p)
//   splits           SFT, preference, unlabelled and evaluation instructions,
//                    with fixed reference outputs for the evaluation split
//   win-rate         (wins + ties / 2) / N against the references, with its
//                    standard error, by the gold evaluator or by the pool
import fs from 'node:fs'
import path from 'node:path'
import { Rng } from '../util/rng.js'
import { writeFileAtomic } from '../util/fs.js'
import { FAMILIES, parseTask, type Task } from './families.js'
import { mean } from '../util/stats.js'
import { checkKeys, describe, rangedOption } from '../util/options.js'

/** The answer part of a response: its first line, trimmed. */
export function answerOf(response: string): { answer: string; junk: number } {
  if (typeof response !== 'string') throw new TypeError(`answerOf: response must be a string; got ${describe(response)}`)
  const text = response.replace(/^\s+/, '')
  const newline = text.indexOf('\n')
  const first = (newline < 0 ? text : text.slice(0, newline)).trim()
  const rest = newline < 0 ? '' : text.slice(newline + 1).trim()
  // "Answer: x" and a final period are format, not junk: annotators may like them, gold ignores them.
  const answer = first.replace(/^answer:\s*/i, '').replace(/\.$/, '')
  return { answer, junk: rest.length }
}

/** The gold score of a response to a farm instruction, in [0, 1]. */
export function goldScore(instruction: string, response: string): number {
  if (typeof response !== 'string') throw new TypeError(`goldScore: response must be a string; got ${describe(response)}`)
  const task = parseTask(instruction)
  if (!task) throw new Error(`goldScore: not a farm instruction: ${JSON.stringify(instruction)}`)
  return scoreTask(task, response)
}

function scoreTask(task: Task, response: string): number {
  const { answer, junk } = answerOf(response)
  // Any chatter after the answer costs; longer chatter costs more.
  return Math.max(0, task.correctness(answer) - (junk > 0 ? Math.min(0.5, 0.1 + junk * 0.02) : 0))
}

// ---- the noisy demonstrator ----

export interface DemonstratorOptions {
  /** Probability of a right answer, per family (default 0.7). */
  accuracy?: Record<string, number>
  /**
   * Probability of trailing chatter after the answer ("x\nhope this helps"),
   * which gold marks down. Default 0.6: more often than not, so that SFT's most
   * likely response carries it and preference learning has a habit to unlearn.
   */
  chatter?: number
  /** Probability of the "Answer: x." format, which gold ignores and some annotators like. Default 0.2. */
  format?: number
}

const FILLER = ['hope this helps', 'ok', 'done', 'that is all', 'easy']

/** A demonstration for `task`: right with the family's probability, else a plausible mistake; often chatty, sometimes formal. */
export function demonstrate(task: Task, rng: Rng, options: DemonstratorOptions = {}): string {
  const p = options.accuracy?.[task.family] ?? 0.7
  let text = rng.next() < p ? task.answer : task.mistake(rng)
  if (rng.next() < (options.format ?? 0.2)) text = `Answer: ${text}.`
  if (rng.next() < (options.chatter ?? 0.6)) text = `${text}\n${FILLER[rng.int(FILLER.length)]}`
  return ` ${text}`
}

// ---- the annotator pool ----

export interface Annotator {
  name: string
  /** Added per byte of response length (a taste for long answers). */
  lengthBias: number
  /** Added to the first response shown. */
  positionBias: number
  /** Added to responses formatted as "Answer: ...". */
  formatBias: number
  /** Standard deviation of Gaussian noise on each score. */
  noise: number
}

/** Four annotators, biased as AlpacaFarm's simulated pool is: towards length, the first position, and format. */
export const DEFAULT_POOL: readonly Annotator[] = [
  { name: 'verbose', lengthBias: 0.01, positionBias: 0, formatBias: 0.05, noise: 0.1 },
  { name: 'first', lengthBias: 0.003, positionBias: 0.15, formatBias: 0, noise: 0.1 },
  { name: 'formal', lengthBias: 0.005, positionBias: 0.02, formatBias: 0.1, noise: 0.1 },
  { name: 'careful', lengthBias: 0.005, positionBias: 0, formatBias: 0, noise: 0.05 },
]

export interface PoolOptions {
  annotators?: readonly Annotator[]
  /** AlpacaFarm's label noise: the label is replaced by a coin flip with probability 2p. Default 0.25. */
  p?: number
  seed?: number
}

/** A stable 32-bit hash of a string (FNV-1a), to pick an annotator per example. */
export function hash32(text: string, seed = 0): number {
  let h = (0x811c9dc5 ^ seed) >>> 0
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h
}

function gaussian(rng: Rng): number {
  const u = Math.max(rng.next(), 1e-12)
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next())
}

export class AnnotatorPool {
  readonly annotators: readonly Annotator[]
  readonly p: number
  readonly seed: number

  constructor(options: PoolOptions = {}) {
    this.annotators = options.annotators ?? DEFAULT_POOL
    this.p = options.p ?? 0.25
    this.seed = options.seed ?? 0
    if (this.annotators.length === 0) throw new Error('AnnotatorPool: annotators must not be empty')
    if (!(this.p >= 0 && this.p <= 0.5)) throw new Error(`AnnotatorPool: p must be in [0, 0.5]; got ${this.p}`)
  }

  /** The annotator that labels this example (a seeded hash of the instruction and the two responses). */
  annotatorFor(instruction: string, a: string, b: string): Annotator {
    return this.annotators[hash32(`${instruction}\u0000${a}\u0000${b}`, this.seed) % this.annotators.length]
  }

  /** An annotator's biased, noisy score of a response shown at `position` (0 first). */
  static perceived(annotator: Annotator, instruction: string, response: string, position: number, rng: Rng): number {
    const formatted = /^\s*answer:/i.test(response) ? 1 : 0
    return (
      goldScore(instruction, response) +
      annotator.lengthBias * response.trim().length +
      annotator.formatBias * formatted +
      (position === 0 ? annotator.positionBias : 0) +
      annotator.noise * gaussian(rng)
    )
  }

  /**
   * Which of two responses the pool prefers: 0 for `a` (shown first), 1 for
   * `b`. Deterministic for a given (instruction, a, b) and seed.
   */
  prefer(instruction: string, a: string, b: string): 0 | 1 {
    const rng = new Rng(hash32(`${instruction}\u0001${a}\u0001${b}`, this.seed))
    const annotator = this.annotatorFor(instruction, a, b)
    const sa = AnnotatorPool.perceived(annotator, instruction, a, 0, rng)
    const sb = AnnotatorPool.perceived(annotator, instruction, b, 1, rng)
    let label: 0 | 1 = sa >= sb ? 0 : 1
    if (rng.next() < 2 * this.p) label = rng.next() < 0.5 ? 0 : 1
    return label
  }
}

// ---- splits ----

export interface FarmRow {
  prompt: string
  family: string
}

export interface FarmSplits {
  /** Demonstrations: {prompt, response, family}. */
  sft: (FarmRow & { response: string })[]
  /** Instructions whose response pairs the pool labels. */
  preference: FarmRow[]
  /** Instructions without labels (PPO, best-of-n, expert iteration, West-of-N). */
  unlabelled: FarmRow[]
  /** Held-out instructions with fixed reference outputs (the demonstrator's). */
  eval: (FarmRow & { reference: string })[]
  /** Held-out instructions with references for choosing hyper-parameters (AlpacaFarm's val split); empty unless asked for. */
  validation?: (FarmRow & { reference: string })[]
}

export interface SplitSizes {
  sft?: number
  preference?: number
  unlabelled?: number
  eval?: number
  validation?: number
}

/**
 * Makes the farm's splits, as AlpacaFarm's (sft 10k / pref 10k / unlabelled
 * 20k / eval 805, scaled down): no instruction appears in two splits.
 * The validation split is drawn after the others, from what they left, so
 * that asking for one leaves the other splits as they were.
 */
/** The most instructions one split may ask for: far above AlpacaFarm's (20k), and low enough to be made in seconds and written as one file. */
export const MAX_SPLIT_SIZE = 1_000_000

export function makeSplits(seed = 0, sizes: SplitSizes = {}, demonstrator: DemonstratorOptions = {}): FarmSplits {
  const where = 'makeSplits'
  if (!Number.isSafeInteger(seed) || seed < 0) throw new TypeError(`${where}: seed must be a non-negative integer; got ${describe(seed)}`)
  checkKeys(`${where} sizes`, sizes, ['sft', 'preference', 'unlabelled', 'eval', 'validation'])
  for (const key of ['sft', 'preference', 'unlabelled', 'eval', 'validation'] as const) {
    // Families without a bound make instructions for as long as they are asked: a huge size would run for hours, then fail to write.
    rangedOption(where, `sizes.${key}`, sizes[key], 0, { integer: true, min: 0, max: MAX_SPLIT_SIZE })
  }
  const want = { sft: sizes.sft ?? 5000, preference: sizes.preference ?? 3000, unlabelled: sizes.unlabelled ?? 3000, eval: sizes.eval ?? 500 }
  const rng = new Rng(seed)
  const seen = new Set<string>()
  const validationSize = sizes.validation ?? 0
  const totalWanted = want.sft + want.preference + want.unlabelled + want.eval
  // Families take turns. One with few distinct instructions (the open ones,
  // add) gives each split at most its share of them, so that every split
  // covers every family; one that runs out anyway drops out of the turns.
  const exhausted = new Set<string>()
  let turn = 0
  const draw = (n: number): Task[] => {
    const out: Task[] = []
    const taken = new Map<string, number>()
    const full = (f: (typeof FAMILIES)[number]) => f.space !== undefined && (taken.get(f.name) ?? 0) >= Math.max(1, Math.floor((0.9 * f.space * n) / totalWanted))
    while (out.length < n) {
      const live = FAMILIES.filter((f) => !exhausted.has(f.name) && !full(f))
      if (live.length === 0) throw new Error(`makeSplits: the families cannot make ${n} more distinct instructions`)
      const family = live[turn++ % live.length]
      let task: Task | undefined
      for (let tries = 0; tries < 50 && !task; tries++) {
        const candidate = family.make(rng)
        if (!seen.has(candidate.instruction)) task = candidate
      }
      if (!task) {
        exhausted.add(family.name)
        continue
      }
      seen.add(task.instruction)
      taken.set(family.name, (taken.get(family.name) ?? 0) + 1)
      out.push(task)
    }
    return out
  }
  const evalTasks = draw(want.eval)
  const sftTasks = draw(want.sft)
  const prefTasks = draw(want.preference)
  const unlabelled = draw(want.unlabelled)
  const validationTasks = validationSize > 0 ? draw(validationSize) : []
  const demo = new Rng(seed + 1)
  return {
    sft: sftTasks.map((t) => ({ prompt: t.instruction, family: t.family, response: demonstrate(t, demo, demonstrator) })),
    preference: prefTasks.map((t) => ({ prompt: t.instruction, family: t.family })),
    unlabelled: unlabelled.map((t) => ({ prompt: t.instruction, family: t.family })),
    eval: evalTasks.map((t) => ({ prompt: t.instruction, family: t.family, reference: demonstrate(t, demo, demonstrator) })),
    validation: validationTasks.map((t) => ({ prompt: t.instruction, family: t.family, reference: demonstrate(t, demo, demonstrator) })),
  }
}

// ---- win-rate ----

export interface WinRate {
  winRate: number
  /** Standard error of the mean of per-item outcomes (1 win, 1/2 tie, 0 loss). */
  stderr: number
  n: number
  wins: number
  ties: number
}

/** (wins + ties / 2) / N with its standard error. */
export function winRateOf(outcomes: readonly number[]): WinRate {
  const n = outcomes.length
  if (n === 0) throw new Error('winRate: no outcomes')
  for (const o of outcomes) if (o !== 0 && o !== 0.5 && o !== 1) throw new Error(`winRate: an outcome must be 0, 0.5 or 1; got ${o}`)
  const m = mean(outcomes)
  const variance = n > 1 ? outcomes.reduce((a, o) => a + (o - m) ** 2, 0) / (n - 1) : 0
  return { winRate: m, stderr: Math.sqrt(variance / n), n, wins: outcomes.filter((o) => o === 1).length, ties: outcomes.filter((o) => o === 0.5).length }
}

export interface Judged {
  prompt: string
  response: string
  reference: string
}

/** Which of two responses gold prefers: 0 for `a`, 1 for `b`, 0.5 when their scores tie. */
export function goldPreference(instruction: string, a: string, b: string): 0 | 0.5 | 1 {
  const sa = goldScore(instruction, a)
  const sb = goldScore(instruction, b)
  return sa > sb + 1e-9 ? 0 : sb > sa + 1e-9 ? 1 : 0.5
}

/** Whether `a` is shown first when a pair is judged (seeded, stable): no side gains from position bias. */
export function aShownFirst(instruction: string, a: string, b: string, seed: number): boolean {
  return hash32(`${instruction}\u0002${a}\u0002${b}`, seed + 11) % 2 === 0
}

/** Which of two responses the pool prefers, shown in a seeded random order: 0 for `a`, 1 for `b`, 0.5 if identical. */
export function poolPreference(pool: AnnotatorPool, instruction: string, a: string, b: string): 0 | 0.5 | 1 {
  if (a === b) return 0.5
  return aShownFirst(instruction, a, b, pool.seed) ? pool.prefer(instruction, a, b) : ((1 - pool.prefer(instruction, b, a)) as 0 | 1)
}

/** Win-rate of responses against references by the gold evaluator (equal gold scores tie). */
export function goldWinRate(items: readonly Judged[]): WinRate {
  return winRateOf(items.map((it) => 1 - goldPreference(it.prompt, it.response, it.reference)))
}

/** Win-rate by the simulated pool. */
export function poolWinRate(items: readonly Judged[], pool: AnnotatorPool): WinRate {
  return winRateOf(items.map((it) => 1 - poolPreference(pool, it.prompt, it.response, it.reference)))
}

// ---- files for the trainers ----

export interface FarmFiles {
  sft: string
  preference: string
  unlabelled: string
  eval: string
  /** Only when the splits have a validation split. */
  validation?: string
}

/**
 * Writes the splits as JSONL files the trainers read (sft.jsonl rows
 * {prompt, response, family}; preference.jsonl and unlabelled.jsonl rows
 * {prompt, family}; eval.jsonl and, when there is one, validation.jsonl
 * rows {prompt, family, reference}), each
 * written to a temporary file and renamed into place.
 */
export function writeSplits(dir: string, splits: FarmSplits): FarmFiles {
  fs.mkdirSync(dir, { recursive: true })
  const write = (name: string, rows: readonly object[]) => {
    const file = path.join(dir, `${name}.jsonl`)
    writeFileAtomic(file, rows.map((r) => `${JSON.stringify(r)}\n`).join(''))
    return file
  }
  return {
    sft: write('sft', splits.sft),
    preference: write('preference', splits.preference),
    unlabelled: write('unlabelled', splits.unlabelled),
    eval: write('eval', splits.eval),
    ...(splits.validation?.length ? { validation: write('validation', splits.validation) } : {}),
  }
}

/** Throws unless every prompt is a farm instruction: `who` ("the gold judge compares") says who needs them. */
export function requireFarmPrompts(prompts: readonly string[], who: string): void {
  const i = prompts.findIndex((p) => parseTask(p) === undefined)
  if (i >= 0) throw new Error(`${who} responses to farm instructions only; prompt ${i + 1} is ${JSON.stringify(prompts[i].slice(0, 80))} (use judge.kind llm, http or critic for other prompts)`)
}
