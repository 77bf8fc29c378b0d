// Reading JSON files with errors that name the file, the line and the column.
import { readRegularFileSync } from './fs.js'

/** Line and column (both from 1) of a character offset in `text`. */
export function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1
  let lineStart = 0
  const end = Math.min(Math.max(offset, 0), text.length)
  for (let i = 0; i < end; i++) {
    if (text.charCodeAt(i) === 10) {
      line++
      lineStart = i + 1
    }
  }
  return { line, column: end - lineStart + 1 }
}

/** Where and why JSON.parse stopped: its error, with line and column from 1. */
export function jsonSyntaxError(body: string, err: unknown): { reason: string; offset: number; line: number; column: number } {
  const raw = err instanceof Error ? err.message : String(err)
  const position = /at position (\d+)/.exec(raw)
  const offset = position ? Number(position[1]) : body.length
  const { line, column } = lineAndColumn(body, offset)
  // V8 phrases it as "... in JSON at position N" (newer versions add "(line L column C)").
  const reason = raw.replace(/\s*\(line \d+ column \d+\)/, '').replace(/ in JSON at position \d+/, '').replace(/^JSON\.parse: /, '')
  return { reason, offset, line, column }
}

/**
 * Parses `text` as JSON. On a syntax error the message names `file`, the line
 * and column (and character position) where parsing stopped, and what the
 * parser expected there.
 */
export function parseJson(text: string, file: string): unknown {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text // a UTF-8 byte-order mark is not an error
  try {
    return JSON.parse(body)
  } catch (err) {
    const { reason, offset, line, column } = jsonSyntaxError(body, err)
    throw new SyntaxError(`${file} is not valid JSON: ${reason} at line ${line}, column ${column} (position ${offset})`)
  }
}

/** Reads and parses a JSON file; the errors of parseJson, and 'cannot read' ones that name the file. */
export async function readJsonFile(file: string): Promise<unknown> {
  // A regular file only, opened without blocking: a FIFO would wait for a writer for good.
  return parseJson(readRegularFileSync(file, 'utf8'), file)
}

/** The first path ('a.b[2]') at which two JSON-like values differ, with both values there; undefined when they are equal. */
export function firstDifference(a: unknown, b: unknown, at = ''): { path: string; was: unknown; now: unknown } | undefined {
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object' && Array.isArray(a) === Array.isArray(b)) {
    const keys = Array.isArray(a) ? [...Array(Math.max(a.length, (b as unknown[]).length)).keys()].map(String) : [...new Set([...Object.keys(a), ...Object.keys(b)])]
    for (const key of keys) {
      const d = firstDifference((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], Array.isArray(a) ? `${at}[${key}]` : at ? `${at}.${key}` : key)
      if (d) return d
    }
    return undefined
  }
  return Object.is(a, b) ? undefined : { path: at, was: a, now: b }
}
