// Tensors: zero-copy views both ways, shared memory with worker threads,
// lifetimes under GC pressure, dtypes and casts, devices, and module loading.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import { backend, devices, ops, Tensor } from 'rlfarm'
import { assertClose, cudaAvailable, f32 } from './helpers/common'
import { whitenRef } from './helpers/reference'

const gc = (globalThis as { gc?: () => void }).gc
const root = path.resolve(__dirname, '..')

t.test('a wrapped typed array and the tensor share memory', async (t) => {
  const array = new Float32Array([1, 2, 3, 4, 5, 6])
  const tensor = Tensor.from(array, [2, 3])
  t.equal(tensor.data.buffer, array.buffer, 'same ArrayBuffer')
  array[0] = 10
  t.equal(tensor.data[0], 10, 'a write through the array is read through the tensor')
  tensor.data[5] = 60
  t.equal(array[5], 60, 'a write through the tensor is read through the array')
  const whitened = ops.whiten(tensor)
  assertClose(t, whitened.toArray(), whitenRef(Array.from(array), [1, 1, 1, 1, 1, 1]), 'an op reads the current values')

  const buffer = new ArrayBuffer(64)
  const offset = new Float32Array(buffer, 8, 4)
  offset.set([7, 8, 9, 10])
  const viewed = Tensor.from(offset, [4])
  t.same(Array.from(viewed.data), [7, 8, 9, 10], 'a typed array with a byte offset is wrapped at that offset')
  viewed.data[0] = 70
  t.equal(new Float32Array(buffer)[2], 70, 'and writes land at the offset')
})

t.test('addon-allocated tensors show their memory without copies', async (t) => {
  const z = Tensor.zeros([4])
  t.equal(z.data, z.data, 'the view is cached')
  z.data[2] = 5
  const r = z.reshape([2, 2])
  t.ok(r.sharesMemoryWith(z), 'reshape shares memory')
  t.equal(r.data[2], 5, 'a reshape sees writes to the original')
  r.data[3] = 9
  t.equal(z.data[3], 9, 'and the original sees writes to the reshape')
  const c = z.clone()
  t.notOk(c.sharesMemoryWith(z), 'clone copies')
  c.data[0] = 1
  t.equal(z.data[0], 0, 'and writes to the clone stay there')
  t.equal(z.to('cpu'), z, "to('cpu') of a host tensor is the tensor itself")
  t.same(Tensor.full([3], 2.5).toArray(), [2.5, 2.5, 2.5], 'full')
  t.equal(Tensor.from([4], [1]).item(), 4, 'item')
  t.same(Tensor.from([1, 2, 3, 4, 5, 6], [2, 3]).reshape([3, -1]).shape, [3, 2], 'reshape infers -1')
})

t.test('dispose frees at once; views stay valid', async (t) => {
  const x = Tensor.full([1000], 3)
  const view = x.data
  x.dispose()
  t.ok(x.disposed, 'disposed')
  t.ok(view.every((v) => v === 3), 'a view taken before still reads the values')
  t.throws(() => x.data, /disposed/, 'data afterwards throws')
  t.throws(() => x.shape, /disposed/, 'so does shape')
  t.throws(() => ops.whiten(x), /ops\.whiten: x was disposed/, 'ops name the disposed argument')
  const y = Tensor.full([1000], 5)
  t.ok(view.every((v) => v === 3), 'memory held by a view is not handed to a new tensor')
  t.ok((y.data as Float32Array).every((v) => v === 5), 'and the new tensor has its own values')
})

t.test('a tensor shared with a worker thread sees its writes', async (t) => {
  const n = 1024
  const shared = new SharedArrayBuffer(n * 4)
  const tensor = Tensor.from(new Float32Array(shared), [n])
  const worker = new Worker(
    `
    const { parentPort, workerData } = require('node:worker_threads')
    const { Tensor, ops } = require(workerData.entry)
    const t = Tensor.from(new Float32Array(workerData.shared), [workerData.n])
    for (let i = 0; i < workerData.n; i++) t.data[i] = Math.sin(i)
    // run ops while the main thread runs them too
    for (let k = 0; k < 50; k++) ops.whiten(t)
    parentPort.postMessage({ sum: ops.whiten(t, undefined, { shiftMean: false }).toArray().reduce((a, b) => a + b, 0) })
    `,
    { eval: true, workerData: { shared, n, entry: root } },
  )
  const busy = setInterval(() => ops.whiten(Tensor.full([4096], 1)), 1)
  const message = await new Promise<{ sum: number }>((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
  })
  clearInterval(busy)
  await worker.terminate()
  const expected = Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i)))
  assertClose(t, Array.from(tensor.data), expected, "the main thread's tensor holds the worker's writes", { atol: 0, rtol: 0 })
  assertClose(t, ops.whiten(tensor).toArray(), whitenRef(expected, new Array(n).fill(1)), 'and ops on the main thread read them', { atol: 1e-5, rtol: 1e-5 })
  t.ok(Math.abs(message.sum - expected.reduce((a, b) => a + b, 0)) < 1e-2, "the worker's own ops saw the same values")
})

