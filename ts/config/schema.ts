// The config schema, read at run time from proto/rlfarm.proto with protobufjs
// (keepCase, so the keys are the snake_case names users write). The loader
// validates against the plain descriptions built here; the protobufjs Root is
// exposed for whoever needs the full reflection.
import { join } from 'node:path'
import * as protobuf from 'protobufjs'

/** The proto file the schema is read from (it ships in the package's `proto/`). */
export const PROTO_FILE = join(__dirname, '..', '..', 'proto', 'rlfarm.proto')

const PACKAGE = 'rlfarm'

const INTEGER_RANGES: Record<string, [number, number]> = {
  int32: [-(2 ** 31), 2 ** 31 - 1],
  sint32: [-(2 ** 31), 2 ** 31 - 1],
  sfixed32: [-(2 ** 31), 2 ** 31 - 1],
  uint32: [0, 2 ** 32 - 1],
  fixed32: [0, 2 ** 32 - 1],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  sint64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  sfixed64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  uint64: [0, Number.MAX_SAFE_INTEGER],
  fixed64: [0, Number.MAX_SAFE_INTEGER],
}

// 'json': a google.protobuf.Struct field, any mapping (a reward function's args).
export type FieldKind = 'number' | 'integer' | 'bool' | 'string' | 'enum' | 'message' | 'json'

/** One field of a config message, with its options read out of the proto. */
export interface FieldSpec {
  /** The key users write (snake_case). */
  name: string
  /** The message it belongs to, e.g. 'PpoConfig'. */
  owner: string
  /** The proto type: 'double', 'uint32', 'string', 'ModelSpec'... */
  type: string
  kind: FieldKind
  repeated: boolean
  /** The `[default = ...]` of the proto, when it has one. */
  default?: number | boolean | string
  /** The [lo, hi] an integer type can hold, for integer fields. */
  integerRange?: [number, number]
  min?: number
  max?: number
  minExclusive: boolean
  /** Allowed strings: `(choices)` of a string field, or the value names of an enum. */
  choices?: string[]
  help?: string
  /** `(path) = true`: a file or directory, relative to the config file. */
  path: boolean
  /** `(presence) = true` on a message field: left out, it stays undefined instead of taking its defaults. */
  presence: boolean
  /** The message type of a message field. */
  message?: string
}

export interface MessageSpec {
  name: string
  comment?: string
  fields: FieldSpec[]
  byName: Map<string, FieldSpec>
}

export interface ConfigSchema {
  /** The protobufjs reflection of proto/rlfarm.proto (keepCase). */
  root: protobuf.Root
  /** Every message of the `rlfarm` package, by short name. */
  messages: Map<string, MessageSpec>
}

let cached: ConfigSchema | undefined

/** The schema, loaded once from proto/rlfarm.proto. */
export function configSchema(): ConfigSchema {
  if (!cached) cached = loadSchema(PROTO_FILE)
  return cached
}

/** The description of one message, e.g. messageSpec('RunConfig'). */
export function messageSpec(name: string): MessageSpec {
  const spec = configSchema().messages.get(name)
  if (!spec) throw new Error(`config schema: no message '${name}' in ${PROTO_FILE}`)
  return spec
}

/** Loads a .proto file with rlfarm's custom field options into plain descriptions. */
export function loadSchema(protoFile: string): ConfigSchema {
  const root = new protobuf.Root()
  const resolvePath = root.resolvePath
  // descriptor.proto (imported for the custom options) is not among protobufjs's
  // bundled definitions; it ships as a file in the package.
  root.resolvePath = (origin, target) =>
    target === 'google/protobuf/descriptor.proto' ? require.resolve('protobufjs/google/protobuf/descriptor.proto') : resolvePath(origin, target)
  root.loadSync(protoFile, { keepCase: true, alternateCommentMode: true })
  root.resolveAll()
  const ns = root.lookup(PACKAGE)
  if (!(ns instanceof protobuf.Namespace)) throw new Error(`config schema: ${protoFile} has no package '${PACKAGE}'`)
  const messages = new Map<string, MessageSpec>()
  for (const nested of ns.nestedArray) {
    if (!(nested instanceof protobuf.Type)) continue
    const fields = nested.fieldsArray.map((f) => fieldSpec(nested.name, f))
    messages.set(nested.name, { name: nested.name, comment: nested.comment ?? undefined, fields, byName: new Map(fields.map((f) => [f.name, f])) })
  }
  return { root, messages }
}

