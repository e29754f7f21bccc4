#!/usr/bin/env node
// Package entry for `berth-controller` (the node agent and the aggregator, src/controller/). Like
// berthd it runs the TypeScript sources directly on Node 24; the berth image ships a bundle instead.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(`berth-controller needs Node.js 24 or newer (this is ${process.version})\n`);
  process.exit(1);
}
const { main } = await import('../src/controller/main.ts');
process.exit(await main(process.argv.slice(2)));
