// The public preference datasets' row shapes, turned into rlfarm's
// {prompt, chosen, rejected} rows (prompts as a user message, so the
// tokenizer's chat template applies):
//   ultrafeedback            openbmb/UltraFeedback: {instruction, completions:
//                            [{response, overall_score, annotations: {aspect:
//                            {Rating}}}]}, binarised as Zephyr did (chosen: the
//                            highest overall_score; rejected: a random other,
//                            seed 42) or by the mean fine-grained rating
//   ultrafeedback_binarized  HuggingFaceH4/ultrafeedback_binarized: {prompt,
//                            chosen: [messages], rejected: [messages]}
//   hh_rlhf                  Anthropic/hh-rlhf: {chosen, rejected} transcripts
//                            "\n\nHuman: ...\n\nAssistant: ..."
//   alpacafarm               tatsu-lab/alpaca_farm: {instruction, input,
//                            output_1, output_2, preference (1 or 2)}
// A row that does not fit its format throws, and the reader names its file
// and line (or Parquet row).
import type { ChatMessage } from '../tokenizers/chat-template.js'
import type { RowRules } from './examples.js'
import { Rng } from '../util/rng.js'
import { splitLastAssistant } from './examples.js'
import { readTable, type BadRowPolicy, type ReadLimits, type ReadResult } from './jsonl.js'
import { mean } from '../util/stats.js'
import { booleanOption, checkKeys, choiceOption, describe } from '../util/options.js'

export const DATA_FORMATS = ['auto', 'ultrafeedback', 'ultrafeedback_binarized', 'hh_rlhf', 'alpacafarm', 'ultrafeedback_critique'] as const
export type DataFormat = (typeof DATA_FORMATS)[number]
export type Binarize = 'overall' | 'mean_rating'

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)

function str(row: Record<string, unknown>, key: string): string {
  const v = row[key]
  if (typeof v !== 'string') throw new Error(`'${key}' must be a string; got ${JSON.stringify(v)?.slice(0, 60)}`)
  return v
}

/** A row adapter for one read of a file: holds the Zephyr RNG (seed 42), consumed in row order. */
export class RowAdapter {
  readonly #rng = new Rng(42)
  constructor(
    readonly format: DataFormat,
    readonly binarize: Binarize = 'overall',
  ) {}

  adapt(value: unknown): unknown {
    if (this.format === 'auto') return value
    if (!isObject(value)) throw new Error(`expected a JSON object (${this.format} row); got ${JSON.stringify(value)?.slice(0, 60)}`)
    switch (this.format) {
      case 'ultrafeedback':
        return this.#ultrafeedback(value)
      case 'ultrafeedback_binarized':
        // Already rlfarm's shape (chosen/rejected message lists sharing the prompt turn).
        if (!Array.isArray(value.chosen) || !Array.isArray(value.rejected)) throw new Error("ultrafeedback_binarized rows need 'chosen' and 'rejected' message lists")
        return withPrompt({ chosen: value.chosen as ChatMessage[], rejected: value.rejected as ChatMessage[] })
      case 'hh_rlhf':
        return hhRlhf(value)
      case 'alpacafarm':
        return alpacaFarm(value)
      case 'ultrafeedback_critique':
        return critiqueRows(value)
    }
  }

  #ultrafeedback(row: Record<string, unknown>): { prompt: ChatMessage[]; chosen: string; rejected: string } {
    const instruction = str(row, 'instruction')
    const completions = row.completions
    if (!Array.isArray(completions) || completions.length < 2) throw new Error("'completions' must be a list of at least two completions")
    const scored = completions.map((c, i) => {
      if (!isObject(c) || typeof c.response !== 'string') throw new Error(`completions[${i}] needs a 'response' string`)
      return { response: c.response, score: this.binarize === 'overall' ? overallScore(c, i) : meanRating(c, i) }
    })
    let best = 0
    for (let i = 1; i < scored.length; i++) if (scored[i].score > scored[best].score) best = i
    const others = scored.filter((_, i) => i !== best)
    const rejected = others[this.#rng.int(others.length)]
    if (rejected.score === scored[best].score) throw new Error(`the chosen and the rejected completion score alike (${rejected.score}): no preference`)
    return { prompt: [{ role: 'user', content: instruction }], chosen: scored[best].response, rejected: rejected.response }
  }
}

