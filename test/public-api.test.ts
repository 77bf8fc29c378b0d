// The public API is listed in one place, docs/api.md: every export of
// 'rlfarm' (and every member of ops and distributed) is named there, and
// 'rlfarm/internal' holds only what 'rlfarm' does not.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import * as rlfarm from 'rlfarm'
import * as internal from 'rlfarm/internal'

const doc = fs.readFileSync(path.join(__dirname, '..', 'docs', 'api.md'), 'utf8')
const named = new Set([...doc.matchAll(/`([A-Za-z_][A-Za-z0-9_]*)`/g)].map((m) => m[1]))

t.test("every runtime export of 'rlfarm' is listed in docs/api.md", async (t) => {
  const missing = Object.keys(rlfarm).filter((k) => k !== 'default' && !named.has(k))
  t.same(missing, [], 'exports docs/api.md does not list')
  t.ok(Object.keys(rlfarm).length > 50, `${Object.keys(rlfarm).length} exports`)
})

t.test('the members of ops and distributed are listed too', async (t) => {
  t.same(Object.keys(rlfarm.ops).filter((k) => !named.has(k)), [], 'ops members')
  t.same(Object.keys(rlfarm.distributed).filter((k) => !named.has(k)), [], 'distributed members')
})

t.test("'rlfarm/internal' holds what the public API does not", async (t) => {
  const both = Object.keys(internal).filter((k) => k in rlfarm)
  t.same(both, [], 'nothing exported twice')
  t.ok(Object.keys(internal).length > 10, `${Object.keys(internal).length} internal exports`)
})

t.test("what README.md's code and the examples take from 'rlfarm' is exported by it", async (t) => {
  const root = path.join(__dirname, '..')
  const texts = [fs.readFileSync(path.join(root, 'README.md'), 'utf8'), ...fs.readdirSync(path.join(root, 'examples')).filter((f) => /\.(m?js|ts)$/.test(f)).map((f) => fs.readFileSync(path.join(root, 'examples', f), 'utf8'))]
  const taken = new Set<string>()
  for (const text of texts) {
    for (const m of text.matchAll(/(?:const|import)\s*\{([^}]*)\}\s*(?:=\s*require\('rlfarm'\)|from 'rlfarm')/g)) {
      for (const name of m[1].split(',')) if (name.trim() && !name.trim().startsWith('type ')) taken.add(name.trim().split(/\s+as\s+|:/)[0].trim())
    }
  }
  t.ok(taken.size > 20, `${taken.size} names taken`)
  t.same([...taken].filter((n) => !(n in rlfarm)), [], 'names not exported')
})
