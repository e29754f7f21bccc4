// ImageFsInfo: bytes and inodes the image store uses, which the kubelet's image GC acts on.
import type { UnaryRpc } from './rpc.ts';
import type { ImageFsInfoRequest__Output as ImageFsInfoRequest } from './gen/runtime/v1/ImageFsInfoRequest.ts';
import type { ImageFsInfoResponse } from './gen/runtime/v1/ImageFsInfoResponse.ts';

export const imageFsInfo: UnaryRpc<ImageFsInfoRequest, ImageFsInfoResponse> = async (_req, ctx) => {
  const usage = await ctx.images.fsUsage();
  const fs = {
    timestamp: Date.now() * 1_000_000,
    fs_id: { mountpoint: usage.mountpoint },
    used_bytes: { value: usage.bytes },
    inodes_used: { value: usage.inodes },
  };
  return { image_filesystems: [fs], container_filesystems: [] };
};
