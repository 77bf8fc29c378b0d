// Judges of response pairs: which of two responses to a prompt is better.
//   pool   the farm's simulated annotators (biased, noisy: AlpacaFarm's p)
//   gold   the farm's gold evaluator (what the pool approximates)
//   llm    a local model asked AlpacaEval-style which output is better; the
//          answer is read from its log-probs of "a" and "b" after "Output (",
//          not sampled
//   http   an OpenAI-compatible chat endpoint asked the same question
// Every judge sees the two responses in a seeded random order, so a judge's
// position bias favours neither side of a comparison.
import type { Model } from '../model/model.js'
import type { Tokenizer } from '../tokenizers/index.js'
import { Tensor } from '../tensor.js'
import { ASPECTS, critiqueQuestion, overallOfRatings, parseCritiqueReply, parseRatingReply, RATING_ANSWER, ratingPrompt, type Aspect, type RatedCompletion, type RatingItem, type RatingJudge } from './ratings.js'
import { AnnotatorPool, aShownFirst, goldPreference, poolPreference, requireFarmPrompts, winRateOf, type WinRate } from './farm.js'

export interface Pair {
  prompt: string
  a: string
  b: string
}

/** 0: a is better, 1: b is better, 0.5: neither. */
export type Preference = 0 | 0.5 | 1

export interface PairJudge {
  readonly name: string
  /** Throws when the judge cannot read these prompts: callers check before they spend work on them. */
  checkPrompts?(prompts: readonly string[]): void
  /** A verdict per pair; null where the judge gave no usable answer (the pair is left out and counted). */
  compare(pairs: readonly Pair[]): Promise<(Preference | null)[]>
}

/** Runs a judge of (first, second) on each pair in its seeded order and maps the answer back. */
async function inShownOrder<V extends Preference | null>(pairs: readonly Pair[], seed: number, judge: (shown: Pair[]) => Promise<V[]>): Promise<V[]> {
  const firsts = pairs.map((p) => aShownFirst(p.prompt, p.a, p.b, seed))
  const shown = pairs.map((p, i) => (firsts[i] ? p : { prompt: p.prompt, a: p.b, b: p.a }))
  const answers = await judge(shown)
  return answers.map((x, i) => (firsts[i] || x === 0.5 || x === null ? x : ((1 - x) as V)))
}

export class GoldJudge implements PairJudge {
  readonly name = 'gold'
  checkPrompts(prompts: readonly string[]): void {
    requireFarmPrompts(prompts, `the ${this.name} judge compares`)
  }
  async compare(pairs: readonly Pair[]): Promise<Preference[]> {
    this.checkPrompts(pairs.map((p) => p.prompt))
    return pairs.map((p) => goldPreference(p.prompt, p.a, p.b))
  }
}

export class PoolJudge implements PairJudge {
  readonly name = 'pool'
  constructor(readonly pool: AnnotatorPool) {}
  checkPrompts(prompts: readonly string[]): void {
    requireFarmPrompts(prompts, `the ${this.name} judge compares`)
  }
  async compare(pairs: readonly Pair[]): Promise<Preference[]> {
    this.checkPrompts(pairs.map((p) => p.prompt))
    return pairs.map((p) => poolPreference(this.pool, p.prompt, p.a, p.b))
  }
}

/** The AlpacaEval-style question put to an LLM judge; the answer is "a" or "b". */
export function judgePrompt(pair: Pair): { system: string; user: string } {
  return {
    system: 'You are a careful judge of instruction following. You pick the output that follows the instruction better: correct, complete and without needless text.',
    user:
      'Which output follows the instruction better?\n\n' +
      `## Instruction\n${pair.prompt}\n\n## Output (a)\n${pair.a.trim()}\n\n## Output (b)\n${pair.b.trim()}\n\n` +
      'Answer with the letter of the better output only: a or b.',
  }
}

/** What the LLM judge's answer starts with; the next token, "a" or "b", is the verdict. */
export const LLM_JUDGE_ANSWER = 'The better output is Output ('

