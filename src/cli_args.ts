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

/** A parsed command line. */
export type CliArgs =
  | ExecArgs
  | { kind: "help"; topic: "main" | "exec" }
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

/** Parsed options: a flag is `true`, an optional option given bare is `true`, a list is an array. */
export type ExecOptionValues = Partial<Record<ExecOption, string | true | string[]>>;

/**
 * Reads exec's options up to the command: the first `--` or the first
 * argument that is not an option.
 *
 * @throws {UsageError} for an unknown option or a missing value
 */
export function parseExecOptions(
  args: readonly string[],
): { values: ExecOptionValues; command: string[] } {
  const values: ExecOptionValues = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") return { values, command: args.slice(i + 1) };
    if (!arg.startsWith("-") || arg === "-") return { values, command: args.slice(i) };
    const long = arg.startsWith("--");
    const eq = arg.indexOf("=");
    const [key, inline] = long
      ? (eq > 0 ? [arg.slice(2, eq), arg.slice(eq + 1)] : [arg.slice(2), undefined])
      : [arg.slice(1, 2), arg.length > 2 ? arg.slice(2) : undefined];
    const option = EXEC_OPTIONS.find((
      o,
    ) => (long ? o.name === key : "short" in o && o.short === key));
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
    default:
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
export function helpText(topic: "main" | "exec"): string {
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
${table([["exec", "run a command inside the namespaces of a process"], ["help", "show this help"]])}

Options:
${table([["-h, --help", "show this help"], ["-V, --version", "show the version"]])}

Run 'ns-tool exec --help' for the options of exec.
`;
}
