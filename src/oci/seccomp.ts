// The seccomp filter for a container: berth's RuntimeDefault, none (Unconfined, privileged), or a
// validated Localhost profile file, resolved for this host's architecture and the container's capabilities.
import { isAbsolute, join } from 'node:path';
import type { SecurityProfile__Output } from '../cri/gen/runtime/v1/SecurityProfile.ts';
import { errorMessage, invalidArgument } from '../util/errors.ts';
import { readFileInRoot } from '../util/in-root.ts';
import { DEFAULT_CAPABILITIES } from './capabilities.ts';
import { DEFAULT_PROFILE_RULES } from './seccomp-default.ts';
import type { OciSeccomp } from './types.ts';

type Syscall = NonNullable<OciSeccomp['syscalls']>[number];
type Arg = NonNullable<Syscall['args']>[number];

/** A profile rule before it is resolved for one container: OCI's fields plus Docker's conditions. */
export interface ProfileRule {
  names: readonly string[];
  action: string;
  errnoRet?: number;
  args?: readonly Arg[];
  /** Applies only when the container has every one of these capabilities / the host is one of these arches. */
  includes?: { caps?: readonly string[]; arches?: readonly string[] };
  /** Applies only when the container has none of these capabilities and the host is none of these arches. */
  excludes?: { caps?: readonly string[]; arches?: readonly string[] };
}

const EPERM = 1;
const ACTIONS = new Set([
  'SCMP_ACT_KILL', 'SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_KILL_THREAD', 'SCMP_ACT_TRAP', 'SCMP_ACT_ERRNO',
  'SCMP_ACT_TRACE', 'SCMP_ACT_ALLOW', 'SCMP_ACT_LOG', 'SCMP_ACT_NOTIFY',
]);
const OPS = new Set(['SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_GT', 'SCMP_CMP_MASKED_EQ']);
const FLAGS = new Set(['SECCOMP_FILTER_FLAG_TSYNC', 'SECCOMP_FILTER_FLAG_LOG', 'SECCOMP_FILTER_FLAG_SPEC_ALLOW', 'SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV']);
/** Largest profile file berth reads: real ones are tens of KB. */
const MAX_PROFILE_BYTES = 1 << 20;

/** The host as profiles name it: Go's architecture names, as in Docker's "arches" conditions. */
function hostArch(): string {
  const byNode: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: 'x86', s390x: 's390x', ppc64: 'ppc64le', riscv64: 'riscv64' };
  return byNode[process.arch] ?? process.arch;
}

/** The seccomp architectures a filter must cover on this host: native plus the compat ABIs. */
export function hostSeccompArchitectures(): string[] {
  switch (process.arch) {
    case 'x64':
      return ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'];
    case 'arm64':
      return ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'];
    case 'arm':
      return ['SCMP_ARCH_ARM'];
    case 's390x':
      return ['SCMP_ARCH_S390X', 'SCMP_ARCH_S390'];
    case 'ppc64':
      return ['SCMP_ARCH_PPC64LE'];
    case 'riscv64':
      return ['SCMP_ARCH_RISCV64'];
    default:
      return [];
  }
}

/**
 * The container's seccomp filter, or undefined for none. No profile at all means unconfined, as the
 * CRI defines it (the kubelet sends RuntimeDefault when it wants the default); the deprecated
 * seccomp_profile_path string, which CRI clients such as critest 1.26 still send, is read when the
 * SecurityProfile is absent. Privileged containers run unfiltered, as with every runtime.
 * `capabilities` is the container's bounding set (what capabilities() returned): a capability the
 * container holds also opens the syscalls it guards.
 */
