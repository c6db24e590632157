/**
 * Run a command inside the namespaces of another process.
 *
 * @module
 */
import { NamespaceError } from "./errors.ts";
import { closeWhenUnwatched, type Readiness, whenReady } from "./poller.ts";
import {
  DEFAULT_NAMESPACES,
  NAMESPACE_TABLE,
  namespaceInfo,
  type NamespaceType,
  normalizeNamespaces,
} from "./namespaces.ts";
import {
  spawn,
  spawnOffThread,
  type SpawnOp,
  type SpawnPlan,
  type SpawnResult,
} from "../ffi/_spawner.ts";
import { bindAll, signalName } from "../ffi/_libc.ts";
import {
  check,
  close,
  concat,
  dupAtLeast,
  EAGAIN,
  EINTR,
  O_DIRECTORY,
  O_PATH,
  O_RDONLY,
  O_RDWR,
  O_WRONLY,
  open,
  openInRoot,
  openPty,
  pidfdOpen,
  pidfdSendSignal,
  pipe,
  POLLIN,
  POLLOUT,
  read,
  readlink,
  readText,
  reap,
  setNonBlocking,
  setWindowSize,
  waitAsync,
  write,
  WUNTRACED,
} from "../ffi/syscalls.ts";

/** How a standard stream of the command is connected, as in `Deno.CommandOptions`. */
export type StdioMode = "piped" | "inherit" | "null";

/** Options of {@linkcode spawnInNamespace} and {@linkcode execInNamespace}. */
export interface NamespaceCommandOptions {
  /**
   * The target process, whose namespaces the command enters. It is named by
   * a pidfd, so a process that reused its pid is never joined. It may be left
   * out when every namespace comes from `nsPaths`.
   */
  pid?: number;
  /**
   * The namespace types to join. Default: `["uts", "ipc", "net", "mnt"]`
   * (only the `nsPaths` types when there is no `pid`). `"all"`: every type
   * the target has, except a user namespace that is the caller's own and
   * types the kernel lacks, as `nsenter --all`.
   */
  namespaces?: readonly NamespaceType[] | "all";
  /** Namespaces to join from files instead of the target, such as `{ net: "/run/netns/blue" }`. */
  nsPaths?: Partial<Record<NamespaceType, string>>;
  /**
   * The program and its arguments. A program without a slash is looked up on
   * PATH; with `mnt` joined, inside the target's mount namespace.
   * Default: `$SHELL`, else `/bin/sh`.
   */
  command?: readonly string[];
  /** Variables to add to (or, with `clearEnv`, to make up) the environment. */
  env?: Record<string, string>;
  /** Start from an empty environment instead of this process's. */
  clearEnv?: boolean;
  /** Start from the target's environment (/proc/PID/environ) instead of this process's. */
  targetEnv?: boolean;
  /** Default `"inherit"`. */
  stdin?: StdioMode;
  /** Default `"inherit"` for {@linkcode spawnInNamespace}, `"piped"` for {@linkcode execInNamespace}. */
  stdout?: StdioMode;
  /** Default `"inherit"` for {@linkcode spawnInNamespace}, `"piped"` for {@linkcode execInNamespace}. */
  stderr?: StdioMode;
  /**
   * With `user` joined: keep this process's uid, gid and groups instead of
   * becoming uid 0 and gid 0 of the user namespace.
   */
  preserveCredentials?: boolean;
  /** The uid to run as, set after joining (nsenter -S). */
  uid?: number;
  /** The gid to run as, set after joining; also drops supplementary groups (nsenter -G). */
  gid?: number;
  /** The root directory, as this process sees it, opened before joining (nsenter -r DIR). */
  root?: string;
  /** Use the target's root directory (nsenter -r). */
  targetRoot?: boolean;
  /** The working directory, as this process sees it, opened before joining (nsenter -w DIR). */
  cwd?: string;
  /** Use the target's working directory (nsenter -w). */
  targetCwd?: boolean;
  /** The working directory, resolved inside after joining and after the root (nsenter -W). */
  cwdInside?: string;
  /** Run the command in the target's cgroup (cgroup v2). */
  joinCgroup?: boolean;
  /**
   * Give the command a pseudo-terminal of its own, from the target's devpts
   * when `mnt` is joined: it runs as a session leader with the pty as its
   * controlling terminal, its stdin, stdout and stderr. The handle's `stdin`
   * writes to the pty and its `stdout` reads from it (stderr is merged);
   * `resize()` sets its window size. Overrides stdin, stdout and stderr.
   */
  tty?: boolean;
  /** With `tty`: the window size the command starts with (default: 0 x 0 until `resize()`). */
  ttySize?: { columns: number; rows: number };
  /**
   * With `pid` joined: start the command as a new process inside the pid
   * namespace (default). False: the command keeps this process's pid
   * namespace and only its children enter the target's (nsenter --no-fork).
   */
  fork?: boolean;
}

/** How the command ended, as `Deno.CommandStatus`. */
export interface NamespaceStatus {
  /** Whether the command exited with code 0. */
  success: boolean;
  /** The exit code; 128 + n when the command died of signal n. */
  code: number;
  /** The signal the command died of, or null. */
  signal: Deno.Signal | null;
}

/** A finished command and what it wrote, as `Deno.CommandOutput`. */
export interface NamespaceOutput extends NamespaceStatus {
  /** What the command wrote to stdout (empty unless piped). */
  stdout: Uint8Array;
  /** What the command wrote to stderr (empty unless piped). */
  stderr: Uint8Array;
}

/** @internal The key of a method that returns a new descriptor of the command's pidfd. */
export const PIDFD: unique symbol = Symbol("ns-tool pidfd");

