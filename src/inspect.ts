/**
 * See which namespaces a process is in.
 *
 * @module
 */
import { NamespaceError } from "./errors.ts";
import { NAMESPACE_TABLE, type NamespaceType } from "./namespaces.ts";
import { readlink } from "../ffi/syscalls.ts";

/** One namespace of a process, as {@linkcode listNamespaces} reports it. */
export interface NamespaceRecord {
  /** The namespace type. */
  type: NamespaceType;
  /** The namespace's inode number: equal inodes, same namespace. */
  inode: number;
  /** The link text of /proc/PID/ns/TYPE, such as `"net:[4026532316]"`. */
  link: string;
  /** Whether the caller is in the same namespace of this type. */
  sameAsCaller: boolean;
}

/**
 * The namespaces of a process, in table order; types the kernel lacks are
 * left out.
 *
 * @param pid The process; default: the caller.
 * @returns One record per namespace type.
 * @throws {NamespaceError} when the process does not exist or may not be inspected
 *
 * @example Is a process in its own network namespace?
 * ```ts ignore
 * import { listNamespaces } from "./mod.ts";
 * const net = listNamespaces(1234).find((ns) => ns.type === "net");
 * console.log(net?.sameAsCaller ? "shares ours" : `its own: ${net?.link}`);
 * ```
 */
export function listNamespaces(pid?: number): NamespaceRecord[] {
  if (pid !== undefined && (!Number.isSafeInteger(pid) || pid <= 0)) {
    throw new RangeError(`Invalid pid ${pid}: must be a positive integer`);
  }
  const records: NamespaceRecord[] = [];
  for (const { type } of NAMESPACE_TABLE) {
    const mine = readlink(`/proc/self/ns/${type}`);
    if (typeof mine === "number") continue; // the kernel lacks this type
    const path = `/proc/${pid ?? "self"}/ns/${type}`;
    const link = pid === undefined ? mine : readlink(path);
    if (typeof link === "number") {
      throw new NamespaceError(-link, {
        syscall: "readlink",
        action: `Failed to open namespace ${path}`,
        path,
        nsType: type,
        ...(pid !== undefined ? { pid } : {}),
        ...(-link === 13 || -link === 1
          ? { hint: "inspecting another user's process needs root" }
          : {}),
      });
    }
    const inode = Number(/\[(\d+)\]/.exec(link)?.[1] ?? NaN);
    records.push({ type, inode, link, sameAsCaller: link === mine });
  }
  return records;
}
