// The two build paths compile the same sources: CMakeLists.txt (the main
// build) and binding.gyp (node-gyp, where CMake is missing; CPU only). A file
// added to one and not the other would fail only on the machines that use it.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'

const root = path.join(__dirname, '..')

function cmakeSources(): Set<string> {
  const text = fs.readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8')
  const core = /set\(CORE_SOURCES([^)]*)\)/.exec(text)
  if (!core) throw new Error('CMakeLists.txt: no set(CORE_SOURCES ...)')
  const simd = [...text.matchAll(/set\(RLFARM_AVX\w+_SOURCES([^)]*)\)/g)].map((m) => m[1])
  return new Set([core[1], ...simd].flatMap((s) => s.split(/\s+/).filter((f) => f.startsWith('native/'))))
}

function gypSources(): Set<string> {
  const gyp = JSON.parse(
    fs
      .readFileSync(path.join(root, 'binding.gyp'), 'utf8')
      .split('\n')
      .filter((l) => !l.trim().startsWith('#'))
      .join('\n'),
  ) as { targets: { sources?: string[]; conditions?: [string, { sources?: string[] }][] }[] }
  const files = gyp.targets.flatMap((target) => [...(target.sources ?? []), ...(target.conditions ?? []).flatMap(([, c]) => c.sources ?? [])])
  return new Set(files)
}

t.test('binding.gyp lists the C++ sources CMakeLists.txt builds (CUDA aside)', async (t) => {
  const cmake = cmakeSources()
  cmake.add('native/cuda/absent.cpp') // CMake adds it when CUDA is off; node-gyp always builds without CUDA
  const gyp = gypSources()
  t.same([...gyp].filter((f) => !cmake.has(f)).sort(), [], 'in binding.gyp only')
  t.same([...cmake].filter((f) => !gyp.has(f)).sort(), [], 'in CMakeLists.txt only')
  for (const f of gyp) t.ok(fs.existsSync(path.join(root, f)), `${f} exists`)
  t.ok(gyp.has('native/ops/ops.cpp') && gyp.has('native/model/generate.cpp'), 'the files of the layering are there')
})