/** A chat question to a local judge model, encoded with its chat template (or as plain text), then `answer` (the start of the judge's reply). */
function encodeQuestion(tokenizer: Tokenizer, q: { system: string; user: string }, answer: string, chatTemplate: boolean): number[] {
  const text = chatTemplate
    ? tokenizer.applyChatTemplate(
        [
          { role: 'system', content: q.system },
          { role: 'user', content: q.user },
        ],
        { addGenerationPrompt: true, tokenize: false },
      )
    : `${q.system}\n\n${q.user}\n\n`
  return tokenizer.encode(`${text}${answer}`, { addSpecialTokens: !chatTemplate })
}

/** The token id of each of `words`, which must each be one distinct token for `judge`'s tokenizer. */
function singleTokens(tokenizer: Tokenizer, words: readonly string[], judge: string): number[] {
  const ids = words.map((w) => tokenizer.encode(w, { addSpecialTokens: false }))
  if (ids.some((x) => x.length !== 1) || new Set(ids.map((x) => x[0])).size !== ids.length) {
    throw new Error(`${judge}: the judge's tokenizer must encode ${words.map((w) => `'${w}'`).join(', ')} as one distinct token each`)
  }
  return ids.map((x) => x[0])
}

/**
 * The log-prob of each candidate token after each question: one row per
 * (question, candidate), left-padded so every candidate sits in the last
 * column, in batches of `batch` questions. Returns [question][candidate].
 */
async function nextTokenLogprobs(model: Model, questions: number[][], candidates: readonly number[], batch: number, judge: string): Promise<number[][]> {
  const out: number[][] = []
  for (let i = 0; i < questions.length; i += batch) {
    const chunk = questions.slice(i, i + batch)
    const rows = chunk.flatMap((ids) => candidates.map((c) => [...ids, c]))
    const width = Math.max(...rows.map((r) => r.length))
    if (width > model.config.maxPositions) {
      throw new Error(`${judge}: a question is ${width} tokens, longer than the judge model's ${model.config.maxPositions} positions`)
    }
    const tokens = new Int32Array(rows.length * width)
    const mask = new Uint8Array(rows.length * width)
    rows.forEach((r, k) => {
      tokens.set(r, k * width + width - r.length)
      mask.fill(1, k * width + width - r.length, (k + 1) * width)
    })
    const logp = await model.logprobs(Tensor.from(tokens, [rows.length, width]), { attentionMask: Tensor.from(mask, [rows.length, width]) })
    const lp = logp.data as Float32Array
    const last = width - 2
    for (let k = 0; k < chunk.length; k++) out.push(candidates.map((_, c) => lp[(k * candidates.length + c) * (width - 1) + last]))
  }
  return out
}

/** A local model as judge: the better of "a" and "b" by the model's log-probs after the question. */
export class LlmJudge implements PairJudge {
  readonly name = 'llm'
  constructor(
    readonly model: Model,
    readonly tokenizer: Tokenizer,
    readonly options: { seed?: number; batchSize?: number; chatTemplate?: boolean } = {},
  ) {}

  async compare(pairs: readonly Pair[]): Promise<Preference[]> {
    const letters = singleTokens(this.tokenizer, ['a', 'b'], 'LlmJudge')
    const chatTemplate = this.options.chatTemplate ?? true
    return inShownOrder(pairs, this.options.seed ?? 0, async (shown) => {
      const questions = shown.map((p) => encodeQuestion(this.tokenizer, judgePrompt(p), LLM_JUDGE_ANSWER, chatTemplate))
      const lps = await nextTokenLogprobs(this.model, questions, letters, this.options.batchSize ?? 8, 'LlmJudge')
      return lps.map(([la, lb]) => (la > lb ? 0 : lb > la ? 1 : 0.5))
    })
  }
}

/**
 * A local model as rater: one question per aspect (ratingPrompt), the rating
 * the digit "1" to "5" the model finds likeliest after "Rating: " (read from
 * its log-probs, not sampled, so there is no malformed answer); the overall
 * score is the mean rating's (overallOfRatings), and the critique lists the
 * ratings: the model writes none.
 */
export class LlmRater implements RatingJudge {
  readonly name = 'llm'
  constructor(
    readonly model: Model,
    readonly tokenizer: Tokenizer,
    readonly options: { batchSize?: number; chatTemplate?: boolean } = {},
  ) {}

