// Every command README.md shows, run as written and in order (a later line may
// use what an earlier one wrote), so that it stays true; then the help
// examples of eval and generate, which read what those commands trained. The
// other help examples: test/help-examples.test.ts; how commands are found and
// run, and what is skipped: test/helpers/commands.ts.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { cli, helpExamples, namedFilesExist, notRunHere, readmeCommands, ROOT, runAll, workspace } from './helpers/commands'

t.test('the commands of README.md, as written, in order', async (t) => {
  const { blocks, elsewhere } = readmeCommands(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8'))
  t.ok(blocks.some((c) => c.startsWith('npx rlfarm generate')) && blocks.includes('npm test'), `found the README's commands: ${blocks.length} in sh blocks, ${elsewhere.length} elsewhere`)
  namedFilesExist(t, [...blocks, ...elsewhere])
  const dir = workspace(t)
  await runAll(t, [...blocks, ...elsewhere], dir)
  // What the README says they leave behind.
  t.ok(fs.existsSync(path.join(dir, 'runs', 'ppo-1', 'model')), 'ppo-1 trained, then resumed')
  t.ok(fs.existsSync(path.join(dir, 'runs', 'algorithms', 'summary.json')))

  // The help examples of eval and generate read what those commands trained (runs/ppo, runs/pipeline).
  for (const command of ['eval', 'generate']) {
    await t.test(`rlfarm ${command} --help: its examples`, async (t) => {
      const examples = helpExamples(cli([command, '--help']))
      t.ok(examples.length > 0)
      namedFilesExist(t, examples)
      await runAll(t, examples, dir)
    })
  }
})

t.test('reading commands out of Markdown', async (t) => {
  const md = ['text `npx rlfarm farm --out x` and `npx rlfarm quickstart [--out DIR]`', '```sh', 'npx rlfarm train a.yaml   # a comment', 'echo "# not a comment"', '', '```', '```js', 'x // (or: npx rlfarm farm --out y)', '```'].join('\n')
  const { blocks, elsewhere } = readmeCommands(md)
  t.same(blocks, ['npx rlfarm train a.yaml', 'echo "# not a comment"'])
  t.same(elsewhere, ['npx rlfarm farm --out x', 'npx rlfarm quickstart [--out DIR]', 'npx rlfarm farm --out y'])
  t.equal(notRunHere('npx rlfarm quickstart [--out DIR]'), 'usage notation, not a command')
  t.match(notRunHere('npx rlfarm dashboard runs --port 6006'), /a server/)
  t.equal(notRunHere('npx rlfarm train examples/ppo.yaml'), undefined)
  t.same(helpExamples('Usage: x\n\nExamples:\n  rlfarm a\n  rlfarm b\n\nmore'), ['rlfarm a', 'rlfarm b'])
})
