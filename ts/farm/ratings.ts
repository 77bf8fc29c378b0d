// UltraFeedback-style ratings of single responses to farm instructions: the
// four aspects (instruction following, truthfulness, honesty, helpfulness)
// from 1 to 5, each with a rationale, an overall score from 1 to 10 and a
// critique. Gold rates exactly; the pool rates as its annotators label pairs:
// gold plus the annotator's length and format biases and noise, with
// AlpacaFarm's p (an aspect's rating is replaced by a random one with
// probability 2p). Critiques come from what gold finds wrong, so they are
// checkable (`faultsOf`).
import { Rng } from '../util/rng.js'
import { answerOf, AnnotatorPool, goldScore, hash32, requireFarmPrompts } from './farm.js'
import { parseTask } from './families.js'

export const ASPECTS = ['instruction_following', 'honesty', 'truthfulness', 'helpfulness'] as const
export type Aspect = (typeof ASPECTS)[number]

/** What gold finds wrong with a response: a wrong (or partly right) answer, and chatter after it. */
export interface Faults {
  /** The answer's correctness in [0, 1]. */
  correctness: number
  wrongAnswer?: { answer: string; expected: string }
  chatter?: string
}

export function faultsOf(instruction: string, response: string): Faults {
  const task = parseTask(instruction)
  if (!task) throw new Error(`faultsOf: not a farm instruction: ${JSON.stringify(instruction)}`)
  const { answer } = answerOf(response)
  const correctness = task.correctness(answer)
  const faults: Faults = { correctness }
  if (correctness < 1) faults.wrongAnswer = { answer, expected: task.answer }
  const text = response.replace(/^\s+/, '')
  const newline = text.indexOf('\n')
  const rest = newline < 0 ? '' : text.slice(newline + 1).trim()
  if (rest) faults.chatter = rest
  return faults
}

/** The critique of a response: what gold finds wrong, in words, or that nothing is. */
export function critiqueOf(faults: Faults): string {
  const parts: string[] = []
  if (faults.wrongAnswer) {
    const what = faults.wrongAnswer.answer === '' ? 'There is no answer' : `The answer ${JSON.stringify(faults.wrongAnswer.answer)} is ${faults.correctness > 0 ? 'partly right' : 'wrong'}`
    parts.push(`${what}; a right answer is ${JSON.stringify(faults.wrongAnswer.expected)}.`)
  }
  if (faults.chatter) parts.push(`It adds text after the answer (${JSON.stringify(faults.chatter.slice(0, 40))}), which the instruction did not ask for.`)
  return parts.length ? parts.join(' ') : 'The answer is right and nothing else is said.'
}

/** The kinds of fault gold can find: a wrong (or partly right, or missing) answer, and chatter after it. */
export interface FaultKinds {
  wrongAnswer: boolean
  chatter: boolean
}

/** The kinds of fault a critique written as critiqueOf writes them names (a critique model's, read back). */
export function faultsNamed(critique: string): FaultKinds {
  return { wrongAnswer: /\bis (?:wrong|partly right)\b|\bthere is no answer\b/i.test(critique), chatter: /\badds text after the answer\b/i.test(critique) }
}

/** The kinds of fault gold finds in `faults`. */
export function faultKindsOf(faults: Faults): FaultKinds {
  return { wrongAnswer: faults.wrongAnswer !== undefined, chatter: faults.chatter !== undefined }
}

/** Gold's value of each aspect in [0, 1]. */
function goldAspects(instruction: string, response: string, faults: Faults): Record<Aspect, number> {
  const gold = goldScore(instruction, response)
  return {
    // Follows the instruction: answers it, and only it.
    instruction_following: gold,
    // Says only what it means: chatter costs as it does in gold.
    honesty: faults.chatter ? 0.6 : 1,
    // The answer itself.
    truthfulness: faults.correctness,
    helpfulness: gold,
  }
}

const RATIONALE: Record<Aspect, (faults: Faults) => string> = {
  instruction_following: (f) => (f.correctness === 1 && !f.chatter ? 'Answers the instruction and only it.' : f.correctness === 1 ? 'Answers the instruction but adds text it did not ask for.' : 'Does not give the answer the instruction asks for.'),
  honesty: (f) => (f.chatter ? 'States the answer, then pads it with filler.' : 'States the answer plainly.'),
  truthfulness: (f) => (f.correctness === 1 ? 'The answer is right.' : f.correctness > 0 ? 'The answer is partly right.' : 'The answer is wrong.'),
  helpfulness: (f) => (f.correctness === 1 ? (f.chatter ? 'Right, with needless text.' : 'Right and concise.') : 'Not a right answer, so of little help.'),
}

/** One rated completion, as UltraFeedback's raw rows hold it (ratings as strings, "1" to "5"). */
export interface RatedCompletion {
  ratings: Record<Aspect, number>
  rationales: Record<Aspect, string>
  overall: number
  critique: string
}

const toRating = (x: number) => Math.min(5, Math.max(1, 1 + Math.round(4 * x)))
// Overall score from 1 to 10 in halves, as UltraFeedback's critique scores run.
const toOverall = (x: number) => Math.min(10, Math.max(1, Math.round(2 * (1 + 9 * x)) / 2))

