// Model.generate returns the masks trainers need (attention, action, last
// token): checked against masks built from the prompt mask and the lengths,
// for left-padded prompts, rows that stop early and rows that run to the end.
import t from 'tap'
import { Model, Tensor } from 'rlfarm'

for (const arch of ['gpt2', 'llama'] as const) {
  t.test(`${arch}: generate's masks match its lengths and the prompt mask`, async (t) => {
    const model = Model.create({ arch, vocab: 40, dim: 32, layers: 1, heads: 2, maxPositions: 32 }, { seed: 5 })
    const B = 4
    const P = 5
    const promptMask = new Uint8Array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 1, 1, 1, 1])
    const prompts = Tensor.from(new Int32Array(B * P).map((_, i) => (promptMask[i] ? 3 + (i % 30) : 0)), [B, P])
    // Stop tokens that some rows sample early: lengths differ between rows.
    const out = await model.generate(prompts, {
      attentionMask: Tensor.from(promptMask, [B, P]),
      maxNewTokens: 6,
      temperature: 1.5,
      stopTokens: [4, 7, 9, 11, 13, 17],
      seed: 11,
    })
    const width = out.tokens.shape[1]
    const lengths = out.lengths.toArray()
    t.ok(new Set(lengths).size > 1 || lengths.every((l) => l === width - P), `lengths ${lengths}`)
    const attention = new Uint8Array(B * width)
    const action = new Float32Array(B * (width - 1))
    const last = new Float32Array(B * (width - 1))
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < P; i++) attention[b * width + i] = promptMask[b * P + i]
      for (let j = 0; j < lengths[b]; j++) {
        attention[b * width + P + j] = 1
        action[b * (width - 1) + P - 1 + j] = 1
      }
      if (lengths[b] > 0) last[b * (width - 1) + P - 1 + lengths[b] - 1] = 1
    }
    t.same(out.attentionMask.shape, [B, width])
    t.equal(out.attentionMask.dtype, 'u8')
    t.same([...(out.attentionMask.data as Uint8Array)], [...attention], 'attentionMask')
    t.same(out.actionMask.shape, [B, width - 1])
    t.same([...(out.actionMask.data as Float32Array)], [...action], 'actionMask')
    t.same([...(out.lastMask.data as Float32Array)], [...last], 'lastMask')
  })
}

t.test('no new tokens: the masks are the prompt mask and empty response masks', async (t) => {
  const model = Model.create({ arch: 'llama', vocab: 40, dim: 32, layers: 1, heads: 2, maxPositions: 32 }, { seed: 5 })
  const out = await model.generate(Tensor.from(new Int32Array([5, 6, 7]), [1, 3]), { maxNewTokens: 0 })
  t.same([...(out.attentionMask.data as Uint8Array)], [1, 1, 1])
  t.same([...(out.actionMask.data as Float32Array)], [0, 0])
  t.same([...(out.lastMask.data as Float32Array)], [0, 0])
})
