// npm run bench:ab -- --addons before.node,after.node [--rounds 10] [bench:train's shape flags]
//
// Compares builds of the addon on bench:train's optimizer step: copy
// build/Release/rlfarm.node aside before a change, rebuild, and name both.
// Each round runs `bench/train.ts --no-peer --no-generate --rounds 1 --json`
// once per build, in turn, with RLFARM_ADDON naming the build, so that a slow
// spell of a shared machine falls on every build alike. Prints, per build, the
// fastest step of all rounds, the median of the rounds' fastest steps and the
// median of the rounds' median steps (on a VM whose slow spells only add
// time, the fastest steps are the least disturbed comparison); --json adds one
// JSON line with every round.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { benchArgs } from './args'
import { median } from './peer'

interface Result {
  fastestStepMs: number
  stepMs: number
}

function parseArgs(argv: string[]): { addons: string[]; rounds: number; json: boolean; trainArgs: string[] } {
  const { args, rest } = benchArgs('ab', argv, { addons: '', rounds: 10, json: false }, { rest: true })
  const addons = args.addons.split(',').filter(Boolean)
  if (addons.length < 1) throw new Error('--addons needs one or more builds, comma-separated: --addons before.node,after.node')
  for (const addon of addons) {
    if (!fs.existsSync(addon)) throw new Error(`--addons: ${addon} does not exist`)
  }
  return { addons: addons.map((a) => path.resolve(a)), rounds: args.rounds, json: args.json, trainArgs: rest }
}

function runOnce(addon: string, trainArgs: string[]): Result {
  const tsx = path.join(__dirname, '..', 'node_modules', '.bin', 'tsx')
  const args = [path.join(__dirname, 'train.ts'), ...trainArgs, '--no-peer', '--no-generate', '--rounds', '1', '--json']
  const run = spawnSync(tsx, args, { env: { ...process.env, RLFARM_ADDON: addon }, encoding: 'utf8' })
  const last = run.stdout.trim().split('\n').pop() ?? ''
  if (run.status !== 0 || !last.startsWith('{')) {
    throw new Error(`bench/train.ts with ${addon} failed (exit ${run.status}): ${(run.stderr || run.stdout).slice(-800)}`)
  }
  const out = JSON.parse(last) as Result
  return { fastestStepMs: out.fastestStepMs, stepMs: out.stepMs }
}

function main() {
  const { addons, rounds, json, trainArgs } = parseArgs(process.argv.slice(2))
  const results: Record<string, Result[]> = Object.fromEntries(addons.map((a) => [a, []]))
  for (let r = 0; r < rounds; r++) {
    for (const addon of addons) results[addon].push(runOnce(addon, trainArgs))
  }
  console.log(`${rounds} rounds, builds in turn; bench/train.ts ${trainArgs.join(' ')}`)
  const rows = addons.map((addon) => {
    const runs = results[addon]
    return {
      addon,
      fastestStepMs: Math.min(...runs.map((x) => x.fastestStepMs)),
      medianFastestStepMs: median(runs.map((x) => x.fastestStepMs)),
      medianStepMs: median(runs.map((x) => x.stepMs)),
    }
  })
  for (const row of rows) {
    console.log(`  ${row.addon}: fastest step ${row.fastestStepMs.toFixed(1)} ms, median of fastest ${row.medianFastestStepMs.toFixed(1)} ms, median of medians ${row.medianStepMs.toFixed(1)} ms`)
  }
  if (json) console.log(JSON.stringify({ rounds: results, summary: rows }))
}

main()
