import { describe, expect, it } from 'vitest';
import { schemaProblems } from '../src/schema.js';

describe('schema problems read as "path: what was expected"', () => {
  it('a bad key is named as a key', () => {
    expect(schemaProblems('job.schema.json', { env: { '1BAD': 'x' } })).toEqual([
      { path: 'env', message: 'key "1BAD" is not allowed; expected a name matching ^[A-Za-z_][A-Za-z0-9_]*$' },
    ]);
  });
  it('for a field of several forms, the problem inside the form the value took comes first', () => {
    const [first] = schemaProblems('hosts.schema.json', { hosts: [{ address: 'a', devices: [0, 99] }] });
    expect(first).toEqual({ path: 'hosts[0].devices[1]', message: 'expected a number <= 15, got number 99' });
  });
  it('a misspelt key comes before the "missing" it causes, with a suggestion', () => {
    const [first, second] = schemaProblems('hosts.schema.json', { hosts: [{ adress: '10.0.0.1' }] });
    expect(first).toEqual({ path: 'hosts[0]', message: 'unknown key "adress" (did you mean "address"?)' });
    expect(second).toEqual({ path: 'hosts[0].address', message: 'missing (required)' });
  });
});
