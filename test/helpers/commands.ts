// Running the commands that README.md and the --help texts show, as written
// (test/readme-commands.test.ts, test/help-examples.test.ts). Commands are
// read out of the README's ```sh blocks and `npx rlfarm ...` written anywhere
// else in it, and out of the help texts' "Examples:" sections, so a new one is
// covered without touching the tests. They run through a shell in a scratch
// directory holding a copy of examples/ and a local install of this checkout
// (node_modules/rlfarm), where `npx rlfarm` finds it offline.
//
// What is not run, and why, is reported as a skip:
// - `npm install` (the checkout is installed already; .ci/run runs it), `npm
//   test` (the suite itself), `npm run bench:*` (minutes each, with a PyTorch
//   peer; bench/RESULTS.md), `npm run check:cuda` (test/check-cuda.test.ts
//   runs it), `tensorboard` (Python's, when not installed);
// - quickstart and compare take 6 to 15 minutes each on two cores. `npx rlfarm
//   quickstart` as written is run in the checkout when runs/quickstart has
//   finished there (.ci/run makes it before `npm test`): a second run prints
//   its table. The others run with RLFARM_README_LONG=1; test/cli.test.ts and
//   test/farm-pipeline.test.ts run both commands on shrunk pipelines.
import fs from 'node:fs'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import type { Test } from 'tap'
import { tempDir } from './common'

export const ROOT = path.join(__dirname, '..', '..')
const BIN = path.join(ROOT, 'bin', 'rlfarm.js')
const LONG = process.env.RLFARM_README_LONG === '1'

