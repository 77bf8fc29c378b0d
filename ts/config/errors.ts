// Config errors: each problem names where it is (file:line:column, or the
// --set argument it came from), the field path, what was expected and what came.

export interface ConfigProblem {
  /** The field path, e.g. 'ppo.kl_coef' or 'stages[1].run.data.train'; '' for the whole config. */
  path: string
  /** What is wrong, without the location. */
  message: string
  /** The config file, or the `source` given to resolveConfig. */
  file?: string
  /** 1-based line and column in `file`, when the problem has a place there. */
  line?: number
  column?: number
  /** The `--set` argument the value came from, when it came from one. */
  set?: string
}

/** The location part of a problem: `ppo.yaml:12:3`, `ppo.yaml: in --set 'ppo.kl_coef=x'`, or the source name. */
export function problemLocation(p: ConfigProblem): string {
  const file = p.file ?? 'config'
  if (p.set !== undefined) return `${file}: in --set '${p.set}'`
  if (p.line !== undefined) return `${file}:${p.line}${p.column !== undefined ? `:${p.column}` : ''}`
  return file
}

export function formatProblem(p: ConfigProblem): string {
  return `${problemLocation(p)}: ${p.path ? `${p.path}: ` : ''}${p.message}`
}

/** Problems shown in one error at most; the rest are counted. */
const SHOWN = 20

/** A config that cannot be read or does not fit the schema. `problems` lists every problem found. */
export class ConfigError extends Error {
  readonly problems: ConfigProblem[]
  constructor(problems: ConfigProblem[]) {
    super(formatProblems(problems))
    this.name = 'ConfigError'
    this.problems = problems
  }
}

function formatProblems(problems: ConfigProblem[]): string {
  if (problems.length === 1) return formatProblem(problems[0])
  const file = problems[0]?.file ?? 'config'
  const lines = problems.slice(0, SHOWN).map((p) => `  ${formatProblem(p)}`)
  if (problems.length > SHOWN) lines.push(`  ... and ${problems.length - SHOWN} more`)
  return `${file}: ${problems.length} problems:\n${lines.join('\n')}`
}