  async rate(items: readonly RatingItem[]): Promise<RatedCompletion[]> {
    const digits = singleTokens(this.tokenizer, ['1', '2', '3', '4', '5'], 'LlmRater')
    const chatTemplate = this.options.chatTemplate ?? true
    const questions = items.flatMap((it) => ASPECTS.map((a) => encodeQuestion(this.tokenizer, ratingPrompt(a, it), RATING_ANSWER, chatTemplate)))
    const lps = await nextTokenLogprobs(this.model, questions, digits, this.options.batchSize ?? 8, 'LlmRater')
    return items.map((_, i) => {
      const ratings = {} as Record<Aspect, number>
      const rationales = {} as Record<Aspect, string>
      ASPECTS.forEach((a, k) => {
        const lp = lps[i * ASPECTS.length + k]
        const top = Math.max(...lp)
        const z = lp.reduce((sum, x) => sum + Math.exp(x - top), 0)
        ratings[a] = lp.indexOf(top) + 1
        rationales[a] = `The judge model's probabilities of the ratings 1 to 5: ${lp.map((x) => (Math.exp(x - top) / z).toFixed(2)).join(', ')}.`
      })
      const critique = `The judge model rates ${ASPECTS.map((a) => `${a.replace('_', ' ')} ${ratings[a]}`).join(', ')} out of 5.`
      return { ratings, rationales, overall: overallOfRatings(ratings), critique }
    })
  }
}

export interface HttpJudgeOptions {
  /** Base URL of an OpenAI-compatible API, e.g. http://localhost:8000/v1. */
  url: string
  /** The `model` sent with each request. */
  model: string
  apiKey?: string
  seed?: number
  concurrency?: number
  /** Per request, headers and body together. Default 60000. */
  timeoutMs?: number
  /** Retries of a failed request (network errors, timeouts, 429, 5xx, an unreadable reply). Default 2. */
  retries?: number
  /** A reply longer than this is cut off and counts as unreadable. Default 1 MiB. */
  maxReplyBytes?: number
  /** The longest wait a `Retry-After` header may ask for; longer asks wait this long. Default 60000. */
  maxRetryAfterMs?: number
}

