// The small part of hpack.js (an HPACK implementation, RFC 7541) that berth uses; it ships no types.
declare module 'hpack.js' {
  import type { Duplex } from 'node:stream';

  export interface HeaderField {
    name: string;
    value: string;
    neverIndex: boolean;
  }

  /** Decodes header blocks written into it; decoded fields are read back in object mode. */
  export interface Decompressor extends Duplex {
    execute(): void;
    read(): HeaderField | null;
  }

  const hpack: {
    decompressor: { create(options: { table: { size: number } }): Decompressor };
  };
  export default hpack;
}
