// Loading a reward function from a module file: .js, .mjs and .cjs through
// Node's own import(); TypeScript through tsx, without touching the global
// loader: .ts and .cts by tsx's scoped require (compiled to CommonJS, which
// also keeps clear of another ESM loader, e.g. a test runner's), .mts by its
// scoped ESM import.
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import type { RewardFn } from './types.js'

const JS = new Set(['.js', '.mjs', '.cjs'])
const TS = new Set(['.ts', '.mts', '.cts'])

/** The function `exportName` (default: the default export) of the module `file` (absolute, or relative to the working directory). */
export async function loadRewardExport(file: string, exportName: string | undefined, what: string): Promise<RewardFn> {
  const abs = path.resolve(file)
  const ext = path.extname(abs)
  if (!JS.has(ext) && !TS.has(ext)) throw new Error(`${what}: module ${file} must be a .js, .mjs, .cjs or .ts file; got '${ext || 'no extension'}'`)
  if (!fs.existsSync(abs)) throw new Error(`${what}: module ${abs} does not exist`)
  if (!fs.statSync(abs).isFile()) throw new Error(`${what}: module ${abs} is not a file`)
  const url = pathToFileURL(abs).href
  let mod: Record<string, unknown>
  try {
    if (ext === '.mts') {
      const { tsImport } = await import('tsx/esm/api')
      mod = (await tsImport(url, { parentURL: pathToFileURL(__filename).href })) as Record<string, unknown>
    } else if (TS.has(ext)) {
      const { require: tsxRequire } = await import('tsx/cjs/api')
      mod = tsxRequire(abs, __filename) as Record<string, unknown>
    } else {
      mod = (await import(url)) as Record<string, unknown>
    }
  } catch (err) {
    throw new Error(`${what}: loading ${abs} failed: ${(err as Error)?.message ?? String(err)}`)
  }
  const key = exportName ?? 'default'
  let fn = mod[key]
  // A CommonJS module's exports (and TypeScript compiled to it) sit under `default` when imported.
  if (fn === undefined && mod.default !== null && typeof mod.default === 'object') fn = (mod.default as Record<string, unknown>)[key]
  if (typeof fn !== 'function') {
    const names = Object.keys(mod).filter((k) => typeof mod[k] === 'function')
    const known = names.length ? `its function exports: ${names.join(', ')}` : 'it exports no function'
    throw new Error(`${what}: ${abs} has no function export '${key}' (${fn === undefined ? 'missing' : `a ${typeof fn}`}); ${known}`)
  }
  return fn as RewardFn
}
