// Path quoting of the text format getfattr dumps and `setfattr --restore` reads: octal escapes for
// bytes outside printable ASCII, for `\\` and for `=`, so any file name fits on one line.

export function quoteDump(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text)) {
    out += byte <= 0x20 || byte >= 0x7f || byte === 0x5c || byte === 0x3d ? `\\${byte.toString(8).padStart(3, '0')}` : String.fromCharCode(byte);
  }
  return out;
}

export function unquoteDump(text: string): string {
  return Buffer.from(text.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))), 'latin1').toString('utf8');
}
