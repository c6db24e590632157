/**
 * Thin wrappers, one per C call, over the symbol table in `_libc.ts`.
 *
 * Convention (the kernel's): a wrapper returns its result, or a negative
 * errno, read in the same synchronous stretch as the failing call. Callers
 * that want an exception pass the result through {@linkcode check}, which
 * makes the typed {@linkcode NamespaceError}.
 *
 * @module
 */
import { errno, libc } from "./_libc.ts";
import { NamespaceError, type NamespaceErrorDetails } from "../src/errors.ts";

export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_NOCTTY = 0o400;
/** O_DIRECTORY differs: 040000 on aarch64, 0200000 on x86_64. */
export const O_DIRECTORY = Deno.build.arch === "aarch64" ? 0o40000 : 0o200000;
export const O_CLOEXEC = 0o2000000;
export const O_PATH = 0o10000000;
export const WNOHANG = 1;
export const WUNTRACED = 2;
export const WCONTINUED = 8;
export const EINTR = 4;
export const EAGAIN = 11;
export const ECHILD = 10;

const F_DUPFD_CLOEXEC = 1030;
const SYS_PIDFD_SEND_SIGNAL = 424; // the same number on x86_64 and aarch64
const SYS_PIDFD_OPEN = 434;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A NUL-terminated copy of `text`, sized by its UTF-8 bytes. */
export function cString(text: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(text);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** The chunks as one array. */
export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((size, chunk) => size + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

function result(rc: number): number {
  return rc < 0 ? -errno() : rc;
}

function bigResult(rc: bigint): number {
  return rc < 0n ? -errno() : Number(rc);
}

/**
 * Returns `rc` when it is not negative, else throws the typed error for `-rc`.
 *
 * @throws {NamespaceError}
 */
export function check(rc: number, details: NamespaceErrorDetails): number {
  if (rc < 0) throw new NamespaceError(-rc, details);
  return rc;
}

/** open(2). Always add O_CLOEXEC: anything else leaks into the command. */
export function open(path: string, flags: number): number {
  return result(libc().open(cString(path), flags | O_CLOEXEC));
}

/** close(2). */
export function close(fd: number): number {
  return result(libc().close(fd));
}

/** pipe2(2) with O_CLOEXEC; returns `[readEnd, writeEnd]` or a negative errno. */
export function pipe(): [number, number] | number {
  const fds = new Int32Array(2);
  const rc = result(libc().pipe2(fds, O_CLOEXEC));
  return rc < 0 ? rc : [fds[0]!, fds[1]!];
}

/** fcntl(fd, F_DUPFD_CLOEXEC, min): a close-on-exec copy of `fd` numbered `min` or above. */
export function dupAtLeast(fd: number, min: number): number {
  return result(libc().fcntl(fd, F_DUPFD_CLOEXEC, min));
}

/** readlink(2); the link text, or a negative errno. */
export function readlink(path: string): string | number {
  const buf = new Uint8Array(4096);
  const n = result(Number(libc().readlink(cString(path), buf, BigInt(buf.length))));
  return n < 0 ? n : decoder.decode(buf.subarray(0, n));
}

const TIOCSWINSZ = 0x5414;
const TIOCSPTLCK = 0x40045431;
const TIOCGPTPEER = 0x5441;

const SYS_OPENAT2 = 437; // the same number on x86_64 and aarch64
const RESOLVE_NO_MAGICLINKS = 0x02;
const RESOLVE_IN_ROOT = 0x10;
const AT_EMPTY_PATH = 0x1000;
const STATX_TYPE = 1;
const O_NONBLOCK = 0o4000;
const F_GETFL = 3;
const F_SETFL = 4;

/**
 * openat2(2) with RESOLVE_IN_ROOT: `path` resolved as if `rootFd` were "/",
 * so no symlink or ".." leads out of it, and no /proc magic link is followed.
 */
export function openInRoot(rootFd: number, path: string, flags: number): number {
  // struct open_how { u64 flags; u64 mode; u64 resolve; }
  const how = new BigUint64Array([
    BigInt(flags | O_CLOEXEC),
    0n,
    BigInt(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS),
  ]);
  return bigResult(
    libc().syscall_openat2(
      BigInt(SYS_OPENAT2),
      BigInt(rootFd),
      cString(path),
      new Uint8Array(how.buffer),
      24n,
    ),
  );
}

/** The file type bits and device number of an open descriptor (statx(2)); or a negative errno. */
export function fileType(fd: number): { mode: number; major: number; minor: number } | number {
  const buf = new Uint8Array(256); // struct statx
  const rc = result(libc().statx(fd, new Uint8Array(1), AT_EMPTY_PATH, STATX_TYPE, buf));
  if (rc < 0) return rc;
  const view = new DataView(buf.buffer);
  // stx_mode at 28 (u16), stx_rdev_major at 128, stx_rdev_minor at 132 (u32)
  return {
    mode: view.getUint16(28, true),
    major: view.getUint32(128, true),
    minor: view.getUint32(132, true),
  };
}

/**
 * A pseudo-terminal from a pty multiplexer: `[master, slave]`, both
 * close-on-exec, the slave opened with TIOCGPTPEER (no path lookup); or a
 * negative errno. `ptmx` is an O_PATH descriptor of the multiplexer: it must
 * be the ptmx character device (5:2), and it is reopened without blocking, so
 * a file or a FIFO put there by a container is never opened for real.
 */
export function openPty(ptmx: number): [number, number] | number {
  const type = fileType(ptmx);
  if (typeof type === "number") return type;
  if ((type.mode & 0o170000) !== 0o020000 || type.major !== 5 || type.minor !== 2) return -19; // ENODEV
  const master = open(`/proc/self/fd/${ptmx}`, O_RDWR | O_NOCTTY | O_NONBLOCK);
  if (master < 0) return master;
  // The master stays non-blocking: src/poller.ts tells when to read and write it.
  const unlock = result(libc().ioctl_ptr(master, BigInt(TIOCSPTLCK), new Int32Array([0])));
  const slave = unlock < 0
    ? unlock
    : result(libc().ioctl_int(master, BigInt(TIOCGPTPEER), BigInt(O_RDWR | O_NOCTTY | O_CLOEXEC)));
  if (slave < 0) {
    close(master);
    return slave;
  }
  return [master, slave];
}

/** umount2(2) with MNT_DETACH. */
export function unmountLazily(path: string): number {
  return result(libc().umount2(cString(path), 2 /* MNT_DETACH */));
}

/** ioctl(TIOCSWINSZ): the terminal's size in rows and columns. */
export function setWindowSize(fd: number, columns: number, rows: number): number {
  return result(libc().ioctl_ptr(fd, BigInt(TIOCSWINSZ), new Uint16Array([rows, columns, 0, 0])));
}

/** A whole small text file (/proc/PID/environ, /proc/PID/cgroup, /proc/PID/stat), read with open(2) and read(2); or a negative errno. */
export function readText(path: string): string | number {
  const fd = open(path, O_RDONLY);
  if (fd < 0) return fd;
  const chunks: Uint8Array[] = [];
  try {
    for (;;) {
      const buf = new Uint8Array(65536);
      const n = read(fd, buf);
      if (n === -EINTR) continue;
      if (n < 0) return n;
      if (n === 0) break;
      chunks.push(buf.subarray(0, n));
    }
  } finally {
    close(fd);
  }
  return decoder.decode(concat(chunks));
}

/** read(2); on a non-blocking descriptor -EAGAIN says nothing is there yet. */
export function read(fd: number, buf: Uint8Array<ArrayBuffer>): number {
  return result(Number(libc().read(fd, buf, BigInt(buf.length))));
}

/** write(2); on a non-blocking descriptor -EAGAIN says there is no room yet. */
export function write(fd: number, buf: Uint8Array<ArrayBuffer>): number {
  return result(Number(libc().write(fd, buf, BigInt(buf.length))));
}

/** fcntl(F_SETFL): makes reads and writes of `fd`'s open file description non-blocking. */
export function setNonBlocking(fd: number): number {
  const flags = result(libc().fcntl(fd, F_GETFL, 0));
  return flags < 0 ? flags : result(libc().fcntl(fd, F_SETFL, flags | O_NONBLOCK));
}

const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;

/** eventfd(2), non-blocking and close-on-exec. */
export function eventFd(): number {
  return result(libc().eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
}

export const POLLIN = 0x1;
export const POLLOUT = 0x4;

/**
 * glibc's sigset_t for ppoll(2): every signal blocked but glibc's own SIGCANCEL
 * (32) and SIGSETXID (33). setuid() and its kin in a multithreaded process
 * signal every thread with SIGSETXID and wait for each: blocked in a poll, they
 * would wait until it returned (measured: 2.7 s; a deadlock when only JS could
 * end the poll).
 */
const POLL_MASK = (() => {
  const mask = new Uint8Array(128).fill(0xff);
  mask[3]! &= ~0x80; // signal 32: bit 31
  mask[4]! &= ~0x01; // signal 33: bit 32
  return mask;
})();

/**
 * ppoll(2) with no timeout and signals blocked but glibc's own (see
 * POLL_MASK), on a pool thread, so that no other signal interrupts it. `fds`
 * holds `count` struct pollfd {int fd; short events; short revents}; returns
 * how many are ready, or -1 (errno is lost there; EINTR after glibc's signal).
 */
export async function pollAsync(fds: Uint8Array<ArrayBuffer>, count: number): Promise<number> {
  return await libc().ppoll_async(fds, BigInt(count), null, POLL_MASK);
}

/** wait4(2) without blocking the event loop; the raw wait status, or -1. */
export async function waitAsync(pid: number, options = 0): Promise<number> {
  const status = new Int32Array(1);
  const rc = await libc().wait4_async(pid, status, options, null);
  return rc < 0 ? -1 : status[0]!;
}

/** wait4(2) with WNOHANG: the raw wait status once `pid` has ended (and is reaped), null while it runs, or a negative errno. */
export function reap(pid: number): number | null {
  const status = new Int32Array(1);
  const rc = result(libc().wait4(pid, status, WNOHANG, null));
  return rc === 0 ? null : rc < 0 ? rc : status[0]!;
}

/** wait4(2), blocking: only for a child known to be gone or going. */
export function waitSync(pid: number): number {
  const status = new Int32Array(1);
  for (;;) {
    const rc = result(libc().wait4(pid, status, 0, null));
    if (rc !== -EINTR) return rc < 0 ? rc : status[0]!;
  }
}

/** kill(2). */
export function kill(pid: number, signal: number): number {
  return result(libc().kill(pid, signal));
}

/** pidfd_open(2): a descriptor that names this very process, not a reusable pid. */
export function pidfdOpen(pid: number): number {
  return bigResult(libc().syscall3(BigInt(SYS_PIDFD_OPEN), BigInt(pid), 0n, 0n));
}

/** pidfd_send_signal(2). */
export function pidfdSendSignal(pidfd: number, signal: number): number {
  return bigResult(
    libc().syscall5(BigInt(SYS_PIDFD_SEND_SIGNAL), BigInt(pidfd), BigInt(signal), 0n, 0n),
  );
}

const PR_GET_DUMPABLE = 3;
const PR_SET_DUMPABLE = 4;

/** prctl(PR_GET_DUMPABLE): 1 (dumpable), 0, or 2; or a negative errno. */
export function getDumpable(): number {
  return result(libc().prctl(PR_GET_DUMPABLE, 0n, 0n, 0n, 0n));
}

/** prctl(PR_SET_DUMPABLE, value). */
export function setDumpable(value: number): number {
  return result(libc().prctl(PR_SET_DUMPABLE, BigInt(value), 0n, 0n, 0n));
}

/** getpid(2). */
export function getpid(): number {
  return libc().getpid();
}

/** geteuid(2). */
export function geteuid(): number {
  return libc().geteuid();
}

/** getegid(2). */
export function getegid(): number {
  return libc().getegid();
}

/**
 * Dies of `signal` as the command did: default action back, then kill(2) on
 * ourselves. Returns only if the signal does not end the process.
 */
export function raiseDefault(signal: number): void {
  libc().signal(signal, null); // SIG_DFL is 0
  libc().kill(libc().getpid(), signal);
}

const SA_RESTART = 0x10000000;
const SA_SIGINFO = 4;
/** glibc's struct sigaction on x86_64 and aarch64: handler, 128-byte mask, int flags, restorer. */
const SIGACTION_SIZE = 152;
const SIGACTION_FLAGS = 136;

/** sigaction(2): run `handler(sig, info, context)` (a native function) on `signal`, with SA_SIGINFO and SA_RESTART. */
export function setHandler(signal: number, handler: Deno.PointerObject): number {
  const act = new Uint8Array(SIGACTION_SIZE);
  const view = new DataView(act.buffer);
  view.setBigUint64(0, Deno.UnsafePointer.value(handler), true);
  view.setInt32(SIGACTION_FLAGS, SA_RESTART | SA_SIGINFO, true);
  return result(libc().sigaction(signal, act, null));
}

export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_ANONYMOUS = 0x20;

/** mmap(2) of anonymous memory; the address, or a negative errno. */
export function mapAnonymous(
  size: number,
  prot: number,
  flags: number,
): Deno.PointerObject | number {
  const address = libc().mmap(null, BigInt(size), prot, flags | MAP_ANONYMOUS, -1, 0n);
  // MAP_FAILED is (void *)-1
  if (address === null || Deno.UnsafePointer.value(address) === 0xffffffffffffffffn) {
    return -errno();
  }
  return address;
}

/** mprotect(2). */
export function protect(address: Deno.PointerObject, size: number, prot: number): number {
  return result(libc().mprotect(address, BigInt(size), prot));
}

/** munmap(2). */
export function unmap(address: Deno.PointerObject, size: number): number {
  return result(libc().munmap(address, BigInt(size)));
}