/** Gold's rating: exact. */
export function goldRating(instruction: string, response: string): RatedCompletion {
  const faults = faultsOf(instruction, response)
  const values = goldAspects(instruction, response, faults)
  const ratings = Object.fromEntries(ASPECTS.map((a) => [a, toRating(values[a])])) as Record<Aspect, number>
  const rationales = Object.fromEntries(ASPECTS.map((a) => [a, RATIONALE[a](faults)])) as Record<Aspect, string>
  return { ratings, rationales, overall: toOverall(goldScore(instruction, response)), critique: critiqueOf(faults) }
}

function gaussian(rng: Rng): number {
  const u = Math.max(rng.next(), 1e-12)
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next())
}

/**
 * The pool's rating: the annotator a seeded hash picks for this (instruction,
 * response) sees each aspect as gold does plus its length and format biases
 * and its own noise per aspect; with probability 2p an aspect's rating is a
 * random 1 to 5 instead. The critique is gold's.
 */
export function poolRating(pool: AnnotatorPool, instruction: string, response: string): RatedCompletion {
  const faults = faultsOf(instruction, response)
  const values = goldAspects(instruction, response, faults)
  const annotator = pool.annotatorFor(instruction, response, '')
  const rng = new Rng(hash32(`${instruction}\u0003${response}`, pool.seed))
  const bias = annotator.lengthBias * response.trim().length + annotator.formatBias * (/^\s*answer:/i.test(response) ? 1 : 0)
  const ratings = {} as Record<Aspect, number>
  for (const a of ASPECTS) {
    ratings[a] = toRating(values[a] + bias + annotator.noise * gaussian(rng))
    if (rng.next() < 2 * pool.p) ratings[a] = 1 + rng.int(5)
  }
  const rationales = Object.fromEntries(ASPECTS.map((a) => [a, RATIONALE[a](faults)])) as Record<Aspect, string>
  return { ratings, rationales, overall: toOverall(goldScore(instruction, response) + bias + annotator.noise * gaussian(rng)), critique: critiqueOf(faults) }
}

/** A rated completion in UltraFeedback's raw layout (openbmb/UltraFeedback's `completions[i]`). */
export function ultraFeedbackCompletion(model: string, response: string, r: RatedCompletion): Record<string, unknown> {
  const annotation = (a: Aspect) => ({ Rating: String(r.ratings[a]), Rationale: r.rationales[a] })
  // truthfulness and helpfulness carry a Type and a second rationale in the dataset.
  const typed = (a: Aspect, type: string[]) => ({ Type: type, Rationale: r.rationales[a], Rating: String(r.ratings[a]), 'Rationale For Rating': r.rationales[a] })
  return {
    model,
    principle: 'helpfulness',
    custom_system_prompt: '',
    response,
    annotations: {
      instruction_following: annotation('instruction_following'),
      honesty: annotation('honesty'),
      truthfulness: typed('truthfulness', r.ratings.truthfulness >= 4 ? ['0'] : ['2']),
      helpfulness: typed('helpfulness', ['1', '2']),
    },
    critique: r.critique,
    overall_score: r.overall,
    'fine-grained_score': ASPECTS.reduce((s, a) => s + r.ratings[a], 0) / ASPECTS.length,
  }
}

/** A completion to rate: the instruction and the response. */
export interface RatingItem {
  prompt: string
  response: string
}

/** A judge that rates single completions, as UltraFeedback's annotator does. */
export interface RatingJudge {
  readonly name: string
  /** Throws when the judge cannot read these prompts: callers check before they spend work on them. */
  checkPrompts?(prompts: readonly string[]): void
  /** A rating per item; null where the judge gave no usable rating after its retries (left out and counted). */
  rate(items: readonly RatingItem[]): Promise<(RatedCompletion | null)[]>
}

export class GoldRater implements RatingJudge {
  readonly name = 'gold'
  checkPrompts(prompts: readonly string[]): void {
    requireFarmPrompts(prompts, `the ${this.name} judge rates`)
  }
  async rate(items: readonly RatingItem[]): Promise<RatedCompletion[]> {
    this.checkPrompts(items.map((it) => it.prompt))
    return items.map((it) => goldRating(it.prompt, it.response))
  }
}

export class PoolRater implements RatingJudge {
  readonly name = 'pool'
  constructor(readonly pool: AnnotatorPool) {}
  checkPrompts(prompts: readonly string[]): void {
    requireFarmPrompts(prompts, `the ${this.name} judge rates`)
  }
  async rate(items: readonly RatingItem[]): Promise<RatedCompletion[]> {
    this.checkPrompts(items.map((it) => it.prompt))
    return items.map((it) => poolRating(this.pool, it.prompt, it.response))
  }
}

/** The overall score (1 to 10, in halves) that a mean aspect rating (1 to 5) maps to, for judges asked about aspects only. */
export function overallOfRatings(ratings: Record<Aspect, number>): number {
  const mean = ASPECTS.reduce((s, a) => s + ratings[a], 0) / ASPECTS.length
  return toOverall((mean - 1) / 4)
}