/** @internal Options only the CLI uses. */
export interface SpawnInternals {
  /** Give the command this process's descriptors beyond 0-2 (the CLI passes on what its caller gave it). */
  keepDescriptors?: boolean;
  /** Called when the command has stopped (wait with WUNTRACED); status waits on after it returns. */
  onStop?: () => void;
  /** Tests only: called after the target's files are open, before they are checked against it. */
  afterOpen?: () => void;
}

/** The number of a signal name such as `"SIGTERM"` (names as glibc's sigabbrev_np gives them). */
export function signalNumber(signal: Deno.Signal | number): number {
  if (typeof signal === "number") return signal;
  for (let number = 1; number < 32; number++) {
    if (signalName(number) === signal) return number;
  }
  // Aliases glibc does not return by number.
  const alias = ({ SIGIOT: 6, SIGIO: 29 } as Record<string, number>)[signal];
  if (alias === undefined) throw new TypeError(`Unknown signal '${signal}'`);
  return alias;
}

/** Decodes a wait(2) status as `Deno.CommandStatus` does. */
export function decodeWaitStatus(status: number): NamespaceStatus {
  const signal = status & 0x7f;
  if (signal === 0) {
    const code = (status >> 8) & 0xff;
    return { success: code === 0, code, signal: null };
  }
  return { success: false, code: 128 + signal, signal: signalName(signal) as Deno.Signal | null };
}

const ENOENT = 2;
const ESRCH = 3;
const ENODEV = 19;
const ENOSYS = 38;
const EACCES = 13;
const EPERM = 1;
const EINVAL = 22;

/** The hint for a refused join or open. */
function privilegeHint(errno: number): string | undefined {
  return errno === EPERM || errno === EACCES
    ? "joining needs CAP_SYS_ADMIN over the namespace; run as root"
    : undefined;
}

function checkId(name: string, value: number | undefined): void {
  if (value !== undefined && (!Number.isSafeInteger(value) || value < 0 || value >= 0xffffffff)) {
    throw new RangeError(`Invalid ${name} ${value}: must be a number from 0 to 4294967294`);
  }
}

/** Checks the options; nothing is opened yet. */
function validate(options: NamespaceCommandOptions, creating = false): void {
  const { pid, command, nsPaths = {} } = options;
  if (pid !== undefined && (!Number.isSafeInteger(pid) || pid <= 0)) {
    throw new RangeError(`Invalid pid ${pid}: must be a positive integer`);
  }
  const byPath = Object.keys(nsPaths);
  if (byPath.length) normalizeNamespaces(byPath);
  if (pid === undefined && !creating) {
    const needsTarget = options.namespaces !== undefined || options.targetRoot ||
      options.targetCwd ||
      options.targetEnv || options.joinCgroup;
    if (byPath.length === 0 || needsTarget) {
      throw new TypeError("No target: give a pid, or every namespace in nsPaths");
    }
  }
  if (options.namespaces !== undefined && options.namespaces !== "all") {
    normalizeNamespaces(options.namespaces);
  }
  if (command !== undefined && (!Array.isArray(command) || command.length === 0)) {
    throw new TypeError("No command given");
  }
  for (const arg of command ?? []) {
    if (typeof arg !== "string" || arg.includes("\0")) {
      throw new TypeError("Command arguments must be strings without NUL bytes");
    }
  }
  for (const [key, value] of Object.entries(options.env ?? {})) {
    if (key === "" || key.includes("=") || key.includes("\0") || String(value).includes("\0")) {
      throw new TypeError(`Invalid environment variable '${key}': no '=' in names, no NUL bytes`);
    }
  }
  for (const mode of [options.stdin, options.stdout, options.stderr]) {
    if (mode !== undefined && mode !== "piped" && mode !== "inherit" && mode !== "null") {
      throw new TypeError(`Invalid stdio mode '${mode}': use "piped", "inherit" or "null"`);
    }
  }
  checkId("uid", options.uid);
  checkId("gid", options.gid);
  if (
    [options.cwd !== undefined, options.targetCwd, options.cwdInside !== undefined].filter(Boolean)
      .length > 1
  ) {
    throw new TypeError("Give only one of cwd, targetCwd and cwdInside");
  }
  if (options.root !== undefined && options.targetRoot) {
    throw new TypeError("Give only one of root and targetRoot");
  }
  if (options.clearEnv && options.targetEnv) {
    throw new TypeError("Give only one of clearEnv and targetEnv");
  }
}

/** Where execve looks for the program, as execvp does. */
export function candidatePaths(program: string, path: string | undefined): string[] {
  if (program === "") return [];
  if (program.includes("/")) return [program];
  // A directory named twice would fail twice the same way: once is enough.
  return [
    ...new Set((path ?? "/bin:/usr/bin").split(":").map((dir) => `${dir || "."}/${program}`)),
  ];
}

