// Status: whether the runtime and the pod network are ready, with a reason when they are not.
import type { UnaryRpc } from './rpc.ts';
import type { RuntimeCondition, StatusRequest, StatusResponse } from './types.ts';
import type { RegistryConfig } from '../image/registry/config.ts';

/** Registry settings for `crictl info`: mirrors and TLS choices, never credentials. */
function redactedRegistry(registry: RegistryConfig): object {
  const hosts = Object.fromEntries(
    Object.entries(registry.hosts).map(([domain, h]) => [
      domain,
      { mirrors: h.mirrors ?? [], skipUpstream: h.skipUpstream ?? false, plainHttp: h.plainHttp ?? false, caFile: h.caFile, credentials: Boolean(h.username || h.auth || h.identityToken || h.registryToken) },
    ]),
  );
  return { plainHttpHosts: registry.plainHttpHosts, hosts };
}

export const status: UnaryRpc<StatusRequest, StatusResponse> = async (req, ctx) => {
  const probe = await ctx.probe.check();
  await ctx.network.refresh();
  const network = ctx.network.ready();
  const conditions: RuntimeCondition[] = [
    {
      type: 'RuntimeReady',
      status: probe.runtimeReady,
      reason: probe.runtimeReady ? '' : 'OCIRuntimeMissing',
      message: probe.runtimeMessage,
    },
    {
      type: 'NetworkReady',
      status: network.ready,
      reason: network.reason,
      message: network.message,
    },
  ];
  const info: Record<string, string> = {};
  if (req.verbose) {
    info.config = JSON.stringify({ ...ctx.config, registry: redactedRegistry(ctx.config.registry) });
    info.network = JSON.stringify(ctx.network.current() ?? null);
  }
  return {
    status: { conditions },
    info,
    runtime_handlers: probe.handlers.map((name) => ({
      name,
      features: { recursive_read_only_mounts: false, user_namespaces: false },
    })),
    features: { supplemental_groups_policy: false, user_namespaces_host_network: false, mount_options: false },
  };
};
