// berth's own version, read once from package.json so there is one place to bump it.
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

export const BERTH_VERSION: string = pkg.version;
