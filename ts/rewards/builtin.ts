// The built-in rewards, usable by name (reward_function: { name: format }):
// verifiable rewards (exact_match, math, format, code_tests,
// overlong_penalty), the toys of tests and examples (count_token, length) and
// the farm's gold evaluator. Each is made from its config (args checked
// once, up front) into a RewardFn like any user's.
import type { RewardFunction } from '../config/types.generated.js'
import { goldScore } from '../farm/farm.js'
import { codeTestsReward } from './code-tests.js'
import { mathReward } from './math.js'
import { Args, REFERENCE_KEYS, referenceOf } from './args.js'
import type { RewardFn } from './types.js'

/** What a built-in may need from the run besides its own config. */
export interface BuiltinContext {
  /** generation.max_new_tokens: overlong_penalty's default max_length. */
  maxNewTokens: number
}

interface Builtin {
  /** One line for error messages and docs. */
  help: string
  make(spec: RewardFunction, what: string, run: BuiltinContext): RewardFn
}

/** exact_match's normal form: Unicode NFKC, lower case, whitespace collapsed, trailing punctuation dropped. */
export function normalizeAnswer(text: string): string {
  return text.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ').trim().replace(/[.!?;,\s]+$/, '')
}

// The R1-style layout: reasoning in <think>, then the answer in <answer>, and nothing else.
export const THINK_ANSWER = '^\\s*<think>[\\s\\S]*?</think>\\s*<answer>[\\s\\S]*?</answer>\\s*$'

const BUILTINS: Record<string, Builtin> = {
  exact_match: {
    help: '1 when the completion equals the row\'s answer after normalising (case, spaces, trailing punctuation), else 0; null for rows without one',
    make(spec, what) {
      const a = new Args(spec.args ?? {}, what, ['keys'])
      const keys = a.strings('keys', REFERENCE_KEYS)
      return ({ completions, rows }) =>
        completions.map((c, i) => {
          const ref = referenceOf(rows[i] ?? {}, keys)
          return ref === undefined ? null : Number(normalizeAnswer(c) === normalizeAnswer(ref))
        })
    },
  },
  math: {
    help: "1 when the completion's final answer (last \\boxed{}, '#### n', or last number) equals the reference's by value, else 0",
    make: (spec, what) => mathReward(new Args(spec.args ?? {}, what, ['keys', 'tolerance']), what),
  },
  format: {
    help: 'args.pattern (a regex; default <think>…</think><answer>…</answer>): 1 when the whole completion matches, else 0',
    make(spec, what) {
      const a = new Args(spec.args ?? {}, what, ['pattern', 'flags'])
      const pattern = a.string('pattern', THINK_ANSWER)
      let re: RegExp
      try {
        re = new RegExp(pattern, a.string('flags', ''))
      } catch (err) {
        throw new Error(`${what}: args.pattern is not a valid regular expression: ${(err as Error).message}`)
      }
      return ({ completions }) =>
        completions.map((c) => {
          re.lastIndex = 0
          return Number(re.test(c))
        })
    },
  },
  code_tests: {
    help: "share of the row's tests that the completion's JavaScript passes, run in a child node process without file, network or process access",
    make: (spec, what) => codeTestsReward(new Args(spec.args ?? {}, what, ['tests_key', 'timeout_ms', 'memory_mb', 'concurrency']), what),
  },
  overlong_penalty: {
    help: "DAPO's soft overlong penalty: 0 up to max_length - cache tokens, then falling linearly to -1 at max_length, -1 beyond",
    make(spec, what, run) {
      const a = new Args(spec.args ?? {}, what, ['max_length', 'cache'])
      const max = a.number('max_length', run.maxNewTokens, { min: 1, integer: true })
      const cache = a.number('cache', undefined, { min: 1, integer: true })
      if (cache > max) throw new Error(`${what}: args.cache (${cache}) must be at most args.max_length (${max})`)
      return ({ completionIds }) => completionIds.map((ids) => overlongPenalty(ids.length, max, cache))
    },
  },
  count_token: {
    help: 'occurrences of `token` in the completion',
    make(spec, what) {
      new Args(spec.args ?? {}, what, [])
      if (spec.token === undefined) throw new Error(`${what}: token is required for count_token`)
      const token = spec.token
      return ({ completionIds }) => completionIds.map((ids) => ids.reduce((n, id) => n + (id === token ? 1 : 0), 0))
    },
  },
  length: {
    help: 'completion tokens',
    make(spec, what) {
      new Args(spec.args ?? {}, what, [])
      return ({ completionIds }) => completionIds.map((ids) => ids.length)
    },
  },
  farm_gold: {
    help: "the farm's gold evaluator, in [0, 1] (prompts must be farm instructions)",
    make(spec, what) {
      new Args(spec.args ?? {}, what, [])
      return ({ prompts, completions }) => completions.map((c, i) => goldScore(prompts[i], c))
    },
  },
}

/** DAPO (Yu et al. 2025, eq. 13): R(y) = 0 if |y| <= L_max - L_cache; ((L_max - L_cache) - |y|) / L_cache up to L_max; -1 beyond. */
export function overlongPenalty(length: number, maxLength: number, cache: number): number {
  if (length <= maxLength - cache) return 0
  if (length <= maxLength) return (maxLength - cache - length) / cache
  return -1
}

export const BUILTIN_NAMES: readonly string[] = Object.keys(BUILTINS)

export function builtinHelp(name: string): string | undefined {
  return BUILTINS[name]?.help
}

/** The built-in `spec.name`, made from its config; undefined when there is none by that name. */
export function makeBuiltin(spec: RewardFunction, what: string, run: BuiltinContext): RewardFn | undefined {
  const b = spec.name !== undefined ? BUILTINS[spec.name] : undefined
  return b?.make(spec, what, run)
}
