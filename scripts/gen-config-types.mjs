#!/usr/bin/env node
// Writes ts/config/types.generated.ts from proto/rlfarm.proto, so that the
// TypeScript types of configs come from the schema and never drift from it:
//   - for each message, an interface of the resolved config: every field
//     present (defaults filled); scalars without a default are `T | undefined`,
//     message fields are objects, repeated fields arrays, `(choices)` fields
//     unions of string literals;
//   - for each message, `<Name>Input`: the same as users write it, every key
//     optional at every level;
//   - the help, default and range of each field as JSDoc.
//
//   node scripts/gen-config-types.mjs [--proto proto/rlfarm.proto] [--out ts/config/types.generated.ts]
//
// `npm run gen:config` runs it; test/config.test.ts regenerates into a temp
// file and compares with the committed one.
import { writeFileSync, renameSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const protobuf = require('protobufjs')

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const PACKAGE = 'rlfarm'

function parseArgs(argv) {
  const args = { proto: join(ROOT, 'proto', 'rlfarm.proto'), out: join(ROOT, 'ts', 'config', 'types.generated.ts') }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--proto' || a === '--out') {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a file`)
      args[a.slice(2)] = resolve(argv[++i])
    } else throw new Error(`unknown argument '${a}' (known: --proto FILE, --out FILE)`)
  }
  return args
}

function loadRoot(protoFile) {
  const root = new protobuf.Root()
  const resolvePath = root.resolvePath
  root.resolvePath = (origin, target) =>
    target === 'google/protobuf/descriptor.proto' ? require.resolve('protobufjs/google/protobuf/descriptor.proto') : resolvePath(origin, target)
  root.loadSync(protoFile, { keepCase: true, alternateCommentMode: true })
  root.resolveAll()
  return root
}

const SCALAR_TS = {
  double: 'number', float: 'number',
  int32: 'number', uint32: 'number', sint32: 'number', fixed32: 'number', sfixed32: 'number',
  int64: 'number', uint64: 'number', sint64: 'number', fixed64: 'number', sfixed64: 'number',
  bool: 'boolean', string: 'string',
}

const quote = (s) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`
const doc = (s) => s.replace(/\*\//g, '*\\/')

function formatNumber(n) {
  if (n !== 0 && Math.abs(n) < 1e-3) return n.toExponential()
  return String(n)
}

function formatDefault(value) {
  if (typeof value === 'string') return quote(value)
  if (typeof value === 'number') return formatNumber(value)
  if (protobuf.util.Long && protobuf.util.Long.isLong(value)) return value.toString()
  return String(value)
}

function rangeText(o) {
  const lo = o['(min)']
  const hi = o['(max)']
  const exclusive = o['(min_exclusive)'] === true
  if (lo !== undefined && hi !== undefined) return `${exclusive ? '(' : '['}${formatNumber(lo)}, ${formatNumber(hi)}]`
  if (lo !== undefined) return `${exclusive ? '>' : '>='} ${formatNumber(lo)}`
  if (hi !== undefined) return `<= ${formatNumber(hi)}`
  return undefined
}

const o = (field) => field.options ?? {}

function fieldInfo(field) {
  const o = field.options ?? {}
  let ts
  let kind
  if (field.resolvedType instanceof protobuf.Type && field.resolvedType.fullName === '.google.protobuf.Struct') {
    kind = 'json'
    ts = 'Record<string, unknown>'
  } else if (field.resolvedType instanceof protobuf.Type) {
    kind = 'message'
    ts = field.resolvedType.name
  } else if (field.resolvedType instanceof protobuf.Enum) {
    kind = 'enum'
    ts = Object.keys(field.resolvedType.values).map(quote).join(' | ')
  } else if (field.type in SCALAR_TS) {
    kind = 'scalar'
    ts = typeof o['(choices)'] === 'string' ? o['(choices)'].split(',').map((c) => quote(c.trim())).join(' | ') : SCALAR_TS[field.type]
  } else throw new Error(`${field.parent.name}.${field.name}: type ${field.type} is not supported in configs`)
  return { kind, ts, hasDefault: 'default' in o, options: o }
}

function fieldDoc(field, info, indent) {
  const o = info.options
  const facts = [`\`${field.type}${field.repeated ? '[]' : ''}\``]
  if (info.hasDefault) facts.push(`default \`${formatDefault(o.default)}\``)
  const range = rangeText(o)
  if (range) facts.push(`range ${range}`)
  if (o['(path)'] === true) facts.push('a path, relative to the config file')
  const help = typeof o['(help)'] === 'string' ? doc(o['(help)']) : ''
  const text = `${help ? `${help}. ` : ''}${facts.join(', ')}.`
  const line = `${indent}/** ${text} */`
  if (line.length <= 140) return [line]
  return [`${indent}/**`, `${indent} * ${help}.`, `${indent} *`, `${indent} * ${facts.join(', ')}.`, `${indent} */`]
}

