/**
 * The ns-tool command line:
 *
 * ```sh
 * deno run -A cli.ts exec --pid PID [--ns-types uts,ipc,net,mnt] -- COMMAND [ARGS...]
 * ```
 *
 * Run `deno run -A cli.ts --help` for the options.
 *
 * @module
 */
import { helpText, parseCli, UsageError } from "./src/cli_args.ts";
import type { ExecArgs } from "./src/cli_args.ts";
import { NamespaceError } from "./src/errors.ts";
import { signalNumber, spawnWith } from "./src/exec.ts";
import { raiseDefault } from "./ffi/syscalls.ts";
import denoJson from "./deno.json" with { type: "json" };

/** Signals passed on to the command while ns-tool waits for it. */
const FORWARDED: readonly Deno.Signal[] = [
  "SIGINT",
  "SIGTERM",
  "SIGHUP",
  "SIGQUIT",
  "SIGUSR1",
  "SIGUSR2",
];

function fail(message: string, code: number): never {
  console.error(`ns-tool: ${message}`);
  Deno.exit(code);
}

async function exec(args: ExecArgs): Promise<never> {
  // Listen before spawning: a signal in between must not orphan the command.
  let child: ReturnType<typeof spawnWith> | undefined;
  const pending: Deno.Signal[] = [];
  const listeners = FORWARDED.map((signal) => {
    const listener = () => {
      if (!child) return void pending.push(signal);
      try {
        child.kill(signal);
      } catch {
        // it has just ended
      }
    };
    Deno.addSignalListener(signal, listener);
    return [signal, listener] as const;
  });
  try {
    child = spawnWith({
      pid: args.pid,
      namespaces: args.namespaces,
      command: args.command,
      preserveCredentials: args.preserveCredentials,
    }, { keepDescriptors: true });
  } catch (error) {
    if (!(error instanceof NamespaceError)) throw error;
    const code = error.syscall !== "execve" ? 1 : error.code === "ENOENT" ? 127 : 126;
    fail(error.message, code);
  }
  for (const signal of pending) child.kill(signal);
  const status = await child.status;
  for (const [signal, listener] of listeners) Deno.removeSignalListener(signal, listener);
  if (status.signal) {
    // Die of the same signal, so that the shell sees 128+n and a core dump is reported as one.
    raiseDefault(signalNumber(status.signal));
  }
  Deno.exit(status.code);
}

/** Runs the command line; exits the process. */
export async function main(argv: readonly string[]): Promise<never> {
  let args;
  try {
    args = parseCli(argv);
  } catch (error) {
    if (error instanceof UsageError) fail(`${error.message}`, 2);
    throw error;
  }
  switch (args.kind) {
    case "help":
      console.log(helpText(args.topic).trimEnd());
      Deno.exit(0);
      break;
    case "version":
      console.log(`ns-tool ${denoJson.version}`);
      Deno.exit(0);
      break;
    case "exec":
      return await exec(args);
  }
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (error) {
    // Last resort: one line, never a stack trace.
    fail(error instanceof Error ? error.message : String(error), 1);
  }
}
