// The sampling rules generation runs on the CPU and the CUDA engine alike
// (native/model/sampling_math.h, __host__ __device__ under nvcc), through the
// addon's sampleToken entry with the uniform draw given: greedy picks the
// first argmax; plain sampling inverts the CDF in index order (across the
// 256-token chunks the sums run over); top-k and top-p cut the candidates
// ordered by logit, ties by index, and sample among them; log-probs are those
// of softmax(logits / temperature). The reference is float64 JavaScript.
import t, { type Test } from 'tap'
import { native } from '../ts/native'
import { assertThrowsWith } from './helpers/common'

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1
  return () => {
    s ^= s << 13
    s ^= s >>> 17
    s ^= s << 5
    return (s >>> 0) / 4294967296
  }
}

/** The rules in float64, as sampling_math.h states them. */
function reference(logits: number[], temperature: number, topK: number, topP: number, u: number): { token: number; logprob: number } {
  const l = logits.map(Math.fround)
  const invT = temperature === 0 ? 1 : 1 / Math.fround(temperature)
  let best = 0
  for (let j = 1; j < l.length; j++) if (l[j] > l[best]) best = j
  const max = l[best] * invT
  const e = l.map((x) => Math.exp(x * invT - max))
  const sum = e.reduce((a, b) => a + b, 0)
  const lse = max + Math.log(sum)
  const pick = (j: number) => ({ token: j, logprob: l[j] * invT - lse })
  if (temperature === 0) return pick(best)
  const truncate = (topK > 0 && topK < l.length) || Math.fround(topP) < 1
  if (!truncate) {
    let acc = 0
    for (let j = 0; j < l.length; j++) if ((acc += e[j]) > u * sum) return pick(j)
    return pick(best)
  }
  const order = l.map((_, j) => j).sort((a, b) => l[b] - l[a] || a - b)
  let keep = topK > 0 && topK < l.length ? topK : l.length
  if (Math.fround(topP) < 1) {
    let acc = 0
    let n = 0
    while (n < keep && acc < Math.fround(topP) * sum) acc += e[order[n++]]
    keep = Math.max(1, Math.min(keep, n))
  }
  const kept = order.slice(0, keep).reduce((a, j) => a + e[j], 0)
  let acc = 0
  for (let i = 0; i < keep; i++) if ((acc += e[order[i]]) > u * kept) return pick(order[i])
  return pick(order[keep - 1])
}

function check(t: Test, logits: number[], temperature: number, topK: number, topP: number, u: number, what: string): void {
  const got = native.sampleToken(logits, temperature, topK, topP, u)
  const want = reference(logits, temperature, topK, topP, u)
  t.equal(got.token, want.token, `${what}: token`)
  t.ok(Math.abs(got.logprob - want.logprob) <= 1e-5 * Math.max(1, Math.abs(want.logprob)), `${what}: log-prob ${got.logprob} vs ${want.logprob}`)
}

t.test('greedy picks the first argmax; its log-prob is at temperature 1', async (t) => {
  check(t, [0.5, 2, -1, 2, 1.5], 0, 0, 1, 0.7, 'a tie: the first of the two')
  check(t, [-3, -2, -2.5], 0, 5, 0.3, 0.1, 'top-k and top-p do not change a greedy pick')
  t.equal(native.sampleToken([1, 1, 1, 1], 0, 0, 1, 0.99).token, 0, 'all equal: token 0')
})

t.test('plain sampling inverts the CDF in index order, across chunks of 256 tokens', async (t) => {
  const r = rng(7)
  for (const vocab of [1, 2, 255, 256, 257, 1000, 3000]) {
    const logits = Array.from({ length: vocab }, () => r() * 6 - 3)
    for (const temperature of [1, 0.7, 2.5]) {
      for (const u of [0, 0.001, 0.25, 0.5, 0.75, 0.999999, r()]) check(t, logits, temperature, 0, 1, u, `vocab ${vocab}, temperature ${temperature}, u ${u}`)
    }
  }
  // Where the mass sits: a peaked row takes its peak for most draws.
  const peaked = Array.from({ length: 600 }, (_, j) => (j === 421 ? 12 : 0))
  t.equal(native.sampleToken(peaked, 1, 0, 1, 0.5).token, 421, 'the peak in the second chunk')
})

t.test('top-k and top-p cut the candidates by logit (ties by index) and sample among them', async (t) => {
  const r = rng(11)
  for (const vocab of [5, 300, 2000]) {
    const logits = Array.from({ length: vocab }, () => Math.round((r() * 8 - 4) * 4) / 4) // quarter steps: many ties
    for (const [topK, topP] of [[1, 1], [3, 1], [50, 1], [0, 0.5], [0, 0.9], [0, 1e-6], [10, 0.8], [vocab, 0.95]]) {
      for (const u of [0, 0.3, 0.6, 0.999999, r()]) check(t, logits, 1.3, topK, topP, u, `vocab ${vocab}, topK ${topK}, topP ${topP}, u ${u}`)
    }
  }
  // Ties: of five equal logits top-k 2 keeps tokens 0 and 1.
  const tied = [1, 1, 1, 1, 1]
  t.same([0.1, 0.4, 0.6, 0.9].map((u) => native.sampleToken(tied, 1, 2, 1, u).token), [0, 0, 1, 1], 'top-k 2 of five ties: tokens 0 and 1')
  // top-p just over the top token's mass keeps two.
  const two = [Math.log(0.5), Math.log(0.3), Math.log(0.2)]
  t.same([0.1, 0.7].map((u) => native.sampleToken(two, 1, 0, 0.6, u).token), [0, 1], 'top-p 0.6 of (0.5, 0.3, 0.2) keeps two')
  t.same([0.1, 0.7, 0.99].map((u) => native.sampleToken(two, 1, 0, 0.45, u).token), [0, 0, 0], 'top-p 0.45 keeps the first alone')
})

t.test('bad calls name the argument', async (t) => {
  assertThrowsWith(t, () => native.sampleToken([], 1, 0, 1, 0.5), ['sampleToken: logits must not be empty'], 'no logits')
  assertThrowsWith(t, () => native.sampleToken([1], -1, 0, 1, 0.5), ['sampleToken: temperature must be >= 0'], 'negative temperature')
  assertThrowsWith(t, () => native.sampleToken([1], 1, 1.5, 1, 0.5), ['sampleToken: topK must be an integer >= 0'], 'fractional topK')
  assertThrowsWith(t, () => native.sampleToken([1], 1, 0, 0, 0.5), ['sampleToken: topP must be in (0, 1]'], 'topP 0')
  assertThrowsWith(t, () => native.sampleToken([1], 1, 0, 1, 1), ['sampleToken: u must be in [0, 1)'], 'u 1')
})