export async function seccompFor(
  profile: SecurityProfile__Output | null | undefined,
  opts: { privileged: boolean; localhostDir?: string; capabilities?: readonly string[]; legacyPath?: string },
): Promise<OciSeccomp | undefined> {
  if (opts.privileged) return undefined;
  const chosen = profile ?? legacySeccompProfile(opts.legacyPath ?? '');
  if (!chosen) return undefined;
  const caps = new Set(opts.capabilities ?? DEFAULT_CAPABILITIES);
  switch (chosen.profile_type) {
    case 'Unconfined':
      return undefined;
    case 'Localhost':
      return localhostProfile(chosen.localhost_ref, opts.localhostDir, caps);
    default:
      return {
        defaultAction: 'SCMP_ACT_ERRNO',
        defaultErrnoRet: EPERM,
        architectures: hostSeccompArchitectures(),
        syscalls: resolveRules(DEFAULT_PROFILE_RULES, caps),
      };
  }
}

/** The deprecated seccomp_profile_path as a SecurityProfile; "" is no profile. */
function legacySeccompProfile(path: string): SecurityProfile__Output | null {
  if (path === '') return null;
  if (path === 'unconfined') return { profile_type: 'Unconfined', localhost_ref: '' };
  if (path === 'runtime/default' || path === 'docker/default') return { profile_type: 'RuntimeDefault', localhost_ref: '' };
  if (path.startsWith('localhost/')) return { profile_type: 'Localhost', localhost_ref: path.slice('localhost/'.length) };
  throw invalidArgument(
    `seccomp_profile_path ${JSON.stringify(path)} is not runtime/default, docker/default, unconfined or localhost/<absolute path>`,
  );
}

/** The rules that apply to this host and capability set, without their conditions. */
function resolveRules(rules: readonly ProfileRule[], caps: ReadonlySet<string>): Syscall[] {
  const arch = hostArch();
  const out: Syscall[] = [];
  for (const r of rules) {
    if (r.includes?.caps && !r.includes.caps.every((c) => caps.has(c))) continue;
    if (r.includes?.arches && !r.includes.arches.includes(arch)) continue;
    if (r.excludes?.caps?.some((c) => caps.has(c))) continue;
    if (r.excludes?.arches?.includes(arch)) continue;
    const s: Syscall = { names: [...r.names], action: r.action };
    if (r.errnoRet !== undefined) s.errnoRet = r.errnoRet;
    if (r.args && r.args.length > 0) s.args = r.args.map((a) => ({ ...a }));
    out.push(s);
  }
  return out;
}

async function localhostProfile(ref: string, dir: string | undefined, caps: ReadonlySet<string>): Promise<OciSeccomp> {
  if (!ref) throw invalidArgument('seccomp profile Localhost needs localhost_ref, the absolute path of a profile file');
  let path = ref;
  if (!isAbsolute(ref)) {
    if (!dir) throw invalidArgument(`seccomp localhost_ref ${JSON.stringify(ref)} must be an absolute path`);
    path = join(dir, ref);
  }
  let text: string | undefined;
  try {
    text = await readFileInRoot('/', path, MAX_PROFILE_BYTES);
  } catch (err) {
    throw invalidArgument(`seccomp profile ${path}: cannot read it: ${errorMessage(err)}`);
  }
  if (text === undefined) throw invalidArgument(`seccomp profile ${path} does not exist on this node`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw invalidArgument(`seccomp profile ${path} is not valid JSON: ${errorMessage(err)}`);
  }
  return parseProfile(json, path, caps);
}

