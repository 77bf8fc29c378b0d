// Installing the packed package compiles nothing: `npm run prebuild` (kept
// when it matches the sources, else copied from npm install's CUDA build or
// compiled), `npm pack`, then `npm install <tarball>` in a fresh folder with a
// PATH that holds only node and sh (no cmake, compiler or nvcc, so a build
// from source could not even start), and the CLI, the addon and the dashboard
// work there. Then the install script's other paths: a prebuild built from
// other sources, and RLFARM_BUILD_FROM_SOURCE=1, both go to a build from
// source, which says what it does and, with no compiler, fails clearly.
// Slow (a minute or more; several the first time, when it compiles CUDA).
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { spawnSync, spawn } from 'node:child_process'
import { tempDir } from './helpers/common'

t.setTimeout(40 * 60_000)

const ROOT = path.join(__dirname, '..')
const canPrebuild = process.platform === 'linux' && process.arch === 'x64'

function npmCli(): string {
  // npm's own script, so that npm runs with node alone on the PATH.
  const candidates = [process.env.npm_execpath, path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js')]
  const which = spawnSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).stdout.trim()
  if (which) candidates.push(fs.realpathSync(which))
  const found = candidates.find((c) => c && /npm-cli\.js$/.test(c) && fs.existsSync(c))
  if (!found) throw new Error(`cannot find npm-cli.js (looked at ${candidates.join(', ')})`)
  return found
}

