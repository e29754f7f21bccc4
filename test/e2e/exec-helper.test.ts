// The per-container exec helper (native/exec-helper.c, src/container/exec-helper.ts) against a
// real berthd and real runc: an exec through it is confined exactly as a direct `runc exec`, its
// binary cannot be rewritten from inside the container, exit codes and errors are runc's, and it
// leaves nothing behind (fds, processes, sockets) when execs end and containers go. The fallback
// (`[runtime] exec_helper = ""`) is checked to behave the same.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCommand } from '../../src/util/run-command.ts';
import { until } from '../helpers/poll.ts';
import { alive, cgroupsLeft, podConfig, runPodWith, startPodEnv, containerConfig, type PodEnv } from '../helpers/pods.ts';
import { spdyCommand, startSpdyCommand } from '../helpers/streaming-client.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const HELPER_BIN = join(REPO, 'dist/berth-exec-helper');
const root = process.getuid?.() === 0;
const skip = !root && 'needs root (runc, CNI)';
let env: PodEnv | undefined;
let fallback: PodEnv | undefined;

before(async () => {
  if (!root) return;
  // What hack/install-deps.sh does for a clean clone: the tests need the helper built.
  await runCommand('bash', [join(REPO, 'hack/build-native.sh')], { step: 'build the exec helper', timeoutMs: 120_000 });
  env = await startPodEnv({ network: { subnetPrefix: '10.230', bridgePrefix: 'bsx' }, extraConfig: `[runtime]\nexec_helper = "${HELPER_BIN}"` });
  fallback = await startPodEnv({ network: { subnetPrefix: '10.230', bridgePrefix: 'bsx' }, extraConfig: '[runtime]\nexec_helper = ""' });
});

after(async () => {
  await env?.dispose();
  await fallback?.dispose();
});

interface ExecSyncResult {
  stdout: Buffer;
  stderr: Buffer;
  exit_code: number;
}

const call = <T>(e: PodEnv, method: string, req: object): Promise<T> => e.daemon.client.call<T>('runtime', method, req);
const execSync = (e: PodEnv, id: string, cmd: string[], timeout = 10): Promise<ExecSyncResult> => call<ExecSyncResult>(e, 'ExecSync', { container_id: id, cmd, timeout });

/** The helper's pid file and socket for a container (under berthd's state dir). */
const helperFile = (e: PodEnv, id: string, ext: 'pid' | 'sock'): string => join(e.daemon.state, 'exec-helper', `${id}.p1.${ext}`);
const helperPid = async (e: PodEnv, id: string): Promise<number> => Number((await readFile(helperFile(e, id, 'pid'), 'utf8').catch(() => '0')).trim());

/** Host processes whose cgroup names the container. */
async function processesOf(id: string): Promise<number[]> {
  const out: number[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cg = await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '');
    if (cg.includes(id)) out.push(Number(pid));
  }
  return alive(out);
}

/** A direct `runc exec` of the container, as berth's fallback and containerd run it. */
async function runcExec(e: PodEnv, id: string, cmd: string[]): Promise<string> {
  const r = await runCommand('runc', ['--root', join(e.daemon.state, 'runtime', 'runc'), 'exec', id, ...cmd], { step: 'runc exec', timeoutMs: 30_000 });
  return r.stdout;
}

/** What the kernel says about a process's confinement, each probe run as its own exec. */
const PROBES: Record<string, string[]> = {
  status: ['grep', '-E', '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Seccomp_filters|SigBlk|SigIgn):', '/proc/self/status'],
  cgroup: ['cat', '/proc/self/cgroup'],
  namespaces: ['sh', '-c', 'for n in /proc/self/ns/*; do echo "$n $(readlink "$n")"; done'],
  // Empty or unreadable without an LSM; the same either way.
  lsm: ['sh', '-c', 'cat /proc/self/attr/current 2>/dev/null || echo no-lsm'],
  limits: ['cat', '/proc/self/limits'],
  oom: ['cat', '/proc/self/oom_score_adj'],
  cwd: ['pwd'],
  umask: ['sh', '-c', 'umask'],
  // Whether the command leads its own session and process group (pids themselves differ).
  session: ['sh', '-c', 'set -- $(cut -d" " -f5,6 /proc/$$/stat); echo "pgrp-is-pid $([ "$1" = $$ ] && echo y || echo n) sid-is-pid $([ "$2" = $$ ] && echo y || echo n)"'],
  env: ['sh', '-c', 'env | sort'],
};