/** Validates a profile file's shape and resolves it; every complaint names the file and the field. */
function parseProfile(json: unknown, path: string, caps: ReadonlySet<string>): OciSeccomp {
  const bad = (what: string): never => {
    throw invalidArgument(`seccomp profile ${path}: ${what}`);
  };
  if (!isObject(json)) return bad('expected a JSON object');
  const defaultAction = json.defaultAction;
  if (typeof defaultAction !== 'string' || !ACTIONS.has(defaultAction)) return bad(`defaultAction ${JSON.stringify(defaultAction)} is not a seccomp action`);
  const out: OciSeccomp = { defaultAction };
  const errno = json.defaultErrnoRet;
  if (errno !== undefined) out.defaultErrnoRet = checkUint(errno, 'defaultErrnoRet', bad);

  // Docker's form names the native architecture with its compat ones in archMap.
  let arches: string[] = [];
  if (json.architectures !== undefined) arches = stringList(json.architectures, 'architectures', bad);
  if (json.archMap !== undefined) {
    if (!Array.isArray(json.archMap)) return bad('archMap must be a list');
    const native = hostSeccompArchitectures()[0];
    for (const m of json.archMap as unknown[]) {
      if (!isObject(m) || typeof m.architecture !== 'string') return bad('archMap entries need an architecture');
      if (m.architecture === native) {
        arches.push(m.architecture, ...(m.subArchitectures === undefined ? [] : stringList(m.subArchitectures, 'subArchitectures', bad)));
      }
    }
  }
  if (arches.length > 0) out.architectures = [...new Set(arches)];
  if (json.flags !== undefined) {
    out.flags = stringList(json.flags, 'flags', bad);
    const unknown = out.flags.find((f) => !FLAGS.has(f));
    if (unknown !== undefined) return bad(`unknown flag ${JSON.stringify(unknown)}`);
  }
  if (json.listenerPath !== undefined) {
    if (typeof json.listenerPath !== 'string' || !isAbsolute(json.listenerPath)) return bad('listenerPath must be an absolute path');
    out.listenerPath = json.listenerPath;
  }

  const rules: ProfileRule[] = [];
  const syscalls = json.syscalls ?? [];
  if (!Array.isArray(syscalls)) return bad('syscalls must be a list');
  (syscalls as unknown[]).forEach((s, i) => {
    const at = `syscalls[${i}]`;
    if (!isObject(s)) return bad(`${at} must be an object`);
    const names = s.names !== undefined ? stringList(s.names, `${at}.names`, bad) : typeof s.name === 'string' ? [s.name] : [];
    if (names.length === 0 || names.some((n) => !/^[a-z_][a-z0-9_]*$/.test(n))) return bad(`${at} needs syscall names`);
    if (typeof s.action !== 'string' || !ACTIONS.has(s.action)) return bad(`${at}.action ${JSON.stringify(s.action)} is not a seccomp action`);
    const rule: ProfileRule = { names, action: s.action };
    if (s.errnoRet !== undefined) rule.errnoRet = checkUint(s.errnoRet, `${at}.errnoRet`, bad);
    if (s.args !== undefined && s.args !== null) {
      if (!Array.isArray(s.args)) return bad(`${at}.args must be a list`);
      rule.args = (s.args as unknown[]).map((a, j) => parseArg(a, `${at}.args[${j}]`, bad));
    }
    for (const key of ['includes', 'excludes'] as const) {
      const cond = s[key];
      if (cond === undefined || cond === null) continue;
      if (!isObject(cond)) return bad(`${at}.${key} must be an object`);
      rule[key] = {
        ...(cond.caps !== undefined ? { caps: stringList(cond.caps, `${at}.${key}.caps`, bad) } : {}),
        ...(cond.arches !== undefined ? { arches: stringList(cond.arches, `${at}.${key}.arches`, bad) } : {}),
      };
    }
    rules.push(rule);
  });
  out.syscalls = resolveRules(rules, caps);
  return out;
}

function parseArg(a: unknown, at: string, bad: (what: string) => never): Arg {
  if (!isObject(a)) return bad(`${at} must be an object`);
  const index = checkUint(a.index, `${at}.index`, bad);
  if (index > 5) return bad(`${at}.index ${index} is past the sixth syscall argument`);
  if (typeof a.op !== 'string' || !OPS.has(a.op)) return bad(`${at}.op ${JSON.stringify(a.op)} is not a comparison`);
  const arg: Arg = { index, value: checkUint(a.value, `${at}.value`, bad), op: a.op };
  if (a.valueTwo !== undefined) arg.valueTwo = checkUint(a.valueTwo, `${at}.valueTwo`, bad);
  return arg;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringList(v: unknown, what: string, bad: (what: string) => never): string[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) return bad(`${what} must be a list of strings`);
  return v as string[];
}

function checkUint(v: unknown, what: string, bad: (what: string) => never): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return bad(`${what} must be a non-negative integer`);
  return v;
}