/** Reads "a" or "b" from a judge's reply ("a", "Output (b)", "b." ...). */
export function parseVerdict(reply: string): Preference | undefined {
  const m = /^\W*(?:output\s*)?\(?\s*([ab])\b/i.exec(reply.trim())
  if (m) return m[1].toLowerCase() === 'a' ? 0 : 1
  const inner = /output\s*\(([ab])\)/i.exec(reply)
  if (inner) return inner[1].toLowerCase() === 'a' ? 0 : 1
  return undefined
}

/** The wait a Retry-After header asks for (delay-seconds or an HTTP date), in ms; undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null) return undefined
  const text = header.trim()
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000
  const date = Date.parse(text)
  return Number.isFinite(date) ? Math.max(0, date - now) : undefined
}

/** A failed try: `retry` says whether another try may help; `garbage` marks a reply that came but could not be read. */
class TryFailure extends Error {
  constructor(
    message: string,
    readonly garbage: boolean,
    readonly waitMs?: number,
  ) {
    super(message)
  }
}

/** The body of `response` as text, refusing more than `limit` bytes (the read stops there). */
async function readCapped(response: Response, limit: number): Promise<string> {
  const declared = Number(response.headers.get('content-length'))
  if (Number.isFinite(declared) && declared > limit) {
    await response.body?.cancel().catch(() => {})
    throw new TryFailure(`the reply is ${declared} bytes, over the ${limit}-byte limit (maxReplyBytes)`, true)
  }
  if (!response.body) return ''
  const reader = response.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > limit) {
      await reader.cancel().catch(() => {})
      throw new TryFailure(`the reply is over the ${limit}-byte limit (maxReplyBytes)`, true)
    }
    chunks.push(value)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/**
 * One OpenAI-compatible chat endpoint (POST {url}/chat/completions,
 * temperature 0), shared by the HTTP judges. Each request is bounded in time
 * (timeoutMs, body included) and size (maxReplyBytes). Network errors,
 * timeouts, 429 and 5xx are retried (after the Retry-After the server asks
 * for, up to maxRetryAfterMs, else with a growing backoff); once the retries
 * are spent they fail the call. A reply that comes but cannot be read (not
 * JSON, no content, not what `read` accepts, too long) is retried too, and
 * then the question is left out (null) and counted (`skipped`), so one bad
 * reply does not stop a run. Any other 4xx fails at once: it will not change
 * on a retry.
 */
export class HttpChat {
  /** Questions left out because every try gave an unreadable reply, with the first reasons. */
  readonly skipped = { count: 0, reasons: [] as string[] }
  constructor(readonly options: HttpJudgeOptions) {
    if (!/^https?:\/\//.test(options.url)) throw new Error(`judge.url must be an http(s) URL; got ${JSON.stringify(options.url)}`)
    if (!options.model) throw new Error('judge.model_name is required for the http judge')
  }

  get endpoint(): string {
    return `${this.options.url.replace(/\/+$/, '')}/chat/completions`
  }

  /** One request: what `read` makes of the reply, or a TryFailure. */
  async #try<T>(body: string, headers: Record<string, string>, read: (reply: string) => T | string): Promise<T> {
    const endpoint = this.endpoint
    const timeoutMs = this.options.timeoutMs ?? 60_000
    const timeout = AbortSignal.timeout(timeoutMs)
    let text: string
    let response: Response
    try {
      response = await fetch(endpoint, { method: 'POST', headers, body, signal: timeout })
      text = await readCapped(response, this.options.maxReplyBytes ?? 1 << 20)
    } catch (e) {
      if (e instanceof TryFailure) throw e
      const err = e as Error
      const why = timeout.aborted ? `no complete reply within ${timeoutMs} ms (timeoutMs)` : `${err.message}${err.cause instanceof Error ? ` (${err.cause.message})` : ''}`
      throw new TryFailure(why, false)
    }
    if (response.status === 429 || response.status >= 500) {
      const asked = retryAfterMs(response.headers.get('retry-after'))
      throw new TryFailure(`HTTP ${response.status}: ${text.slice(0, 200)}`, false, asked === undefined ? undefined : Math.min(asked, this.options.maxRetryAfterMs ?? 60_000))
    }
    if (!response.ok) throw new Error(`http judge: ${endpoint} answered HTTP ${response.status}: ${text.slice(0, 200)}`)
    let reply: unknown
    try {
      reply = (JSON.parse(text) as { choices?: { message?: { content?: unknown } }[] } | null)?.choices?.[0]?.message?.content
    } catch {
      throw new TryFailure(`not JSON: ${JSON.stringify(text.slice(0, 200))}`, true)
    }
    if (typeof reply !== 'string') throw new TryFailure(`no choices[0].message.content string: ${JSON.stringify(text.slice(0, 200))}`, true)
    const value = read(reply)
    // `read` says why it cannot read a reply in words; a string is never a value here.
    if (typeof value === 'string') throw new TryFailure(value, true)
    return value
  }

  /**
   * Asks `question` and reads the reply with `read` (a value, or why the
   * reply is unreadable): the value, or null when every try's reply was
   * unreadable.
   */
  async ask<T>(question: { system: string; user: string }, maxTokens: number, read: (reply: string) => T | string): Promise<T | null> {
    const body = JSON.stringify({
      model: this.options.model,
      temperature: 0,
      max_tokens: maxTokens,
      messages: [
        { role: 'system', content: question.system },
        { role: 'user', content: question.user },
      ],
    })
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (this.options.apiKey) headers.authorization = `Bearer ${this.options.apiKey}`
    const retries = this.options.retries ?? 2
    let last: TryFailure | undefined
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, last?.waitMs ?? 200 * 2 ** attempt))
      try {
        return await this.#try(body, headers, read)
      } catch (e) {
        if (!(e instanceof TryFailure)) throw e
        last = e
      }
    }
    if (last!.garbage) {
      this.skipped.count++
      if (this.skipped.reasons.length < 10) this.skipped.reasons.push(last!.message)
      return null
    }
    throw new Error(`http judge: ${this.endpoint} failed after ${retries + 1} tries: ${last!.message}`)
  }

  /** Runs `work` on each of `items` with `concurrency` requests in flight at once, results in order. */
  async each<I, T>(items: readonly I[], work: (item: I) => Promise<T>): Promise<T[]> {
    const out: T[] = new Array(items.length)
    let next = 0
    const worker = async () => {
      while (next < items.length) {
        const i = next++
        out[i] = await work(items[i])
      }
    }
    await Promise.all(Array.from({ length: Math.min(this.options.concurrency ?? 4, items.length) }, worker))
    return out
  }
}

