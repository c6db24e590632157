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
import type { CreateArgs, ExecArgs, ProcArgs } from "./src/cli_args.ts";
import type { NewNamespaceOptions } from "./src/create.ts";
import { namespaceInfo, type NamespaceType } from "./src/namespaces.ts";
import { NamespaceError } from "./src/errors.ts";
import {
  type NamespaceProcess,
  PIDFD,
  signalNumber,
  type SpawnInternals,
  spawnWith,
} from "./src/exec.ts";
import {
  close,
  getpid,
  kill,
  pidfdSendSignal,
  raiseDefault,
  readText,
  setHandler,
} from "./ffi/syscalls.ts";

const SIGSTOP = 19;
const SIGCONT = 18;
import { signalForwarder } from "./ffi/_spawner.ts";

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

/** This process's terminal size (from stdout), or 80 x 24. */
function terminalSize(): { columns: number; rows: number } {
  try {
    return Deno.consoleSize();
  } catch {
    return { columns: 80, rows: 24 };
  }
}

/**
 * Relays between this process's terminal and the command's pty: raw mode for
 * the session, the window size at start and on every SIGWINCH. `restore()`
 * puts the terminal back; call it on every way out.
 */
function relayTerminal(child: NamespaceProcess): { done: Promise<void>; restore(): void } {
  Deno.stdin.setRaw(true);
  const size = () => {
    try {
      const { columns, rows } = Deno.consoleSize();
      child.resize(columns, rows);
    } catch {
      // no size to copy (stdout is not a terminal), or the command has ended
    }
  };
  size();
  Deno.addSignalListener("SIGWINCH", size);
  // Keystrokes go to the pty: Ctrl-C, Ctrl-Z and Ctrl-\ reach the command through its terminal.
  Deno.stdin.readable.pipeTo(child.stdin).catch(() => {});
  const done = child.stdout.pipeTo(Deno.stdout.writable, { preventClose: true }).catch(() => {});
  let restored = false;
  return {
    done,
    restore: () => {
      if (restored) return;
      restored = true;
      Deno.removeSignalListener("SIGWINCH", size);
      Deno.stdin.setRaw(false);
    },
  };
}

/**
 * Starts the command with `start` and stays with it until it ends: passes
 * signals on, follows job control (or relays a pty), then exits as the
 * command did. `after` runs just before the exit (demonstrations).
 */
async function supervise(
  start: (internals: SpawnInternals) => NamespaceProcess,
  tty: boolean,
  after?: () => void,
): Promise<never> {
  if (tty && !Deno.stdin.isTerminal()) fail("the input device is not a TTY", 1);
  // Forwarding is native: ns_forward_signal sends the signal to the command's
  // pidfd from the signal handler itself. Deno's listeners are registered
  // first so that Deno's signal driver owns these signals; then the handler
  // replaces Deno's at the OS level. That keeps anything Deno registers later
  // off them: above all its SIGUSR1 handler, which would open an
  // unauthenticated inspector on 127.0.0.1:9229 in this (root) process.
  const forwarder = signalForwarder();
  // With a pty of its own the command is in another session: it gets no terminal signal itself.
  forwarder.passAll(tty);
  const noop = () => {};
  for (const signal of FORWARDED) {
    Deno.addSignalListener(signal, noop);
    setHandler(signalNumber(signal), forwarder.handler);
  }
  let child: NamespaceProcess | undefined;
  let pidfd = -1;
  // Job control, as nsenter: when the command stops, stop too; when continued, continue it.
  // (After Ctrl-Z both stop; the stop seen on resuming is stale then: the command runs again.)
  const onStop = () => {
    const stat = readText(`/proc/${child!.pid}/stat`);
    const state = typeof stat === "number" ? "" : stat.split(") ")[1]?.[0];
    if (state !== "T") return;
    kill(getpid(), SIGSTOP);
    if (pidfd >= 0) pidfdSendSignal(pidfd, SIGCONT);
  };
  try {
    child = start({ keepDescriptors: true, ...(tty ? {} : { onStop }) });
  } catch (error) {
    // Options that do not fit together: a usage error.
    if (error instanceof TypeError || error instanceof RangeError) fail(error.message, 2);
    if (!(error instanceof NamespaceError)) throw error;
    const code = error.syscall !== "execve" ? 1 : error.code === "ENOENT" ? 127 : 126;
    fail(error.message, code);
  }
  pidfd = child[PIDFD]();
  forwarder.target(pidfd);
  // Signals that came before the pidfd was set were kept as pending bits; from here on the
  // handler sends them itself, also one that raced with this (see ffi/spawner/x86_64.S). No
  // timer polls for them: a first timer costs Deno several milliseconds of start-up.
  for (const signal of forwarder.takePending()) pidfdSendSignal(pidfd, signal);
  const relayed = tty ? relayTerminal(child) : undefined;
  const status = await child.status;
  // Drain what the command wrote last; a background process that still holds the pty does not
  // keep ns-tool waiting (as script(1) and sshd end with the command).
  if (relayed) {
    await Promise.race([
      relayed.done,
      new Promise((resolve) => setTimeout(resolve, 200)),
    ]);
  }
  relayed?.restore();
  forwarder.target(-1);
  if (pidfd >= 0) close(pidfd);
  after?.();
  if (status.signal) {
    // Die of the same signal, so that the shell sees 128+n and a core dump is reported as one.
    raiseDefault(signalNumber(status.signal));
  }
  Deno.exit(status.code);
}