function run(cmd: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeout?: number }) {
  const r = spawnSync(cmd, args, { cwd: options.cwd, env: options.env ?? process.env, encoding: 'utf8', timeout: options.timeout ?? 30 * 60_000, maxBuffer: 64 << 20 })
  return { code: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}`, error: r.error }
}

t.test('a packed rlfarm installs from its prebuilt addon without compiling, and runs', { skip: canPrebuild ? false : `prebuilds are made for linux-x64; this is ${process.platform}-${process.arch}` }, async (t) => {
  const npm = npmCli()
  const prebuild = run(process.execPath, [path.join(ROOT, 'scripts', 'prebuild.js')], { cwd: ROOT })
  t.equal(prebuild.code, 0, 'npm run prebuild', { output: prebuild.out.slice(-4000) })
  const dir = path.join(ROOT, 'prebuilds', 'linux-x64')
  const addon = path.join(dir, 'node.napi.glibc.node')
  t.ok(fs.existsSync(addon), 'prebuilds/linux-x64/node.napi.glibc.node')
  const info = JSON.parse(fs.readFileSync(path.join(dir, 'build-info.json'), 'utf8'))
  t.equal(info.cudaCompiled, process.env.RLFARM_CUDA !== '0', 'the CUDA backend is in the prebuild (nvcc is on this machine)')
  const ldd = run('ldd', [addon], { cwd: ROOT })
  if (!ldd.error) t.notMatch(ldd.out, /libcudart|libcuda\.so/, 'the CUDA runtime is linked statically: no libcudart.so or libcuda.so needed')

  const work = tempDir(t, 'install')
  const packed = run(process.execPath, [npm, 'pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: ROOT })
  t.equal(packed.code, 0, 'npm pack', { output: packed.out.slice(-4000) })
  const manifest = JSON.parse(packed.out.slice(packed.out.indexOf('['))) as { filename: string; files: { path: string }[] }[]
  const files = manifest[0].files.map((f) => f.path)
  for (const f of ['prebuilds/linux-x64/node.napi.glibc.node', 'prebuilds/linux-x64/build-info.json', 'LICENSE', 'dist/index.js', 'ts/dashboard/static/app.js', 'scripts/build-native.js', 'native/binding/addon.cpp']) {
    t.ok(files.includes(f), `the tarball has ${f}`)
  }
  t.notOk(files.some((f) => f.startsWith('build/')), 'no build/ in the tarball')

  // PATH: node and sh only. cmake, c++, make and nvcc cannot be found.
  const bin = path.join(work, 'bin')
  fs.mkdirSync(bin)
  fs.symlinkSync(process.execPath, path.join(bin, 'node'))
  fs.symlinkSync('/bin/sh', path.join(bin, 'sh'))
  const env = { ...process.env, PATH: bin }
  for (const k of Object.keys(env)) if (k.startsWith('npm_') || k === 'RLFARM_BUILD_FROM_SOURCE' || k === 'RLFARM_ADDON') delete env[k]
  const app = path.join(work, 'app')
  fs.mkdirSync(app)
  fs.writeFileSync(path.join(app, 'package.json'), '{ "name": "app", "version": "1.0.0", "private": true }\n')
  const started = Date.now()
  const install = run(process.execPath, [npm, 'install', path.join(work, manifest[0].filename), '--foreground-scripts', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: app, env })
  t.equal(install.code, 0, 'npm install rlfarm-*.tgz with no compiler on the PATH', { output: install.out.slice(-4000) })
  t.match(install.out, /\[rlfarm\] using the prebuilt addon prebuilds\/linux-x64\/node\.napi\.glibc\.node .*nothing to compile/, 'the install script took the prebuild')
  t.notMatch(install.out, /building from source|cmake-js|node-gyp rebuild/, 'and built nothing')
  t.comment(`npm install took ${((Date.now() - started) / 1000).toFixed(0)} s`)
  const installed = path.join(app, 'node_modules', 'rlfarm')
  t.notOk(fs.existsSync(path.join(installed, 'build')), 'no build/ was made')

  const npx = path.join(path.dirname(npm), 'npx-cli.js')
  const help = run(process.execPath, [npx, 'rlfarm', '--help'], { cwd: app, env })
  t.equal(help.code, 0, 'npx rlfarm --help', { output: help.out.slice(-4000) })
  t.match(help.out, /Usage: rlfarm <command>/)
  const farm = run(process.execPath, [npx, 'rlfarm', 'farm', '--out', 'farm', '--sft', '20', '--preference', '10', '--unlabelled', '10', '--eval', '10'], { cwd: app, env })
  t.equal(farm.code, 0, 'npx rlfarm farm', { output: farm.out.slice(-4000) })
  t.equal(fs.readFileSync(path.join(app, 'farm', 'eval.jsonl'), 'utf8').trim().split('\n').length, 10)
  const script = `
    const { Tensor, ops, backend } = require('rlfarm')
    const logits = Tensor.from(new Float32Array([1, 2, 3, 4]), [2, 2])
    const { logp } = ops.logprobs(logits, Tensor.from(new Int32Array([0, 1]), [2]))
    const loaded = require('node-gyp-build').path(require('node:path').dirname(require.resolve('rlfarm/package.json')))
    console.log(JSON.stringify({ logp: [...logp.data], cuda: backend().cudaCompiled, loaded }))`
  const used = run(process.execPath, ['-e', script], { cwd: app, env })
  t.equal(used.code, 0, 'the addon from the installed package', { output: used.out.slice(-4000) })
  const result = JSON.parse(used.out.trim().split('\n').pop()!)
  t.equal(result.loaded, fs.realpathSync(path.join(installed, 'prebuilds', 'linux-x64', 'node.napi.glibc.node')), 'node-gyp-build loads the prebuild')
  t.equal(result.cuda, info.cudaCompiled)
  t.ok(Math.abs(result.logp[0] - (1 - Math.log(Math.exp(1) + Math.exp(2)))) < 1e-5, 'log-probs computed by it')

  // The dashboard's page ships too.
  const dash = spawn(process.execPath, [path.join(installed, 'bin', 'rlfarm.js'), 'dashboard', '.', '--port', '0'], { cwd: app, env })
  t.teardown(() => dash.kill())
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    dash.stdout.on('data', (c) => {
      out += c
      const m = /(http:\/\/\S+\/) /.exec(out)
      if (m) resolve(m[1])
    })
    dash.on('exit', (code) => reject(new Error(`rlfarm dashboard exited ${code}`)))
  })
  for (const asset of ['', 'app.js', 'vendor/vega.js', 'vendor/vega-lite.js']) t.equal((await fetch(`${url}${asset}`)).status, 200, `the installed dashboard serves /${asset}`)

  // A prebuild from other sources is not used; with no compiler the build from source fails and says why.
  const infoFile = path.join(installed, 'prebuilds', 'linux-x64', 'build-info.json')
  fs.writeFileSync(infoFile, JSON.stringify({ ...info, sourceHash: 'other' }))
  const stale = run(process.execPath, [path.join(installed, 'scripts', 'build-native.js')], { cwd: installed, env })
  t.not(stale.code, 0)
  t.match(stale.out, /node\.napi\.glibc\.node was built from other sources than native\/ here: building from source/)
  t.match(stale.out, /\[rlfarm\] building the native addon failed/)
  fs.writeFileSync(infoFile, JSON.stringify(info))
  const forced = run(process.execPath, [path.join(installed, 'scripts', 'build-native.js')], { cwd: installed, env: { ...env, RLFARM_BUILD_FROM_SOURCE: '1' } })
  t.not(forced.code, 0, 'RLFARM_BUILD_FROM_SOURCE=1 builds from source (and here fails: no compiler)')
  t.match(forced.out, /RLFARM_BUILD_FROM_SOURCE=1: building from source/)
  t.match(forced.out, /cmake not found: building the CPU backend from source with node-gyp/, 'a line for the step it takes')
  fs.mkdirSync(path.join(installed, '.git'))
  const checkout = run(process.execPath, [path.join(installed, 'scripts', 'build-native.js')], { cwd: installed, env })
  t.not(checkout.code, 0)
  t.match(checkout.out, /a git checkout: building from source/, 'a git checkout builds from source even beside a prebuild')
  fs.rmdirSync(path.join(installed, '.git'))
  const again = run(process.execPath, [path.join(installed, 'scripts', 'build-native.js')], { cwd: installed, env })
  t.equal(again.code, 0, 'the prebuild is used again once it matches')
})
