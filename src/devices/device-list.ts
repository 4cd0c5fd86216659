import { inputError } from '../errors.js';

/**
 * Parses a device selection: hccl_tools' half-open range "[0,8)", an inclusive range "0-7",
 * a list "0,1,2,3", or a mix "0-3,6". Returns ascending unique ids.
 * `where` names the flag or file field for the error message.
 */
export function parseDeviceList(text: string, where: string): number[] {
  const s = text.trim();
  const fail = (why: string) =>
    inputError(where, `${why} in "${text}"; expected "[a,b)" (hccl_tools form), "a-b" or "a,b,c" with device ids 0-15`);
  if (s === '') throw fail('empty device list');
  const ids: number[] = [];
  const half = /^\[\s*(\d+)\s*,\s*(\d+)\s*\)$/.exec(s);
  if (half) {
    const a = Number(half[1]);
    const b = Number(half[2]);
    if (b <= a) throw fail('empty range');
    for (let i = a; i < b; i++) ids.push(i);
  } else {
    for (const part of s.split(',')) {
      const p = part.trim();
      const range = /^(\d+)\s*-\s*(\d+)$/.exec(p);
      if (range) {
        const a = Number(range[1]);
        const b = Number(range[2]);
        if (b < a) throw fail(`descending range "${p}"`);
        for (let i = a; i <= b; i++) ids.push(i);
      } else if (/^\d+$/.test(p)) {
        ids.push(Number(p));
      } else {
        throw fail(`"${p}" is not a device id or range`);
      }
    }
  }
  for (const id of ids) if (id > 15) throw fail(`device id ${id} is out of range`);
  const unique = [...new Set(ids)].sort((x, y) => x - y);
  if (unique.length !== ids.length) throw fail('a device is listed twice');
  return unique;
}
