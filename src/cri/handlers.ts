// Which RPCs berth implements, by service. An RPC missing here answers UNIMPLEMENTED (see server.ts).
import type { StreamRpc, UnaryRpc } from './rpc.ts';
import { version } from './version.ts';
import { status } from './status.ts';
import { runtimeConfig } from './runtime-config.ts';
import { updateRuntimeConfig } from './update-runtime-config.ts';
import { listImages } from './list-images.ts';
import { streamImages } from './stream-images.ts';
import { imageStatus } from './image-status.ts';
import { pullImage } from './pull-image.ts';
import { removeImage } from './remove-image.ts';
import { imageFsInfo } from './image-fs-info.ts';
import { exec } from './exec.ts';
import { attach } from './attach.ts';
import { portForward } from './port-forward.ts';
import { runPodSandbox } from './run-pod-sandbox.ts';
import { stopPodSandbox } from './stop-pod-sandbox.ts';
import { removePodSandbox } from './remove-pod-sandbox.ts';
import { podSandboxStatus } from './pod-sandbox-status.ts';
import { listPodSandbox } from './list-pod-sandbox.ts';
import { streamPodSandboxes } from './stream-pod-sandboxes.ts';
import { createContainer } from './create-container.ts';
import { startContainer } from './start-container.ts';
import { stopContainer } from './stop-container.ts';
import { removeContainer } from './remove-container.ts';
import { containerStatus } from './container-status.ts';
import { listContainers } from './list-containers.ts';
import { streamContainers } from './stream-containers.ts';
import { execSync } from './exec-sync.ts';
import { reopenContainerLog } from './reopen-container-log.ts';
import { updateContainerResources } from './update-container-resources.ts';
import { getContainerEvents } from './get-container-events.ts';
import { containerStats } from './container-stats.ts';
import { listContainerStats } from './list-container-stats.ts';
import { podSandboxStats } from './pod-sandbox-stats.ts';
import { listPodSandboxStats } from './list-pod-sandbox-stats.ts';

export type AnyHandler =
  | { kind: 'unary'; fn: UnaryRpc<unknown, unknown> }
  | { kind: 'stream'; fn: StreamRpc<unknown, unknown> };

// The request types are erased here: grpc-js hands over decoded messages of the RPC's own type.
export const unary = <Req, Res>(fn: UnaryRpc<Req, Res>): AnyHandler => ({ kind: 'unary', fn: fn as UnaryRpc<unknown, unknown> });
const stream = <Req, Res>(fn: StreamRpc<Req, Res>): AnyHandler => ({ kind: 'stream', fn: fn as StreamRpc<unknown, unknown> });

export const HANDLERS: Record<'RuntimeService' | 'ImageService', Record<string, AnyHandler>> = {
  RuntimeService: {
    Version: unary(version),
    Status: unary(status),
    RuntimeConfig: unary(runtimeConfig),
    Exec: unary(exec),
    Attach: unary(attach),
    PortForward: unary(portForward),
    UpdateRuntimeConfig: unary(updateRuntimeConfig),
    RunPodSandbox: unary(runPodSandbox),
    StopPodSandbox: unary(stopPodSandbox),
    RemovePodSandbox: unary(removePodSandbox),
    PodSandboxStatus: unary(podSandboxStatus),
    ListPodSandbox: unary(listPodSandbox),
    StreamPodSandboxes: stream(streamPodSandboxes),
    CreateContainer: unary(createContainer),
    StartContainer: unary(startContainer),
    StopContainer: unary(stopContainer),
    RemoveContainer: unary(removeContainer),
    ContainerStatus: unary(containerStatus),
    ListContainers: unary(listContainers),
    StreamContainers: stream(streamContainers),
    ExecSync: unary(execSync),
    ReopenContainerLog: unary(reopenContainerLog),
    UpdateContainerResources: unary(updateContainerResources),
    GetContainerEvents: stream(getContainerEvents),
    ContainerStats: unary(containerStats),
    ListContainerStats: unary(listContainerStats),
    PodSandboxStats: unary(podSandboxStats),
    ListPodSandboxStats: unary(listPodSandboxStats),
  },
  ImageService: {
    ListImages: unary(listImages),
    StreamImages: stream(streamImages),
    ImageStatus: unary(imageStatus),
    PullImage: unary(pullImage),
    RemoveImage: unary(removeImage),
    ImageFsInfo: unary(imageFsInfo),
  },
};