/** The question a critique model (UltraCM) is trained to answer: the instruction and a response in; its critique and score out. */
export function critiquePrompt(instruction: string, response: string): string {
  return `Critique the response to the instruction, then score it from 1 to 10.\n\nInstruction: ${instruction}\n\nResponse: ${response.trim()}\n\nCritique:`
}

/** What a critique model writes after critiquePrompt: the critique, then "Overall score: N". */
export function critiqueAnswer(critique: string, score: number): string {
  return ` ${critique.trim()}\nOverall score: ${score}`
}

/** The score in a critique model's answer ("Overall score: 7.5"), or undefined when there is none. */
export function parseCritiqueScore(text: string): number | undefined {
  const m = /overall score:\s*(\d+(?:\.\d+)?)/i.exec(text)
  if (!m) return undefined
  const score = Number(m[1])
  return score >= 1 && score <= 10 ? score : undefined
}

/** An UltraFeedback raw row as SFT rows, one per rated completion: its critique and overall score are the response. */
function critiqueRows(row: Record<string, unknown>): { prompt: string; response: string }[] {
  const instruction = str(row, 'instruction')
  const completions = row.completions
  if (!Array.isArray(completions) || completions.length === 0) throw new Error("'completions' must be a non-empty list of rated completions")
  return completions.map((c, i) => {
    if (!isObject(c) || typeof c.response !== 'string') throw new Error(`completions[${i}] needs a 'response' string`)
    if (typeof c.critique !== 'string' || c.critique.trim() === '') throw new Error(`completions[${i}].critique must be a non-empty string`)
    return { prompt: critiquePrompt(instruction, c.response), response: critiqueAnswer(c.critique, overallScore(c, i)) }
  })
}

function overallScore(c: Record<string, unknown>, i: number): number {
  const s = c.overall_score
  if (typeof s !== 'number' || !Number.isFinite(s)) throw new Error(`completions[${i}].overall_score must be a number; got ${JSON.stringify(s)}`)
  return s
}

/** Mean of the fine-grained aspect ratings (helpfulness, honesty, ...); "N/A" ratings are left out. */
function meanRating(c: Record<string, unknown>, i: number): number {
  const annotations = c.annotations
  if (!isObject(annotations)) throw new Error(`completions[${i}].annotations must be an object of aspect ratings`)
  const ratings: number[] = []
  for (const [aspect, a] of Object.entries(annotations)) {
    const rating = isObject(a) ? a.Rating : undefined
    if (rating === 'N/A') continue
    const r = Number(rating)
    if (!Number.isFinite(r)) throw new Error(`completions[${i}].annotations.${aspect}.Rating must be a number or "N/A"; got ${JSON.stringify(rating)}`)
    ratings.push(r)
  }
  if (ratings.length === 0) throw new Error(`completions[${i}] has no numeric aspect rating`)
  return mean(ratings)
}

/** An HH-RLHF transcript as messages: "\n\nHuman: ..." and "\n\nAssistant: ..." turns. */
export function parseTranscript(text: string, key: string): ChatMessage[] {
  const parts = text.split(/\n\n(Human|Assistant): /)
  if (parts[0].trim() !== '') throw new Error(`'${key}' must start with "\\n\\nHuman: "; got ${JSON.stringify(text.slice(0, 40))}`)
  const messages: ChatMessage[] = []
  for (let i = 1; i < parts.length; i += 2) messages.push({ role: parts[i] === 'Human' ? 'user' : 'assistant', content: parts[i + 1] })
  if (messages.length < 2) throw new Error(`'${key}' needs a Human turn and an Assistant reply`)
  return messages
}