function exec(args: ExecArgs): Promise<never> {
  return supervise((internals) =>
    spawnWith({
      ...(args.pid !== undefined ? { pid: args.pid } : {}),
      ...(args.namespaces !== undefined ? { namespaces: args.namespaces } : {}),
      nsPaths: args.nsPaths,
      ...(args.command ? { command: args.command } : {}),
      preserveCredentials: args.preserveCredentials,
      env: args.env,
      targetEnv: args.targetEnv,
      ...(args.uid !== undefined ? { uid: args.uid } : {}),
      ...(args.gid !== undefined ? { gid: args.gid } : {}),
      ...(args.root !== undefined ? { root: args.root } : {}),
      targetRoot: args.targetRoot,
      ...(args.cwd !== undefined ? { cwd: args.cwd } : {}),
      targetCwd: args.targetCwd,
      ...(args.cwdInside !== undefined ? { cwdInside: args.cwdInside } : {}),
      joinCgroup: args.joinCgroup,
      fork: args.fork,
      tty: args.tty,
      ...(args.tty ? { ttySize: terminalSize() } : {}),
    }, internals), args.tty);
}

// proc, unshare and the per-type commands load their modules when used: exec's start-up stays lean.
async function create(args: CreateArgs): Promise<never> {
  const { spawnNewWith } = await import("./src/create.ts");
  const { DEMOS } = await import("./src/demos.ts");
  const demo = args.command === undefined && args.via !== "unshare" ? DEMOS[args.via] : undefined;
  const options: NewNamespaceOptions = {
    namespaces: args.namespaces,
    ...(args.command ? { command: args.command } : {}),
    ...(args.hostname !== undefined ? { hostname: args.hostname } : {}),
    mountProc: args.mountProc,
    mapRootUser: args.mapRootUser,
    persist: args.persist,
    ...(args.boottime !== undefined ? { boottime: args.boottime } : {}),
    ...(args.monotonic !== undefined ? { monotonic: args.monotonic } : {}),
    ...demo?.options(args),
  };
  if (demo && options.command) {
    // The demonstration's own shell prints the banner: only once the namespace exists and runs.
    const banner = `A new ${args.via} namespace: ${namespaceInfo(args.via as NamespaceType).label}`;
    options.command = ["/bin/sh", "-c", `echo '${banner}'; ${options.command.at(-1)}`];
  }
  return supervise(
    (internals) => spawnNewWith(options, internals),
    false,
    demo ? () => console.log(`outside: ${demo.outside()}`) : undefined,
  );
}

async function proc(args: ProcArgs): Promise<never> {
  const { listNamespaces } = await import("./src/inspect.ts");
  let records;
  try {
    records = listNamespaces(args.pid);
  } catch (error) {
    if (error instanceof NamespaceError) fail(error.message, 1);
    throw error;
  }
  if (args.json) {
    console.log(JSON.stringify(records, null, 2));
  } else {
    const rows = [
      ["TYPE", "INODE", "LINK", "SAME AS CALLER"],
      ...records.map((r) => [
        r.type,
        String(r.inode),
        r.link,
        r.sameAsCaller ? "yes" : "no",
      ]),
    ];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const row of rows) {
      console.log(row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd());
    }
  }
  Deno.exit(0);
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
    case "version": {
      // Loaded here only: a JSON module costs exec's start-up about 0.3 ms.
      const { default: denoJson } = await import("./deno.json", { with: { type: "json" } });
      console.log(`ns-tool ${denoJson.version}`);
      Deno.exit(0);
      break;
    }
    case "exec":
      return await exec(args);
    case "proc":
      return await proc(args);
    case "create":
      return await create(args);
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