/** Descriptors the parent holds while the plan is built, closed on every way out. */
class Descriptors {
  readonly #fds: number[] = [];
  add(fd: number): number {
    this.#fds.push(fd);
    return fd;
  }
  release(fd: number): void {
    const i = this.#fds.indexOf(fd);
    if (i >= 0) this.#fds.splice(i, 1);
  }
  /** A holder of these descriptors instead of this one. */
  move(): Descriptors {
    const moved = new Descriptors();
    moved.#fds.push(...this.#fds.splice(0));
    return moved;
  }
  [Symbol.dispose](): void {
    for (const fd of this.#fds.splice(0)) close(fd);
  }
}

/** A descriptor numbered 3 or above, so that no dup3 in the child overwrites a later source. */
function aboveStdio(fd: number, held: Descriptors): number {
  if (fd >= 3) return fd;
  const copy = held.add(
    check(dupAtLeast(fd, 3), { syscall: "fcntl", action: "Failed to copy a descriptor" }),
  );
  close(fd);
  held.release(fd);
  return copy;
}

function failure(result: Extract<SpawnResult, { ok: false }>, ctx: {
  pid: number;
  program: string;
  joined: NamespaceType[];
  ops: SpawnOp[];
  preOps: number;
  nsPaths: Partial<Record<NamespaceType, string>>;
  cwdInside: string | undefined;
  uid: number | undefined;
  gid: number | undefined;
}): NamespaceError {
  const { errno } = result;
  switch (result.stage) {
    case "op": {
      // DETAIL: the index in the list before the pid clone, or 1000 + the index in the one after.
      const op = ctx.ops[result.detail >= 1000 ? ctx.preOps + result.detail - 1000 : result.detail];
      const action = op?.op === "write"
        ? `Failed to write ${op.path}`
        : op?.op === "mount"
        ? `Failed to mount ${op.fstype ?? op.source} on ${op.target}`
        : op?.op === "sethostname"
        ? "Failed to set the hostname"
        : "Failed to create new namespaces";
      const hint = op?.op === "unshare" && errno === EPERM
        ? "creating namespaces needs CAP_SYS_ADMIN: run as root, or create a user namespace too (--map-root-user)"
        : undefined;
      return new NamespaceError(errno, {
        syscall: op?.op === "write" ? "write" : op?.op ?? "unshare",
        action,
        ...(op?.op === "write" ? { path: op.path } : op?.op === "mount" ? { path: op.target } : {}),
        ...(hint ? { hint } : {}),
      });
    }
    case "setns": {
      const nsType = ctx.joined[result.detail]!;
      const path = ctx.nsPaths[nsType];
      return new NamespaceError(errno, {
        syscall: "setns",
        action: path
          ? `Failed to join ${nsType} namespace ${path}`
          : `Failed to join ${nsType} namespace of process ${ctx.pid}`,
        ...(path ? { path } : {}),
        nsType,
        pid: ctx.pid,
        ...(privilegeHint(errno) ? { hint: privilegeHint(errno)! } : {}),
      });
    }
    case "exec":
      return new NamespaceError(errno, {
        syscall: "execve",
        action: `Failed to execute ${ctx.program}`,
        path: ctx.program,
        pid: ctx.pid,
      });
    case "fork":
      return new NamespaceError(errno, {
        syscall: "clone",
        action: `Failed to start a process in the namespaces of process ${ctx.pid}`,
        pid: ctx.pid,
      });
    case "cwd":
      return new NamespaceError(errno, {
        syscall: "chdir",
        action: ctx.cwdInside !== undefined
          ? `Failed to change to directory ${ctx.cwdInside} inside`
          : "Failed to change the working directory",
        ...(ctx.cwdInside !== undefined ? { path: ctx.cwdInside } : {}),
      });
    case "setuid":
    case "setgid": {
      const id = result.stage === "setuid" ? `uid ${ctx.uid}` : `gid ${ctx.gid}`;
      return new NamespaceError(errno, {
        syscall: result.stage === "setuid" ? "setresuid" : "setresgid",
        action: `Failed to set ${id}`,
        ...(errno === EINVAL ? { hint: `${id} is not mapped in the user namespace` } : {}),
      });
    }
    case "cgroup":
      return new NamespaceError(errno, {
        syscall: "write",
        action: `Failed to join the cgroup of process ${ctx.pid}`,
        pid: ctx.pid,
      });
    default:
      return new NamespaceError(errno, {
        syscall: result.stage,
        action: `Failed to prepare the command (${result.stage})`,
        pid: ctx.pid,
      });
  }
}

/** What start() hands over: the command, the parent's ends of its pipes, and its pty. */
interface Started {
  pid: number;
  pipes: [number | null, number | null, number | null];
  /** A descriptor of the pty's master for resize(), when the command has a pty. */
  tty: number | null;
}

/** Whether a path exists (open and close again). */
function exists(path: string): boolean {
  const fd = open(path, O_RDONLY);
  if (fd < 0) return false;
  close(fd);
  return true;
}

/** Opens a file of the target, or a path the caller gave, for a plan: throws the typed error. */
function openFor(
  path: string,
  flags: number,
  what: string,
  held: Descriptors,
  extra: { pid?: number; nsType?: NamespaceType } = {},
): number {
  const fd = open(path, flags);
  if (fd < 0) {
    const errno = -fd;
    let hint = privilegeHint(errno);
    if (errno === ENOENT && extra.nsType) {
      if (typeof readlink(`/proc/self/ns/${extra.nsType}`) === "number") {
        hint = `this kernel has no ${extra.nsType} namespaces`;
      } else if (extra.pid !== undefined && exists(`/proc/${extra.pid}`)) {
        hint = `process ${extra.pid} has exited`;
      }
    }
    throw new NamespaceError(errno, {
      syscall: "open",
      action: `Failed to open ${what} ${path}`,
      path,
      ...(extra.nsType ? { nsType: extra.nsType } : {}),
      ...(extra.pid !== undefined ? { pid: extra.pid } : {}),
      ...(hint ? { hint } : {}),
    });
  }
  return held.add(fd);
}

/** Reads a small file of the target, or throws the typed error. */
function readFor(path: string, pid: number): string {
  const text = readText(path);
  if (typeof text === "number") {
    throw new NamespaceError(-text, {
      syscall: "read",
      action: `Failed to read ${path}`,
      path,
      pid,
    });
  }
  return text;
}

/** The types `"all"` stands for: what the target has and the kernel knows, minus our own user namespace. */
function allTypes(pid: number): NamespaceType[] {
  return NAMESPACE_TABLE.map((ns) => ns.type).filter((type) => {
    const mine = readlink(`/proc/self/ns/${type}`);
    if (typeof mine === "number") return false; // the kernel lacks it
    return !(type === "user" && readlink(`/proc/${pid}/ns/user`) === mine);
  });
}

/** The cgroup.procs file of the target's cgroup v2 group, open for writing. */
function openCgroup(pid: number, held: Descriptors): number {
  const group = readFor(`/proc/${pid}/cgroup`, pid).split("\n").find((l) => l.startsWith("0::"))
    ?.slice(3);
  // mountinfo: id parent major:minor root mount-point options ... - fstype source super-options;
  // octal escapes (\040) in paths. The group path is relative to our cgroup namespace's root;
  // a cgroup2 mount shows the part of the tree below its root.
  const unescape = (text: string) =>
    text.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
  const mounts = readFor("/proc/self/mountinfo", pid).split("\n").map((l) => l.split(" "))
    .filter((f) => f[f.indexOf("-") + 1] === "cgroup2")
    .map((f) => ({ root: unescape(f[3]!), point: unescape(f[4]!) }));
  const within = (root: string) =>
    group !== undefined && (root === "/" || group === root || group.startsWith(`${root}/`));
  const mount = mounts.find((m) => within(m.root));
  if (group === undefined || !mount || group.split("/").includes("..")) {
    throw new NamespaceError(ENOENT, {
      syscall: "open",
      action: `Failed to join the cgroup of process ${pid}`,
      pid,
      hint: group === undefined
        ? "the process is in no cgroup v2 group"
        : mounts.length === 0
        ? "no cgroup v2 hierarchy is mounted here"
        : `its group ${group} is outside every cgroup v2 mount here`,
    });
  }
  const rest = mount.root === "/" ? group : group.slice(mount.root.length);
  const path = `${mount.point}${rest === "/" ? "" : rest}/cgroup.procs`;
  return openFor(path, O_WRONLY, "cgroup", held, { pid });
}

/** The environment of the target, from /proc/PID/environ. */
function targetEnvironment(pid: number): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of readFor(`/proc/${pid}/environ`, pid).split("\0")) {
    const at = entry.indexOf("=");
    if (at > 0) env[entry.slice(0, at)] = entry.slice(at + 1);
  }
  return env;
}

