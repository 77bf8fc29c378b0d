#!/usr/bin/env node
// Installs the native addon; run by `npm install` (the package's install script).
//
// 1. A prebuilt addon (prebuilds/<platform>-<arch>/, made by `npm run prebuild`
//    and shipped in the npm package) that node-gyp-build finds for this
//    platform, that was built from the sources shipped beside it and that loads
//    here: nothing is compiled.
// 2. Otherwise (other platforms, a git checkout, RLFARM_BUILD_FROM_SOURCE=1) a
//    build from source. With CMake: cmake-js, CPU backend always, CUDA backend
//    when nvcc is found (RLFARM_CUDA=0 turns it off, RLFARM_CUDA_ARCHS picks
//    architectures). Without CMake: node-gyp with binding.gyp, CPU backend only.
//    The build writes build/Release/build-info.json (what it was built from).
'use strict'
const { spawnSync } = require('node:child_process')
const crypto = require('node:crypto')
const path = require('node:path')
const fs = require('node:fs')

const root = path.resolve(__dirname, '..')
const BUILD_INFO = 'build-info.json'

function log(line) {
  console.log(`[rlfarm] ${line}`)
}

function run(cmd, args, env = process.env) {
  log(`$ ${cmd === process.execPath ? 'node' : cmd} ${args.map((a) => (path.isAbsolute(a) ? path.relative(root, a) || '.' : a)).join(' ')}`)
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env })
  if (r.error) return { ok: false, why: r.error.message }
  return { ok: r.status === 0, why: `exit code ${r.status}` }
}

function has(cmd) {
  const r = spawnSync(cmd, ['--version'], { stdio: 'ignore' })
  return !r.error && r.status === 0
}

function listFiles(dir) {
  const out = []
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name)
    if (entry.isDirectory()) out.push(...listFiles(p))
    else if (entry.isFile()) out.push(p)
  }
  return out
}

/** sha256 over the files an addon is compiled from (native/, CMakeLists.txt, binding.gyp): a prebuild must match it. */
function sourceHash() {
  const files = [...listFiles(path.join(root, 'native')), path.join(root, 'CMakeLists.txt'), path.join(root, 'binding.gyp')]
  const hash = crypto.createHash('sha256')
  for (const f of files.map((f) => path.relative(root, f).split(path.sep).join('/')).sort()) {
    hash.update(`${f}\0`)
    hash.update(fs.readFileSync(path.join(root, f)))
    hash.update('\0')
  }
  return hash.digest('hex')
}

/** What an addon file reports about itself, from a child process (a broken addon cannot take this one down). */
function probeAddon(file) {
  const code = `const b = require(${JSON.stringify(file)}).backend(); process.stdout.write(JSON.stringify({ cudaCompiled: b.cudaCompiled, cudaArchs: b.cudaArchs }))`
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' })
  if (r.error || r.status !== 0) return { ok: false, why: (r.error ? r.error.message : r.stderr.trim().split('\n').find((l) => /Error/.test(l)) || `exit code ${r.status}`) }
  return { ok: true, ...JSON.parse(r.stdout) }
}

function readJson(file) {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch {
    return undefined
  }
}

/** The prebuilt addon node-gyp-build picks for this platform, if it fits the shipped sources and loads; else why not. */
function findPrebuild() {
  // Only prebuilds/ here: build/Release, which node-gyp-build tries first, is what a build from source makes.
  const saved = process.env.PREBUILDS_ONLY
  process.env.PREBUILDS_ONLY = '1'
  let file
  try {
    delete require.cache[require.resolve('node-gyp-build/node-gyp-build.js')]
    file = require('node-gyp-build/node-gyp-build.js').path(root)
  } catch (err) {
    return { why: `no prebuilt addon for ${process.platform}-${process.arch} (${err.message.split('\n')[0]})` }
  } finally {
    if (saved === undefined) delete process.env.PREBUILDS_ONLY
    else process.env.PREBUILDS_ONLY = saved
  }
  const info = readJson(path.join(path.dirname(file), BUILD_INFO))
  if (!info) return { why: `${path.relative(root, file)} has no ${BUILD_INFO} beside it` }
  if (info.sourceHash !== sourceHash()) return { why: `${path.relative(root, file)} was built from other sources than native/ here` }
  const probe = probeAddon(file)
  if (!probe.ok) return { why: `${path.relative(root, file)} does not load here (${probe.why})` }
  return { file, info: { ...info, ...probe } }
}

