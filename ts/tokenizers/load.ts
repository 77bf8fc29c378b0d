// loadTokenizer: 'byte' or a Hugging Face tokenizer directory.
import { stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { ByteTokenizer } from './byte.js'
import { HfTokenizer } from './hf.js'
import type { Tokenizer } from './tokenizer.js'
import { checkKeys, describe } from '../util/options.js'

export interface LoadTokenizerOptions {
  /** A Jinja chat template that replaces the tokenizer's own. */
  chatTemplate?: string
  /** For 'byte': extra special tokens by name. */
  specialTokens?: readonly string[]
}

/**
 * 'byte' gives the built-in ByteTokenizer; any other string is a Hugging Face
 * tokenizer directory, read by HfTokenizer.load (write './byte' for a
 * directory named byte).
 */
export async function loadTokenizer(spec: string, options: LoadTokenizerOptions = {}): Promise<Tokenizer> {
  const where = 'loadTokenizer'
  checkKeys(where, options, ['chatTemplate', 'specialTokens'])
  if (typeof spec !== 'string' || spec === '') {
    throw new TypeError(`${where}: the tokenizer must be 'byte' or the path of a Hugging Face tokenizer directory; got ${describe(spec)}`)
  }
  if (spec === 'byte') return new ByteTokenizer({ specialTokens: options.specialTokens, chatTemplate: options.chatTemplate })
  if (options.specialTokens !== undefined) {
    throw new Error(`${where}: specialTokens is an option of the 'byte' tokenizer; the special tokens of ${spec} are the added_tokens of its tokenizer.json`)
  }
  const root = resolve(spec)
  let isDir = false
  try {
    isDir = (await stat(root)).isDirectory()
  } catch {
    // reported below
  }
  if (!isDir) throw new Error(`${where}: '${spec}' is neither 'byte' nor a directory (${root} does not exist or is not a directory)`)
  return HfTokenizer.load(root, { chatTemplate: options.chatTemplate })
}