/**
 * Builds the plan, spawns, and returns the command's pid plus the parent's
 * ends of its pipes. Throws {@linkcode NamespaceError} with nothing started.
 */
/** @internal What a plan that makes new namespaces adds (src/create.ts). */
export interface CreatePlan {
  preOps: SpawnOp[];
  postOps: SpawnOp[];
  fork: boolean;
  shareMemory: boolean;
}

/**
 * Whether setns(2) takes a pidfd on this kernel (5.8+). Assumed until a join
 * through the pidfd fails where the namespace files then work.
 */
let pidfdJoins = true;

/** Commands started here that have not ended yet. */
let running = 0;

/** A plan ready to spawn, holding what it opened; dispose closes what `finish` did not keep. */
interface Prepared extends Disposable {
  plan: SpawnPlan;
  /** The started command, from the spawn's result; throws the NamespaceError of a failed one. */
  finish(result: SpawnResult): Started;
}

function start(
  options: NamespaceCommandOptions,
  defaults: { stdout: StdioMode; stderr: StdioMode },
  internals: SpawnInternals,
  create?: CreatePlan,
  withFiles = false,
): Started {
  using prepared = prepare(options, defaults, internals, create, withFiles);
  return prepared.finish(spawn(prepared.plan));
}

/** As {@linkcode start}, with the spawn's wait on a pool thread (see spawnOffThread). */
async function startOffThread(
  options: NamespaceCommandOptions,
  defaults: { stdout: StdioMode; stderr: StdioMode },
): Promise<Started> {
  using prepared = prepare(options, defaults, {}, undefined, false);
  return prepared.finish(await spawnOffThread(prepared.plan));
}