function buildFromSource(options = {}) {
  const out = options.out || path.join(root, 'build')
  const env = { ...process.env, ...options.env }
  let result
  const started = Date.now()
  if (has('cmake')) {
    const cmakeJs = require.resolve('cmake-js/bin/cmake-js')
    const cuda = env.RLFARM_CUDA === '0' ? 'off (RLFARM_CUDA=0)' : 'on when CMake finds nvcc (RLFARM_CUDA=0 turns it off)'
    log(`building from source with cmake-js: the CPU backend; CUDA backend ${cuda}; a few minutes (the CUDA kernels take most)`)
    const jobs = env.RLFARM_BUILD_JOBS || String(require('node:os').availableParallelism?.() || 2)
    log('step 1/2: configure (cmake)')
    result = run(process.execPath, [cmakeJs, 'configure', '--config', 'Release', '--out', out], env)
    if (result.ok) {
      log(`step 2/2: compile (${jobs} jobs)`)
      result = run(process.execPath, [cmakeJs, 'build', '--config', 'Release', '--out', out, '--parallel', jobs], env)
    }
  } else {
    if (options.out) return { ok: false, why: 'cmake is needed for a build into another directory' }
    log('cmake not found: building the CPU backend from source with node-gyp (binding.gyp)')
    // npm provides its bundled node-gyp through npm_config_node_gyp.
    const gyp = env.npm_config_node_gyp
    result = gyp && fs.existsSync(gyp) ? run(process.execPath, [gyp, 'rebuild'], env) : run('node-gyp', ['rebuild'], env)
  }
  if (!result.ok) return result
  const file = path.join(out, 'Release', 'rlfarm.node')
  const probe = probeAddon(file)
  if (!probe.ok) return { ok: false, why: `the built ${path.relative(root, file)} does not load (${probe.why})` }
  const info = { sourceHash: sourceHash(), cudaCompiled: probe.cudaCompiled, cudaArchs: probe.cudaArchs, cudaArchsSetting: env.RLFARM_CUDA_ARCHS || null, napiVersion: 8, platform: `${process.platform}-${process.arch}`, builtWith: `node ${process.version}`, builtAt: new Date().toISOString() }
  fs.writeFileSync(path.join(out, 'Release', BUILD_INFO), `${JSON.stringify(info, null, 2)}\n`)
  log(`built ${path.relative(root, file)} in ${((Date.now() - started) / 1000).toFixed(0)} s (CUDA backend ${probe.cudaCompiled ? `compiled for ${probe.cudaArchs}` : 'not compiled'})`)
  return { ok: true, file, info }
}

function install() {
  if (process.env.RLFARM_BUILD_FROM_SOURCE === '1') {
    log('RLFARM_BUILD_FROM_SOURCE=1: building from source')
  } else if (fs.existsSync(path.join(root, '.git'))) {
    // A checkout's build/Release, which node-gyp-build loads first, must follow its sources.
    log('a git checkout: building from source (prebuilt addons are for the npm package)')
  } else {
    const prebuild = findPrebuild()
    if (prebuild.file) {
      const cuda = prebuild.info.cudaCompiled ? `CPU and CUDA backends, CUDA architectures ${prebuild.info.cudaArchs}` : 'CPU backend'
      log(`using the prebuilt addon ${path.relative(root, prebuild.file)} (${cuda}); nothing to compile`)
      return
    }
    log(`${prebuild.why}: building from source`)
  }
  const result = buildFromSource()
  if (!result.ok) {
    console.error(`[rlfarm] building the native addon failed (${result.why}); see the compiler output above`)
    process.exit(1)
  }
}

module.exports = { sourceHash, probeAddon, findPrebuild, buildFromSource, readJson, BUILD_INFO, log }

if (require.main === module) install()
