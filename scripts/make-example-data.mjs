// Writes the toy datasets under examples/data (committed): a copying task read
// by the byte tokenizer, so the example configs run with nothing downloaded.
//   sft.jsonl          {prompt: "copy: <word>", response: " <word> <word>"}
//   preferences.jsonl  {prompt, chosen, rejected}: chosen copies the word, rejected garbles it
//   prompts.jsonl      {prompt} not in sft.jsonl
import fs from 'node:fs'
import path from 'node:path'

const dir = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'examples', 'data')
let x = 20241122
const next = () => {
  x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0
  return x
}
const letters = 'abcdefghijklmnopqrstuvwxyz'
const word = () => Array.from({ length: 3 + (next() % 3) }, () => letters[next() % 26]).join('')
const garble = (w) => [...w].reverse().join('') + letters[next() % 26]
const write = (name, rows) => fs.writeFileSync(path.join(dir, name), rows.map((r) => `${JSON.stringify(r)}\n`).join(''))

fs.mkdirSync(dir, { recursive: true })
const words = Array.from({ length: 400 }, word)
write('sft.jsonl', words.slice(0, 200).map((w) => ({ prompt: `copy: ${w}`, response: ` ${w} ${w}` })))
write('preferences.jsonl', words.slice(200, 300).map((w) => ({ prompt: `copy: ${w}`, chosen: ` ${w} ${w}`, rejected: ` ${garble(w)} ${garble(w)}` })))
write('prompts.jsonl', words.slice(300).map((w) => ({ prompt: `copy: ${w}` })))
