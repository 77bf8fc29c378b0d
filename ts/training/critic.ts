// A critique model (UltraCM) as judge: a model trained on
// data.format ultrafeedback_critique rows writes, after critiquePrompt, a
// critique and "Overall score: N". Its score rates a completion, and the
// higher score of two wins a comparison. The first answer is greedy; one
// without a readable score is sampled again (temperature 1, seeded) up to
// `retries` times, then the completion is left out (null) and counted.
import type { Model } from '../model/model.js'
import { SequenceEncoder } from '../data/encode.js'
import { critiquePrompt, parseCritiqueScore } from '../data/formats.js'
import type { Pair, PairJudge, Preference } from '../farm/judges.js'
import { ASPECTS, type Aspect, type RatedCompletion, type RatingItem, type RatingJudge } from '../farm/ratings.js'
import type { Tokenizer } from '../tokenizers/index.js'
import { sampleResponses } from './rollout.js'

export interface CriticOptions {
  /** Renders the question with the tokenizer's chat template (as the critic was trained). */
  chatTemplate: boolean
  /** Resamples of an answer without a readable score. Default 2. */
  retries?: number
  seed?: number
  /** Longest critique written. Default 192 tokens (the farm's critiques run to about 170 bytes). */
  maxNewTokens?: number
  batchSize?: number
}

/** A critic's reading of one completion: its critique (the text before the score) and its overall score (1 to 10). */
export interface Critique {
  critique: string
  overall: number
}

/** The critique in a critic's answer: the text before "Overall score:". */
function critiqueText(answer: string): string {
  const at = answer.search(/overall score\s*:/i)
  return (at < 0 ? answer : answer.slice(0, at)).trim()
}

export class CriticJudge implements PairJudge, RatingJudge {
  readonly name = 'critic'
  /** Completions left out because no answer had a readable score, with the first answers. */
  readonly skipped = { count: 0, reasons: [] as string[] }
  readonly #encoder: SequenceEncoder

  constructor(
    readonly model: Model,
    readonly tokenizer: Tokenizer,
    readonly options: CriticOptions,
  ) {
    const positions = model.config.maxPositions
    this.#encoder = new SequenceEncoder({ tokenizer, maxLength: positions, maxPromptLength: positions, chatTemplate: options.chatTemplate })
  }

  /** The critic's critique and score of each item; null where no answer had a readable score. */
  async critique(items: readonly RatingItem[]): Promise<(Critique | null)[]> {
    const positions = this.model.config.maxPositions
    const questions = items.map((it, i) => {
      const ids = this.#encoder.prompt(critiquePrompt(it.prompt, it.response))
      // A cut question would be critiqued as another response: refuse it.
      if (ids.length + 8 > positions) throw new Error(`critic judge: item ${i + 1}'s question is ${ids.length} tokens; the critique model has ${positions} positions, too few to answer it`)
      return ids
    })
    const out: (Critique | null)[] = new Array(items.length).fill(null)
    const answers: string[] = new Array(items.length).fill('')
    let open = items.map((_, i) => i)
    const retries = this.options.retries ?? 2
    const batch = this.options.batchSize ?? 32
    for (let attempt = 0; attempt <= retries && open.length > 0; attempt++) {
      const generation = { max_new_tokens: this.options.maxNewTokens ?? 192, temperature: attempt === 0 ? 0 : 1, top_k: 0, top_p: 1, stop_at_eos: true }
      for (let s = 0; s < open.length; s += batch) {
        const chunk = open.slice(s, s + batch)
        const rollout = await sampleResponses(this.model, this.#encoder, chunk.map((i) => questions[i]), generation, (this.options.seed ?? 0) * 65_537 + attempt * 7_919 + s, undefined, { onCap: () => {} })
        chunk.forEach((i, k) => {
          answers[i] = rollout.texts[k]
          const overall = parseCritiqueScore(answers[i])
          if (overall !== undefined) out[i] = { critique: critiqueText(answers[i]), overall }
        })
      }
      open = open.filter((i) => out[i] === null)
    }
    for (const i of open) {
      this.skipped.count++
      if (this.skipped.reasons.length < 10) this.skipped.reasons.push(`no "Overall score: N" (1 to 10) in ${JSON.stringify(answers[i].slice(0, 80))}`)
    }
    return out
  }

  /**
   * The critic's score as a rating: a critique model scores overall only, so
   * each aspect carries the overall score mapped onto 1 to 5.
   */
  async rate(items: readonly RatingItem[]): Promise<(RatedCompletion | null)[]> {
    return (await this.critique(items)).map((c) => {
      if (!c) return null
      const rating = Math.min(5, Math.max(1, Math.round(1 + (4 * (c.overall - 1)) / 9)))
      const ratings = Object.fromEntries(ASPECTS.map((a) => [a, rating])) as Record<Aspect, number>
      const rationales = Object.fromEntries(ASPECTS.map((a) => [a, `The critique model's overall score ${c.overall} of 10, on this aspect's scale.`])) as Record<Aspect, string>
      return { ratings, rationales, overall: c.overall, critique: c.critique }
    })
  }

  /** The response with the higher score wins; equal scores tie; null where either has no score. */
  async compare(pairs: readonly Pair[]): Promise<(Preference | null)[]> {
    const scores = await this.critique(pairs.flatMap((p) => [{ prompt: p.prompt, response: p.a }, { prompt: p.prompt, response: p.b }]))
    return pairs.map((_, i) => {
      const [a, b] = [scores[2 * i], scores[2 * i + 1]]
      if (!a || !b) return null
      return a.overall > b.overall ? 0 : b.overall > a.overall ? 1 : 0.5
    })
  }
}
