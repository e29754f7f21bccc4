// The host side of berth.v1.Node: berthd (root, on the host) runs `berth-install switch --drained`
// or `revert` in a transient host unit for the node agent, which lives in a pod and cannot. One
// operation at a time; its outcome is kept in memory until the next one starts, so an agent that
// was restarted mid-switch (the switch removes the old runtime's pods, the agent's own among them)
// asks again and learns how it went.
import type { Logger } from 'pino';
import type { BerthConfig } from '../config/config.ts';
import { runCommand } from '../util/run-command.ts';
import { errorMessage, failedPrecondition } from '../util/errors.ts';

export type SwitchState = 'idle' | 'running' | 'succeeded' | 'failed';

export interface SwitchOperation {
  state: SwitchState;
  /** A revert (restore the kubelet's backup) rather than a switch. */
  revert: boolean;
  message: string;
  /** Unix ms; 0 when not started / not finished. */
  startedAt: number;
  finishedAt: number;
}

export class KubeletSwitcher {
  readonly #config: BerthConfig['node'];
  readonly #log: Logger;
  #op: SwitchOperation = { state: 'idle', revert: false, message: 'no kubelet switch or revert started since berthd started', startedAt: 0, finishedAt: 0 };

  constructor(config: BerthConfig['node'], log: Logger) {
    this.#config = config;
    this.#log = log;
  }

  status(): SwitchOperation {
    return { ...this.#op };
  }

  /**
   * Starts a switch (or a revert) and returns at once. The same operation asked again while it
   * runs is the one already running (an agent retrying after a restart); the other one is refused.
   */
  start(revert: boolean): SwitchOperation {
    const what = (r: boolean): string => (r ? 'revert' : 'switch');
    if (this.#op.state === 'running') {
      if (this.#op.revert === revert) return this.status();
      throw failedPrecondition(`a kubelet ${what(this.#op.revert)} is running (since ${new Date(this.#op.startedAt).toISOString()}); ask for a ${what(revert)} once SwitchStatus says it ended`);
    }
    this.#op = { state: 'running', revert, message: `kubelet ${what(revert)} running in host unit berth-${what(revert)}`, startedAt: Date.now(), finishedAt: 0 };
    void this.#run(revert);
    return this.status();
  }

  async #run(revert: boolean): Promise<void> {
    const { systemdRun, installCommand, switchTimeoutSeconds } = this.#config;
    const verb = revert ? 'revert' : 'switch';
    // --wait: systemd-run stays until the unit ends and exits with its status, reporting its result;
    // --collect: a failed unit does not linger and block the next berth-<verb> of the same name.
    const argv = [
      ...systemdRun.slice(1),
      '--unit', `berth-${verb}`, '--wait', '--collect', '--',
      ...installCommand, verb, ...(revert ? [] : ['--drained']), '--apply', '--host-root', '/',
    ];
    const [program = 'systemd-run'] = systemdRun;
    this.#log.info({ argv: [program, ...argv] }, `kubelet ${verb}: starting host unit berth-${verb}`);
    try {
      const res = await runCommand(program, argv, { step: `kubelet ${verb} (host unit berth-${verb})`, timeoutMs: switchTimeoutSeconds * 1000 });
      this.#finish('succeeded', lastLines(res.stderr || res.stdout) || `kubelet ${verb} finished`);
    } catch (err) {
      this.#finish('failed', errorMessage(err));
    }
  }

  #finish(state: 'succeeded' | 'failed', message: string): void {
    this.#op = { ...this.#op, state, message, finishedAt: Date.now() };
    this.#log[state === 'succeeded' ? 'info' : 'error']({ revert: this.#op.revert, message }, `kubelet ${this.#op.revert ? 'revert' : 'switch'} ${state}`);
  }
}

/** systemd-run --wait ends with the unit's result ("Finished with result: …"): the last lines tell. */
function lastLines(text: string): string {
  return text.trim().split('\n').slice(-3).join('\n').slice(0, 1000);
}
