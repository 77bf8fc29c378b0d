#!/usr/bin/env node
// Builds the native addon; run by `npm install` (the package's install script).
// With CMake: cmake-js, CPU backend always, CUDA backend when nvcc is found
// (RLFARM_CUDA=0 turns it off, RLFARM_CUDA_ARCHS picks architectures).
// Without CMake: node-gyp with binding.gyp, CPU backend only.
'use strict'
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const fs = require('node:fs')

const root = path.resolve(__dirname, '..')

function run(cmd, args) {
  console.log(`[rlfarm] ${cmd} ${args.join(' ')}`)
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: process.env })
  if (r.error) return { ok: false, why: r.error.message }
  return { ok: r.status === 0, why: `exit code ${r.status}` }
}

function has(cmd) {
  const r = spawnSync(cmd, ['--version'], { stdio: 'ignore' })
  return !r.error && r.status === 0
}

function cmakeJs() {
  const bin = require.resolve('cmake-js/bin/cmake-js')
  const args = [bin, 'compile', '--config', 'Release']
  const jobs = process.env.RLFARM_BUILD_JOBS || String(require('node:os').availableParallelism?.() || 2)
  args.push('--parallel', jobs)
  return run(process.execPath, args)
}

function nodeGyp() {
  // npm provides its bundled node-gyp through npm_config_node_gyp.
  const gyp = process.env.npm_config_node_gyp
  if (gyp && fs.existsSync(gyp)) return run(process.execPath, [gyp, 'rebuild'])
  return run('node-gyp', ['rebuild'])
}

let result
if (has('cmake')) {
  result = cmakeJs()
} else {
  console.log('[rlfarm] cmake not found: building the CPU backend with node-gyp (binding.gyp)')
  result = nodeGyp()
}
if (!result.ok) {
  console.error(`[rlfarm] building the native addon failed (${result.why}); see the compiler output above`)
  process.exit(1)
}