function hhRlhf(row: Record<string, unknown>): { prompt: ChatMessage[]; chosen: ChatMessage[]; rejected: ChatMessage[] } {
  const chosen = parseTranscript(str(row, 'chosen'), 'chosen')
  const rejected = parseTranscript(str(row, 'rejected'), 'rejected')
  return withPrompt({ chosen, rejected })
}

/** A pair of chats with the turns before chosen's reply as `prompt`, so the file serves as prompts too (PPO on HH-RLHF). */
function withPrompt(pair: { chosen: ChatMessage[]; rejected: ChatMessage[] }): { prompt: ChatMessage[]; chosen: ChatMessage[]; rejected: ChatMessage[] } {
  return { prompt: splitLastAssistant(pair.chosen, 'chosen').history, ...pair }
}

function alpacaFarm(row: Record<string, unknown>): { prompt: ChatMessage[]; chosen: string; rejected: string } {
  const instruction = str(row, 'instruction')
  const input = row.input
  if (input !== undefined && input !== null && typeof input !== 'string') throw new Error("'input' must be a string")
  const preference = Number(row.preference)
  if (preference !== 1 && preference !== 2) throw new Error(`'preference' must be 1 or 2; got ${JSON.stringify(row.preference)}`)
  const [a, b] = [str(row, 'output_1'), str(row, 'output_2')]
  const content = input ? `${instruction}\n\n${input}` : instruction
  return { prompt: [{ role: 'user', content }], chosen: preference === 1 ? a : b, rejected: preference === 1 ? b : a }
}

export interface ReadDatasetOptions extends ReadLimits {
  format?: DataFormat
  binarize?: Binarize
  /** Stop at a malformed row (default), or skip it and count it. */
  onBadRow?: BadRowPolicy
}

/**
 * Reads a JSONL or Parquet file in a dataset's format into rows that `parse`
 * accepts (parsePreferenceRow, parsePromptRow, parseSftRow).
 */
export async function readDataset<T>(file: string, parse: (value: unknown, rules: RowRules) => T, options: ReadDatasetOptions = {}): Promise<ReadResult<T>> {
  const where = 'readDataset'
  if (typeof file !== 'string' || file === '') throw new TypeError(`${where}: file must be a path; got ${describe(file)}`)
  if (typeof parse !== 'function') throw new TypeError(`${where}: parse must be a function (parseSftRow, parsePromptRow, parsePreferenceRow); got ${describe(parse)}`)
  checkKeys(where, options, ['format', 'binarize', 'onBadRow', 'maxRowBytes', 'allowSpecialFiles', 'parquetTimeoutMs', 'checkText'])
  choiceOption(where, 'format', options.format, DATA_FORMATS, 'auto')
  choiceOption(where, 'binarize', options.binarize, ['overall', 'mean_rating'] as const, 'overall')
  choiceOption(where, 'onBadRow', options.onBadRow, ['stop', 'skip'] as const, 'stop')
  for (const flag of ['allowSpecialFiles', 'checkText'] as const) booleanOption(where, flag, options[flag], false)
  const adapter = new RowAdapter(options.format ?? 'auto', options.binarize ?? 'overall')
  const rules: RowRules = { checkText: options.checkText ?? true }
  const limits = { maxRowBytes: options.maxRowBytes, allowSpecialFiles: options.allowSpecialFiles, parquetTimeoutMs: options.parquetTimeoutMs, checkText: rules.checkText }
  if (options.format !== 'ultrafeedback_critique') return readTable(file, (value) => parse(adapter.adapt(value), rules), options.onBadRow ?? 'stop', limits)
  // One file row gives a row per completion; a bad one fails (or skips) its whole file row.
  const read = await readTable(file, (value) => (adapter.adapt(value) as unknown[]).map((r) => parse(r, rules)), options.onBadRow ?? 'stop', limits)
  return { ...read, rows: read.rows.flat() }
}
