#!/usr/bin/env node
// The rlfarm command line: see `rlfarm --help` (source: ts/cli/index.ts).
'use strict'
require('../dist/cli/index.js')
  .main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code
  })
