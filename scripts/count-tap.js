#!/usr/bin/env node
// Counts the assertions in a TAP 14 stream (tap --reporter=tap) and prints one
// line, "N passed, N failed", for CI, which cannot read tap's own summary.
// A leaf "ok"/"not ok" is an assertion; a subtest's closing line is not, except
// a failing subtest with no failing assertion inside (a crash, a timeout),
// which counts as one failure. Skips and todos are reported apart.
// usage: node scripts/count-tap.js <tap-log> [exit code of the test run]
'use strict'
const fs = require('node:fs')

const [logPath, statusArg] = process.argv.slice(2)
const lines = fs.readFileSync(logPath, 'utf8').split('\n')
let passed = 0
let failed = 0
let skipped = 0
const failedInside = [] // per indentation: a failure was counted inside the open subtest
let previous = ''

const markFailure = (indent) => {
  failed++
  for (let i = 0; i < indent; i++) failedInside[i] = true
}

for (const line of lines) {
  if (line.trim() === '') continue
  const indent = line.length - line.trimStart().length
  if (/^\s*# Subtest:/.test(line)) failedInside[indent] = false
  const point = /^\s*(not )?ok \d+(.*)$/.exec(line)
  if (point) {
    const ok = !point[1]
    const rest = point[2]
    const plan = /^(\s*)1\.\.\d+/.exec(previous)
    const closesSubtest = plan !== null && plan[1].length > indent
    if (closesSubtest) {
      if (!ok && !failedInside[indent]) markFailure(indent)
    } else if (/#\s*(SKIP|TODO)/i.test(rest)) {
      skipped++
    } else if (ok) {
      passed++
    } else {
      markFailure(indent)
    }
  }
  if (!/^\s*#/.test(line)) previous = line // comments (# time=...) sit between a plan and its subtest's end
}

const status = statusArg === undefined ? 0 : Number(statusArg)
if (status !== 0 && failed === 0) failed = 1 // the runner failed without a failing assertion
if (passed === 0 && failed === 0) failed = 1 // running no test is a failure
if (skipped > 0) console.log(`(${skipped} skipped)`)
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed > 0 ? 1 : 0)
