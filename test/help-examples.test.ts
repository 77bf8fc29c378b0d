// Every example of `rlfarm --help` and of each `rlfarm <command> --help`, run
// as written, each help's in a fresh scratch directory (those of eval and
// generate read what README.md's commands train, and run with them in
// test/readme-commands.test.ts). What is not run, and why, is a visible skip:
// see test/helpers/commands.ts.
import t from 'tap'
import { cli, helpExamples, namedFilesExist, runAll, workspace } from './helpers/commands'

t.test('the examples of rlfarm --help and of each command\'s --help, as written, each help in a fresh directory', async (t) => {
  const top = cli(['--help'])
  const commands = [...top.matchAll(/^ {2}([a-z]+) {2,}\S/gm)].map((m) => m[1])
  t.ok(commands.includes('train') && commands.includes('generate'), `the commands: ${commands.join(', ')}`)
  const helps: [string, string][] = [['rlfarm --help', top], ...commands.filter((c) => c !== 'eval' && c !== 'generate').map((c): [string, string] => [`rlfarm ${c} --help`, cli([c, '--help'])])]
  for (const [name, help] of helps) {
    await t.test(`${name}: its examples`, async (t) => {
      const examples = helpExamples(help)
      t.ok(examples.length > 0, `${name} has examples`)
      namedFilesExist(t, examples)
      await runAll(t, examples, workspace(t))
    })
  }
})