function prepare(
  options: NamespaceCommandOptions,
  defaults: { stdout: StdioMode; stderr: StdioMode },
  internals: SpawnInternals,
  create: CreatePlan | undefined,
  withFiles: boolean,
): Prepared {
  validate(options, create !== undefined);
  const { pid, nsPaths = {} } = options;
  using held = new Descriptors();

  // A pidfd first: every file read by pid below is checked against this very process.
  const pidfd = pid === undefined ? -1 : pidfdOpen(pid);
  if (pidfd >= 0) held.add(pidfd);
  else if (pid !== undefined && pidfd !== -ESRCH && pidfd !== -ENOSYS) {
    // Without it nothing guards against a reused pid: refuse rather than go on unguarded.
    // (ESRCH: no such process, reported below on its namespace file; ENOSYS: kernel before 5.3.)
    throw new NamespaceError(-pidfd, {
      syscall: "pidfd_open",
      action: `Failed to open a pidfd for process ${pid}`,
      pid,
      ...(-pidfd === ENOENT || -pidfd === EINVAL
        ? { hint: "is it a thread id? give the id of its process" }
        : {}),
    });
  }

  const byPath = Object.keys(nsPaths) as NamespaceType[];
  const fromTarget: NamespaceType[] = pid === undefined
    ? []
    : options.namespaces === "all"
    ? allTypes(pid)
    : options.namespaces !== undefined
    ? normalizeNamespaces(options.namespaces)
    : [...DEFAULT_NAMESPACES];
  const types = create ? [] : normalizeNamespaces([...fromTarget, ...byPath]);

  if (options.targetEnv && !types.includes("mnt")) {
    // Its PATH, LD_PRELOAD and the like would pick programs and libraries outside its mount namespace.
    throw new TypeError(
      "targetEnv needs mnt joined: outside the target's mount namespace its environment would choose which programs run",
    );
  }
  // Everything from the target, with a pidfd: the child joins through the pidfd alone (one
  // setns, then per type if that is refused), and no namespace file is opened. If that
  // join fails, all is done again with the files, which also tell precisely what failed.
  const viaPidfd = pidfdJoins && !withFiles && byPath.length === 0 && pidfd >= 0;
  // Else open everything first: all or nothing.
  const fds = new Map<NamespaceType, number>();
  for (const nsType of viaPidfd ? [] : types) {
    const fromPath = nsPaths[nsType];
    const path = fromPath ?? `/proc/${pid}/ns/${nsType}`;
    // The hints about the target (exited, kernel lacks the type) only for its own files.
    fds.set(
      nsType,
      openFor(path, O_RDONLY, "namespace", held, fromPath ? {} : { nsType, pid: pid! }),
    );
  }
  if (types.includes("user")) {
    const link = nsPaths.user ?? `/proc/${pid}/ns/user`;
    if (readlink(link) === readlink("/proc/self/ns/user")) {
      throw new NamespaceError(EINVAL, {
        syscall: "setns",
        action: `Failed to join user namespace of ${
          pid !== undefined && !nsPaths.user ? `process ${pid}` : link
        }`,
        nsType: "user",
        ...(pid !== undefined ? { pid } : {}),
        hint: "it is the caller's own user namespace, which the kernel refuses to enter again",
      });
    }
  }
  const directory = O_PATH | O_DIRECTORY;
  const rootFd = options.targetRoot
    ? openFor(`/proc/${pid}/root`, directory, "root directory", held, { pid: pid! })
    : options.root !== undefined
    ? openFor(options.root, directory, "root directory", held)
    : undefined;
  const cwdFd = options.targetCwd
    ? openFor(`/proc/${pid}/cwd`, directory, "working directory", held, { pid: pid! })
    : options.cwd !== undefined
    ? openFor(options.cwd, directory, "working directory", held)
    : undefined;
  const cgroupFd = options.joinCgroup ? openCgroup(pid!, held) : undefined;
  const baseEnv = options.targetEnv
    ? targetEnvironment(pid!)
    : options.clearEnv
    ? {}
    : Deno.env.toObject();

  let tty: { master: number; slave: number } | undefined;
  if (options.tty) {
    // The multiplexer of the target's own devpts, resolved inside its root (no symlink,
    // ".." or magic link leads out), else ours.
    const inTarget = pid !== undefined && types.includes("mnt");
    const root = inTarget
      ? openFor(`/proc/${pid}/root`, directory, "root directory", held, { pid: pid! })
      : -1;
    let pty: [number, number] | number = -ENOENT;
    let tried = "/dev/ptmx";
    for (const path of inTarget ? ["dev/pts/ptmx", "dev/ptmx"] : ["/dev/ptmx"]) {
      tried = inTarget ? `/proc/${pid}/root/${path}` : path;
      const ptmx = inTarget ? openInRoot(root, path, O_PATH) : open(path, O_PATH);
      if (ptmx < 0) {
        pty = ptmx;
        if (ptmx === -ENOENT) continue;
        break;
      }
      pty = openPty(ptmx);
      close(ptmx);
      if (typeof pty !== "number" || pty !== -ENODEV) break;
    }
    if (typeof pty === "number") {
      throw new NamespaceError(-pty, {
        syscall: "open",
        action: `Failed to open a pseudo-terminal at ${tried}`,
        path: tried,
        ...(pid !== undefined ? { pid } : {}),
        ...(-pty === ENODEV
          ? { hint: "it is not the pty multiplexer (character device 5:2)" }
          : {}),
      });
    }
    tty = { master: held.add(pty[0]), slave: aboveStdio(held.add(pty[1]), held) };
    if (options.ttySize) setWindowSize(tty.master, options.ttySize.columns, options.ttySize.rows);
  }
  internals.afterOpen?.();
  // Still the same process? Then everything above came from it, not from one that reused its pid.
  // (Through the pidfd, setns itself fails so for a process that has gone.)
  const exited = (syscall: string) =>
    new NamespaceError(ESRCH, {
      syscall,
      action: `Failed to enter process ${pid}`,
      pid: pid!,
      hint: `process ${pid} has exited`,
    });
  if (!viaPidfd && pid !== undefined && pidfd >= 0 && pidfdSendSignal(pidfd, 0) === -ESRCH) {
    throw exited("pidfd_send_signal");
  }

  // Step 0 is the user namespace; the rest follow in table order.
  const joined: NamespaceType[] = ["user"];
  const joinFd = (type: NamespaceType) =>
    !types.includes(type) ? -1 : viaPidfd ? pidfd : fds.get(type)!;
  const steps: [number, number][] = [[joinFd("user"), 0x10000000]];
  for (const ns of NAMESPACE_TABLE) {
    if (ns.type === "user" || !types.includes(ns.type)) continue;
    joined.push(ns.type);
    steps.push([joinFd(ns.type), ns.flag]);
  }
  // All from the target: one setns through the pidfd, the files as the fallback.
  const mask = byPath.length === 0 && pidfd >= 0
    ? types.reduce((bits, type) => bits | namespaceInfo(type).flag, 0)
    : 0;

  const modes = tty ? (["inherit", "inherit", "inherit"] as const) : [
    options.stdin ?? "inherit",
    options.stdout ?? defaults.stdout,
    options.stderr ?? defaults.stderr,
  ] as const;
  const stdio: [number, number][] = [];
  const pipes: [number | null, number | null, number | null] = [null, null, null];
  let devNull = -1;
  modes.forEach((mode, target) => {
    if (mode === "inherit") return;
    if (mode === "null") {
      if (devNull < 0) {
        devNull = aboveStdio(
          held.add(check(open("/dev/null", O_RDWR), {
            syscall: "open",
            action: "Failed to open /dev/null",
            path: "/dev/null",
          })),
          held,
        );
      }
      stdio.push([devNull, target]);
      return;
    }
    const ends = pipe();
    if (typeof ends === "number") {
      check(ends, { syscall: "pipe2", action: "Failed to create a pipe" });
      return;
    }
    held.add(ends[0]);
    held.add(ends[1]);
    const [readEnd, writeEnd] = ends;
    const [parentEnd, childEnd] = target === 0 ? [writeEnd, readEnd] : [readEnd, writeEnd];
    // Ours is read and written without blocking (src/poller.ts); the command's end blocks.
    check(setNonBlocking(parentEnd), { syscall: "fcntl", action: "Failed to set up a pipe" });
    pipes[target] = parentEnd;
    stdio.push([aboveStdio(childEnd, held), target]);
  });

  if (tty) {
    // The command's three standard streams are the pty; the parent keeps the master twice
    // (reading, writing) and once more for resize().
    stdio.push([tty.slave, 0], [tty.slave, 1], [tty.slave, 2]);
    for (const end of [0, 1] as const) {
      pipes[end] = held.add(
        check(dupAtLeast(tty.master, 3), { syscall: "fcntl", action: "Failed to copy the pty" }),
      );
    }
  }
  // (A spread of the whole environment showed in profiles: only when there is something to add.)
  const envRecord = options.env && Object.keys(options.env).length > 0
    ? { ...baseEnv, ...options.env }
    : baseEnv;
  const env: string[] = [];
  for (const key in envRecord) env.push(`${key}=${envRecord[key]}`);
  const command = options.command ?? [Deno.env.get("SHELL") || "/bin/sh"];
  const program = command[0]!;
  const joinsUser = types.includes("user");
  const credentials = joinsUser && !options.preserveCredentials ? { uid: 0, gid: 0 } : {};
  const uid = options.uid ?? credentials.uid;
  const gid = options.gid ?? credentials.gid;
  const plan: SpawnPlan = {
    steps,
    ...(mask ? { pidfd: { fd: pidfd, mask } } : {}),
    ...(cgroupFd !== undefined ? { cgroupFd } : {}),
    fork: create ? create.fork : types.includes("pid") && options.fork !== false,
    shareMemory: create ? create.shareMemory : !types.includes("time"),
    ...(create ? { preOps: create.preOps, postOps: create.postOps, noDump: false } : {}),
    stdio,
    closeFrom: !internals.keepDescriptors,
    candidates: candidatePaths(program, envRecord.PATH ?? Deno.env.get("PATH")),
    argv: command,
    env,
    ...(rootFd !== undefined ? { rootFd } : {}),
    ...(cwdFd !== undefined ? { cwdFd } : {}),
    ...(options.cwdInside !== undefined ? { cwdPath: options.cwdInside } : {}),
    ...(gid !== undefined ? { dropGroups: true, gid } : {}),
    ...(uid !== undefined ? { uid } : {}),
    ...(tty ? { session: { controllingTerminal: true } } : {}),
  };
  const kept = held.move();
  const finish = (result: SpawnResult): Started => {
    if (!result.ok && viaPidfd && result.stage === "setns") {
      if (result.errno === ESRCH) throw exited("setns");
      // Nothing has run. Again with the files: they work on kernels before 5.8, and where
      // the join is refused they say which namespace and why.
      const started = start(options, defaults, internals, create, true);
      pidfdJoins = false;
      return started;
    }
    if (!result.ok) {
      throw failure(result, {
        pid: pid ?? 0,
        program,
        joined,
        ops: [...create?.preOps ?? [], ...create?.postOps ?? []],
        preOps: create?.preOps.length ?? 0,
        nsPaths,
        cwdInside: options.cwdInside,
        uid,
        gid,
      });
    }
    // The parent keeps only its ends of the pipes; everything else closes on dispose.
    for (const fd of pipes) if (fd !== null) kept.release(fd);
    if (tty) kept.release(tty.master);
    return { pid: result.pid, pipes, tty: tty?.master ?? null };
  };
  return { plan, finish, [Symbol.dispose]: () => kept[Symbol.dispose]() };
}

