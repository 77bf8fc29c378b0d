// Parsing config text (YAML or JSON) into plain values plus a map from field
// paths to their places in the text, so that validation errors can name the
// line and column of the key or value at fault.
import fs from 'node:fs'
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, Scalar } from 'yaml'
import type { Node, Pair } from 'yaml'
import { describeFileType } from '../util/fs.js'
import { jsonSyntaxError } from '../util/json.js'
import { ConfigError, type ConfigProblem } from './errors.js'

export interface Position {
  line: number
  column: number
  /** The file, when it is not the config's own (a stage from a pipeline it extends). */
  file?: string
}

/** Where the parts of a config came from. Paths look like 'ppo.kl_coef' and 'stages[0].run'. */
export interface SourceInfo {
  /** The file name shown in messages. */
  file: string
  /** Where each key is written. */
  keys: Map<string, Position>
  /** Where each value starts. */
  values: Map<string, Position>
  /** The text of plain YAML scalars read as numbers or booleans (a string field takes the text). */
  raw: Map<string, string>
  /** The --set argument that wrote a path (or created it as a parent of what it wrote). */
  sets: Map<string, string>
}

export function emptySource(file: string): SourceInfo {
  return { file, keys: new Map(), values: new Map(), raw: new Map(), sets: new Map() }
}

export function childPath(parent: string, key: string): string {
  return parent ? `${parent}.${key}` : key
}

export function indexPath(parent: string, index: number): string {
  return `${parent}[${index}]`
}

/** The path one level up: 'a.b[2]' -> 'a.b', 'a.b' -> 'a', 'a' -> ''. */
export function parentPath(path: string): string {
  const m = /(?:\.[^.[\]]*|\[\d+\])$/.exec(path)
  if (m && m.index > 0) return path.slice(0, m.index)
  return ''
}

/** Line starts of `text`, for offset -> line and column by binary search. */
function lineLocator(text: string): (offset: number) => Position {
  const starts = [0]
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) starts.push(i + 1)
  return (offset) => {
    let lo = 0
    let hi = starts.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (starts[mid] <= offset) lo = mid
      else hi = mid - 1
    }
    return { line: lo + 1, column: offset - starts[lo] + 1 }
  }
}

/** Parses YAML; syntax errors (and warnings such as unknown tags) throw a ConfigError with line and column. */
export function parseYamlSource(text: string, file: string): { value: unknown; source: SourceInfo } {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, merge: true })
  const at = (offset: number): Position => {
    const { line, col } = lineCounter.linePos(offset)
    return { line: Math.max(line, 1), column: Math.max(col, 1) }
  }
  const issues = [...doc.errors, ...doc.warnings]
  if (issues.length > 0) {
    const problems: ConfigProblem[] = issues.slice(0, 1).map((e) => {
      const reason = e.message.replace(/; please use YAML\.parseAllDocuments\(\)/, '')
      return { path: '', file, ...at(e.pos[0]), message: `not valid YAML: ${reason}` }
    })
    throw new ConfigError(problems)
  }
  const source = emptySource(file)
  const walk = (node: Node | null | undefined, path: string) => {
    if (!node) return
    if (node.range) source.values.set(path, at(node.range[0]))
    if (isAlias(node)) return // its value is the anchor's; positions inside point here
    if (isMap(node)) {
      for (const pair of node.items as Pair<unknown, unknown>[]) {
        const key = pair.key as Node | null
        const name = isScalar(key) ? String(key.value) : key === null ? '' : String(key)
        const p = childPath(path, name)
        if (key && isScalar(key) && key.range) source.keys.set(p, at(key.range[0]))
        if (pair.value) walk(pair.value as Node, p)
        else if (key && key.range) source.values.set(p, at(key.range[1]))
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => walk(item as Node, indexPath(path, i)))
    } else if (isScalar(node)) {
      const scalar = node as Scalar
      if (scalar.type === Scalar.PLAIN && scalar.source !== undefined && (typeof scalar.value === 'number' || typeof scalar.value === 'boolean')) {
        source.raw.set(path, scalar.source)
      }
    }
  }
  walk(doc.contents as Node | null, '')
  let value: unknown
  try {
    value = doc.toJS({ maxAliasCount: 1000 })
  } catch (err) {
    throw new ConfigError([{ path: '', file, line: 1, column: 1, message: `not valid YAML: ${(err as Error).message}` }])
  }
  return { value, source }
}

