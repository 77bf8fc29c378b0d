#!/usr/bin/env node
// The rlfarm command line: see `rlfarm --help` (source: ts/cli/index.ts).
'use strict'
const cli = require('../dist/cli/index.js')
const argv = process.argv.slice(2)
cli.installFatalHandlers(argv)
cli.main(argv).then((code) => {
  process.exitCode = code
})