/** A stream over one end of a pipe, and a way to close that end even while the stream is locked. */
interface PipeStream<S> {
  stream: S;
  /** Closes the descriptor at once; a read or write waiting for it ends. */
  release(): Promise<void>;
}

/**
 * One non-blocking end of a pipe (or pty): waits for it in src/poller.ts,
 * then reads or writes on this thread; closes it once.
 */
function pipeEnd(fd: number, events: number) {
  // More than one wait when two readers race on one end (output() and a stream).
  const waiting = new Set<Readiness>();
  let closed = false;
  return {
    /**
     * `op` until it is not -EAGAIN (or -EINTR), waiting for the descriptor in between; null
     * once closed.
     *
     * @throws {Error} when poll(2) itself fails
     */
    async io(op: () => number, waitFirst = false): Promise<number | null> {
      for (let first = true;; first = false) {
        if (closed) return null;
        const n = first && waitFirst ? -EAGAIN : op();
        if (n !== -EAGAIN && n !== -EINTR) return n;
        const wait = whenReady(fd, events);
        waiting.add(wait);
        const ready = await wait.ready;
        waiting.delete(wait);
        if (ready < 0) throw new Error("Failed to wait for the command's pipe (poll failed)");
      }
    },
    release(): Promise<void> {
      if (!closed) {
        closed = true;
        for (const wait of waiting) wait.cancel();
        closeWhenUnwatched(fd);
      }
      return Promise.resolve();
    },
  };
}

/** Reads start this size and grow (to 64 KiB) while they fill the buffer. */
const FIRST_READ = 4096;
const LARGEST_READ = 65536;

/**
 * What is read from a pipe: as a stream, made on first use, or, while no
 * stream has been handed out, all of it up to EOF directly.
 */
