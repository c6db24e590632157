/**
 * Test helpers: targets made with util-linux unshare (killed by pid), runs of
 * the CLI and of util-linux nsenter side by side, and root-only tests that
 * skip with a printed reason.
 */

import { bindAll } from "../ffi/_libc.ts";

// libc stays open for the process's life (the library's first call binds it);
// open it here, outside any test, so the resource sanitizer does not count it
// as a leak of whichever test happens to call the library first.
bindAll();

export const IS_ROOT = Deno.uid() === 0;
export const CLI = new URL("../cli.ts", import.meta.url).pathname;
export const ROOT_DIR = new URL("../", import.meta.url).pathname;
const decoder = new TextDecoder();

/** A test that needs root: skipped, with the reason printed, for anyone else. */
export function rootTest(name: string, fn: () => Promise<void> | void): void {
  if (!IS_ROOT) console.log(`skipped: ${name}: requires root`);
  Deno.test({ name, ignore: !IS_ROOT, fn });
}

/** Polls `check` until it returns a value other than undefined, or fails after `ms`. */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | Promise<T | undefined>,
  ms = 5000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The link text of /proc/PID/ns/TYPE (PID "self" for ours), or undefined. */
export function nsLink(pid: number | "self", type: string): string | undefined {
  try {
    return Deno.readLinkSync(`/proc/${pid}/ns/${type}`);
  } catch {
    return undefined;
  }
}

/**
 * A readiness check for `startTarget`: the target has exec'd `program`, so the
 * set-up its shell did before `exec program` (hostname, cd, export) is done.
 */
export function running(program: string): (pid: number) => boolean {
  return (pid) => {
    try {
      return Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0")[0] === program;
    } catch {
      return false;
    }
  };
}

/** A process in namespaces of its own, made with unshare; dispose it to kill it by pid. */
export interface Target extends AsyncDisposable {
  /** The process whose namespaces are entered. */
  pid: number;
  /** The unshare process (the same as pid without --fork). */
  unsharePid: number;
}

/**
 * Starts `unshare ARGS...` and waits until the target is in its new
 * namespaces (every type named by a --uts/--net/... flag differs from ours)
 * and, if given, until `ready(pid)` holds.
 */
export async function startTarget(
  args: string[],
  ready?: (pid: number) => boolean | Promise<boolean>,
): Promise<Target> {
  const child = new Deno.Command("unshare", {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const unsharePid = child.pid;
  const stop = async (pid: number) => {
    for (const p of new Set([pid, unsharePid])) {
      try {
        Deno.kill(p, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await child.status;
  };
  let pid = unsharePid;
  try {
    if (args.includes("--fork") || args.includes("-f")) {
      pid = await waitFor("the target process", () => {
        try {
          const text = Deno.readTextFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`);
          const first = text.trim().split(/\s+/)[0];
          return first ? Number(first) : undefined;
        } catch {
          return undefined;
        }
      });
    }
    const types = ["uts", "ipc", "net", "pid", "cgroup", "user", "time"].filter((t) =>
      args.includes(`--${t}`)
    );
    if (args.includes("--mount") || args.includes("--mount-proc")) types.push("mnt");
    // For pid and time, unshare itself stays outside; its child is inside.
    await waitFor("the target's namespaces", () =>
      types.every((t) => {
        const mine = nsLink("self", t);
        const theirs = nsLink(pid, t);
        return theirs !== undefined && theirs !== mine;
      }) || undefined);
    if (args.includes("--map-root-user")) {
      // unshare writes the maps only after it made the user namespace: wait for them too.
      await waitFor("the target's uid and gid maps", () =>
        ["uid_map", "gid_map"].every((map) => {
          try {
            return Deno.readTextFileSync(`/proc/${pid}/${map}`).trim() !== "";
          } catch {
            return false;
          }
        }) || undefined);
    }
    if (ready) await waitFor("the target to be ready", async () => (await ready(pid)) || undefined);
  } catch (error) {
    await stop(pid);
    throw error;
  }
  return {
    pid,
    unsharePid,
    [Symbol.asyncDispose]: () => stop(pid),
  };
}

/** A target started by nobody (uid and gid 65534, no groups): `unshare ARGS...` run as nobody. */
export function startNobodyTarget(
  unshareArgs: string[],
  ready?: (pid: number) => boolean | Promise<boolean>,
): Promise<Target> {
  return startTarget(
    ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "unshare", ...unshareArgs],
    ready,
  );
}

/** What a finished process printed, decoded. */
export interface Run {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion with piped output. */
export async function run(
  cmd: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; stdin?: string } = {},
): Promise<Run> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(options.env ? { env: options.env } : {}),
    ...(options.cwd ? { cwd: options.cwd } : {}),
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const out = await child.output();
  return {
    code: out.code,
    signal: out.signal,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

/** Runs `ns-tool ARGS...` (the CLI, as `deno run -A cli.ts`). */
export function runCli(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; stdin?: string } = {},
): Promise<Run> {
  return run(Deno.execPath(), ["run", "-A", "--quiet", CLI, ...args], options);
}

/**
 * Starts `ns-tool ARGS...` with its stdout read as it comes: `until(pattern)`
 * waits for the output so far to match, `kill(signal)` signals the CLI, and
 * `finish()` reads the rest and waits for the exit.
 */
export function startCli(args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", CLI, ...args],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let output = "";
  return {
    pid: child.pid,
    get output() {
      return output;
    },
    async until(pattern: RegExp): Promise<string> {
      while (!pattern.test(output)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`The CLI ended before printing ${pattern}: ${output}`);
        output += value;
      }
      return output;
    },
    kill: (signal: Deno.Signal) => child.kill(signal),
    async finish(): Promise<{ output: string; status: Deno.CommandStatus }> {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        output += value;
      }
      return { output, status: await child.status };
    },
  };
}

/** The shell words for running the CLI from `sh -c`. */
export const CLI_SHELL = `'${Deno.execPath()}' run -A --quiet '${CLI}'`;

/** Runs util-linux `nsenter ARGS...`. */
export function runNsenter(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; stdin?: string } = {},
): Promise<Run> {
  return run("nsenter", args, options);
}

/** Runs `cmd args...` as nobody (uid and gid 65534, no groups), with a home Deno can write to. */
export async function asNobody(cmd: string, args: string[]): Promise<Run> {
  const home = await Deno.makeTempDir();
  await Deno.chmod(home, 0o777);
  try {
    return await run(
      "setpriv",
      ["--reuid=65534", "--regid=65534", "--clear-groups", cmd, ...args],
      {
        env: {
          DENO_DIR: `${home}/deno`,
          HOME: home,
          PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        },
      },
    );
  } finally {
    await Deno.remove(home, { recursive: true });
  }
}

export function nobodyCli(args: string[]): Promise<Run> {
  return asNobody(Deno.execPath(), ["run", "-A", "--quiet", CLI, ...args]);
}

/** nsenter's flag for each ns-tool namespace type. */
export const NSENTER_FLAG: Record<string, string> = {
  uts: "-u",
  ipc: "-i",
  net: "-n",
  mnt: "-m",
  pid: "-p",
  cgroup: "-C",
  user: "-U",
  time: "-T",
};

/** nsenter arguments joining `types` of `pid`. */
export function nsenterArgs(pid: number, types: string[]): string[] {
  return ["-t", String(pid), ...types.map((t) => NSENTER_FLAG[t]!)];
}
