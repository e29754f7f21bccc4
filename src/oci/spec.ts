// Assembles a container's OCI runtime spec (config.json) from the CRI ContainerConfig, the pod's
// sandbox and the image config, the way kubelet users expect: command replaces Entrypoint, args
// replace Cmd, env merged by key, working dir and USER from the image unless the CRI says otherwise.
import { isAbsolute } from 'node:path';
import type { ContainerConfig__Output } from '../cri/gen/runtime/v1/ContainerConfig.ts';
import type { SecurityProfile__Output } from '../cri/gen/runtime/v1/SecurityProfile.ts';
import type { NamespaceMode__Output } from '../cri/gen/runtime/v1/NamespaceMode.ts';
import type { ImageConfig } from '../image/manifest.ts';
import type { SandboxRecord } from '../sandbox/record.ts';
import { invalidArgument } from '../util/errors.ts';
import { capabilities } from './capabilities.ts';
import { criMounts, defaultMounts } from './mounts.ts';
import { protectedPaths } from './paths.ts';
import { resolveUser } from './user.ts';
import { seccompFor } from './seccomp.ts';
import { apparmorFor } from './apparmor.ts';
import { DEFAULT_DEVICES, DEFAULT_DEVICE_RULES, PRIVILEGED_DEVICE_RULES, deviceFor, privilegedDevices } from './devices.ts';
import { clampOomScoreAdj, linuxResources } from './resources.ts';
import type { OciDeviceCgroup, OciMount, OciNamespace, OciSpec } from './types.ts';

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface SpecInput {
  config: ContainerConfig__Output;
  sandbox: SandboxRecord;
  image: ImageConfig;
  rootfs: string;
  /** Image VOLUMEs, already seeded: bind mounts from per-container directories. */
  volumes: OciMount[];
  cgroupsPath: string;
  /** PID of the target container for pid namespace TARGET. */
  targetPid?: number;
  /** Lowest oom_score_adj the host lets berth set (this VM refuses negative values). */
  oomScoreAdjFloor: number;
  cgroupVersion: 1 | 2;
  /** Where Localhost seccomp profiles are looked up when given by bare name. */
  seccompDir?: string;
}

export interface BuiltSpec {
  spec: OciSpec;
  /** The CRI mounts with resolved host paths, for ContainerStatus. */
  mounts: OciMount[];
}

/** The process a container runs: CRI command/args over the image's Entrypoint/Cmd. */
export function processArgs(config: ContainerConfig__Output, image: ImageConfig): string[] {
  const ic = image.config ?? {};
  const entrypoint = ic.Entrypoint ?? [];
  const cmd = ic.Cmd ?? [];
  const args = config.command.length > 0 ? [...config.command, ...config.args] : [...entrypoint, ...(config.args.length > 0 ? config.args : cmd)];
  if (args.length === 0) throw invalidArgument('the container has no command: set command or args, or use an image with an Entrypoint or Cmd');
  return args;
}

/** Image env, then the CRI's, each key once (the CRI wins), with a default PATH. */
export function processEnv(config: ContainerConfig__Output, image: ImageConfig): string[] {
  const env = new Map<string, string>();
  for (const kv of [DEFAULT_PATH, ...(image.config?.Env ?? [])]) {
    const eq = kv.indexOf('=');
    env.set(eq < 0 ? kv : kv.slice(0, eq), kv);
  }
  for (const kv of config.envs) env.set(kv.key, `${kv.key}=${kv.value}`);
  return [...env.values()];
}

/** Namespace entries for a container of `sandbox`: join the pod's, share the host's, or a new one. */
function namespaces(sandbox: SandboxRecord, pidMode: NamespaceMode__Output, targetPid: number | undefined): OciNamespace[] {
  const ns: OciNamespace[] = [{ type: 'mount' }];
  if (!sandbox.hostNetwork) ns.push({ type: 'network', ...(sandbox.netnsPath ? { path: sandbox.netnsPath } : {}) });
  if (!sandbox.hostIpc) ns.push({ type: 'ipc', ...(sandbox.ipcPath ? { path: sandbox.ipcPath } : {}) });
  // Host-network pods keep the host's hostname, as with every other runtime.
  if (!sandbox.hostNetwork) ns.push({ type: 'uts', ...(sandbox.utsPath ? { path: sandbox.utsPath } : {}) });
  switch (pidMode) {
    case 'NODE':
      break;
    case 'POD':
      ns.push(sandbox.pidHolder ? { type: 'pid', path: `/proc/${sandbox.pidHolder.pid}/ns/pid` } : { type: 'pid' });
      break;
    case 'TARGET':
      if (!targetPid) throw invalidArgument('namespace_options.pid is TARGET but the target container is not running');
      ns.push({ type: 'pid', path: `/proc/${targetPid}/ns/pid` });
      break;
    default:
      ns.push({ type: 'pid' });
  }
  return ns;
}

/**
 * The deprecated seccomp_profile_path as a profile, for clients that still send it (and no
 * `seccomp`): "" and "unconfined" are Unconfined (the field's documented default, which containerd
 * keeps), "runtime/default" and "docker/default" RuntimeDefault, "localhost/<path>" a profile file.
 */
export function seccompFromPath(path: string): SecurityProfile__Output {
  if (path === '' || path === 'unconfined') return { profile_type: 'Unconfined', localhost_ref: '' };
  if (path === 'runtime/default' || path === 'docker/default') return { profile_type: 'RuntimeDefault', localhost_ref: '' };
  if (path.startsWith('localhost/')) return { profile_type: 'Localhost', localhost_ref: path.slice('localhost/'.length) };
  throw invalidArgument(`seccomp_profile_path ${JSON.stringify(path)} must be "unconfined", "runtime/default" or "localhost/<absolute path>"`);
}

