/**
 * Run a command in new namespaces, as util-linux unshare does.
 *
 * @module
 */
import {
  type NamespaceCommandOptions,
  type NamespaceOutput,
  type NamespaceProcess,
  type SpawnInternals,
  spawnPlanned,
} from "./exec.ts";
import { NAMESPACE_TABLE, type NamespaceType, normalizeNamespaces } from "./namespaces.ts";
import type { SpawnOp } from "../ffi/_spawner.ts";
import { bindAll } from "../ffi/_libc.ts";
import { getegid, geteuid, unmountLazily } from "../ffi/syscalls.ts";

/** Options of {@linkcode spawnInNewNamespaces} and {@linkcode execInNewNamespaces}. */
export interface NewNamespaceOptions
  extends
    Pick<NamespaceCommandOptions, "command" | "env" | "clearEnv" | "stdin" | "stdout" | "stderr"> {
  /** The namespace types to create. */
  namespaces: readonly NamespaceType[];
  /** With `uts`: the hostname inside. */
  hostname?: string;
  /** Mount a new /proc inside (implies `mnt`; with `pid` it shows the new pid namespace). */
  mountProc?: boolean;
  /** With `user`: map your uid and gid to 0 inside (implies `user`), as unshare --map-root-user. */
  mapRootUser?: boolean;
  /** Bind-mount each new namespace onto a file, so that it outlives the command: `{ net: "/run/netns/x" }`. */
  persist?: Partial<Record<NamespaceType, string>>;
  /** With `time`: seconds added to the boot-time clock inside. */
  boottime?: number;
  /** With `time`: seconds added to the monotonic clock inside. */
  monotonic?: number;
}

const MS_BIND = 0x1000;
const MS_REC = 0x4000;
const MS_PRIVATE = 1 << 18;
const MS_NOSUID = 2;
const MS_NODEV = 4;
const MS_NOEXEC = 8;

/**
 * The file that names a new namespace, seen from the process that execs (the
 * post-clone ops run there): with a pid namespace that process is its pid 1
 * and in every new namespace itself; without one, unshare(2) moved only its
 * future children into a new time namespace.
 */
function ownFile(type: NamespaceType, forked: boolean): string {
  return `/proc/self/ns/${type === "time" && !forked ? "time_for_children" : type}`;
}

/** The types to create, with what the options imply. */
function typesOf(options: NewNamespaceOptions): NamespaceType[] {
  const wanted: string[] = [...options.namespaces];
  if (options.mountProc) wanted.push("mnt");
  if (options.mapRootUser) wanted.push("user");
  const types = normalizeNamespaces(wanted);
  const need = (flag: unknown, type: NamespaceType, option: string) => {
    if (flag !== undefined && flag !== false && !types.includes(type)) {
      throw new TypeError(`${option} needs a new ${type} namespace`);
    }
  };
  need(options.hostname, "uts", "hostname");
  if (options.hostname !== undefined && new TextEncoder().encode(options.hostname).length > 64) {
    throw new TypeError("hostname: at most 64 bytes");
  }
  need(options.boottime, "time", "boottime");
  need(options.monotonic, "time", "monotonic");
  for (const [type, path] of Object.entries(options.persist ?? {})) {
    if (!types.includes(type as NamespaceType)) {
      throw new TypeError(`persist ${type} needs a new ${type} namespace`);
    }
    if (type === "mnt") {
      throw new TypeError(
        "Persisting a mount namespace is not supported (it must be bound from outside it)",
      );
    }
    if (!path) throw new TypeError(`persist ${type}: no path`);
  }
  return types;
}

