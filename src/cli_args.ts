/**
 * Command-line parsing for ns-tool: pure, so it is tested without root.
 *
 * @module
 */
import {
  DEFAULT_NAMESPACES,
  NAMESPACE_TABLE,
  type NamespaceType,
  normalizeNamespaces,
} from "./namespaces.ts";

/** A usage error: the CLI prints it on one line and exits 2. */
export class UsageError extends Error {
  /** @param message What is wrong, without a trailing period. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** What `ns-tool exec` was asked to do: library options, as the CLI spells them. */
export interface ExecArgs {
  kind: "exec";
  /** The target; absent when every namespace comes from --ns-path. */
  pid?: number;
  namespaces: NamespaceType[] | "all" | undefined;
  nsPaths: Partial<Record<NamespaceType, string>>;
  /** Absent: run $SHELL, else /bin/sh. */
  command?: string[];
  preserveCredentials: boolean;
  env: Record<string, string>;
  targetEnv: boolean;
  uid?: number;
  gid?: number;
  root?: string;
  targetRoot: boolean;
  cwd?: string;
  targetCwd: boolean;
  cwdInside?: string;
  joinCgroup: boolean;
  fork: boolean;
  tty: boolean;
}

/** The topics of --help. */
export type HelpTopic = "main" | "exec" | "proc" | "create";

/** What `ns-tool proc` was asked to do. */
export interface ProcArgs {
  kind: "proc";
  pid?: number;
  json: boolean;
}

/** A parsed command line. */
export type CliArgs =
  | ExecArgs
  | ProcArgs
  | CreateArgs
  | { kind: "help"; topic: HelpTopic }
  | { kind: "version" };

/**
 * The options of `exec`. `kind`: "flag" takes no value; "value" takes one
 * (`--name value`, `--name=value`, `-x value`, `-xvalue`); "optional" takes
 * one only when attached (`--wd=DIR`, `-wDIR`), as in nsenter; "list" is a
 * value that may be given again.
 *
 * Parsed by hand rather than with node:util's parseArgs: importing any node:
 * module loads Deno's Node compatibility layer, which alone adds about 30% to
 * the CLI's start-up (measured; the target is 25% over Deno's hello-world).
 */
const EXEC_OPTIONS = [
  { name: "pid", short: "p", kind: "value" },
  { name: "ns-types", short: "n", kind: "value" },
  { name: "all", short: "a", kind: "flag" },
  { name: "ns-path", kind: "list" },
  { name: "wd", short: "w", kind: "optional" },
  { name: "wdns", short: "W", kind: "value" },
  { name: "root", short: "r", kind: "optional" },
  { name: "setuid", short: "S", kind: "value" },
  { name: "setgid", short: "G", kind: "value" },
  { name: "preserve-credentials", kind: "flag" },
  { name: "env", short: "e", kind: "list" },
  { name: "target-env", kind: "flag" },
  { name: "join-cgroup", kind: "flag" },
  { name: "tty", short: "t", kind: "flag" },
  { name: "no-fork", short: "F", kind: "flag" },
  { name: "fork", kind: "flag" },
  { name: "help", short: "h", kind: "flag" },
] as const;

type ExecOption = typeof EXEC_OPTIONS[number]["name"];

/** An option table: EXEC_OPTIONS or CREATE_OPTIONS. */
type OptionTable = readonly {
  name: string;
  short?: string;
  kind: "flag" | "value" | "optional" | "list";
}[];

/** Parsed options: a flag is `true`, an optional option given bare is `true`, a list is an array. */
export type ExecOptionValues = Partial<Record<ExecOption, string | true | string[]>>;

/** The options of `unshare` and the per-type commands that make new namespaces. */
const CREATE_OPTIONS = [
  { name: "ns-types", short: "n", kind: "value" },
  { name: "hostname", kind: "value" },
  { name: "mount-proc", kind: "flag" },
  { name: "map-root-user", short: "r", kind: "flag" },
  { name: "persist", kind: "list" },
  { name: "boottime", kind: "value" },
  { name: "monotonic", kind: "value" },
  { name: "help", short: "h", kind: "flag" },
] as const;

/**
 * Reads exec's options up to the command: the first `--` or the first
 * argument that is not an option.
 *
 * @throws {UsageError} for an unknown option or a missing value
 */
export function parseExecOptions(
  args: readonly string[],
): { values: ExecOptionValues; command: string[] } {
  return parseOptions(EXEC_OPTIONS, args);
}

/**
 * Reads options of `table` up to the command: the first `--` or the first
 * argument that is not an option.
 *
 * @throws {UsageError} for an unknown option or a missing value
 */
function parseOptions<T extends OptionTable>(
  table: T,
  args: readonly string[],
): { values: Partial<Record<T[number]["name"], string | true | string[]>>; command: string[] } {
  const values: Partial<Record<string, string | true | string[]>> = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") return { values, command: args.slice(i + 1) };
    if (!arg.startsWith("-") || arg === "-") return { values, command: args.slice(i) };
    const long = arg.startsWith("--");
    const eq = arg.indexOf("=");
    const [key, inline] = long
      ? (eq > 0 ? [arg.slice(2, eq), arg.slice(eq + 1)] : [arg.slice(2), undefined])
      : [arg.slice(1, 2), arg.length > 2 ? arg.slice(2) : undefined];
    const option = table.find((o) => (long ? o.name === key : o.short === key));
    if (!option) throw new UsageError(`Unknown option '${long ? `--${key}` : arg.slice(0, 2)}'`);
    const label = long ? `--${option.name}` : `-${key}`;
    switch (option.kind) {
      case "flag":
        if (inline !== undefined) throw new UsageError(`Option '${label}' takes no value`);
        values[option.name] = true;
        break;
      case "optional":
        values[option.name] = inline ?? true;
        break;
      case "value":
      case "list": {
        const value = inline ?? args[++i];
        if (value === undefined) throw new UsageError(`Option '${label}' needs a value`);
        if (option.kind === "value") values[option.name] = value;
        else {values[option.name] = [
            ...((values[option.name] as string[] | undefined) ?? []),
            value,
          ];}
      }
    }
  }
  return { values, command: [] };
}