export async function buildSpec(input: SpecInput): Promise<BuiltSpec> {
  const { config, sandbox, image } = input;
  const sc = config.linux?.security_context;
  const privileged = sc?.privileged ?? false;
  if (privileged && !sandbox.config.linux?.security_context?.privileged) {
    throw invalidArgument('a privileged container needs a privileged pod sandbox (linux.security_context.privileged)');
  }
  const cwd = config.working_dir || image.config?.WorkingDir || '/';
  if (!isAbsolute(cwd)) throw invalidArgument(`working_dir ${JSON.stringify(cwd)} must be an absolute path`);

  const cri = await criMounts(config.mounts);
  const taken = new Set([...cri.mounts, ...input.volumes].map((m) => m.destination));
  const podFiles: OciMount[] = [
    { destination: '/etc/hostname', type: 'bind', source: `${sandbox.dir}/hostname`, options: ['rbind', 'rprivate', 'rw'] },
    { destination: '/etc/hosts', type: 'bind', source: `${sandbox.dir}/hosts`, options: ['rbind', 'rprivate', 'rw'] },
    { destination: '/etc/resolv.conf', type: 'bind', source: `${sandbox.dir}/resolv.conf`, options: ['rbind', 'rprivate', 'rw'] },
    {
      destination: '/dev/shm',
      type: 'bind',
      source: sandbox.hostIpc ? '/dev/shm' : `${sandbox.dir}/shm`,
      options: ['rbind', 'rprivate', 'rw'],
    },
  ];
  const mounts = [
    ...defaultMounts({ privileged }).filter((m) => !taken.has(m.destination)),
    ...podFiles.filter((m) => !taken.has(m.destination)),
    ...input.volumes.filter((v) => !cri.mounts.some((m) => m.destination === v.destination)),
    ...cri.mounts,
  ];
  const paths = protectedPaths({ privileged, maskedPaths: sc?.masked_paths, readonlyPaths: sc?.readonly_paths });
  const caps = capabilities({
    add: sc?.capabilities?.add_capabilities,
    drop: sc?.capabilities?.drop_capabilities,
    addAmbient: sc?.capabilities?.add_ambient_capabilities,
    privileged,
  });
  const resources = linuxResources(config.linux?.resources, { cgroupVersion: input.cgroupVersion });
  const oomScoreAdj = clampOomScoreAdj(config.linux?.resources?.oom_score_adj ?? 0, input.oomScoreAdjFloor);
  const sysctls = sandbox.config.linux?.sysctls ?? {};
  const who = await resolveUser(input.rootfs, {
    imageUser: image.config?.User ?? '',
    ...(sc?.run_as_user ? { runAsUser: sc.run_as_user.value } : {}),
    ...(sc?.run_as_username ? { runAsUsername: sc.run_as_username } : {}),
    ...(sc?.run_as_group ? { runAsGroup: sc.run_as_group.value } : {}),
    supplementalGroups: sc?.supplemental_groups ?? [],
  });
  const env = processEnv(config, image);
  if (!env.some((kv) => kv.startsWith('HOME='))) env.push(`HOME=${who.home}`);
  const seccomp = await seccompFor(sc?.seccomp ?? seccompFromPath(sc?.seccomp_profile_path ?? ''), { privileged, capabilities: caps.bounding, ...(input.seccompDir ? { localhostDir: input.seccompDir } : {}) });
  const apparmorProfile = await apparmorFor(sc?.apparmor, { privileged });
  const extra = await Promise.all(config.devices.map((d) => deviceFor(d)));
  const devices = privileged ? await privilegedDevices() : [...DEFAULT_DEVICES, ...extra.map((e) => e.device)];
  const deviceRules: OciDeviceCgroup[] = privileged ? [...PRIVILEGED_DEVICE_RULES] : [{ allow: false, access: 'rwm' }, ...DEFAULT_DEVICE_RULES, ...extra.map((e) => e.rule)];

  const spec: OciSpec = {
    ociVersion: '1.0.2',
    process: {
      terminal: config.tty,
      user: { uid: who.uid, gid: who.gid, additionalGids: who.additionalGids },
      args: processArgs(config, image),
      env,
      cwd,
      capabilities: caps,
      noNewPrivileges: sc?.no_new_privs ?? false,
      oomScoreAdj,
      ...(apparmorProfile ? { apparmorProfile } : {}),
    },
    root: { path: input.rootfs, readonly: sc?.readonly_rootfs ?? false },
    ...(sandbox.hostNetwork ? {} : { hostname: sandbox.config.hostname || undefined }),
    mounts,
    annotations: { ...config.annotations },
    linux: {
      // Absent namespace options mean POD for every namespace (the proto's zero value), as containerd reads them.
      // A host-PID pod puts every container in the host's PID namespace, whatever the container says.
      namespaces: namespaces(sandbox, sandbox.hostPid ? 'NODE' : (sc?.namespace_options?.pid ?? 'POD'), input.targetPid),
      cgroupsPath: input.cgroupsPath,
      devices,
      resources: { ...resources, devices: deviceRules },
      ...(seccomp ? { seccomp } : {}),
      ...(Object.keys(sysctls).length > 0 ? { sysctl: { ...sysctls } } : {}),
      maskedPaths: paths.maskedPaths,
      readonlyPaths: paths.readonlyPaths,
      ...(cri.rootfsPropagation ? { rootfsPropagation: cri.rootfsPropagation } : {}),
    },
  };
  return { spec, mounts: cri.mounts };
}
