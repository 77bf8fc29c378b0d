// Chat templates come from downloaded model folders: rendering one is bounded
// in time, in the size of what it builds and in range(), and a template that
// goes over fails with an error naming its file, in the process that renders
// it (before, range(100000000) aborted the process with V8 out of memory).
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { BYTE_CHAT_TEMPLATE, loadTokenizer } from 'rlfarm'
import { tempDir } from './helpers/common'
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { ChatTemplate } = require('../dist/tokenizers/chat-template.js') as typeof import('../ts/tokenizers/chat-template')

const ROOT = path.join(__dirname, '..')
const chat = [{ role: 'user', content: 'hi' }]

t.test('range(100000000) in a model folder: an error naming chat_template.jinja, and the process lives', async (t) => {
  const dir = tempDir(t, 'chat-limits')
  fs.copyFileSync(path.join(ROOT, 'test', 'fixtures', 'tokenizers', 'gpt2-bpe', 'tokenizer.json'), path.join(dir, 'tokenizer.json'))
  fs.writeFileSync(path.join(dir, 'chat_template.jinja'), '{% for i in range(100000000) %}x{% endfor %}')
  const script = `require(${JSON.stringify(path.join(ROOT, 'dist', 'index.js'))}).loadTokenizer(${JSON.stringify(dir)}).then((tok) => {
  try { tok.applyChatTemplate([{ role: 'user', content: 'hi' }], { tokenize: false }); console.log('rendered') } catch (e) { console.log('error: ' + e.message) }
})`
  const r = spawnSync(process.execPath, ['--max-old-space-size=256', '-e', script], { encoding: 'utf8', timeout: 120_000 })
  t.equal(r.status, 0, `exit 0, not an abort (${r.status} ${r.signal} ${r.stderr.slice(-300)})`)
  t.match(r.stdout, /^error: .*chat_template\.jinja.*: rendering the chat template stopped: range\(\) of 100000000 items is over the limit of 1000000\n$/)
  const tok = await loadTokenizer(dir)
  t.throws(() => tok.applyChatTemplate(chat, { tokenize: false }), /chat_template\.jinja/)
})

t.test('time, size and range bounds, each named', async (t) => {
  const nested = new ChatTemplate('{% for i in range(1000000) %}{% for j in range(1000000) %}x{% endfor %}{% endfor %}', 'nested.jinja', { maxRenderMs: 300 })
  const started = Date.now()
  t.throws(() => nested.render(chat, false, {}), { message: 'nested.jinja: rendering the chat template stopped: rendering took over 300 ms (the limit on one render)' })
  t.ok(Date.now() - started < 20_000, 'bounded')
  const doubling = new ChatTemplate("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}", 'doubling.jinja', { maxChars: 1 << 20 })
  t.throws(() => doubling.render(chat, false, {}), { message: /^doubling\.jinja: rendering the chat template stopped: the template built a value of \d+ characters, over the limit of 1048576$/ })
  const steps = new ChatTemplate('{% for i in range(10, 0, -1) %}{{ i }}{% endfor %}{{ range(0, 9000000, 10) | length }}', 'steps.jinja', { maxRange: 1_000_000 })
  t.equal(steps.render(chat, false, {}), '10987654321900000', 'negative steps and strides are sized right')
  t.throws(() => new ChatTemplate('{{ range(0, 2000001, 2) | length }}', 'big.jinja').render(chat, false, {}), { message: 'big.jinja: rendering the chat template stopped: range() of 1000001 items is over the limit of 1000000' })
  const recursive = new ChatTemplate('{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}', 'recursive.jinja')
  t.throws(() => recursive.render(chat, false, {}), /^recursive\.jinja: rendering the chat template failed: /)
})

t.test('ordinary templates render as before', async (t) => {
  const byte = new ChatTemplate(BYTE_CHAT_TEMPLATE, 'byte')
  t.equal(byte.render([{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'yo' }], true, { bos_token: '<s>', eos_token: '</s>' }), '<s>user: hi\nassistant: yo</s>\nassistant: ')
})