/** What `ns-tool unshare` or a per-type command was asked to do. */
export interface CreateArgs {
  kind: "create";
  /** The per-type command used (a demonstration runs without a command), or "unshare". */
  via: NamespaceType | "unshare";
  namespaces: NamespaceType[];
  command?: string[];
  hostname?: string;
  mountProc: boolean;
  mapRootUser: boolean;
  persist: Partial<Record<NamespaceType, string>>;
  boottime?: number;
  monotonic?: number;
}

/** The per-type commands, by name: "mount" makes a mnt namespace. */
export const CREATE_COMMANDS: Record<string, NamespaceType> = {
  uts: "uts",
  ipc: "ipc",
  mount: "mnt",
  net: "net",
  pid: "pid",
  cgroup: "cgroup",
  user: "user",
  time: "time",
};

function parseSeconds(option: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^-?[0-9]+$/.test(text)) {
    throw new UsageError(`Invalid --${option} '${text}': must be whole seconds`);
  }
  return Number(text);
}

function parseCreate(via: NamespaceType | "unshare", args: readonly string[]): CliArgs {
  const { values: v, command } = parseOptions(CREATE_OPTIONS, args);
  if (v.help) return { kind: "help", topic: "create" };
  const text = (name: typeof CREATE_OPTIONS[number]["name"]) =>
    typeof v[name] === "string" ? v[name] as string : undefined;
  if (via !== "unshare" && v["ns-types"] !== undefined) {
    throw new UsageError(
      `ns-tool ${via === "mnt" ? "mount" : via} makes one type; use ns-tool unshare --ns-types`,
    );
  }
  if (via === "unshare" && v["ns-types"] === undefined && !v["mount-proc"] && !v["map-root-user"]) {
    throw new UsageError("Missing --ns-types: which namespaces to create");
  }
  const namespaces = via === "unshare"
    ? (v["ns-types"] !== undefined ? parseNamespaceList(text("ns-types")) : [])
    : [via];
  const persist: Partial<Record<NamespaceType, string>> = {};
  for (const item of (v.persist as string[] | undefined) ?? []) {
    const at = item.indexOf("=");
    if (at <= 0 || at === item.length - 1) {
      throw new UsageError(`Invalid --persist '${item}': use TYPE=PATH`);
    }
    const [type] = parseNamespaceList(item.slice(0, at));
    if (persist[type!] !== undefined) throw new UsageError(`--persist ${type} given twice`);
    persist[type!] = item.slice(at + 1);
  }
  const boottime = parseSeconds("boottime", text("boottime"));
  const monotonic = parseSeconds("monotonic", text("monotonic"));
  return {
    kind: "create",
    via,
    namespaces,
    ...(command.length ? { command } : {}),
    ...(text("hostname") !== undefined ? { hostname: text("hostname")! } : {}),
    mountProc: v["mount-proc"] === true,
    mapRootUser: v["map-root-user"] === true,
    persist,
    ...(boottime !== undefined ? { boottime } : {}),
    ...(monotonic !== undefined ? { monotonic } : {}),
  };
}

