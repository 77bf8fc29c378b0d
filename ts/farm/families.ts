// The farm's instruction families: short byte-level tasks a tiny policy can
// learn. Each family makes instructions from a seeded RNG and can read its own
// instructions back (so the gold evaluator needs nothing but the text), knows
// a right answer, scores any answer in [0, 1] with partial credit, and makes
// the plausible mistakes the noisy demonstrator writes.
import type { Rng } from '../run/rng.js'
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

function closed(name: string, pattern: RegExp, build: (m: RegExpExecArray) => Omit<Task, 'family' | 'instruction'>, make: (rng: Rng) => string): Family {
  const family: Family = {
    name,
    kind: 'closed',
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

const startsWith: Family = {
  name: 'starts_with',
  kind: 'open',
  make(rng) {
    return this.parse(`name ${1 + rng.int(3)} words with ${pick(rng, STARTS)}`)!
  },
  parse(instruction) {
    const m = /^name ([123]) words? with ([a-z])$/.exec(instruction)
    if (!m) return undefined
    const n = Number(m[1])
    const pool = wordsStarting(m[2])
    return {
      family: 'starts_with',
      instruction,
      answer: pool.slice(0, n).join(' '),
      correctness(a) {
        const given = a.split(' ').filter(Boolean)
        const good = new Set(given.filter((w) => pool.includes(w)))
        return given.length === 0 ? 0 : Math.min(good.size, n) / Math.max(n, given.length)
      },
      mistake: (rng) => (rng.next() < 0.5 ? Array.from({ length: n }, () => pick(rng, WORDS)).join(' ') : pool.slice(0, Math.max(n - 1, 1)).join(' ') + (n === 1 ? 's' : '')),
    }
  },
}

const RHYMES = ['at', 'an', 'ing', 'ed', 'ow', 'ay', 'ee', 'ot'].filter((e) => WORDS.filter((w) => w.endsWith(e)).length >= 3)

const endsWith: Family = {
  name: 'ends_with',
  kind: 'open',
  make(rng) {
    return this.parse(`a word ending in ${pick(rng, RHYMES)}`)!
  },
  parse(instruction) {
    const m = /^a word ending in ([a-z]+)$/.exec(instruction)
    if (!m) return undefined
    const pool = WORDS.filter((w) => w.endsWith(m[1]))
    return {
      family: 'ends_with',
      instruction,
      answer: pool[0] ?? m[1],
      correctness: (a) => (pool.includes(a) ? 1 : a.endsWith(m[1]) && /^[a-z]+$/.test(a) ? 0.3 : 0),
      mistake: (rng) => (rng.next() < 0.5 ? pick(rng, WORDS) : `${letters(rng, 2)}${m[1]}`),
    }
  },
}

export const FAMILIES: readonly Family[] = [add, reverse, sort, upper, count, max, repeat, startsWith, endsWith]

/** The task of any farm instruction, or undefined when no family made it. */
export function parseTask(instruction: string): Task | undefined {
  for (const f of FAMILIES) {
    const task = f.parse(instruction.trim())
    if (task) return task
  }
  return undefined
}
