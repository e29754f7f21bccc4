#!/usr/bin/env node
// Package entry for `berth-install` (src/installer/): install, upgrade, kubelet switch and
// uninstall on a node. The berth image ships it as a bundle run by the init container.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(`berth-install needs Node.js 24 or newer (this is ${process.version})\n`);
  process.exit(1);
}
const { main } = await import('../src/installer/main.ts');
process.exit(await main(process.argv.slice(2)));
