import { EXIT, inputError } from '../errors.js';
import { crossCheckHosts } from '../ranktable/cross-check.js';
import { mergeRankTableFiles, warningLine, writeRankTable } from '../ranktable/files.js';
import { checkHostsChoice, generateChoice, rankTableOfHosts, rankTableOfThisHost } from '../ranktable/from-hosts.js';
import { renderRankTable, validLine } from '../ranktable/render.js';
import { validateRankTableFile } from '../ranktable/validate.js';
import { boolFlag, intFlag, runCommand, SHARED, stringFlag, type CommandSpec, type ParsedArgs } from './args.js';
import { probeInventory, probeThisHost } from './hosts.js';

const out = { type: 'string', value: 'PATH', help: 'output file' } as const;
export const SUBS: Record<string, CommandSpec> = {
  generate: {
    name: 'ranktable generate',
    usage:
      'npurun ranktable generate [--devices LIST] [--server-ip IP] [--visible-devices LIST] [--device-ip-file FILE] [--hosts FILE] [--simulate N] [--out PATH]',
    about: `The HCCL rank table of this server, as hccl_tools.py writes it (hccl_<n>p_<ids>_<ip>.json, byte for
byte), or with --hosts one table of every server, ranks numbered server by server.`,
    flags: {
      devices: {
        type: 'string',
        value: 'LIST',
        help: `hccl_tools' logical ids: "[0,4)", "[4,8)", "[0,8)"; also 0-3 or 0,1,2,3.\nDefault: every device found (or every --visible-devices entry). On 910 servers\n1, 2 or 4 devices inside 0-3 or 4-7, or all 8; other groupings are refused.`,
      },
      'visible-devices': {
        type: 'string',
        value: 'LIST',
        help: 'logical -> physical ids inside containers, as hccl_tools: "4,5,6,7" makes\nlogical 0 physical device 4 (default: logical = physical).',
      },
      'server-ip': {
        type: 'string',
        value: 'IP',
        help: "the server_id; default: the address of this host's default route (not the\nhostname lookup of hccl_tools, which often gives 127.0.x.x).",
      },
      'device-ip-file': {
        type: 'string',
        value: 'FILE',
        help: 'take device addresses from this hccn.conf-style file (address_N=IP) instead\nof /etc/hccn.conf or hccn_tool.',
      },
      hosts: { ...SHARED.hosts, help: 'one table of every host of this inventory, probed over SSH' },
      'ssh-config': SHARED['ssh-config'],
      simulate: {
        ...SHARED.simulate,
        help: 'N simulated devices (addresses as on Atlas 800 servers) instead of probing.',
      },
      out: {
        ...out,
        help: 'a directory (existing, or ending in /) gets the hccl_tools file name; any\nother path is the file itself. Default: rank-tables/ in the current directory.',
      },
    },
    footer: 'Prints the written path. Devices that are unhealthy or held by a process are written with a warning.',
  },
  merge: {
    name: 'ranktable merge',
    usage: 'npurun ranktable merge A.json B.json ... [--out FILE]',
    about: `merge_hccl.py: servers in argument order, ranks renumbered 0..N-1 server by server; rank ids stay
strings (merge_hccl.py writes numbers). Default output: rank-tables/hccl_<S>s_<N>p.json.`,
    flags: { out },
    positionals: true,
  },
  validate: {
    name: 'ranktable validate',
    usage: 'npurun ranktable validate FILE [--lenient] [--hosts FILE] [--json]',
    about: `Schema and semantic checks of a version 1.0 table (also pre-1.0 group_list files) or a version 1.2
(Atlas A3 SuperPoD) table. Prints "FILE: valid rank table, S servers, N ranks", or every problem as
"FILE: <json path>: <what was expected>" on stderr and exits 2.`,
    flags: {
      lenient: {
        type: 'boolean',
        help: `a number where HCCL wants a string (merge_hccl.py's rank_id) is a warning, not an error;
current CANN refuses such a file at HCCL init (EI0017), old CANN read it`,
      },
      hosts: { ...SHARED.hosts, help: "also each server's devices and device IPs against these live hosts" },
      'ssh-config': SHARED['ssh-config'],
      json: SHARED.json,
    },
    positionals: true,
  },
  show: {
    name: 'ranktable show',
    usage: 'npurun ranktable show FILE [--lenient] [--json]',
    about: 'Server, device, device ip and rank of every entry, as a table (--json: the table, rank ids as strings).',
    flags: {
      lenient: { type: 'boolean', help: 'show a file whose rank ids are numbers (see validate --help)' },
      json: SHARED.json,
    },
    positionals: true,
  },
};

