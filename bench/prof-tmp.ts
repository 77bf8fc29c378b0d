import { AdamW, Model, Tensor } from 'rlfarm'
async function main() {
  const model = Model.create({ arch: 'gpt2', vocab: 256, dim: 256, layers: 4, heads: 4, maxPositions: 128 }, { seed: 1 })
  const opt = new AdamW(model)
  const g = Tensor.full([16, 127], -1 / (16 * 127))
  const tokens = Tensor.from(Int32Array.from({ length: 16 * 128 }, (_, i) => (i * 31) % 256), [16, 128])
  for (let i = 0; i < 12; i++) {
    const t0 = performance.now()
    model.zeroGrad()
    const t1 = performance.now()
    const out = await model.forward(tokens, { train: true })
    const t2 = performance.now()
    await model.backward({ gradLogp: g })
    const t3 = performance.now()
    await opt.step()
    const t4 = performance.now()
    out.logp!.dispose()
    if (i >= 2) console.log(`zero ${(t1-t0).toFixed(1)} fwd ${(t2-t1).toFixed(1)} bwd ${(t3-t2).toFixed(1)} opt ${(t4-t3).toFixed(1)}`)
  }
}
main()
