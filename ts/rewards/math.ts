// The `math` reward: the final answer of a completion (the last \boxed{},
// else what follows the last '####', else the last number) compared by value
// with the row's reference (GSM8K's `answer` "... #### 72", MATH's `solution`
// "... \boxed{\frac{1}{2}}", or a bare value). Values are read by mathjs after
// LaTeX is rewritten into its syntax, so 0.5, 1/2, \frac{1}{2} and 50% agree
// (a percentage also matches its number: 50% and 50), and units and thousands
// separators are left out ("1,200 cm" is 1200).
// mathjs ships CommonJS for require(); its types are declared as an ES module.
const { all, create } = require('mathjs') as typeof import('mathjs', { with: { 'resolution-mode': 'import' } })
type MathJsInstance = import('mathjs', { with: { 'resolution-mode': 'import' } }).MathJsInstance
import { REFERENCE_KEYS, referenceOf, type Args } from './args.js'
import type { RewardFn } from './types.js'

let instance: MathJsInstance | undefined
let evaluateExpression: ((expr: string) => unknown) | undefined

// A mathjs instance whose functions that reach outside plain arithmetic are
// disabled, as mathjs's security notes advise for untrusted expressions.
function evaluator(): (expr: string) => unknown {
  if (!evaluateExpression) {
    instance = create(all, {})
    const evaluate = instance.evaluate
    const disabled = () => {
      throw new Error('disabled')
    }
    instance.import(
      { import: disabled, createUnit: disabled, evaluate: disabled, parse: disabled, simplify: disabled, derivative: disabled, resolve: disabled, reviver: disabled },
      { override: true },
    )
    evaluateExpression = (expr) => evaluate(expr)
  }
  return evaluateExpression
}

/** The content of the last \boxed{...} (or \fbox{...}), braces balanced; undefined when none. */
export function lastBoxed(text: string): string | undefined {
  const at = Math.max(text.lastIndexOf('\\boxed'), text.lastIndexOf('\\fbox'))
  if (at < 0) return undefined
  let i = text.indexOf('{', at)
  if (i < 0) {
    // \boxed 5: the token after a space.
    const m = /^\\(?:boxed|fbox)\s+(\S+)/.exec(text.slice(at))
    return m?.[1]
  }
  const start = i + 1
  let depth = 1
  for (i = start; i < text.length && depth > 0; i++) {
    if (text[i] === '{') depth++
    else if (text[i] === '}') depth--
  }
  return depth === 0 ? text.slice(start, i - 1) : undefined
}

const NUMBER = /-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*\/\s*\d+)?\s*%?|-?\.\d+%?/g

/** A marked final answer: the last \boxed{}, else what follows the last '####'; undefined when neither. */
export function markedAnswer(text: string): string | undefined {
  const boxed = lastBoxed(text)
  if (boxed !== undefined) return boxed.trim()
  const hashes = text.lastIndexOf('####')
  if (hashes >= 0) {
    const line = text.slice(hashes + 4).trim().split('\n')[0].trim()
    if (line) return line
  }
  return undefined
}

/** The final answer of a completion: a marked one, else its last number. */
export function extractAnswer(text: string): string | undefined {
  const marked = markedAnswer(text)
  if (marked !== undefined) return marked
  const numbers = text.match(NUMBER)
  return numbers ? numbers[numbers.length - 1].trim() : undefined
}

/** LaTeX and plain-text answer decorations rewritten into a mathjs expression. */
export function toExpression(answer: string): string {
  let s = answer.trim()
  s = s.replace(/^\$+|\$+$/g, '').replace(/\\\(|\\\)|\\\[|\\\]/g, '')
  s = s.replace(/\\(?:text|mathrm|textbf|mbox)\{[^{}]*\}/g, ' ')
  s = s.replace(/\\(?:left|right|displaystyle|!|,|;|:|\s)/g, '')
  s = s.replace(/\^\s*\{?\\circ\}?/g, '').replace(/\\%/g, '%').replace(/\\\$/g, '')
  // \frac12, \dfrac{a}{b} -> (a)/(b)
  for (let guard = 0; guard < 20 && /\\[dt]?frac/.test(s); guard++) {
    s = s.replace(/\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}/g, '(($1)/($2))').replace(/\\[dt]?frac\s*(\d)\s*(\d)/g, '(($1)/($2))')
  }
  s = s.replace(/\\sqrt\s*\{([^{}]*)\}/g, 'sqrt($1)').replace(/\\sqrt\s*(\d+)/g, 'sqrt($1)')
  s = s.replace(/\\(?:cdot|times)/g, '*').replace(/\\div/g, '/').replace(/\\pi/g, 'pi')
  s = s.replace(/[{}]/g, (b) => (b === '{' ? '(' : ')'))
  // "x = 5", "= 5": the right-hand side.
  if (/^[a-zA-Z]\s*=/.test(s) || s.startsWith('=')) s = s.slice(s.indexOf('=') + 1)
  // Thousands separators: 1,234,567 -> 1234567.
  s = s.replace(/(\d),(?=\d{3}(?!\d))/g, '$1')
  // Currency and units: a leading $ or a trailing word ("5 cm", "12 apples").
  s = s.replace(/^\s*\$/, '').replace(/\s*[a-zA-Z][a-zA-Z\s.]*$/, (tail) => (/^\s*(pi|e)$/.test(tail) ? tail : ''))
  return s.trim().replace(/\.$/, '')
}

/** The values an answer may stand for (a percentage: itself and its hundredth); empty when it is not a number. */
export function valuesOf(answer: string): number[] {
  const expr = toExpression(answer)
  if (!expr) return []
  const percent = /%\s*$/.test(expr)
  const body = percent ? expr.replace(/%\s*$/, '') : expr
  let v: unknown
  try {
    v = evaluator()(body)
  } catch {
    return []
  }
  const n = typeof v === 'number' ? v : v !== null && typeof v === 'object' && typeof (v as { valueOf(): unknown }).valueOf() === 'number' ? ((v as { valueOf(): number }).valueOf()) : NaN
  if (!Number.isFinite(n)) return []
  return percent ? [n, n / 100] : [n]
}

/** Whether two final answers agree: by value when both read as numbers, else as normalised strings. */
export function sameAnswer(a: string, b: string, tolerance = 1e-6): boolean {
  const va = valuesOf(a)
  const vb = valuesOf(b)
  if (va.length && vb.length) return va.some((x) => vb.some((y) => Math.abs(x - y) <= tolerance * Math.max(1, Math.abs(y))))
  const norm = (s: string) => toExpression(s).replace(/\s+/g, '').toLowerCase()
  return norm(a) !== '' && norm(a) === norm(b)
}

export function mathReward(a: Args, _what: string): RewardFn {
  const keys = a.strings('keys', REFERENCE_KEYS)
  const tolerance = a.number('tolerance', 1e-6, { min: 0 })
  return ({ completions, rows }) =>
    completions.map((c, i) => {
      const ref = referenceOf(rows[i] ?? {}, keys)
      if (ref === undefined) return null
      // A reference without a mark is the answer itself (e.g. "\\frac{1}{2}").
      const want = markedAnswer(ref) ?? ref.trim()
      const got = extractAnswer(c)
      return got === undefined ? 0 : Number(sameAnswer(got, want, tolerance))
    })
}
