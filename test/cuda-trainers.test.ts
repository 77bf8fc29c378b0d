// check:cuda's trainer stage (bench/cuda-trainers.ts) as far as the CPU can
// run it: its configs (PPO, DPO, SFT, reward model, GRPO, RLOO), its loss comparison and its host-read
// comparison, with the cpu standing in for the device (the runs must then
// agree exactly). On a GPU machine check:cuda runs it against cuda.
import t from 'tap'
import { backend, train } from 'rlfarm'
import { ALGORITHMS, checkTrainers, compareLosses, LOSS_KEYS, LOSS_TOL, trainerConfigs } from '../bench/cuda-trainers'
import { tempDir } from './helpers/common'

type Check = { name: string; ok: boolean; detail: string }
const collect = (into: Check[]) => (name: string, ok: boolean, detail: string) => void into.push({ name, ok, detail })

t.test('the trainer stage run with the cpu as the device: every check passes', async (t) => {
  const checks: Check[] = []
  await checkTrainers(collect(checks), tempDir(t, 'cuda-trainers'), 'cpu')
  for (const c of checks) t.ok(c.ok, `${c.name}: ${c.detail}`)
  for (const algorithm of ALGORITHMS) {
    const steps = checks.filter((c) => c.name.startsWith(`${algorithm} on cpu: step `))
    t.equal(steps.length, 3 * LOSS_KEYS[algorithm].length, `${algorithm}: three steps' losses compared`)
    t.ok(steps.every((c) => c.detail.includes('relative error 0.00e+0')), `${algorithm}: the same run twice on the cpu gives the same losses`)
    t.match(checks.find((c) => c.name === `${algorithm} on cpu: host reads equal the cpu run's`)?.detail ?? '', /^[1-9]\d* reads/, `${algorithm}: the host reads of its steps were counted`)
  }
})

t.test('compareLosses fails a step whose loss is off, or a run with missing steps', async (t) => {
  const cpu = [{ loss: 0.69 }, { loss: 0.5 }]
  const run = (device: Record<string, number>[]) => {
    const checks: Check[] = []
    compareLosses(collect(checks), 'dpo', cpu, device, ['loss'])
    return checks.filter((c) => !c.ok).map((c) => c.name)
  }
  t.same(run([{ loss: 0.69 * (1 + LOSS_TOL / 2) }, { loss: 0.5 }]), [], 'within the tolerance')
  t.same(run([{ loss: 0.69 }, { loss: 0.5 * (1 + 3 * LOSS_TOL) }]), ['dpo: step 2 loss'], 'a loss off by 3x the tolerance')
  t.same(run([{ loss: 0.69 }, { loss: NaN }]), ['dpo: step 2 loss'], 'a NaN loss')
  t.same(run([{ loss: 0.69 }]), ['dpo: the same number of logged steps'], 'a step missing')
  const near = [{ policy_loss: 1e-4 }]
  const checks: Check[] = []
  compareLosses(collect(checks), 'ppo', near, [{ policy_loss: 1e-4 + 5e-6 }], ['policy_loss'])
  t.ok(checks.every((c) => c.ok), 'a loss near zero is compared against the floor, not its own size')
})

t.test('its configs put every model spec on the device, in f32; without a GPU they fail naming the field', async (t) => {
  const dir = tempDir(t, 'cuda-trainers-configs')
  const runs = trainerConfigs(dir, 'cuda')
  for (const algorithm of ALGORITHMS) {
    t.match(runs[algorithm].policy, { device: 'cuda', precision: 'f32' }, `${algorithm}: policy on cuda in f32`)
  }
  t.match(trainerConfigs(dir, 'cpu').ppo.policy, { device: 'cpu' }, 'the cpu runs on the cpu')
  if (backend().cudaDevices === 0) {
    for (const algorithm of ALGORITHMS) {
      await t.rejects(train(runs[algorithm]), { name: 'ConfigError', message: /policy\.device: device 'cuda' is not available/ }, `${algorithm}: refused before any work`)
    }
  }
})