/** What the HTTP judges share: one endpoint, and what it left out. */
abstract class OverHttp {
  readonly chat: HttpChat
  constructor(readonly options: HttpJudgeOptions) {
    this.chat = new HttpChat(options)
  }

  /** Questions left out because every try gave an unreadable reply, with the first reasons. */
  get skipped(): { count: number; reasons: string[] } {
    return this.chat.skipped
  }
}

/**
 * An OpenAI-compatible chat endpoint as judge, asked judgePrompt's question
 * (see HttpChat for the timeouts, retries and the unreadable replies that are
 * left out and counted).
 */
export class HttpJudge extends OverHttp implements PairJudge {
  readonly name = 'http'

  async compare(pairs: readonly Pair[]): Promise<(Preference | null)[]> {
    const read = (reply: string) => parseVerdict(reply) ?? `cannot read "a" or "b" from the reply ${JSON.stringify(reply.slice(0, 80))}`
    return inShownOrder(pairs, this.options.seed ?? 0, (shown) => this.chat.each(shown, (p) => this.chat.ask(judgePrompt(p), 8, read)))
  }
}

/**
 * An OpenAI-compatible chat endpoint as rater: a question per aspect
 * (ratingPrompt, "Rating: N" and a rationale back) and one for the critique
 * and overall score (critiqueQuestion). A reply that cannot be read is
 * retried (HttpChat), then that completion is left out (null) and counted in
 * `skipped`; nothing unreadable becomes a rating.
 */
export class HttpRater extends OverHttp implements RatingJudge {
  readonly name = 'http'

  async rate(items: readonly RatingItem[]): Promise<(RatedCompletion | null)[]> {
    const asks = items.flatMap((it, i) => [...ASPECTS.map((a) => ({ i, aspect: a as Aspect | undefined, it })), { i, aspect: undefined, it }])
    type Reply = { rating: number; rationale: string } | { critique: string; overall: number } | null
    const replies = await this.chat.each(asks, ({ aspect, it }): Promise<Reply> =>
      aspect ? this.chat.ask(ratingPrompt(aspect, it), 200, parseRatingReply) : this.chat.ask(critiqueQuestion(it), 300, parseCritiqueReply),
    )
    const per = ASPECTS.length + 1
    return items.map((_, i) => {
      const mine = replies.slice(i * per, (i + 1) * per)
      if (mine.some((r) => r === null)) return null
      const ratings = {} as Record<Aspect, number>
      const rationales = {} as Record<Aspect, string>
      ASPECTS.forEach((a, k) => {
        const r = mine[k] as { rating: number; rationale: string }
        ratings[a] = r.rating
        rationales[a] = r.rationale
      })
      const c = mine[ASPECTS.length] as { critique: string; overall: number }
      return { ratings, rationales, overall: c.overall, critique: c.critique }
    })
  }
}

/** What a judge left out and why, for the judges that count it (HTTP, critic). */
function skippedOf(judge: PairJudge): { count: number; reasons: string[] } | undefined {
  const skipped = (judge as { skipped?: { count: number; reasons: string[] } }).skipped
  return skipped && skipped.count > 0 ? skipped : undefined
}

/**
 * Win-rate of responses against references by a judge: (wins + ties/2)/N over
 * the pairs it decided; `skipped` counts those it gave no usable answer for.
 */
export async function judgeWinRate(judge: PairJudge, items: readonly { prompt: string; response: string; reference: string }[]): Promise<WinRate & { skipped: number }> {
  const prefs = await judge.compare(items.map((it) => ({ prompt: it.prompt, a: it.response, b: it.reference })))
  const decided = prefs.filter((p): p is Preference => p !== null)
  if (decided.length === 0) throw new Error(`the ${judge.name} judge gave no usable answer for any of the ${items.length} pairs${skippedOf(judge) ? ` (first: ${skippedOf(judge)!.reasons[0]})` : ''}`)
  return { ...winRateOf(decided.map((p) => 1 - p)), skipped: prefs.length - decided.length }
}