async function assertSameConfinement(e: PodEnv, id: string): Promise<void> {
  await execSync(e, id, ['true']); // starts the helper
  assert.ok((await helperPid(e, id)) > 0, 'the helper runs');
  // The probes below really go through the helper: a command's parent is its session there.
  // (PPid is the one field that differs: 0 under runc exec, whose parent is outside the PID namespace.)
  assert.equal((await execSync(e, id, ['sh', '-c', 'cat /proc/$PPID/comm'])).stdout.toString(), 'berth-exec\n');
  for (const [name, cmd] of Object.entries(PROBES)) {
    const helped = await execSync(e, id, cmd);
    assert.equal(helped.exit_code, 0, `${name}: ${helped.stderr.toString()}`);
    // sh's `env` differs only in what sh itself sets (PWD, SHLVL) — the same in both.
    assert.equal(helped.stdout.toString(), await runcExec(e, id, cmd), `${name} differs between the helper and runc exec`);
  }
}

test('an exec through the helper is confined exactly as a runc exec: non-root user, groups, caps, RuntimeDefault seccomp', { skip }, async () => {
  const e = env as PodEnv;
  const { ctrId } = await runPodWith(e, ['sleep', '3600'], {
    container: {
      working_dir: '/tmp',
      envs: [{ key: 'PROBE', value: 'yes' }],
      linux: {
        security_context: {
          run_as_user: { value: 1234 },
          run_as_group: { value: 2345 },
          supplemental_groups: [3456, 4567],
          capabilities: { add_capabilities: ['NET_ADMIN'], drop_capabilities: ['CHOWN', 'KILL'] },
          seccomp: { profile_type: 'RuntimeDefault' },
        },
      },
    },
  });
  await assertSameConfinement(e, ctrId);
  const status = (await execSync(e, ctrId, PROBES.status as string[])).stdout.toString();
  assert.match(status, /Uid:\s+1234\s/);
  assert.match(status, /Groups:.*3456/);
  assert.match(status, /Seccomp:\s+2/);
});

test('an exec through the helper is confined exactly as a runc exec: privileged root', { skip }, async () => {
  const e = env as PodEnv;
  const { ctrId } = await runPodWith(e, ['sleep', '3600'], {
    pod: { linux: { security_context: { privileged: true, namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } } },
    container: { linux: { security_context: { privileged: true } } },
  });
  await assertSameConfinement(e, ctrId);
});

test('the helper runs from a sealed copy: root in the container cannot rewrite it, and the host binary is unchanged', { skip }, async () => {
  const e = env as PodEnv;
  const { ctrId } = await runPodWith(e, ['sleep', '3600'], {
    pod: { linux: { security_context: { privileged: true, namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } } },
    container: { linux: { security_context: { privileged: true } } },
  });
  const hostHash = async (): Promise<string> => createHash('sha256').update(await readFile(HELPER_BIN)).digest('hex');
  const before = await hostHash();
  await execSync(e, ctrId, ['true']);
  // Every helper process in the container (the server and this exec's session) is tried.
  const script = [
    'n=0',
    'for p in /proc/[0-9]*; do',
    '  [ "$(cat $p/comm 2>/dev/null)" = berth-exec ] || continue',
    '  n=$((n+1)); echo "exe $(readlink $p/exe)"',
    '  (echo evil >> $p/exe) 2>/dev/null && echo "appended $p"',
    '  (echo evil > $p/exe) 2>/dev/null && echo "truncated $p"',
    'done',
    'echo "helpers $n"',
  ].join('\n');
  const r = await execSync(e, ctrId, ['sh', '-c', script]);
  const out = r.stdout.toString();
  assert.doesNotMatch(out, /appended|truncated/, out);
  assert.match(out, /helpers [1-9]/, out);
  assert.match(out, /exe \/memfd:berth-exec-helper/, out);
  assert.doesNotMatch(out, new RegExp(HELPER_BIN), 'the host file is never a container process\'s exe');
  assert.equal(await hostHash(), before);
});

