#!/usr/bin/env node
// `npm run prebuild`: the prebuilt addon that `npm pack` ships, so that
// installing rlfarm compiles nothing on this platform.
//
// Writes prebuilds/<platform>-<arch>/node.napi[.glibc|.musl].node (the names
// node-gyp-build matches: `node` + `napi` make it load on any Node with N-API;
// the N-API version it needs, 8, is package.json's binary.napi_versions) and
// build-info.json beside it (the source hash the install script checks).
// The addon holds the CPU backend and the CUDA backend with the static CUDA
// runtime, so nvcc is required (RLFARM_CUDA=0 makes a CPU-only prebuild).
//
// A prebuild that already matches the sources is kept; a CUDA build in
// build/Release that matches them (npm install's) is copied instead of
// compiled again; otherwise it is compiled in build/prebuild. --force compiles.
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const { sourceHash, probeAddon, buildFromSource, readJson, BUILD_INFO, log } = require('./build-native.js')

const root = path.resolve(__dirname, '..')
const force = process.argv.includes('--force')
const wantCuda = process.env.RLFARM_CUDA !== '0'

function libcTag() {
  if (process.platform !== 'linux') return ''
  return process.report.getReport().header.glibcVersionRuntime ? '.glibc' : '.musl'
}

const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`)
const target = path.join(dir, `node.napi${libcTag()}.node`)
const hash = sourceHash()

/** A build (its .node file and build-info.json) that can be shipped as it is. */
function fits(file) {
  const info = readJson(path.join(path.dirname(file), BUILD_INFO))
  if (!info || !fs.existsSync(file) || info.sourceHash !== hash) return undefined
  // The default architectures only (RLFARM_CUDA_ARCHS unset), and CUDA when asked for.
  if (info.cudaArchsSetting || info.cudaCompiled !== wantCuda) return undefined
  return probeAddon(file).ok ? info : undefined
}

function main() {
  if (!force && fits(target)) {
    log(`${path.relative(root, target)} matches the sources; kept (--force rebuilds it)`)
    return 0
  }
  let source = path.join(root, 'build', 'Release', 'rlfarm.node')
  let info = force ? undefined : fits(source)
  if (info) {
    log(`${path.relative(root, source)} was built from these sources${info.cudaCompiled ? ' with CUDA' : ''}: copying it`)
  } else {
    const result = buildFromSource({ out: path.join(root, 'build', 'prebuild') })
    if (!result.ok) {
      console.error(`[rlfarm] prebuild: the build failed (${result.why})`)
      return 1
    }
    if (result.info.cudaCompiled !== wantCuda) {
      console.error(`[rlfarm] prebuild: the CUDA backend was ${result.info.cudaCompiled ? '' : 'not '}compiled; a prebuild ${wantCuda ? 'needs nvcc (or set RLFARM_CUDA=0 for a CPU-only one)' : 'with RLFARM_CUDA=0 must not have it'}`)
      return 1
    }
    source = result.file
    info = result.info
  }
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(dir, { recursive: true })
  fs.copyFileSync(source, target)
  fs.writeFileSync(path.join(dir, BUILD_INFO), `${JSON.stringify(info, null, 2)}\n`)
  log(`wrote ${path.relative(root, target)} (${(fs.statSync(target).size / 2 ** 20).toFixed(1)} MB) and ${BUILD_INFO}`)
  return 0
}

process.exitCode = main()