/** The commands of a Markdown text: each line of its ```sh blocks, then `npx rlfarm ...` written elsewhere. */
export function readmeCommands(markdown: string): { blocks: string[]; elsewhere: string[] } {
  const blocks: string[] = []
  let rest = markdown
  for (const m of markdown.matchAll(/^```(?:sh|bash|shell)\n([\s\S]*?)^```/gm)) {
    rest = rest.replace(m[0], '')
    for (const line of m[1].split('\n')) {
      const command = stripComment(line).trim()
      if (command) blocks.push(command)
    }
  }
  const elsewhere: string[] = []
  for (const m of rest.matchAll(/npx rlfarm [^`)\n#]*/g)) {
    const command = m[0].trim()
    if (!blocks.includes(command) && !elsewhere.includes(command)) elsewhere.push(command)
  }
  return { blocks, elsewhere }
}

/** A shell line without its trailing `# comment` (a # inside quotes stays). */
function stripComment(line: string): string {
  let quote: string | undefined
  for (let i = 0; i < line.length; i++) {
    const c = line[i]
    if (quote) {
      if (c === quote) quote = undefined
    } else if (c === '"' || c === "'") quote = c
    else if (c === '#' && (i === 0 || /\s/.test(line[i - 1]))) return line.slice(0, i)
  }
  return line
}

/** The lines of a help text's "Examples:" section. */
export function helpExamples(help: string): string[] {
  const at = help.indexOf('\nExamples:\n')
  if (at < 0) return []
  const out: string[] = []
  for (const line of help.slice(at + '\nExamples:\n'.length).split('\n')) {
    if (!line.startsWith('  ')) break
    out.push(line.trim())
  }
  return out
}

export function cli(args: string[]): string {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`rlfarm ${args.join(' ')}: exit ${r.status}: ${r.stderr}`)
  return r.stdout
}

/** Every file of examples/ that the commands name exists. */
export function namedFilesExist(t: Test, commands: string[]): void {
  for (const file of commands.flatMap((c) => c.match(/examples\/[\w./-]+/g) ?? [])) t.ok(fs.existsSync(path.join(ROOT, file)), `${file} exists`)
}

/** Why a command is not run here, or undefined when it is. */
export function notRunHere(command: string): string | undefined {
  if (/^npm (install|ci)\b/.test(command)) return 'installs: this checkout is installed (.ci/run runs npm install)'
  if (/^npm test\b/.test(command)) return 'npm test is this suite'
  if (/^npm run bench:/.test(command)) return 'a benchmark: minutes, with its PyTorch peer (bench/RESULTS.md has its figures)'
  if (/^npm run prebuild\b|^npm pack\b/.test(command)) return 'packaging, done in the checkout: test/install.test.ts runs both and installs the tarball'
  if (/^npm run fuzz\b/.test(command)) return 'the long fuzz run (test/fuzz.test.ts runs the suite, bounded, from a fixed seed)'
  if (/^(sudo )?apt(-get)? install\b/.test(command)) return 'installs a system package (.ci/run installs what the tests need)'
  if (/--nnodes [2-9]|--master-addr (?!127\.0\.0\.1)/.test(command)) return 'a launch across machines (test/distributed.test.ts runs two "nodes" on 127.0.0.1)'
  if (/['"]$/.test(command)) return "part of a cluster launcher's line (srun, mpirun), shown for a cluster"
  if (/^npm run check:cuda\b/.test(command)) return 'the CUDA check, run from the checkout: test/check-cuda.test.ts runs it (its GPU stages need a GPU)'
  if (/^tensorboard\b/.test(command) && spawnSync('sh', ['-c', 'command -v tensorboard']).status !== 0) return "TensorBoard (Python's) is not installed here"
  if (/(\[|<|\.\.\.)/.test(command)) return 'usage notation, not a command'
  if (/rlfarm dashboard\b/.test(command)) return 'a server that runs until it is stopped (its own test drives it in a browser)'
  return undefined
}

/** quickstart, compare and the UltraFeedback example: 6 to 20 minutes each. */
function isLong(command: string): boolean {
  return /rlfarm (quickstart|compare)\b|rlfarm run examples\/ultrafeedback\.yaml/.test(command)
}

/** A scratch directory with examples/ and this checkout installed as node_modules/rlfarm. */
export function workspace(t: Test): string {
  const dir = fs.realpathSync(tempDir(t, 'readme'))
  fs.cpSync(path.join(ROOT, 'examples'), path.join(dir, 'examples'), { recursive: true })
  fs.writeFileSync(path.join(dir, 'package.json'), '{ "name": "readme-commands", "private": true }\n')
  fs.mkdirSync(path.join(dir, 'node_modules', '.bin'), { recursive: true })
  fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'rlfarm'))
  fs.symlinkSync(path.join('..', 'rlfarm', 'bin', 'rlfarm.js'), path.join(dir, 'node_modules', '.bin', 'rlfarm'))
  return dir
}

/** Runs a help example's `rlfarm ...` or a README line as written, through the shell, in `cwd`. */
function runCommand(t: Test, command: string, cwd: string) {
  const line = command.startsWith('rlfarm ') ? `npx ${command}` : command
  // Offline, and no install scripts: npx must find the local rlfarm, never fetch or build one.
  const r = spawnSync('sh', ['-c', line], { cwd, encoding: 'utf8', env: { ...process.env, npm_config_offline: 'true', npm_config_ignore_scripts: 'true', npm_config_update_notifier: 'false' }, timeout: 1_200_000 })
  t.equal(r.status, 0, `${line}  (in ${cwd})${r.status === 0 ? '' : `\n${r.stderr.slice(-2000)}`}`)
  return r
}

/** Runs the commands in order in `cwd`, skipping (visibly) those that cannot or should not run here. */
export async function runAll(t: Test, commands: string[], cwd: string) {
  for (const command of commands) {
    for (const part of command.split(' && ')) {
      const why = notRunHere(part)
      if (why) {
        t.skip(`${part}: ${why}`)
        continue
      }
      if (isLong(part) && !LONG) {
        const finished = path.join(ROOT, 'runs', 'quickstart', 'summary.json')
        if (/^npx rlfarm quickstart$/.test(part) && fs.existsSync(finished)) {
          // As written, in the checkout whose quickstart has finished: the second run prints its table.
          const r = runCommand(t, part, ROOT)
          t.match(r.stdout, /policy\s+win-rate \(gold\)\s+pool win-rate\s+n\n[-\s]+\nsft\s+[\d.]+ ± [\d.]+/, 'the table of the finished quickstart')
        } else t.skip(`${part}: 6-20 minutes on two cores; RLFARM_README_LONG=1 runs it (cli.test.ts, farm-pipeline.test.ts and rating-judges.test.ts run them shrunk)`)
        continue
      }
      runCommand(t, part, cwd)
    }
  }
}