function pipeReader(fd: number): PipeStream<ReadableStream<Uint8Array>> & {
  readAll(): Promise<Uint8Array>;
} {
  const end = pipeEnd(fd, POLLIN);
  let size = FIRST_READ;
  // A command just started has written nothing yet: its first read waits for the poll first.
  let fresh = true;
  /** The next chunk, or null at EOF (or on an error, or once released). */
  const next = async (): Promise<Uint8Array | null> => {
    const buf = new Uint8Array(size);
    const n = await end.io(() => read(fd, buf), fresh);
    fresh = false;
    if (n === null) return null;
    if (n <= 0) {
      await end.release();
      return null;
    }
    if (n === size) size = Math.min(size * 4, LARGEST_READ);
    return buf.subarray(0, n);
  };
  let stream: ReadableStream<Uint8Array> | undefined;
  return {
    get stream() {
      return stream ??= new ReadableStream<Uint8Array>({
        async pull(controller) {
          const chunk = await next();
          if (chunk) controller.enqueue(chunk);
          else controller.close();
        },
        cancel: () => end.release(),
      }, { highWaterMark: 0 });
    },
    async readAll() {
      if (stream) return concat(await Array.fromAsync(stream));
      const chunks = [];
      for (let chunk; (chunk = await next());) chunks.push(chunk);
      return concat(chunks);
    },
    release: () => end.release(),
  };
}

/** A writable stream over a pipe. */
function pipeWriter(fd: number): PipeStream<WritableStream<Uint8Array>> {
  const end = pipeEnd(fd, POLLOUT);
  const stream = new WritableStream<Uint8Array>({
    async write(chunk) {
      let rest = new Uint8Array(chunk);
      while (rest.length > 0) {
        const n = await end.io(() => write(fd, rest));
        if (n === null) throw new Error("The command's stdin is closed");
        if (n <= 0) throw new Error("Failed to write to the command's stdin (the pipe is closed)");
        rest = rest.subarray(n);
      }
    },
    close: () => end.release(),
    abort: () => end.release(),
  });
  return { stream, release: () => end.release() };
}

/**
 * A command running inside another process's namespaces: the counterpart of
 * `Deno.ChildProcess`.
 */
export class NamespaceProcess implements AsyncDisposable {
  /** The command's pid, as this process sees it. */
  readonly pid: number;
  /** Resolves when the command has ended (and been reaped). */
  readonly status: Promise<NamespaceStatus>;
  /** With `afterOutput`: resolved by output() once the pipes are at end of file. */
  readonly #outputDone: PromiseWithResolvers<void> | null;
  readonly #stdin: PipeStream<WritableStream<Uint8Array>> | null;
  readonly #stdout: ReturnType<typeof pipeReader> | null;
  readonly #stderr: ReturnType<typeof pipeReader> | null;
  #pidfd: number;
  #tty: number | null;
  #done = false;