const USAGE = `Usage: npurun ranktable generate|merge|validate|show ... [--help]

${Object.entries(SUBS)
  .map(([n, s]) => `${n.padEnd(9)} ${(s.about.split(/[.:]\s/)[0] as string).replace(/\n/g, ' ')}`)
  .join('\n')}

Run \`npurun ranktable <subcommand> --help\` for its options.`;

const warn = (m: string) => process.stderr.write(`npurun: warning: ${m}\n`);
const say = (line: string) => process.stderr.write(`${line}\n`);

async function generate(args: ParsedArgs): Promise<number> {
  const choice = generateChoice(
    {
      devices: stringFlag(args, 'devices'),
      visibleDevices: stringFlag(args, 'visible-devices'),
      serverIp: stringFlag(args, 'server-ip'),
      deviceIpFile: stringFlag(args, 'device-ip-file'),
    },
    warn,
  );
  const hostsFile = stringFlag(args, 'hosts');
  if (args.positionals.length > 0)
    throw inputError('npurun ranktable generate', `unexpected argument "${args.positionals[0]}"`);
  if (hostsFile) {
    checkHostsChoice(choice, [], hostsFile);
    const { hosts, facts } = await probeInventory(hostsFile, stringFlag(args, 'ssh-config'), (hosts) =>
      checkHostsChoice(choice, hosts, hostsFile),
    );
    process.stdout.write(`${writeRankTable(rankTableOfHosts(hosts, facts, choice), stringFlag(args, 'out'))}\n`);
  } else {
    const { localShellRunner } = await import('../transport/local.js');
    const probed = await probeThisHost(intFlag(args, 'simulate', 1, 16));
    const { table, name } = await rankTableOfThisHost(probed, choice, localShellRunner);
    process.stdout.write(`${writeRankTable(table, stringFlag(args, 'out'), name)}\n`);
  }
  return EXIT.ok;
}

async function validateOrShow(sub: 'validate' | 'show', args: ParsedArgs): Promise<number> {
  const files = args.positionals;
  if (files.length !== 1)
    throw inputError(`npurun ranktable ${sub}`, `expected one rank-table file, got ${files.length}`);
  const file = files[0] as string;
  const json = boolFlag(args, 'json');
  const r = validateRankTableFile(file, { lenient: boolFlag(args, 'lenient') });
  r.warnings.forEach((w) => say(warningLine(file, w)));
  const valid = r.table ?? r.superPod;
  if (!valid) {
    if (json)
      process.stdout.write(
        JSON.stringify({ file, valid: false, problems: r.problems, warnings: r.warnings }, null, 2) + '\n',
      );
    r.problems.forEach((p) => say(`${file}: ${p.path}: ${p.message}`));
    return EXIT.input;
  }
  const hostsFile = stringFlag(args, 'hosts');
  if (hostsFile) {
    if (!r.table)
      throw inputError('--hosts', "live cross-checks work on version 1.0 tables, whose server_id is the host's IP");
    const { hosts, facts } = await probeInventory(hostsFile, stringFlag(args, 'ssh-config'));
    const live = crossCheckHosts(r.table, hosts, facts, hostsFile);
    live.forEach((p) => say(`${file}: ${p.path}: ${p.message}`));
    if (live.length > 0) return EXIT.input;
  }
  const ranks = valid.server_list.reduce((n, s) => n + s.device.length, 0);
  const summary = {
    file,
    valid: true,
    version: valid.version,
    servers: valid.server_list.length,
    ranks,
    warnings: r.warnings,
  };
  if (json) process.stdout.write(JSON.stringify(sub === 'show' ? valid : summary, null, 2) + '\n');
  else process.stdout.write(`${sub === 'validate' ? validLine(file, valid) : renderRankTable(valid)}\n`);
  return EXIT.ok;
}

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub.startsWith('-')) {
    const help = sub === '--help' || sub === '-h';
    (help ? process.stdout : process.stderr).write(USAGE + '\n');
    return help ? EXIT.ok : EXIT.input;
  }
  const spec = SUBS[sub];
  if (!spec)
    throw inputError('npurun ranktable', `unknown subcommand "${sub}"; expected generate, merge, validate or show`);
  const stray = rest
    .map((a) => /^--([^=]+)/.exec(a)?.[1])
    .find(
      (f) => f !== undefined && !(f in spec.flags) && f !== 'help' && Object.values(SUBS).some((s) => f in s.flags),
    );
  if (stray)
    throw inputError(
      `npurun ranktable ${sub}`,
      `--${stray} is not an option of ${sub}; see \`npurun ranktable ${sub} --help\``,
    );
  return runCommand(spec, rest, (args) => {
    if (sub === 'generate') return generate(args);
    if (sub !== 'merge') return validateOrShow(sub as 'validate' | 'show', args);
    process.stdout.write(`${writeRankTable(mergeRankTableFiles(args.positionals, say), stringFlag(args, 'out'))}\n`);
    return EXIT.ok;
  });
}