t.test('views keep storage alive under GC pressure', { skip: gc ? false : 'run with --expose-gc' }, async (t) => {
  const n = 1 << 16
  let tensor: Tensor | undefined = Tensor.zeros([n])
  const view = tensor.data as Float32Array
  view.fill(7)
  tensor = undefined
  let opResult: Tensor | undefined = ops.whiten(Tensor.full([n], 3), Tensor.full([n], 1, { dtype: 'u8' }))
  const opView = opResult.data
  opResult = undefined
  let source: Float32Array | undefined = new Float32Array(n).fill(4)
  const wrapped = Tensor.from(source, [n])
  source = undefined
  for (let round = 0; round < 5; round++) {
    gc!()
    // Allocate and fill tensors of the same size: freed memory would be reused and overwritten.
    const junk = Array.from({ length: 20 }, () => Tensor.full([n], 9))
    junk.forEach((j) => j.data[0]++)
    await new Promise((resolve) => setImmediate(resolve))
  }
  gc!()
  t.ok(view.every((x) => x === 7), 'the view of a collected tensor still reads its values')
  view[0] = 1
  t.equal(view[0], 1, 'and can be written')
  t.ok(opView.every((x) => x === 0), "an op result's view outlives the op result")
  t.ok(wrapped.data.every((x) => x === 4), 'a tensor keeps the typed array it wraps alive')
  t.equal(ops.whiten(wrapped).toArray()[0], 0, 'and ops can still read it')
})

t.test('dropped tensors free their memory', { skip: gc ? false : 'run with --expose-gc' }, async (t) => {
  const n = 2 << 20 // 8 MB each
  gc!()
  const before = process.memoryUsage().rss
  for (let i = 0; i < 300; i++) {
    const x = Tensor.zeros([n])
    x.data[0] = i // touch the view too
    if (i % 20 === 0) {
      gc!()
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
  gc!()
  await new Promise((resolve) => setImmediate(resolve))
  gc!()
  const grown = (process.memoryUsage().rss - before) / 2 ** 20
  t.ok(grown < 600, `2.4 GB allocated in 8 MB tensors; resident memory grew by ${grown.toFixed(0)} MB`)
})

t.test('dtypes and casts', async (t) => {
  const bf = Tensor.from([1.5, -2, 1 + 2 ** -8, 1 + 3 * 2 ** -8, NaN, 3e38], [6], { dtype: 'bf16' })
  t.ok(bf.data instanceof Uint16Array, 'bf16 data is shown as 16-bit patterns')
  const decoded = bf.toArray()
  t.same(decoded.slice(0, 4), [1.5, -2, 1, 1.015625], 'bf16 rounds to nearest even')
  t.ok(Number.isNaN(decoded[4]), 'NaN stays NaN')
  const roundTrip = f32([1 + 2 ** -8, 1 + 3 * 2 ** -8, -0.1], [3]).cast('bf16').cast('f32').toArray()
  t.same(roundTrip, [1, 1.015625, -0.10009765625], 'the native f32 -> bf16 cast rounds the same way')
  t.same(f32([-3.7, 2.9, 300, NaN], [4]).cast('i32').toArray(), [-3, 2, 300, 0], 'f32 -> i32 truncates, NaN -> 0')
  t.same(f32([-3, 2.9, 300, NaN], [4]).cast('u8').toArray(), [0, 2, 255, 0], 'f32 -> u8 saturates')
  t.same(Tensor.from(new Int32Array([-5, 7, 1000]), [3]).cast('u8').toArray(), [0, 7, 255], 'i32 -> u8 saturates')
  t.same(Tensor.from(new Uint8Array([0, 200]), [2]).cast('i32').toArray(), [0, 200], 'u8 -> i32')
  const x = f32([1, 2], [2])
  t.equal(x.cast('f32'), x, 'a cast to the same dtype is the tensor itself')
})

t.test('devices and backend', async (t) => {
  const list = devices()
  t.equal(list[0].kind, 'cpu', 'the CPU is listed first')
  t.ok(list[0].kind === 'cpu' && list[0].threads >= 1, 'with its thread count')
  const info = backend()
  t.ok(['generic', 'avx2', 'avx512'].includes(info.simd), `CPU kernels use ${info.simd}`)
  t.equal(list.filter((d) => d.kind === 'cuda').length, info.cudaDevices, 'one entry per CUDA device')
  t.comment(`CUDA backend compiled: ${info.cudaCompiled} (${info.cudaArchs}); devices: ${info.cudaDevices}${info.cudaDevices ? '' : ` (${info.cudaUnavailableReason})`}`)
  if (cudaAvailable) {
    const gpu = list.find((d) => d.kind === 'cuda')!
    t.ok(gpu.kind === 'cuda' && gpu.memory > 0 && gpu.name.length > 0, `${gpu.kind === 'cuda' ? gpu.name : ''} has memory and a name`)
    const host = f32([1, 2, 3], [3])
    const onDevice = host.to('cuda')
    t.equal(onDevice.device, 'cuda:0', "to('cuda') moves to cuda:0")
    t.same(onDevice.to('cpu').toArray(), [1, 2, 3], 'and back')
  } else {
    t.ok(info.cudaUnavailableReason.length > 0, 'without a CUDA device the reason is given')
  }
})

t.test('require and import both load the package', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'rlfarm-load-'))
  const esm = path.join(dir, 'check.mjs')
  const entry = path.join(root, 'dist', 'index.js')
  writeFileSync(esm, `import { Tensor, ops, devices } from ${JSON.stringify(entry)}\nconsole.log(typeof Tensor.from, typeof ops.gae, devices()[0].kind)\n`)
  t.equal(execFileSync(process.execPath, [esm], { encoding: 'utf8' }).trim(), 'function function cpu', 'import { Tensor, ops, devices }')
  const cjs = execFileSync(process.execPath, ['-e', "const r = require('rlfarm'); console.log(typeof r.Tensor.from, typeof r.ops.dpoLoss)"], { cwd: root, encoding: 'utf8' })
  t.equal(cjs.trim(), 'function function', "require('rlfarm')")
  const selfImport = execFileSync(process.execPath, ['--input-type=module', '-e', "import { ops } from 'rlfarm'; console.log(typeof ops.logprobs)"], { cwd: root, encoding: 'utf8' })
  t.equal(selfImport.trim(), 'function', "import ... from 'rlfarm'")
})