function fieldSpec(owner: string, f: protobuf.Field): FieldSpec {
  const where = `config schema: ${owner}.${f.name}`
  const options = (f.options ?? {}) as Record<string, unknown>
  let kind: FieldKind
  let choices: string[] | undefined
  let message: string | undefined
  if (f.resolvedType instanceof protobuf.Type && f.resolvedType.fullName === '.google.protobuf.Struct') {
    kind = 'json'
  } else if (f.resolvedType instanceof protobuf.Type) {
    kind = 'message'
    message = f.resolvedType.name
  } else if (f.resolvedType instanceof protobuf.Enum) {
    kind = 'enum'
    choices = Object.keys(f.resolvedType.values)
  } else if (f.type === 'bool') kind = 'bool'
  else if (f.type === 'string') kind = 'string'
  else if (f.type === 'double' || f.type === 'float') kind = 'number'
  else if (f.type in INTEGER_RANGES) kind = 'integer'
  else throw new Error(`${where}: type ${f.type} is not supported in configs`)

  const spec: FieldSpec = {
    name: f.name,
    owner,
    type: kind === 'message' || kind === 'enum' || kind === 'json' ? (f.resolvedType as protobuf.ReflectionObject).name : f.type,
    kind,
    repeated: f.repeated,
    minExclusive: options['(min_exclusive)'] === true,
    path: options['(path)'] === true,
    presence: options['(presence)'] === true,
  }
  if (message) spec.message = message
  if (kind === 'integer') spec.integerRange = INTEGER_RANGES[f.type]
  if (typeof options['(help)'] === 'string') spec.help = options['(help)'] as string
  if (typeof options['(min)'] === 'number') spec.min = options['(min)'] as number
  if (typeof options['(max)'] === 'number') spec.max = options['(max)'] as number
  if (typeof options['(choices)'] === 'string') {
    if (kind !== 'string') throw new Error(`${where}: (choices) is for string fields`)
    choices = (options['(choices)'] as string).split(',').map((c) => c.trim())
  }
  if (choices) spec.choices = choices
  if ((spec.min !== undefined || spec.max !== undefined) && kind !== 'number' && kind !== 'integer') {
    throw new Error(`${where}: (min) and (max) are for numeric fields`)
  }
  if (spec.path && kind !== 'string') throw new Error(`${where}: (path) is for string fields`)
  if (spec.presence && (kind !== 'message' || spec.repeated)) throw new Error(`${where}: (presence) is for single message fields`)
  if ('default' in options) {
    let value = options.default
    // 64-bit defaults come as Long objects (when the long package is present).
    if (value !== null && typeof value === 'object' && typeof (value as { toNumber?: unknown }).toNumber === 'function') value = (value as { toNumber(): number }).toNumber()
    if (f.repeated || kind === 'message' || kind === 'json') throw new Error(`${where}: a repeated or message field cannot have a default`)
    spec.default = value as number | boolean | string
    const problem = checkScalar(spec, spec.default)
    if (problem) throw new Error(`${where}: the default ${JSON.stringify(spec.default)} is not allowed: expected ${problem}`)
  }
  return spec
}

/** What a field takes, in words: 'a number in [0, 1]', "one of 'k1', 'k2'"... */
export function expectation(field: FieldSpec): string {
  if (field.kind === 'message') return `a mapping (${field.message})`
  if (field.kind === 'json') return 'a mapping'
  if (field.kind === 'bool') return 'true or false'
  if (field.kind === 'string' && !field.choices) return 'a string'
  if (field.choices) return `one of ${field.choices.map((c) => `'${c}'`).join(', ')}`
  const noun = field.kind === 'integer' ? (field.integerRange![0] >= 0 && field.min === undefined ? 'a non-negative integer' : 'an integer') : 'a number'
  const lo = field.min
  const hi = field.max
  let range = ''
  if (lo !== undefined && hi !== undefined) range = ` in ${field.minExclusive ? '(' : '['}${lo}, ${hi}]`
  else if (lo !== undefined) range = field.minExclusive ? ` > ${lo}` : ` >= ${lo}`
  else if (hi !== undefined) range = ` <= ${hi}`
  return `${noun}${range}`
}

/**
 * Checks one scalar value against a non-message field. Returns undefined when it
 * is allowed, or the expectation it fails (for "expected ..., got ...").
 */
export function checkScalar(field: FieldSpec, value: unknown): string | undefined {
  switch (field.kind) {
    case 'bool':
      return typeof value === 'boolean' ? undefined : expectation(field)
    case 'string':
    case 'enum':
      if (typeof value !== 'string') return field.choices ? `a string, ${expectation(field)}` : expectation(field)
      return field.choices && !field.choices.includes(value) ? expectation(field) : undefined
    case 'number':
    case 'integer': {
      const expected = expectation(field)
      if (typeof value !== 'number') return expected
      if (!Number.isFinite(value)) return expected.replace(/^an? /, 'a finite ')
      if (field.kind === 'integer') {
        const [lo, hi] = field.integerRange!
        if (!Number.isInteger(value)) return expected
        if (value < lo || value > hi) return `${expected} (${field.type}: ${lo} to ${hi})`
      }
      if (field.min !== undefined && (field.minExclusive ? !(value > field.min) : !(value >= field.min))) return expected
      if (field.max !== undefined && !(value <= field.max)) return expected
      return undefined
    }
    default:
      return expectation(field)
  }
}
