// The farm's instruction families: short byte-level tasks a tiny policy can
// learn. Each family makes instructions from a seeded RNG and can read its own
// instructions back (so the gold evaluator needs nothing but the text), knows
// a right answer, scores any answer in [0, 1] with partial credit, and makes
// the plausible mistakes the noisy demonstrator writes.
import type { Rng } from '../util/rng.js'
import { WORDS } from './words.js'

export interface Task {
  family: string
  instruction: string
  /** A right answer (closed families: the right answer). */
  answer: string
  /** Correctness of an answer (already trimmed, junk removed) in [0, 1]. */
  correctness(answer: string): number
  /** A plausible wrong answer. */
  mistake(rng: Rng): string
}

export interface Family {
  name: string
  /** Closed: one right answer; open: several. */
  kind: 'closed' | 'open'
  /** How many distinct instructions it can make, when that is few enough to matter for the splits. */
  space?: number
  make(rng: Rng): Task
  /** The task of an instruction this family made, or undefined. */
  parse(instruction: string): Task | undefined
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyz'
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[rng.int(xs.length)]
const letters = (rng: Rng, n: number) => Array.from({ length: n }, () => pick(rng, [...LETTERS])).join('')

/** Share of positions where two strings agree, over the longer length. */
export function positionalMatch(a: string, b: string): number {
  const n = Math.max(a.length, b.length)
  if (n === 0) return 1
  let same = 0
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] === b[i]) same++
  return same / n
}

function numberCredit(answer: string, right: number): number {
  const m = /^-?\d+$/.exec(answer)
  if (!m) return 0
  const d = Math.abs(Number(answer) - right)
  return d === 0 ? 1 : d === 1 ? 0.5 : d <= 3 ? 0.25 : 0
}

function closed(
  name: string,
  pattern: RegExp,
  build: (m: RegExpExecArray) => Omit<Task, 'family' | 'instruction'>,
  make: (rng: Rng) => string,
  space?: number,
): Family {
  const family: Family = {
    name,
    kind: 'closed',
    ...(space !== undefined ? { space } : {}),
    make: (rng) => family.parse(make(rng))!,
    parse(instruction) {
      const m = pattern.exec(instruction)
      return m ? { family: name, instruction, ...build(m) } : undefined
    },
  }
  return family
}

const add = closed(
  'add',
  /^add (\d+) and (\d+)$/,
  (m) => {
    const right = Number(m[1]) + Number(m[2])
    return { answer: String(right), correctness: (a) => numberCredit(a, right), mistake: (rng) => String(right + pick(rng, [-10, -1, 1, 2, 10])) }
  },
  (rng) => `add ${rng.int(50)} and ${rng.int(50)}`,
  50 * 50,
)

const reverse = closed(
  'reverse',
  /^reverse ([a-z]+)$/,
  (m) => {
    const right = [...m[1]].reverse().join('')
    return { answer: right, correctness: (a) => positionalMatch(a, right) ** 2, mistake: (rng) => (rng.next() < 0.5 ? m[1] : right.slice(1) + pick(rng, [...LETTERS])) }
  },
  (rng) => `reverse ${letters(rng, 3 + rng.int(3))}`,
)

const sort = closed(
  'sort',
  /^sort ([a-z])([a-z])([a-z])([a-z]?)$/,
  (m) => {
    const items = m.slice(1, 5).filter(Boolean)
    const right = [...items].sort().join('')
    return {
      answer: right,
      correctness: (a) => (a.length === right.length && [...a].sort().join('') === right ? positionalMatch(a, right) : 0),
      mistake: (rng) => (rng.next() < 0.5 ? items.join('') : [...right].reverse().join('')),
    }
  },
  (rng) => `sort ${letters(rng, 3 + rng.int(2))}`,
)

const upper = closed(
  'upper',
  /^upper ([a-z]+)$/,
  (m) => {
    const right = m[1].toUpperCase()
    return { answer: right, correctness: (a) => positionalMatch(a, right) ** 2, mistake: (rng) => (rng.next() < 0.5 ? m[1] : right.slice(0, -1) + m[1].slice(-1)) }
  },
  (rng) => `upper ${letters(rng, 3 + rng.int(3))}`,
)

const count = closed(
  'count',
  /^count ([a-z]) in ([a-z]+)$/,
  (m) => {
    const right = [...m[2]].filter((c) => c === m[1]).length
    return { answer: String(right), correctness: (a) => numberCredit(a, right), mistake: (rng) => String(Math.max(0, right + pick(rng, [-1, 1, 2]))) }
  },
  (rng) => {
    const word = letters(rng, 4 + rng.int(3))
    return `count ${rng.next() < 0.7 ? word[rng.int(word.length)] : pick(rng, [...LETTERS])} in ${word}`
  },
)

const max = closed(
  'max',
  /^max (\d+) (\d+) (\d+)$/,
  (m) => {
    const xs = m.slice(1, 4).map(Number)
    const right = Math.max(...xs)
    return { answer: String(right), correctness: (a) => (Number(a) === right && /^\d+$/.test(a) ? 1 : xs.includes(Number(a)) && /^\d+$/.test(a) ? 0.2 : 0), mistake: (rng) => String(pick(rng, xs.filter((x) => x !== right).concat(Math.min(...xs)))) }
  },
  (rng) => `max ${rng.int(100)} ${rng.int(100)} ${rng.int(100)}`,
)

