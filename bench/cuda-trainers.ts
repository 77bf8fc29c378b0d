// Whole trainers on a device against the same runs on the CPU: a few steps of
// PPO, DPO, SFT, reward-model training, GRPO and RLOO of a tiny model with
// `device` in every model spec (f32),
// whose per-step losses must track the CPU's, and whose host reads
// (backend().hostReads, counted alike on either device) must equal the CPU's.
// scripts/check-cuda.mjs runs it on a GPU machine:
//   npx tsx bench/cuda-trainers.ts    (one line per check, exits 1 on a failure)
// test/cuda-trainers.test.ts runs the same code on the CPU against itself.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { backend, train, type RunConfigInput } from 'rlfarm'

export type Report = (name: string, ok: boolean, detail: string) => void

/** Relative tolerance of a training step's loss in f32 (bench/cuda-checks.ts: 10 x 1e-4). */
export const LOSS_TOL = 1e-3
/** Losses near zero (a PPO policy loss) are compared against this scale instead. */
const LOSS_FLOOR = 1e-2

/** The losses each trainer's check compares, per logged step. */
export const LOSS_KEYS = {
  ppo: ['policy_loss', 'value_loss'],
  dpo: ['loss'],
  sft: ['loss'],
  reward: ['loss'],
  grpo: ['loss'],
  rloo: ['loss'],
} as const
export type CheckedAlgorithm = keyof typeof LOSS_KEYS
export const ALGORITHMS = Object.keys(LOSS_KEYS) as CheckedAlgorithm[]

/** A few steps of every checked trainer on a tiny byte-tokenizer model, every model spec on `device` (f32 there), writing under `dir`. */
export function trainerConfigs(dir: string, device: string, steps = 3): Record<CheckedAlgorithm, RunConfigInput> {
  const prompts = path.join(dir, 'prompts.jsonl')
  const pairs = path.join(dir, 'pairs.jsonl')
  const demos = path.join(dir, 'sft.jsonl')
  const words = Array.from({ length: 16 }, (_, i) => `w${(i * 7919) % 97}`)
  const write = (file: string, rows: object[]) => fs.existsSync(file) || fs.writeFileSync(file, rows.map((r) => `${JSON.stringify(r)}\n`).join(''))
  write(prompts, words.map((w) => ({ prompt: `${w}:` })))
  write(pairs, words.map((w) => ({ prompt: `${w}:`, chosen: ` a${w}a`, rejected: ` z${w}${w}z` })))
  write(demos, words.map((w) => ({ prompt: `${w}:`, response: ` a${w}a` })))
  const policy = { tokenizer: 'byte', init: { hidden_size: 32, layers: 1, heads: 2, max_positions: 64 }, device, ...(device === 'cpu' ? {} : { precision: 'f32' }) }
  const run = (algorithm: CheckedAlgorithm, rest: object) =>
    ({ output_dir: dir, seed: 3, policy, logging: { progress: 'none' }, algorithm, name: `${algorithm}-${device.replace(':', '-')}`, training: { batch_size: 4, max_steps: steps }, ...rest }) as RunConfigInput
  const sampled = { data: { chat_template: false, max_length: 40, prompts }, generation: { max_new_tokens: 8, stop_at_eos: false }, reward_function: { name: 'count_token', token: 97 } }
  const paired = { data: { chat_template: false, max_length: 40, train: pairs, eval_size: 0 } }
  return {
    ppo: run('ppo', { ...sampled, ppo: { minibatch_size: 2, epochs: 2 } }),
    dpo: run('dpo', paired),
    sft: run('sft', { data: { chat_template: false, max_length: 40, train: demos, eval_size: 0 } }),
    reward: run('reward', paired),
    grpo: run('grpo', { ...sampled, training: { batch_size: 2, max_steps: steps }, group: { group_size: 3, kl_coef: 0.05 } }),
    rloo: run('rloo', { ...sampled, training: { batch_size: 2, max_steps: steps }, group: { group_size: 3, kl_coef: 0.05 } }),
  }
}

/** The training records of a run (metrics.jsonl lines with a step and every key in `keys`). */
export function stepLosses(runDir: string, keys: readonly string[]): Record<string, number>[] {
  return fs
    .readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>)
    .filter((r) => keys.every((k) => typeof r[k] === 'number'))
}

/** One check per step and key: the device's loss within LOSS_TOL of the CPU's (relative, against at least LOSS_FLOOR). */
export function compareLosses(report: Report, what: string, cpu: Record<string, number>[], device: Record<string, number>[], keys: readonly string[]): void {
  report(`${what}: the same number of logged steps`, cpu.length > 0 && cpu.length === device.length, `${device.length} on the device, ${cpu.length} on the cpu`)
  cpu.forEach((a, i) => {
    const b = device[i]
    if (!b) return
    for (const key of keys) {
      const err = Math.abs(b[key] - a[key]) / Math.max(Math.abs(a[key]), LOSS_FLOOR)
      report(`${what}: step ${i + 1} ${key}`, err <= LOSS_TOL, `${b[key]} vs cpu ${a[key]} (relative error ${err.toExponential(2)}, tolerance ${LOSS_TOL})`)
    }
  })
}

/** Trains each config on the cpu and on `device`, and reports whether the losses and the host reads agree. */
export async function checkTrainers(report: Report, dir: string, device: string): Promise<void> {
  const cpuRuns = trainerConfigs(dir, 'cpu')
  const deviceRuns = trainerConfigs(dir, device)
  for (const algorithm of ALGORITHMS) {
    // Host reads from the first logged training step to the last: whole steps, not the setup or the saving.
    const run = async (config: RunConfigInput) => {
      const marks: { reads: number; bytes: number }[] = []
      const onStep = (e: { phase?: string }) => {
        if (e.phase !== 'train') return
        const b = backend()
        marks.push({ reads: b.hostReads, bytes: b.hostReadBytes })
      }
      const result = await train(config, { overwrite: true, onStep })
      const first = marks[0] ?? { reads: 0, bytes: 0 }
      const last = marks.at(-1) ?? first
      return { losses: stepLosses(result.runDir, LOSS_KEYS[algorithm]), reads: last.reads - first.reads, bytes: last.bytes - first.bytes }
    }
    const a = await run(cpuRuns[algorithm])
    const b = await run(deviceRuns[algorithm])
    compareLosses(report, `${algorithm} on ${device}`, a.losses, b.losses, LOSS_KEYS[algorithm])
    report(`${algorithm} on ${device}: host reads equal the cpu run's`, a.reads === b.reads && a.bytes === b.bytes, `${b.reads} reads, ${b.bytes} bytes (cpu ${a.reads}, ${a.bytes})`)
  }
}

if (require.main === module) {
  let failed = 0
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rlfarm-cuda-trainers-'))
  const finish = (code: number) => {
    fs.rmSync(dir, { recursive: true, force: true })
    process.exit(code)
  }
  checkTrainers((name, ok, detail) => {
    if (!ok) failed++
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${detail}`)
  }, dir, process.argv[2] ?? 'cuda')
    .then(() => {
      console.log(`trainer checks: ${failed === 0 ? 'all passed' : `${failed} failed`}`)
      finish(failed === 0 ? 0 : 1)
    })
    .catch((err) => {
      console.error(`FAIL trainer checks stopped: ${(err as Error).stack ?? err}`)
      finish(1)
    })
}
