/** POSIX single-quote quoting, for the few paths npurun itself puts into a host-side shell script. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