/** The ops the spawner's child runs: before the pid-namespace clone, and in the process that execs. */
function opsOf(
  options: NewNamespaceOptions,
  types: NamespaceType[],
): { pre: SpawnOp[]; post: SpawnOp[] } {
  const flag = (type: NamespaceType) => NAMESPACE_TABLE.find((ns) => ns.type === type)!.flag;
  const pre: SpawnOp[] = [];
  const post: SpawnOp[] = [];
  const others = types.filter((t) => t !== "mnt").reduce((bits, t) => bits | flag(t), 0);
  if (others) pre.push({ op: "unshare", flags: others });
  if (options.mapRootUser) {
    pre.push(
      { op: "write", path: "/proc/self/setgroups", data: "deny" },
      { op: "write", path: "/proc/self/uid_map", data: `0 ${geteuid()} 1` },
      { op: "write", path: "/proc/self/gid_map", data: `0 ${getegid()} 1` },
    );
  }
  if (options.boottime !== undefined || options.monotonic !== undefined) {
    const offsets = [
      ...(options.monotonic !== undefined ? [`monotonic ${Math.trunc(options.monotonic)} 0`] : []),
      ...(options.boottime !== undefined ? [`boottime ${Math.trunc(options.boottime)} 0`] : []),
    ];
    pre.push({ op: "write", path: "/proc/self/timens_offsets", data: offsets.join("\n") + "\n" });
  }
  // After the pid-namespace clone (a pid namespace exists only once it has its pid 1), and
  // still in the caller's mount namespace, so that the bind mounts are visible outside.
  const forked = types.includes("pid");
  for (const [type, path] of Object.entries(options.persist ?? {})) {
    post.push({
      op: "mount",
      source: ownFile(type as NamespaceType, forked),
      target: path,
      fstype: null,
      flags: MS_BIND,
    });
  }
  if (types.includes("mnt")) {
    post.push(
      { op: "unshare", flags: flag("mnt") },
      // As unshare(1): nothing mounted inside propagates out.
      { op: "mount", source: "none", target: "/", fstype: null, flags: MS_REC | MS_PRIVATE },
    );
  }
  if (options.hostname !== undefined) post.push({ op: "sethostname", name: options.hostname });
  if (options.mountProc) {
    post.push(
      { op: "mount", source: "none", target: "/proc", fstype: null, flags: MS_REC | MS_PRIVATE },
      {
        op: "mount",
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: MS_NOSUID | MS_NODEV | MS_NOEXEC,
      },
    );
  }
  return { pre, post };
}

/**
 * Starts a command in new namespaces and returns a handle to it, as
 * {@linkcode spawnInNamespace} does for existing ones. With `pid`, the
 * command is pid 1 of the new pid namespace.
 *
 * @param options The namespaces to create, how, and the command.
 * @returns The running command.
 * @throws {NamespaceError} when a namespace cannot be created, or the program cannot be run
 * @throws {TypeError} for options that do not fit together
 *
 * @example A throwaway network namespace with only a loopback interface
 * ```ts ignore
 * import { spawnInNewNamespaces } from "./mod.ts";
 * const child = spawnInNewNamespaces({ namespaces: ["net"], command: ["ip", "-br", "link"] });
 * console.log((await child.status).code);
 * ```
 */
export function spawnInNewNamespaces(options: NewNamespaceOptions): NamespaceProcess {
  bindAll(); // a library is called again and again: fast FFI calls (ffi/_libc.ts)
  return spawnNewWith(options, {});
}

/** @internal The CLI's entry: as {@linkcode spawnInNewNamespaces}, with internals. */
export function spawnNewWith(
  options: NewNamespaceOptions,
  internals: SpawnInternals,
): NamespaceProcess {
  const types = typesOf(options);
  const created: string[] = [];
  for (const path of Object.values(options.persist ?? {})) {
    // The bind mount needs a file to mount onto.
    try {
      Deno.lstatSync(path);
    } catch {
      try {
        Deno.openSync(path, { create: true, write: true }).close();
      } catch (error) {
        throw new TypeError(
          `Cannot create ${path} to persist onto: ${
            String((error as Error).message).split(" (os error")[0]
          }`,
        );
      }
      created.push(path);
    }
  }
  const { pre, post } = opsOf(options, types);
  const undo = () => {
    // Nothing half-done: binds this call made go again, and so do the files it made for them.
    for (const path of Object.values(options.persist ?? {})) unmountLazily(path);
    for (const path of created) Deno.removeSync(path);
  };
  const {
    namespaces: _,
    hostname: _h,
    mountProc: _m,
    mapRootUser: _u,
    persist: _p,
    boottime: _b,
    monotonic: _t,
    ...command
  } = options;
  try {
    return spawnPlanned(command, {
      preOps: pre,
      postOps: post,
      fork: types.includes("pid"),
      shareMemory: !types.includes("time"),
    }, internals);
  } catch (error) {
    undo();
    throw error;
  }
}

/**
 * Runs a command in new namespaces and collects its output, with the same
 * result as {@linkcode execInNamespace}.
 *
 * @param options The namespaces to create, how, and the command.
 * @returns The exit status and what the command wrote.
 * @throws {NamespaceError} when a namespace cannot be created, or the program cannot be run
 * @throws {TypeError} for options that do not fit together
 *
 * @example The hostname inside a new UTS namespace
 * ```ts ignore
 * import { execInNewNamespaces } from "./mod.ts";
 * const out = await execInNewNamespaces({ namespaces: ["uts"], hostname: "sandbox", command: ["hostname"] });
 * console.log(new TextDecoder().decode(out.stdout)); // "sandbox"
 * ```
 */
export async function execInNewNamespaces(options: NewNamespaceOptions): Promise<NamespaceOutput> {
  return await spawnInNewNamespaces({ stdout: "piped", stderr: "piped", ...options }).output();
}
