// Small deterministic datasets for the trainer tests: the byte tokenizer reads
// them, so no model or tokenizer has to be downloaded.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const LETTERS = 'bcdefghijklmnopqrstuvwxy' // no 'a' or 'z': those mark good and bad answers

/** A word of 2-4 letters from a seeded stream (index i, salt s). */
export function word(i: number, s = 0): string {
  let x = (i * 2654435761 + s * 40503 + 12345) >>> 0
  const next = () => {
    x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0
    return x
  }
  const n = 2 + (next() % 3)
  return Array.from({ length: n }, () => LETTERS[next() % LETTERS.length]).join('')
}

export function writeJsonl(file: string, rows: readonly object[]): string {
  fs.writeFileSync(file, rows.map((r) => `${JSON.stringify(r)}\n`).join(''))
  return file
}

export interface ToyData {
  dir: string
  /** {prompt, response}: the response repeats the prompt's word twice. */
  sft: string
  /** {prompt, chosen, rejected}: chosen is wrapped in 'a', rejected in 'z'. */
  preferences: string
  /** {prompt} */
  prompts: string
}

export function toyData(rows = 96): ToyData {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rlfarm-toy-'))
  const words = Array.from({ length: rows }, (_, i) => word(i))
  return {
    dir,
    sft: writeJsonl(path.join(dir, 'sft.jsonl'), words.map((w) => ({ prompt: `${w}:`, response: ` ${w}${w}` }))),
    preferences: writeJsonl(
      path.join(dir, 'preferences.jsonl'),
      words.map((w, i) => ({ prompt: `${w}:`, chosen: ` a${word(i, 1)}a`, rejected: ` z${word(i, 2)}z` })),
    ),
    prompts: writeJsonl(path.join(dir, 'prompts.jsonl'), words.map((w) => ({ prompt: `${w}:` }))),
  }
}

/** A tiny GPT-2 made from random weights with the byte tokenizer. */
export const TINY_POLICY = { tokenizer: 'byte', init: { hidden_size: 32, layers: 1, heads: 2, max_positions: 48 } }

/** Reads metrics.jsonl records of a run. */
export function readMetrics(runDir: string): Record<string, number>[] {
  return fs
    .readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>)
}

export function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1)
}