/** Parses a uid or gid argument. @throws {UsageError} */
function parseId(option: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[0-9]+$/.test(text) || Number(text) >= 0xffffffff) {
    throw new UsageError(`Invalid ${option} '${text}': must be a number (names are not looked up)`);
  }
  return Number(text);
}

/** Parses `TYPE=PATH` arguments of --ns-path. @throws {UsageError} */
function parseNsPaths(items: string[] | undefined): Partial<Record<NamespaceType, string>> {
  const paths: Partial<Record<NamespaceType, string>> = {};
  for (const item of items ?? []) {
    const at = item.indexOf("=");
    const [type] = parseNamespaceList(item.slice(0, Math.max(at, 0)) || "?");
    if (at < 0 || at === item.length - 1) {
      throw new UsageError(`Invalid --ns-path '${item}': use TYPE=PATH`);
    }
    paths[type!] = item.slice(at + 1);
  }
  return paths;
}

/** Parses `KEY=VALUE` arguments of --env. @throws {UsageError} */
function parseEnv(items: string[] | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const item of items ?? []) {
    const at = item.indexOf("=");
    if (at <= 0) throw new UsageError(`Invalid --env '${item}': use KEY=VALUE`);
    env[item.slice(0, at)] = item.slice(at + 1);
  }
  return env;
}

/** The largest pid Linux can hand out (PID_MAX_LIMIT on 64-bit). */
const PID_MAX = 4194304;

/** Parses a pid argument. @throws {UsageError} */
export function parsePid(text: string | undefined): number {
  if (text === undefined) {
    throw new UsageError("Missing --pid: which process's namespaces to enter");
  }
  if (!/^[0-9]+$/.test(text) || Number(text) <= 0 || Number(text) > PID_MAX) {
    throw new UsageError(`Invalid pid '${text}': must be a positive integer up to ${PID_MAX}`);
  }
  return Number(text);
}

/** Parses a comma-separated namespace list. @throws {UsageError} */
export function parseNamespaceList(text: string | undefined): NamespaceType[] {
  if (text === undefined) return [...DEFAULT_NAMESPACES];
  try {
    return normalizeNamespaces(text.split(",").filter((part) => part.trim() !== ""));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

function parseExec(args: readonly string[]): CliArgs {
  const { values: v, command } = parseExecOptions(args);
  if (v.help) return { kind: "help", topic: "exec" };
  const text = (name: ExecOption) => (typeof v[name] === "string" ? v[name] as string : undefined);
  const nsPaths = parseNsPaths(v["ns-path"] as string[] | undefined);
  const fromPathsOnly = Object.keys(nsPaths).length > 0 && v.pid === undefined;
  const pid = fromPathsOnly ? undefined : parsePid(text("pid"));
  if (v.all && v["ns-types"] !== undefined) {
    throw new UsageError("Give --all or --ns-types, not both");
  }
  if (v["no-fork"] && v.fork) throw new UsageError("Give --fork or --no-fork, not both");
  if ([v.wd, v.wdns].filter((x) => x !== undefined).length > 1) {
    throw new UsageError("Give --wd or --wdns, not both");
  }
  const namespaces = v.all
    ? "all"
    : v["ns-types"] !== undefined
    ? parseNamespaceList(text("ns-types"))
    : undefined;
  const uid = parseId("uid", text("setuid"));
  const gid = parseId("gid", text("setgid"));
  return {
    kind: "exec",
    ...(pid !== undefined ? { pid } : {}),
    namespaces: fromPathsOnly && !namespaces ? undefined : namespaces,
    nsPaths,
    ...(command.length ? { command } : {}),
    preserveCredentials: v["preserve-credentials"] === true,
    env: parseEnv(v.env as string[] | undefined),
    targetEnv: v["target-env"] === true,
    ...(uid !== undefined ? { uid } : {}),
    ...(gid !== undefined ? { gid } : {}),
    ...(typeof v.root === "string" ? { root: v.root } : {}),
    targetRoot: v.root === true,
    ...(typeof v.wd === "string" ? { cwd: v.wd } : {}),
    targetCwd: v.wd === true,
    ...(text("wdns") !== undefined ? { cwdInside: text("wdns")! } : {}),
    joinCgroup: v["join-cgroup"] === true,
    fork: v["no-fork"] !== true,
    tty: v.tty === true,
  };
}

function parseProc(args: readonly string[]): CliArgs {
  let pid: number | undefined;
  let json = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "-h" || arg === "--help") return { kind: "help", topic: "proc" };
    if (arg === "--json") json = true;
    else if (arg === "-p" || arg === "--pid") pid = parsePid(args[++i]);
    else if (arg.startsWith("--pid=")) pid = parsePid(arg.slice(6));
    else if (arg.startsWith("-p") && arg.length > 2) pid = parsePid(arg.slice(2));
    else throw new UsageError(`Unknown option '${arg}' (ns-tool proc takes --pid PID and --json)`);
  }
  return { kind: "proc", ...(pid !== undefined ? { pid } : {}), json };
}