const repeat = closed(
  'repeat',
  /^repeat ([a-z]+) (2|3)$/,
  (m) => {
    const right = Array(Number(m[2])).fill(m[1]).join(' ')
    return { answer: right, correctness: (a) => positionalMatch(a, right) ** 2, mistake: (rng) => (rng.next() < 0.5 ? m[1] : Array(Number(m[2]) === 2 ? 3 : 2).fill(m[1]).join(' ')) }
  },
  (rng) => `repeat ${letters(rng, 2 + rng.int(3))} ${2 + rng.int(2)}`,
)

// Open-ended: several right answers, from the shipped word list.
function wordsStarting(letter: string): string[] {
  return WORDS.filter((w) => w.startsWith(letter))
}
const STARTS = [...LETTERS].filter((l) => wordsStarting(l).length >= 4)

/** Credit for a list of words: distinct good ones, up to n, over max(n, words given). */
function wordListCredit(answer: string, n: number, good: (w: string) => boolean): number {
  const given = answer.split(' ').filter(Boolean)
  const right = new Set(given.filter(good))
  return given.length === 0 ? 0 : Math.min(right.size, n) / Math.max(n, given.length)
}

// "name 2 words with b, not bat": words from the list that start with the
// letter, the excluded one aside (about 600 distinct instructions).
const startsWith: Family = {
  name: 'starts_with',
  kind: 'open',
  space: 3 * STARTS.reduce((a, l) => a + wordsStarting(l).length, 0),
  make(rng) {
    const letter = pick(rng, STARTS)
    return this.parse(`name ${1 + rng.int(3)} words with ${letter}, not ${pick(rng, wordsStarting(letter))}`)!
  },
  parse(instruction) {
    const m = /^name ([123]) words? with ([a-z]), not ([a-z]+)$/.exec(instruction)
    if (!m) return undefined
    const n = Number(m[1])
    const excluded = m[3]
    const pool = wordsStarting(m[2]).filter((w) => w !== excluded)
    const good = (w: string) => pool.includes(w)
    return {
      family: 'starts_with',
      instruction,
      answer: pool.slice(0, n).join(' '),
      correctness: (a) => wordListCredit(a, n, good),
      mistake: (rng) => {
        const r = rng.next()
        if (r < 0.4) return Array.from({ length: n }, () => pick(rng, WORDS)).join(' ')
        if (r < 0.7) return [excluded, ...pool.slice(0, n - 1)].join(' ')
        return pool.slice(0, Math.max(n - 1, 1)).join(' ') + (n === 1 ? 's' : '')
      },
    }
  },
}

// "a rhyme for cat", "2 rhymes for cat": other words from the list with the
// same last two letters.
const rime = (w: string) => w.slice(-2)
const rhymesOf = (word: string) => WORDS.filter((w) => w !== word && rime(w) === rime(word))
const RHYMING = WORDS.filter((w) => rhymesOf(w).length >= 1)

const rhyme: Family = {
  name: 'rhyme',
  kind: 'open',
  space: RHYMING.length + RHYMING.filter((w) => rhymesOf(w).length >= 2).length,
  make(rng) {
    const word = pick(rng, RHYMING)
    return this.parse(rhymesOf(word).length >= 2 && rng.next() < 0.5 ? `2 rhymes for ${word}` : `a rhyme for ${word}`)!
  },
  parse(instruction) {
    const m = /^(a|2) rhymes? for ([a-z]+)$/.exec(instruction)
    if (!m) return undefined
    const n = m[1] === '2' ? 2 : 1
    const word = m[2]
    const pool = rhymesOf(word)
    return {
      family: 'rhyme',
      instruction,
      answer: pool.slice(0, n).join(' ') || word,
      // Words that merely end like it (not in the list) earn a little.
      correctness: (a) => wordListCredit(a, n, (w) => pool.includes(w)) || 0.3 * wordListCredit(a, n, (w) => w !== word && w.endsWith(rime(word))),
      mistake: (rng) => {
        const r = rng.next()
        if (r < 0.4) return [word, ...pool.slice(0, n - 1)].join(' ')
        if (r < 0.7) return Array.from({ length: n }, () => pick(rng, WORDS)).join(' ')
        return Array.from({ length: n }, () => `${letters(rng, 2)}${rime(word)}`).join(' ')
      },
    }
  },
}

export const FAMILIES: readonly Family[] = [add, reverse, sort, upper, count, max, repeat, startsWith, rhyme]

/** The task of any farm instruction, or undefined when no family made it. */
export function parseTask(instruction: string): Task | undefined {
  if (typeof instruction !== 'string') throw new TypeError(`parseTask: instruction must be a string; got ${instruction === null ? 'null' : Array.isArray(instruction) ? 'an array' : typeof instruction}`)
  for (const f of FAMILIES) {
    const task = f.parse(instruction.trim())
    if (task) return task
  }
  return undefined
}
