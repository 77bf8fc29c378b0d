#!/usr/bin/env node
// The rlfarm command line: see `rlfarm --help` (source: ts/cli/index.ts).
'use strict'
const cli = require('../dist/cli/index.js')
const argv = process.argv.slice(2)
cli.installFatalHandlers(argv)
cli.main(argv).then((code) => {
  process.exitCode = code
  // A failed rank of a data-parallel run ends now, whatever is left open, so
  // that its launcher stops the other ranks rather than their waiting out the
  // collective timeout for it.
  if (code !== 0 && Number(process.env.WORLD_SIZE || 1) > 1) process.exit(code)
})
