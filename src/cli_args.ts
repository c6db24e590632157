/**
 * Command-line parsing for ns-tool: pure, so it is tested without root.
 *
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
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

const EXEC_OPTIONS = {
  pid: { type: "string", short: "p" },
  "ns-types": { type: "string", short: "n" },
  "preserve-credentials": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsConfig["options"];

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

/** The first line of a node:util parseArgs message, without its trailing period. */
function shortMessage(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split(/\. |\n/)[0]!.replace(/\.$/, "");
}

/**
 * Splits `args` at the command: at the first `--` or the first positional
 * argument, so that the command's own options pass through untouched.
 */
export function splitAtCommand(args: readonly string[]): [string[], string[]] {
  const { tokens } = parseArgs({
    args: [...args],
    options: EXEC_OPTIONS,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const first = tokens.find((t) => t.kind === "positional" || t.kind === "option-terminator");
  if (!first) return [[...args], []];
  const skip = first.kind === "option-terminator" ? 1 : 0;
  return [args.slice(0, first.index), args.slice(first.index + skip)];
}

function parseExec(args: readonly string[]): CliArgs {
  const [optionArgs, command] = splitAtCommand(args);
  let values;
  try {
    ({ values } = parseArgs({ args: optionArgs, options: EXEC_OPTIONS, strict: true }));
  } catch (error) {
    throw new UsageError(shortMessage(error));
  }
  if (values.help) return { kind: "help", topic: "exec" };
  const pid = parsePid(values.pid);
  const namespaces = parseNamespaceList(values["ns-types"]);
  if (command.length === 0) throw new UsageError("No command given: put it after '--'");
  return {
    kind: "exec",
    pid,
    namespaces,
    command,
    preserveCredentials: values["preserve-credentials"] ?? false,
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
