/**
 * The one FFI symbol table, and how libc is reached. Nothing is opened at
 * import time.
 *
 * Two ways to bind, measured for issue 7:
 * - One by one, on first use (the default, for the CLI): dlsym(3) finds the
 *   function in the process (Deno links glibc) and a `Deno.UnsafeFnPointer`
 *   wraps it, about 0.02 ms each. A call then costs 3 to 9 µs.
 * - All at once, with {@linkcode bindAll} (the library's first call does it):
 *   one `Deno.dlopen` of the table compiles a fast-call trampoline per symbol,
 *   about 0.14 ms each, 5 to 6 ms in all, a quarter of Deno's own start-up.
 *   Calls then cost under 1 µs: with a few dozen per spawn, 64 commands at
 *   once ran 11% faster.
 *
 * Rules that every entry follows (see ../shared/notes/platform-facts.md):
 * - Nothing that changes a namespace or credential goes through here: that
 *   happens only in the spawner's child (ffi/spawner/).
 * - `nonblocking: true` entries run on Deno's pool threads; only calls that do
 *   not care which thread runs them (ppoll, wait4) may be nonblocking, and their
 *   errno cannot be read.
 *
 * @module
 */

const SYMBOLS = {
  // int open(const char *path, int flags, ...)
  open: { parameters: ["buffer", "i32"], result: "i32" },
  // int close(int fd)
  close: { parameters: ["i32"], result: "i32" },
  // int pipe2(int fds[2], int flags)
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  // int fcntl(int fd, int cmd, int arg)
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // ssize_t read(int fd, void *buf, size_t count)
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // ssize_t write(int fd, const void *buf, size_t count)
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo, const sigset_t *mask),
  // on a pool thread: src/poller.ts
  ppoll_async: {
    name: "ppoll",
    parameters: ["buffer", "u64", "pointer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  // int eventfd(unsigned int initval, int flags)
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  // ssize_t readlink(const char *path, char *buf, size_t size)
  readlink: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  // pid_t wait4(pid_t pid, int *status, int options, struct rusage *rusage)
  wait4: { parameters: ["i32", "buffer", "i32", "pointer"], result: "i32" },
  // the same, on a pool thread: waiting must not block the event loop
  wait4_async: {
    name: "wait4",
    parameters: ["i32", "buffer", "i32", "pointer"],
    result: "i32",
    nonblocking: true,
  },
  // int ioctl(int fd, unsigned long request, void *arg)
  ioctl_ptr: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
  // int ioctl(int fd, unsigned long request, int arg)
  ioctl_int: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  // int kill(pid_t pid, int sig)
  kill: { parameters: ["i32", "i32"], result: "i32" },
  // long syscall(long number, ...): openat2(dirfd, path, struct open_how *, size) has no glibc wrapper
  syscall_openat2: {
    name: "syscall",
    parameters: ["i64", "i64", "buffer", "buffer", "i64"],
    result: "i64",
  },
  // int statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *buf)
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  // int umount2(const char *target, int flags)
  umount2: { parameters: ["buffer", "i32"], result: "i32" },
  // long syscall(long number, ...): pidfd_open and pidfd_send_signal, which glibc wraps only since 2.36
  syscall3: { name: "syscall", parameters: ["i64", "i64", "i64", "i64"], result: "i64" },
  syscall5: { name: "syscall", parameters: ["i64", "i64", "i64", "i64", "i64"], result: "i64" },
  // int sigaction(int sig, const struct sigaction *act, struct sigaction *oldact)
  sigaction: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // sighandler_t signal(int sig, sighandler_t handler)
  signal: { parameters: ["i32", "pointer"], result: "pointer" },
  // int prctl(int option, unsigned long arg2, ...)
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  // pid_t getpid(void)
  getpid: { parameters: [], result: "i32" },
  // uid_t geteuid(void)
  geteuid: { parameters: [], result: "u32" },
  // gid_t getegid(void)
  getegid: { parameters: [], result: "u32" },
  // void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  // int mprotect(void *addr, size_t length, int prot)
  mprotect: { parameters: ["pointer", "usize", "i32"], result: "i32" },
  // int munmap(void *addr, size_t length)
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  // int *__errno_location(void)
  __errno_location: { parameters: [], result: "pointer" },
  // const char *strerrorname_np(int errnum), glibc 2.32+: "ENOENT"
  strerrorname_np: { parameters: ["i32"], result: "pointer" },
  // char *strerror(int errnum): "No such file or directory"
  strerror: { parameters: ["i32"], result: "pointer" },
  // const char *sigabbrev_np(int sig), glibc 2.32+: "TERM"
  sigabbrev_np: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

type Symbols = typeof SYMBOLS;

/** The symbols, as callable functions. */
export type Libc = Deno.DynamicLibrary<Symbols>["symbols"];

/**
 * Where dlsym(3) is: libdl.so.2 has it on every glibc (since 2.34 it is a stub
 * that leads to libc.so.6). RTLD_DEFAULT (NULL) looks in the whole process,
 * whose C library is the one Deno itself runs on.
 */
const DLSYM_LIBRARY = "libdl.so.2";

let loaded: Libc | undefined;
let allBound = false;

/**
 * Binds every symbol through one `Deno.dlopen` of libc, for fast calls from
 * now on (see above). Idempotent.
 *
 * @throws {Error} where libc cannot be loaded
 */
export function bindAll(): void {
  if (allBound) return;
  const table = libc() as unknown as Record<string, unknown>;
  let fast;
  try {
    fast = Deno.dlopen("libc.so.6", SYMBOLS).symbols as unknown as Record<string, unknown>;
  } catch (cause) {
    throw new Error(`Cannot load libc.so.6 (ns-tool needs glibc 2.32+): ${cause}`, { cause });
  }
  for (const key of Object.keys(SYMBOLS)) {
    Object.defineProperty(table, key, { value: fast[key], enumerable: true });
  }
  allBound = true;
}

/**
 * The libc symbols; each is bound on first use, unless {@linkcode bindAll}
 * bound them all.
 *
 * @throws {Error} where libc cannot be reached (not Linux, not glibc, no --allow-ffi)
 */
export function libc(): Libc {
  if (loaded) return loaded;
  if (Deno.build.os !== "linux") {
    throw new Error(`ns-tool works on Linux only, not on ${Deno.build.os}`);
  }
  let dlsym;
  try {
    dlsym = Deno.dlopen(DLSYM_LIBRARY, {
      // void *dlsym(void *handle, const char *symbol)
      dlsym: { parameters: ["pointer", "buffer"], result: "pointer" },
    }).symbols.dlsym;
  } catch (cause) {
    throw new Error(
      `Cannot load ${DLSYM_LIBRARY} (ns-tool needs glibc 2.32+ and --allow-ffi): ${cause}`,
      {
        cause,
      },
    );
  }
  const table = {} as Record<string, unknown>;
  for (const [key, definition] of Object.entries(SYMBOLS)) {
    const name = "name" in definition ? definition.name : key;
    Object.defineProperty(table, key, {
      configurable: true,
      enumerable: true,
      get() {
        const address = dlsym(null, new TextEncoder().encode(`${name}\0`));
        if (address === null) {
          throw new Error(`The C library has no ${name} (ns-tool needs glibc 2.32+)`);
        }
        const fn = new Deno.UnsafeFnPointer(
          address as Deno.PointerObject<Deno.ForeignFunction>,
          definition as Deno.ForeignFunction,
        );
        const call = (...args: unknown[]) => (fn.call as (...args: unknown[]) => unknown)(...args);
        // From now on a plain property: the lookup is paid once.
        Object.defineProperty(table, key, { value: call, enumerable: true, configurable: true });
        return call;
      },
    });
  }
  loaded = table as Libc;
  return loaded;
}

/** errno after the last failing call; read it in the same synchronous stretch. */
export function errno(): number {
  // The location is this thread's; JavaScript here runs on one thread (a Worker has a module
  // instance, and so a view, of its own).
  errnoView ??= new Deno.UnsafePointerView(libc().__errno_location()!);
  return errnoView.getInt32();
}
let errnoView: Deno.UnsafePointerView | undefined;

function cText(pointer: Deno.PointerValue): string | null {
  return pointer ? Deno.UnsafePointerView.getCString(pointer) : null;
}

/** The symbolic name of a positive errno value, such as `"ENOENT"` (glibc's strerrorname_np). */
export function errnoName(errno: number): string {
  return cText(libc().strerrorname_np(errno)) ?? `E${errno}`;
}

/** glibc's text for a positive errno value, such as "No such file or directory". */
export function errnoMessage(errno: number): string {
  return cText(libc().strerror(errno)) ?? `Unknown error ${errno}`;
}

/** The name of a signal number, such as `"SIGTERM"`, or null (real-time signals). */
export function signalName(signal: number): string | null {
  const abbrev = cText(libc().sigabbrev_np(signal));
  return abbrev ? `SIG${abbrev}` : null;
}