test('exit codes, a killed command, a missing command and a timeout are what runc exec gives, with and without the helper', { skip }, async () => {
  for (const e of [env as PodEnv, fallback as PodEnv]) {
    const { ctrId } = await runPodWith(e, ['sleep', '3600']);
    assert.equal((await execSync(e, ctrId, ['true'])).exit_code, 0);
    assert.equal((await execSync(e, ctrId, ['sh', '-c', 'echo out; echo err >&2; exit 3'])).exit_code, 3);
    const three = await execSync(e, ctrId, ['sh', '-c', 'echo out; echo err >&2; exit 3']);
    assert.deepEqual([three.stdout.toString(), three.stderr.toString()], ['out\n', 'err\n']);
    assert.equal((await execSync(e, ctrId, ['sh', '-c', 'kill -9 $$'])).exit_code, 137);
    const missing = await execSync(e, ctrId, ['no-such-command-here']);
    assert.equal(missing.exit_code, 255);
    // runc logs it in its log format (quotes escaped); the helper's line is runc's message alone.
    assert.match(missing.stderr.toString(), /exec: \\?"no-such-command-here\\?": executable file not found in \$PATH/);
    await assert.rejects(execSync(e, ctrId, ['sleep', '4545'], 1), /DEADLINE_EXCEEDED|timed out/);
    await until('the timed-out command to be gone', async () => !(await execSync(e, ctrId, ['ps'])).stdout.toString().includes('sleep 4545'));
    const helper = (await readdir(join(e.daemon.state, 'exec-helper')).catch(() => [] as string[])).filter((f) => f.startsWith(ctrId));
    assert.equal(helper.length > 0, e === env, 'only the configured daemon starts helpers');
  }
});

test('an ExecSync the client cancels has its command killed, with and without the helper', { skip }, async () => {
  for (const e of [env as PodEnv, fallback as PodEnv]) {
    const { ctrId } = await runPodWith(e, ['sleep', '3600']);
    const ac = new AbortController();
    const pending = e.daemon.client.call('runtime', 'ExecSync', { container_id: ctrId, cmd: ['sh', '-c', 'touch /tmp/cancel-me; exec sleep 4848'], timeout: 0 }, { signal: ac.signal });
    pending.catch(() => {});
    await until('the command to run', async () => (await execSync(e, ctrId, ['test', '-e', '/tmp/cancel-me'])).exit_code === 0);
    ac.abort();
    await assert.rejects(pending);
    await until('the cancelled command to be gone', async () => !(await execSync(e, ctrId, ['ps'])).stdout.toString().includes('sleep 4848'));
  }
});

test('odd argv (an empty command name, a NUL inside an argument) leaves the helper in use', { skip }, async () => {
  const e = env as PodEnv;
  const { ctrId } = await runPodWith(e, ['sleep', '3600']);
  // No such command, as execvp sees it.
  assert.equal((await execSync(e, ctrId, [''])).exit_code, 255);
  // The frames cannot carry it: this one exec goes to runc, which refuses it as it always did.
  const nul = await execSync(e, ctrId, ['echo', 'a\0b']);
  assert.notEqual(nul.exit_code, 0);
  assert.match(nul.stderr.toString(), /invalid argument/);
  assert.equal((await execSync(e, ctrId, ['sh', '-c', 'cat /proc/$PPID/comm'])).stdout.toString(), 'berth-exec\n');
});