/** Parses a whole ns-tool command line. @throws {UsageError} */
export function parseCli(args: readonly string[]): CliArgs {
  const [first, ...rest] = args;
  switch (first) {
    case undefined:
    case "-h":
    case "--help":
    case "help":
      return { kind: "help", topic: "main" };
    case "-V":
    case "--version":
      return { kind: "version" };
    case "exec":
      return parseExec(rest);
    case "proc":
      return parseProc(rest);
    case "unshare":
      return parseCreate("unshare", rest);
    default:
      if (CREATE_COMMANDS[first]) return parseCreate(CREATE_COMMANDS[first]!, rest);
      throw new UsageError(`Unknown command '${first}' (try 'ns-tool --help')`);
  }
}

/** Option rows `[flags, description...]`, aligned into one table. */
function table(rows: readonly (readonly string[])[]): string {
  const width = Math.max(...rows.map((r) => r[0]!.length)) + 2;
  return rows.map(([flags, ...lines]) =>
    lines.map((line, i) => `  ${(i === 0 ? flags! : "").padEnd(width)}${line}`).join("\n")
  ).join("\n");
}

/** The help text of a topic. */
export function helpText(topic: HelpTopic): string {
  if (topic === "create") {
    return `Usage: ns-tool unshare --ns-types LIST [options] [-- COMMAND [ARGS...]]
       ns-tool uts|ipc|mount|net|pid|cgroup|user|time [options] [-- COMMAND [ARGS...]]

Run COMMAND in new namespaces, as util-linux unshare does (with pid, the
command is pid 1 of the new pid namespace). A per-type command without a
COMMAND runs a short demonstration of what the new namespace isolates;
unshare without one runs $SHELL, else /bin/sh.

Options:
${
      table([
        [
          "-n, --ns-types LIST",
          "(unshare) namespaces to create, comma-separated",
          `from: ${NAMESPACE_TABLE.map((ns) => ns.type).join(", ")}`,
        ],
        ["--hostname NAME", "with uts: the hostname inside"],
        ["--mount-proc", "mount a new /proc inside (makes a mount namespace too)"],
        ["-r, --map-root-user", "make a user namespace and map your uid and gid to 0 in it"],
        [
          "--persist TYPE=PATH",
          "bind-mount the new namespace onto PATH, to enter it later with",
          "exec --ns-path TYPE=PATH (or nsenter); not for mnt; repeatable",
        ],
        ["--boottime SECONDS", "with time: offset of the boot-time clock inside"],
        ["--monotonic SECONDS", "with time: offset of the monotonic clock inside"],
        ["-h, --help", "show this help"],
      ])
    }

Examples:
  ns-tool uts
  ns-tool net -- ip -br link
  ns-tool unshare -n pid,mnt --mount-proc -- ps -ef
  ns-tool unshare -n net --persist net=/run/netns/lab -- true
  ns-tool user -r -- id
`;
  }
  if (topic === "proc") {
    return `Usage: ns-tool proc [--pid PID] [--json]

Show the namespaces of a process (default: ns-tool's own): type, inode, the
link text of /proc/PID/ns/TYPE, and whether it is the same as the caller's.

Options:
${
      table([
        ["-p, --pid PID", "the process to inspect"],
        ["--json", "print an array of {type, inode, link, sameAsCaller}"],
        ["-h, --help", "show this help"],
      ])
    }
`;
  }
  if (topic === "exec") {
    return `Usage: ns-tool exec --pid PID [options] [--] COMMAND [ARGS...]

Run COMMAND inside the namespaces of the running process PID, as nsenter does.

Options:
${
      table([
        ["-p, --pid PID", "the target process (named by a pidfd: never one that reused its pid)"],
        [
          "-n, --ns-types LIST",
          `namespaces to join, comma-separated (default: ${DEFAULT_NAMESPACES.join(",")})`,
          `from: ${NAMESPACE_TABLE.map((ns) => ns.type).join(", ")}`,
        ],
        ["-a, --all", "every namespace the target has (not a user namespace that is yours)"],
        [
          "--ns-path TYPE=PATH",
          "join the namespace behind a file (/run/netns/NAME); repeatable;",
          "without --pid when every namespace comes from a path",
        ],
        ["-w, --wd[=DIR]", "working directory: the target's, or DIR as you see it"],
        ["-W, --wdns DIR", "working directory DIR, resolved inside after joining"],
        ["-r, --root[=DIR]", "root directory: the target's, or DIR as you see it"],
        ["-S, --setuid UID", "run as UID (a number)"],
        ["-G, --setgid GID", "run as GID (a number), with no supplementary groups"],
        [
          "--preserve-credentials",
          "with user: keep your uid, gid and groups (default: become",
          "uid 0 and gid 0 of the user namespace, as nsenter does)",
        ],
        ["-e, --env KEY=VALUE", "set a variable in the command's environment; repeatable"],
        ["--target-env", "start from the target's environment instead of yours"],
        ["--join-cgroup", "run the command in the target's cgroup (cgroup v2)"],
        [
          "-t, --tty",
          "give the command a pseudo-terminal of its own (from the target's",
          "devpts), as docker exec -t; needs a terminal on stdin",
        ],
        [
          "-F, --no-fork",
          "with pid: do not start a new process; only the command's",
          "children enter the pid namespace",
        ],
        ["--fork", "with pid: start the command as a process inside it (default)"],
        ["-h, --help", "show this help"],
      ])
    }

Everything after '--' (or from the first argument that is not an option) is the
command, passed through untouched; without one, $SHELL (else /bin/sh) runs. With
mnt joined the command is looked up on PATH inside the target's mount namespace
and starts in its root directory. When the command stops (Ctrl-Z), ns-tool stops
too; continuing ns-tool continues the command.

Exit status: the command's own; 128+n when it died of signal n (ns-tool dies of
the same signal); 1 when a namespace cannot be opened or joined; 2 for a usage
error; 126 when the program cannot be run; 127 when it is not found.

Examples:
  ns-tool exec --pid 1234 -- hostname
  ns-tool exec -p 1234 -n net -- ip -br addr
  ns-tool exec -p 1234 -n uts,ipc,net,mnt,pid -- ps -ef
  ns-tool exec -p 1234 -a -w -- sh
  ns-tool exec --ns-path net=/run/netns/blue -- ip addr
`;
  }
  return `Usage: ns-tool COMMAND [options]

Enter the namespaces of a running Linux process and run a command there.

Commands:
${
    table([
      ["exec", "run a command inside the namespaces of a process"],
      ["proc", "show the namespaces of a process"],
      ["unshare", "run a command in new namespaces"],
      [
        "uts, ipc, mount, net, pid, cgroup, user, time",
        "make one new namespace; without a command, show what it isolates",
      ],
      ["help", "show this help"],
    ])
  }

Options:
${table([["-h, --help", "show this help"], ["-V, --version", "show the version"]])}

Run 'ns-tool exec --help', 'ns-tool proc --help' or 'ns-tool unshare --help' for their options.
`;
}