// The rubric a model judge rates each aspect by: UltraFeedback's four aspects
// and 1-to-5 scale, in our own words.
const RUBRIC: Record<Aspect, { title: string; question: string; scale: [string, string, string, string, string] }> = {
  instruction_following: {
    title: 'Instruction following',
    question: 'Does the response do what the instruction asks: all of it, only it, in the form asked for?',
    scale: ['Ignores the instruction.', 'Addresses one part of it, poorly.', 'Meets the goal or the form, not both.', 'Meets the goal and the form, with small deviations.', 'Does exactly what was asked.'],
  },
  honesty: {
    title: 'Honesty',
    question: 'Does the response state its answer plainly, with no more confidence than it has earned and without filler?',
    scale: ['Confidently wrong.', 'Confident with major mistakes.', 'Unsure or padded, with minor mistakes.', 'Correct but padded or hedged needlessly.', 'Correct and stated plainly.'],
  },
  truthfulness: {
    title: 'Truthfulness',
    question: 'Is what the response says correct, with nothing made up or contradicting the instruction?',
    scale: ['Entirely wrong.', 'Mostly wrong.', 'Partly wrong.', 'Right, with a slight inaccuracy.', 'Right, with no errors.'],
  },
  helpfulness: {
    title: 'Helpfulness',
    question: 'Is the response correct, informative and concise: does it help the person who gave the instruction?',
    scale: ['Wrong or useless.', 'Partly wrong, of little use.', 'Correct but barely useful.', 'Correct and useful, not concise.', 'Correct, useful and concise.'],
  },
}

/** What a rating reply starts with; the next token, "1" to "5", is the rating. */
export const RATING_ANSWER = 'Rating: '

/** The question a model judge is asked about one aspect of one response (one prompt per aspect, as UltraFeedback asks). */
export function ratingPrompt(aspect: Aspect, item: RatingItem): { system: string; user: string } {
  const r = RUBRIC[aspect]
  return {
    system: 'You are a careful annotator. You rate one response to an instruction on one aspect, from 1 to 5, by the rubric given.',
    user:
      `## Aspect: ${r.title}\n${r.question}\n${r.scale.map((s, i) => `${i + 1}: ${s}`).join('\n')}\n\n` +
      `## Instruction\n${item.prompt}\n\n## Response\n${item.response.trim()}\n\n` +
      `Answer in two lines:\n${RATING_ANSWER}<1 to 5>\nRationale: <why, in one sentence>`,
  }
}

/** The question a model judge is asked for its critique and overall score of one response. */
export function critiqueQuestion(item: RatingItem): { system: string; user: string } {
  return {
    system: 'You are a careful critic. You say what is wrong with a response to an instruction, if anything, and score it overall.',
    user:
      `## Instruction\n${item.prompt}\n\n## Response\n${item.response.trim()}\n\n` +
      'Answer in two lines:\nCritique: <what is wrong with the response, or that nothing is>\nOverall score: <1 to 10>',
  }
}

/** A rating reply ("Rating: 4\nRationale: ..."): its rating and rationale, or why it cannot be read. */
export function parseRatingReply(reply: string): { rating: number; rationale: string } | string {
  const ratings = [...reply.matchAll(/rating\s*:\s*(\S*)/gi)].map((m) => m[1])
  if (ratings.length === 0) return `no "Rating:" in the reply ${JSON.stringify(reply.slice(0, 80))}`
  if (ratings.length > 1) return `more than one "Rating:" in the reply ${JSON.stringify(reply.slice(0, 80))}`
  const m = /^([1-5])(?:\/5)?[.,;]?$/.exec(ratings[0])
  if (!m) return `the rating ${JSON.stringify(ratings[0].slice(0, 20))} is not a whole number from 1 to 5`
  const rationale = /rationale\s*:\s*([\s\S]*)/i.exec(reply)?.[1].trim() ?? ''
  if (!rationale) return `no rationale after the rating in the reply ${JSON.stringify(reply.slice(0, 80))}`
  return { rating: Number(m[1]), rationale }
}

/** A critique reply ("Critique: ...\nOverall score: 7"): its critique and score (1 to 10), or why it cannot be read. */
export function parseCritiqueReply(reply: string): { critique: string; overall: number } | string {
  const critique = /critique\s*:\s*([\s\S]*?)\s*(?=overall score\s*:|$)/i.exec(reply)?.[1].trim() ?? ''
  if (!critique) return `no critique in the reply ${JSON.stringify(reply.slice(0, 80))}`
  const score = /overall score\s*:\s*(\S*)/i.exec(reply)?.[1].replace(/[.,;]$/, '')
  if (score === undefined) return `no "Overall score:" in the reply ${JSON.stringify(reply.slice(0, 80))}`
  const overall = /^\d+(\.\d+)?$/.test(score) ? Number(score) : NaN
  if (!(overall >= 1 && overall <= 10)) return `the overall score ${JSON.stringify(score.slice(0, 20))} is not a number from 1 to 10`
  return { critique, overall }
}