function generate(protoFile) {
  const root = loadRoot(protoFile)
  const ns = root.lookup(PACKAGE)
  const types = ns.nestedArray.filter((n) => n instanceof protobuf.Type)
  const out = []
  const rel = relative(ROOT, protoFile).split('\\').join('/')
  out.push(`// Generated from ${rel} by scripts/gen-config-types.mjs. Do not edit:`)
  out.push('// change the proto and run `npm run gen:config` (a test fails when they differ).')
  out.push('')
  for (const type of types) {
    const comment = type.comment ? doc(type.comment).split('\n') : []
    // The resolved config: every field present, defaults filled.
    out.push('/**')
    for (const line of comment) out.push(line ? ` * ${line}` : ' *')
    if (comment.length) out.push(' *')
    out.push(` * The resolved \`${type.name}\`: every field present, defaults filled in; see \`${type.name}Input\` for what users write.`)
    out.push(' */')
    out.push(`export interface ${type.name} {`)
    for (const field of type.fieldsArray) {
      const info = fieldInfo(field)
      out.push(...fieldDoc(field, info, '  '))
      let ts = info.ts
      if (field.repeated) ts = info.ts.includes(' | ') ? `Array<${info.ts}>` : `${info.ts}[]`
      else if ((info.kind !== 'message' && !info.hasDefault) || o(field)['(presence)'] === true) ts = `${ts} | undefined`
      out.push(`  ${field.name}: ${ts}`)
    }
    out.push('}')
    out.push('')
    out.push(`/** \`${type.name}\` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */`)
    out.push(`export interface ${type.name}Input {`)
    for (const field of type.fieldsArray) {
      const info = fieldInfo(field)
      out.push(...fieldDoc(field, info, '  '))
      let ts = info.kind === 'message' ? `${info.ts}Input` : info.ts
      if (field.repeated) ts = ts.includes(' | ') ? `Array<${ts}>` : `${ts}[]`
      out.push(`  ${field.name}?: ${ts}`)
    }
    out.push('}')
    out.push('')
  }
  out.push('/** Every config message by name, resolved. */')
  out.push('export interface ConfigTypes {')
  for (const type of types) out.push(`  ${type.name}: ${type.name}`)
  out.push('}')
  out.push('')
  out.push('/** Every config message by name, as users write it. */')
  out.push('export interface ConfigInputTypes {')
  for (const type of types) out.push(`  ${type.name}: ${type.name}Input`)
  out.push('}')
  out.push('')
  out.push('export type ConfigMessageName = keyof ConfigTypes')
  out.push('')
  return out.join('\n')
}

const args = parseArgs(process.argv.slice(2))
const text = generate(args.proto)
const tmp = `${args.out}.${process.pid}.tmp`
writeFileSync(tmp, text)
renameSync(tmp, args.out)
console.log(`wrote ${relative(process.cwd(), args.out) || args.out}`)