  /** @internal Use {@linkcode spawnInNamespace}. */
  constructor(
    pid: number,
    pipes: readonly [number | null, number | null, number | null],
    onStop?: () => void,
    tty: number | null = null,
    afterOutput = false,
  ) {
    this.pid = pid;
    this.#outputDone = afterOutput ? Promise.withResolvers<void>() : null;
    this.#tty = tty;
    // A pidfd names this very process, so kill() cannot hit a reused pid.
    this.#pidfd = pidfdOpen(pid);
    this.#stdin = pipes[0] === null ? null : pipeWriter(pipes[0]);
    this.#stdout = pipes[1] === null ? null : pipeReader(pipes[1]);
    this.#stderr = pipes[2] === null ? null : pipeReader(pipes[2]);
    const wait = async () => {
      // Collected by output() (execInNamespace): its pipes reach end of file as it exits, and a
      // moment later it can be reaped. Waiting for that first spares a poll of the pidfd.
      if (this.#outputDone) {
        await this.#outputDone.promise;
        const raw = reap(pid);
        if (raw !== null) return raw;
      }
      // Ended: its pidfd is readable. (Stops, for job control, only wait4 reports: on a pool thread.)
      if (!onStop && this.#pidfd >= 0) {
        await whenReady(this.#pidfd, POLLIN).ready;
        const raw = reap(pid);
        if (raw !== null) return raw;
        // Readable but not reapable: a tracer holds the zombie (or poll(2) failed). Then
        // wait4 itself waits, on a pool thread, rather than a loop spinning on the pidfd.
      }
      for (;;) {
        const raw = await waitAsync(pid, onStop ? WUNTRACED : 0);
        if (raw < 0 || (raw & 0xff) !== 0x7f) return raw; // not WIFSTOPPED
        onStop!();
      }
    };
    running++;
    this.status = wait().finally(() => running--).then((raw) => {
      this.#done = true;
      if (this.#pidfd >= 0) closeWhenUnwatched(this.#pidfd);
      this.#pidfd = -1;
      if (this.#tty !== null) close(this.#tty);
      this.#tty = null;
      if (raw < 0) {
        throw new NamespaceError(10, {
          syscall: "wait4",
          action: `Failed to wait for process ${pid}`,
        });
      }
      return decodeWaitStatus(raw);
    });
  }

  /** @internal A descriptor of its own of the command's pidfd, for the caller to close; -1 if none. */
  [PIDFD](): number {
    return this.#pidfd < 0 ? -1 : dupAtLeast(this.#pidfd, 3);
  }

  /** The command's stdin. @throws {TypeError} unless it was spawned with `stdin: "piped"` */
  get stdin(): WritableStream<Uint8Array> {
    if (!this.#stdin) throw new TypeError("stdin is not piped");
    return this.#stdin.stream;
  }

  /** The command's stdout. @throws {TypeError} unless it was spawned with `stdout: "piped"` */
  get stdout(): ReadableStream<Uint8Array> {
    if (!this.#stdout) throw new TypeError("stdout is not piped");
    return this.#stdout.stream;
  }

  /** The command's stderr. @throws {TypeError} unless it was spawned with `stderr: "piped"` */
  get stderr(): ReadableStream<Uint8Array> {
    if (!this.#stderr) throw new TypeError("stderr is not piped");
    return this.#stderr.stream;
  }

  /**
   * Sends a signal to the command.
   *
   * @param signal Default `"SIGTERM"`.
   * @throws {TypeError} when the command has already ended
   */
  kill(signal: Deno.Signal | number = "SIGTERM"): void {
    const number = signalNumber(signal);
    if (this.#done || this.#pidfd < 0) throw new TypeError("The command has already ended");
    const rc = pidfdSendSignal(this.#pidfd, number);
    if (rc === -3 /* ESRCH */) throw new TypeError("The command has already ended");
    check(rc, {
      syscall: "pidfd_send_signal",
      action: `Failed to signal process ${this.pid}`,
      pid: this.pid,
    });
  }

  /**
   * Sets the window size of the command's pty (spawned with `tty: true`); the
   * command gets SIGWINCH.
   *
   * @param columns Columns.
   * @param rows Rows.
   * @throws {TypeError} without a pty, or when the command has ended
   */
  resize(columns: number, rows: number): void {
    if (this.#tty === null) throw new TypeError("The command has no pty (or has ended)");
    check(setWindowSize(this.#tty, columns, rows), {
      syscall: "ioctl",
      action: `Failed to resize the pty of process ${this.pid}`,
      pid: this.pid,
    });
  }

  /** Waits for the command and collects what it wrote to piped stdout and stderr. */
  async output(): Promise<NamespaceOutput> {
    const empty = Promise.resolve(new Uint8Array());
    const outputs = Promise.all([
      this.#stdout ? this.#stdout.readAll() : empty,
      this.#stderr ? this.#stderr.readAll() : empty,
    ]).finally(() => this.#outputDone?.resolve());
    try {
      const [[stdout, stderr], status] = await Promise.all([outputs, this.status]);
      return { ...status, stdout, stderr };
    } finally {
      // The command has ended (or the wait failed): its stdin has no reader (with tty, this is
      // the pty's writer), and nothing else will read its pipes.
      await Promise.all([this.#stdin, this.#stdout, this.#stderr].map((end) => end?.release()));
    }
  }

  /**
   * Kills the command if it still runs, then waits for it and closes its
   * pipes, locked streams included.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#done) {
      try {
        this.kill("SIGTERM");
      } catch {
        // ended meanwhile
      }
    }
    await this.status.catch(() => {});
    await Promise.all([this.#stdin, this.#stdout, this.#stderr].map((pipe) => pipe?.release()));
  }
}

/**
 * Starts a command inside the namespaces of a running process and returns a
 * handle to it, as `new Deno.Command(...).spawn()` does. Standard streams are
 * inherited unless said otherwise.
 *
 * Every requested namespace is opened first; if any open or join fails, the
 * command is not started and a {@linkcode NamespaceError} is thrown. This
 * process and all its threads stay in their own namespaces.
 *
 * @param options The target, namespaces, command and stdio.
 * @returns The running command.
 * @throws {NamespaceError} when a namespace cannot be opened or joined, or the program cannot be run
 * @throws {RangeError} for a bad pid or namespace type
 * @throws {TypeError} for a bad command or stdio mode
 *
 * @example Stream a command's output
 * ```ts ignore
 * import { spawnInNamespace } from "./mod.ts";
 * const child = spawnInNamespace({
 *   pid: 1234,
 *   namespaces: ["net"],
 *   command: ["ip", "monitor"],
 *   stdout: "piped",
 * });
 * for await (const chunk of child.stdout) console.log(new TextDecoder().decode(chunk));
 * console.log((await child.status).code);
 * ```
 */
export function spawnInNamespace(options: NamespaceCommandOptions): NamespaceProcess {
  bindAll(); // a library is called again and again: fast FFI calls (ffi/_libc.ts)
  return spawnWith(options, {});
}

/** @internal The CLI's entry: as {@linkcode spawnInNamespace}, with internals. */
export function spawnWith(
  options: NamespaceCommandOptions,
  internals: SpawnInternals,
): NamespaceProcess {
  const { pid, pipes, tty } = start(options, { stdout: "inherit", stderr: "inherit" }, internals);
  return new NamespaceProcess(pid, pipes, internals.onStop, tty);
}

/** @internal Spawns with a plan that makes new namespaces (src/create.ts). */
export function spawnPlanned(
  options: NamespaceCommandOptions,
  create: CreatePlan,
  internals: SpawnInternals = {},
): NamespaceProcess {
  const { pid, pipes, tty } = start(
    options,
    { stdout: "inherit", stderr: "inherit" },
    internals,
    create,
  );
  return new NamespaceProcess(pid, pipes, internals.onStop, tty);
}

/**
 * Runs a command inside the namespaces of a running process and collects its
 * output, as `new Deno.Command(...).output()` does: stdout and stderr are
 * piped unless said otherwise.
 *
 * @param options The target, namespaces, command and stdio.
 * @returns The exit status and what the command wrote.
 * @throws {NamespaceError} when a namespace cannot be opened or joined, or the program cannot be run
 * @throws {RangeError} for a bad pid or namespace type
 * @throws {TypeError} for a bad command or stdio mode, or `stdin: "piped"`
 *
 * @example Read the hostname of a container
 * ```ts ignore
 * import { execInNamespace } from "./mod.ts";
 * const out = await execInNamespace({ pid: 1234, namespaces: ["uts"], command: ["hostname"] });
 * console.log(out.code, new TextDecoder().decode(out.stdout));
 * ```
 */
export async function execInNamespace(options: NamespaceCommandOptions): Promise<NamespaceOutput> {
  bindAll(); // a library is called again and again: fast FFI calls (ffi/_libc.ts)
  if (options.stdin === "piped") {
    throw new TypeError(
      'execInNamespace() cannot pipe stdin: use spawnInNamespace({ stdin: "piped" })',
    );
  }
  const defaults = { stdout: "piped", stderr: "piped" } as const;
  // With other commands running, a pool thread waits for this one's execve, and this thread
  // goes on starting others; alone, the hand-over to the pool would only add to the wait.
  const { pid, pipes, tty } = running > 0
    ? await startOffThread(options, defaults)
    : start(options, defaults, {});
  return await new NamespaceProcess(pid, pipes, undefined, tty, true).output();
}