test('streaming exec with and without the helper: stdin EOF, tty with CRLF and resize, a client leaving kills the command', { skip }, async () => {
  for (const e of [env as PodEnv, fallback as PodEnv]) {
    const { ctrId } = await runPodWith(e, ['sleep', '3600']);
    const url = async (req: object): Promise<string> => (await call<{ url: string }>(e, 'Exec', { container_id: ctrId, ...req })).url;
    const wc = await spdyCommand(await url({ cmd: ['wc', '-c'], stdin: true, stdout: true, stderr: true }), { stdin: Buffer.alloc(100_000, 'x') });
    assert.deepEqual([wc.stdout.toString().trim(), wc.exitCode], ['100000', 0]);
    const script = 'for i in $(seq 200); do s=$(stty size 2>/dev/null); [ "$s" = "41 99" ] && break; sleep 0.05; done; echo "size $s"; exit 5';
    const tty = await spdyCommand(await url({ cmd: ['sh', '-c', script], tty: true, stdin: true, stdout: true }), { tty: true, stdin: true, resize: [{ width: 99, height: 41 }] });
    assert.equal(tty.stdout.toString(), 'size 41 99\r\n');
    assert.equal(tty.exitCode, 5);
    const cmd = await startSpdyCommand(await url({ cmd: ['sh', '-c', 'echo started; exec sleep 4646'], stdin: true, stdout: true, stderr: true }), { stdin: true });
    await until('the exec to start', () => cmd.stdoutSoFar().includes('started'));
    cmd.session.destroy();
    await cmd.done.catch(() => {});
    await until('the abandoned command to be gone', async () => !(await execSync(e, ctrId, ['ps'])).stdout.toString().includes('sleep 4646'));
  }
});

test('a hundred execs through the helper leave berthd\'s open fds where they were', { skip }, async () => {
  const e = env as PodEnv;
  const { ctrId } = await runPodWith(e, ['sleep', '3600']);
  await execSync(e, ctrId, ['true']);
  const fds = async (): Promise<number> => (await readdir(`/proc/${e.daemon.child.pid}/fd`)).length;
  const start = await fds();
  for (let i = 0; i < 100; i++) {
    if (i % 2) assert.equal((await execSync(e, ctrId, ['echo', String(i)])).stdout.toString(), `${i}\n`);
    else {
      const { url } = await call<{ url: string }>(e, 'Exec', { container_id: ctrId, cmd: ['echo', String(i)], stdout: true, stderr: true });
      assert.equal((await spdyCommand(url, {})).stdout.toString(), `${i}\n`);
    }
  }
  let now = 0;
  await until('berthd\'s fds to settle', async () => (now = await fds()) <= start).catch((err: Error) => {
    throw new Error(`${err.message}: ${start} -> ${now}`);
  });
});

for (const pid of ['CONTAINER', 'POD'] as const) {
  test(`stopping and removing a container with a helper (${pid.toLowerCase()} PID namespace) leaves no process, socket or cgroup`, { skip }, async () => {
    const e = env as PodEnv;
    const ns = { network: 'POD', pid, ipc: 'POD' };
    const pod = podConfig(e, { linux: { security_context: { namespace_options: ns } } });
    const { pod_sandbox_id: podId } = await call<{ pod_sandbox_id: string }>(e, 'RunPodSandbox', { config: pod });
    try {
      const { container_id: ctrId } = await call<{ container_id: string }>(e, 'CreateContainer', {
        pod_sandbox_id: podId,
        config: containerConfig('main', ['sleep', '3600'], { linux: { security_context: { namespace_options: ns } } }),
        sandbox_config: pod,
      });
      await call(e, 'StartContainer', { container_id: ctrId });
      // A command left running in the background by an exec, besides the helper itself.
      await execSync(e, ctrId, ['sh', '-c', 'sleep 4747 >/dev/null 2>&1 &']);
      const helper = await helperPid(e, ctrId);
      assert.ok(helper > 0 && (await alive([helper])).length === 1, 'the helper runs');
      await call(e, 'StopContainer', { container_id: ctrId, timeout: 2 });
      await until('the helper to be gone once the container stopped', async () => (await alive([helper])).length === 0);
      await call(e, 'RemoveContainer', { container_id: ctrId });
      assert.deepEqual(await processesOf(ctrId), []);
      assert.deepEqual(await cgroupsLeft([ctrId]), []);
      for (const ext of ['pid', 'sock'] as const) await assert.rejects(readFile(helperFile(e, ctrId, ext)), /ENOENT/);
    } finally {
      await call(e, 'RemovePodSandbox', { pod_sandbox_id: podId });
    }
  });
}

