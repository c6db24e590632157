/**
 * The one place where an errno becomes a typed error.
 *
 * @module
 */
import { errnoMessage, errnoName } from "../ffi/_libc.ts";
import type { NamespaceType } from "./namespaces.ts";

/** What {@linkcode NamespaceError} carries besides the errno. */
export interface NamespaceErrorDetails {
  /** The system call that failed, such as `"open"`, `"setns"` or `"execve"`. */
  syscall: string;
  /** What was being done, as the message starts: `"Failed to open namespace /proc/1/ns/uts"`. */
  action: string;
  /** The file involved, if any: a namespace file or the program. */
  path?: string;
  /** The namespace type involved, if any. */
  nsType?: NamespaceType;
  /** The target process, if any. */
  pid?: number;
  /** A hint appended to the message in parentheses. */
  hint?: string;
}

/**
 * A namespace operation (opening a namespace, joining it, setting credentials
 * or starting the command) failed with a system error.
 *
 * The message reads `"<action>: <CODE>: <system text>"`, for example
 * `"Failed to open namespace /proc/999999/ns/uts: ENOENT: No such file or directory"`.
 *
 * @example Telling a missing process from a refused join
 * ```ts ignore
 * import { execInNamespace, NamespaceError } from "./mod.ts";
 * try {
 *   await execInNamespace({ pid: 999999, command: ["true"] });
 * } catch (error) {
 *   if (error instanceof NamespaceError && error.code === "ENOENT") {
 *     console.log("no such process");
 *   }
 * }
 * ```
 */
export class NamespaceError extends Error {
  /** The errno name, such as `"ENOENT"` or `"EPERM"`. */
  readonly code: string;
  /** The errno number, such as 2. */
  readonly errno: number;
  /** The system call that failed. */
  readonly syscall: string;
  /** The file involved, if any. */
  readonly path: string | undefined;
  /** The namespace type involved, if any. */
  readonly nsType: NamespaceType | undefined;
  /** The target process, if any. */
  readonly pid: number | undefined;

  /**
   * Makes the error from a positive errno value.
   *
   * @param errno The errno value, such as 2 for ENOENT.
   * @param details What failed.
   */
  constructor(errno: number, details: NamespaceErrorDetails) {
    const code = errnoName(errno);
    const hint = details.hint ? ` (${details.hint})` : "";
    super(`${details.action}: ${code}: ${errnoMessage(errno)}${hint}`);
    this.name = "NamespaceError";
    this.code = code;
    this.errno = errno;
    this.syscall = details.syscall;
    this.path = details.path;
    this.nsType = details.nsType;
    this.pid = details.pid;
  }
}

export { errnoMessage, errnoName };
