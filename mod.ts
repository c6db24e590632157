/**
 * ns-tool: enter the namespaces of a running Linux process and run a command
 * there, as `nsenter`, `docker exec` and `kubectl exec` do, from Deno.
 *
 * The calling process never changes namespace: a small native child, started
 * with `clone(2)`, joins the target's namespaces and calls `execve(2)`, so the
 * caller's threads, Workers, file operations and `Deno.Command` are untouched.
 * Needs Linux with glibc, `--allow-ffi`, and usually root.
 *
 * @example Run a command in a container's network namespace
 * ```ts ignore
 * import { execInNamespace } from "@ns-tool/ns-tool";
 *
 * const out = await execInNamespace({ pid: 1234, namespaces: ["net"], command: ["ip", "-br", "link"] });
 * console.log(out.success, new TextDecoder().decode(out.stdout));
 * ```
 *
 * @module
 */
export {
  execInNamespace,
  type NamespaceCommandOptions,
  type NamespaceOutput,
  NamespaceProcess,
  type NamespaceStatus,
  spawnInNamespace,
  type StdioMode,
} from "./src/exec.ts";
export { NamespaceError, type NamespaceErrorDetails } from "./src/errors.ts";
export { listNamespaces, type NamespaceRecord } from "./src/inspect.ts";
export {
  execInNewNamespaces,
  type NewNamespaceOptions,
  spawnInNewNamespaces,
} from "./src/create.ts";
export {
  DEFAULT_NAMESPACES,
  NAMESPACE_TABLE,
  NAMESPACE_TYPES,
  type NamespaceInfo,
  type NamespaceType,
} from "./src/namespaces.ts";