test('after a berthd restart a running helper is reconnected to, not started again', { skip }, async () => {
  const e = env as PodEnv;
  const { ctrId } = await runPodWith(e, ['sleep', '3600']);
  await execSync(e, ctrId, ['true']);
  const helper = await helperPid(e, ctrId);
  assert.ok(helper > 0);
  await e.restart();
  assert.equal((await execSync(e, ctrId, ['echo', 'again'])).stdout.toString(), 'again\n');
  assert.equal(await helperPid(e, ctrId), helper);
  assert.equal((await alive([helper])).length, 1);
});

test('a helper killed from inside the container is started again by the next exec', { skip }, async () => {
  const e = env as PodEnv;
  const { ctrId } = await runPodWith(e, ['sleep', '3600']);
  await execSync(e, ctrId, ['true']);
  const helper = await helperPid(e, ctrId);
  // The server is the oldest berth-exec process; this exec's own session is another, and dies with
  // the server, so the kill comes from a background process once the exec has returned.
  await execSync(e, ctrId, ['sh', '-c', 'p=$(pidof berth-exec | tr " " "\\n" | sort -n | head -1); (sleep 0.2; kill -9 $p) >/dev/null 2>&1 &']);
  await until('the helper to die', async () => (await alive([helper])).length === 0);
  assert.equal((await execSync(e, ctrId, ['echo', 'back'])).stdout.toString(), 'back\n');
  assert.notEqual(await helperPid(e, ctrId), helper);
});

test('a container whose seccomp profile forbids what the helper needs falls back to runc exec, logged once', { skip }, async () => {
  const e = env as PodEnv;
  const dir = await mkdtemp(join(tmpdir(), 'berth-seccomp-'));
  try {
    // The helper starts (runc exec), but a session cannot make its signalfd.
    const profile = join(dir, 'no-signalfd.json');
    await writeFile(profile, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['signalfd', 'signalfd4'], action: 'SCMP_ACT_ERRNO' }] }));
    const { ctrId } = await runPodWith(e, ['sleep', '3600'], { container: { linux: { security_context: { seccomp: { profile_type: 'Localhost', localhost_ref: profile } } } } });
    for (let i = 0; i < 3; i++) {
      const r = await execSync(e, ctrId, ['sh', '-c', 'echo fine; cat /proc/$PPID/comm 2>/dev/null || echo no-parent']);
      assert.equal(r.exit_code, 0);
      // Under runc exec the parent is outside the container's PID namespace.
      assert.equal(r.stdout.toString(), 'fine\nno-parent\n');
    }
    const { url } = await call<{ url: string }>(e, 'Exec', { container_id: ctrId, cmd: ['echo', 'streamed'], stdout: true, stderr: true });
    assert.equal((await spdyCommand(url, {})).stdout.toString(), 'streamed\n');
    const warnings = e.daemon.logs().split('\n').filter((l) => l.includes(ctrId) && l.includes('exec helper unavailable'));
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0] ?? '', /operation not permitted/i);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
