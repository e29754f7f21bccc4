// Turns berth's image records into the CRI Image message, shared by ListImages, StreamImages and
// ImageStatus so the three answer identically.
import type { ImageRecordView } from '../image/service.ts';
import type { Image } from './gen/runtime/v1/Image.ts';
import type { ImageSpec__Output as ImageSpec } from './gen/runtime/v1/ImageSpec.ts';
import { invalidArgument } from '../util/errors.ts';

export function toCriImage(view: ImageRecordView): Image {
  return {
    id: view.id,
    repo_tags: view.repoTags,
    repo_digests: view.repoDigests,
    size: view.size,
    uid: view.uid === undefined ? null : { value: view.uid },
    username: view.username,
    spec: { image: view.id, annotations: {} },
    pinned: view.pinned,
  };
}

/** The image reference or ID a request names; INVALID_ARGUMENT when absent. */
export function requireImageName(spec: ImageSpec | null | undefined, rpc: string): string {
  const name = spec?.image?.trim() ?? '';
  if (!name) throw invalidArgument(`${rpc}: image.image is empty: name an image reference or ID`);
  return name;
}
