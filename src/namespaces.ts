/**
 * The one table of Linux namespace types. Every CLI flag, default, library
 * option and join step derives from it.
 *
 * @module
 */

/**
 * The namespace types, in the order ns-tool lists, opens and joins them.
 *
 * The order is significant: files are opened in this order (so a missing
 * process is reported on the first requested type), and joined in this order
 * too, except the user namespace, which the spawner joins in its own pass as
 * nsenter does: root joins it last (it loses its privilege over the others by
 * joining), an unprivileged owner joins it first (it gains privilege by
 * joining). `time` is last because joining it needs a single-threaded process
 * (the spawner then forks instead of sharing memory).
 */
export const NAMESPACE_TABLE = [
  { type: "uts", flag: 0x04000000, label: "hostname and NIS domain name" },
  { type: "ipc", flag: 0x08000000, label: "System V IPC and POSIX message queues" },
  { type: "net", flag: 0x40000000, label: "network devices, addresses, ports, routes" },
  { type: "mnt", flag: 0x00020000, label: "mount points" },
  { type: "pid", flag: 0x20000000, label: "process IDs" },
  { type: "cgroup", flag: 0x02000000, label: "cgroup root directory" },
  { type: "user", flag: 0x10000000, label: "user and group IDs" },
  { type: "time", flag: 0x00000080, label: "boot and monotonic clocks" },
] as const;

/** One row of {@linkcode NAMESPACE_TABLE}. */
export type NamespaceInfo = typeof NAMESPACE_TABLE[number];

/** A namespace type name, such as `"net"` or `"mnt"`. */
export type NamespaceType = NamespaceInfo["type"];

/** All namespace type names, in table order. */
export const NAMESPACE_TYPES: readonly NamespaceType[] = NAMESPACE_TABLE.map((ns) => ns.type);

/** The types joined when none are given: pid is left out because it needs a new process. */
export const DEFAULT_NAMESPACES: readonly NamespaceType[] = ["uts", "ipc", "net", "mnt"];

/** Whether `value` names a namespace type. */
export function isNamespaceType(value: string): value is NamespaceType {
  return (NAMESPACE_TYPES as readonly string[]).includes(value);
}

/** The table row of a namespace type. */
export function namespaceInfo(type: NamespaceType): NamespaceInfo {
  return NAMESPACE_TABLE.find((ns) => ns.type === type)!;
}

/**
 * Checks a list of namespace types and puts it in table order without
 * repeats.
 *
 * @throws {RangeError} for an unknown type or an empty list
 */
export function normalizeNamespaces(types: Iterable<string>): NamespaceType[] {
  const wanted = new Set<string>();
  for (const raw of types) {
    const type = raw.trim();
    if (!isNamespaceType(type)) {
      throw new RangeError(
        `Unknown namespace type '${type}' (valid: ${NAMESPACE_TYPES.join(", ")})`,
      );
    }
    wanted.add(type);
  }
  if (wanted.size === 0) throw new RangeError("No namespace type given");
  return NAMESPACE_TYPES.filter((type) => wanted.has(type));
}
