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

/** What `ns-tool exec` was asked to do. */
export interface ExecArgs {
  kind: "exec";
  pid: number;
  namespaces: NamespaceType[];
  command: string[];
  preserveCredentials: boolean;
}

/** A parsed command line. */
export type CliArgs =
  | ExecArgs
  | { kind: "help"; topic: "main" | "exec" }
  | { kind: "version" };

/**
 * The options of `exec`: long name, short name, whether it takes a value.
 *
 * Parsed by hand rather than with node:util's parseArgs: importing any node:
 * module loads Deno's Node compatibility layer, which alone adds about 30% to
 * the CLI's start-up (measured; the target is 25% over Deno's hello-world).
 */
const EXEC_OPTIONS = [
  { name: "pid", short: "p", value: true },
  { name: "ns-types", short: "n", value: true },
  { name: "preserve-credentials", value: false },
  { name: "help", short: "h", value: false },
] as const;

type ExecOption = typeof EXEC_OPTIONS[number]["name"];

/**
 * Reads exec's options up to the command: the first `--` or the first
 * argument that is not an option. Accepts `--name value`, `--name=value`,
 * `-p value` and `-pvalue`.
 *
 * @throws {UsageError} for an unknown option or a missing value
 */
export function parseExecOptions(
  args: readonly string[],
): { values: Partial<Record<ExecOption, string | true>>; command: string[] } {
  const values: Partial<Record<ExecOption, string | true>> = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") return { values, command: args.slice(i + 1) };
    if (!arg.startsWith("-") || arg === "-") return { values, command: args.slice(i) };
    const long = arg.startsWith("--");
    const [key, inline] = long
      ? (arg.includes("=")
        ? [arg.slice(2, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
        : [arg.slice(2), undefined])
      : [arg.slice(1, 2), arg.length > 2 ? arg.slice(2) : undefined];
    const option = EXEC_OPTIONS.find((
      o,
    ) => (long ? o.name === key : "short" in o && o.short === key));
    if (!option) throw new UsageError(`Unknown option '${long ? `--${key}` : arg.slice(0, 2)}'`);
    const label = long ? `--${option.name}` : `-${key}`;
    if (!option.value) {
      if (inline !== undefined) throw new UsageError(`Option '${label}' takes no value`);
      values[option.name] = true;
      continue;
    }
    const value = inline ?? args[++i];
    if (value === undefined) throw new UsageError(`Option '${label}' needs a value`);
    values[option.name] = value;
  }
  return { values, command: [] };
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
  const { values, command } = parseExecOptions(args);
  if (values.help) return { kind: "help", topic: "exec" };
  const pid = parsePid(values.pid as string | undefined);
  const namespaces = parseNamespaceList(values["ns-types"] as string | undefined);
  if (command.length === 0) throw new UsageError("No command given: put it after '--'");
  return {
    kind: "exec",
    pid,
    namespaces,
    command,
    preserveCredentials: values["preserve-credentials"] === true,
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
        ["-p, --pid PID", "the target process"],
        [
          "-n, --ns-types LIST",
          `namespaces to join, comma-separated (default: ${DEFAULT_NAMESPACES.join(",")})`,
          `from: ${NAMESPACE_TABLE.map((ns) => ns.type).join(", ")}`,
        ],
        [
          "--preserve-credentials",
          "with user: keep your uid, gid and groups (default: become",
          "uid 0 and gid 0 of the user namespace, as nsenter does)",
        ],
        ["-h, --help", "show this help"],
      ])
    }

Everything after '--' (or from the first argument that is not an option) is the
command, passed through untouched. With mnt joined the command is looked up on
PATH inside the target's mount namespace and starts in its root directory.

Exit status: the command's own; 128+n when it died of signal n (ns-tool dies of
the same signal); 1 when a namespace cannot be opened or joined; 2 for a usage
error; 126 when the program cannot be run; 127 when it is not found.

Examples:
  ns-tool exec --pid 1234 -- hostname
  ns-tool exec -p 1234 -n net -- ip -br addr
  ns-tool exec -p 1234 -n uts,ipc,net,mnt,pid -- ps -ef
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