/**
 * Parses JSON; a syntax error throws a ConfigError naming line, column and the
 * parser's reason, and so does a key given twice (JSON.parse would keep the last).
 */
export function parseJsonSource(text: string, file: string): { value: unknown; source: SourceInfo } {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text
  try {
    JSON.parse(body)
  } catch (err) {
    const { reason, line, column } = jsonSyntaxError(body, err)
    throw new ConfigError([{ path: '', file, line, column, message: `not valid JSON: ${reason}` }])
  }
  // The text is valid JSON: walk it again, noting where each key and value is.
  const at = lineLocator(body)
  const source = emptySource(file)
  let i = 0
  const space = () => {
    while (i < body.length) {
      const c = body.charCodeAt(i)
      if (c === 32 || c === 9 || c === 10 || c === 13) i++
      else break
    }
  }
  const string = (): string => {
    const start = i
    i++ // opening quote
    while (body[i] !== '"') i += body[i] === '\\' ? 2 : 1
    i++
    return JSON.parse(body.slice(start, i)) as string
  }
  const literal = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null/y
  const value = (path: string): unknown => {
    space()
    source.values.set(path, at(i))
    const c = body[i]
    if (c === '{') {
      i++
      const out: Record<string, unknown> = {}
      const seen = new Map<string, Position>()
      space()
      if (body[i] === '}') {
        i++
        return out
      }
      for (;;) {
        space()
        const keyAt = at(i)
        const key = string()
        const p = childPath(path, key)
        const first = seen.get(key)
        if (first) {
          throw new ConfigError([{ path: p, file, ...keyAt, message: `the key '${key}' is given twice (first at line ${first.line}); JSON would keep only the last` }])
        }
        seen.set(key, keyAt)
        source.keys.set(p, keyAt)
        space()
        i++ // ':'
        // defineProperty: a "__proto__" key is a key like any other.
        Object.defineProperty(out, key, { value: value(p), enumerable: true, writable: true, configurable: true })
        space()
        if (body[i++] === '}') return out
      }
    }
    if (c === '[') {
      i++
      const out: unknown[] = []
      space()
      if (body[i] === ']') {
        i++
        return out
      }
      for (;;) {
        out.push(value(indexPath(path, out.length)))
        space()
        if (body[i++] === ']') return out
      }
    }
    if (c === '"') return string()
    literal.lastIndex = i
    const m = literal.exec(body)
    if (!m) throw new Error(`internal: unexpected JSON at ${i}`)
    i += m[0].length
    return JSON.parse(m[0])
  }
  const parsed = value('')
  return { value: parsed, source }
}

/** The extensions a config file may have: YAML or JSON. */
export const CONFIG_EXTENSIONS = ['.yaml', '.yml', '.json']

/** Parses a config file's text as JSON or YAML, by the file's extension. */
export function parseConfigSource(text: string, file: string): { value: unknown; source: SourceInfo } {
  return file.toLowerCase().endsWith('.json') ? parseJsonSource(text, file) : parseYamlSource(text, file)
}

/** Why a config file could not be read, in words. */
/**
 * The text of a config file. Only a regular file is read, and it is opened
 * without blocking: a FIFO with no writer (or a device) where a config should be
 * would hang the command for good. Throws an Error whose message is the reason.
 */
export function readConfigText(file: string): string {
  let fd: number
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  } catch (err) {
    throw new Error(unreadableReason(err), { cause: err })
  }
  try {
    const stat = fs.fstatSync(fd)
    if (stat.isDirectory()) throw new Error('it is a directory')
    if (!stat.isFile()) throw new Error(`it is ${describeFileType(stat)}, not a regular file`)
    return fs.readFileSync(fd, 'utf8')
  } finally {
    fs.closeSync(fd)
  }
}

export function unreadableReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code
  return code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (err as Error).message
}
