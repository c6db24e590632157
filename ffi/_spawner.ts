/**
 * The TypeScript half of the spawner (ffi/spawner/*.S): loads the machine
 * code, lays out the block it reads, calls it, and reads back what failed.
 *
 * The calling thread never changes a namespace: the native child joins them.
 * The block is MAP_SHARED so that a child which does not share our memory
 * (fork mode, needed to join a time namespace) can still report back, and it
 * holds every string and array the child reads, and the child's stacks, so the
 * child touches no memory but the block and the code page.
 *
 * @module
 */
import { SPAWNER_CODE } from "./_spawner_code.ts";
import {
  getDumpable,
  MAP_PRIVATE,
  MAP_SHARED,
  mapAnonymous,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
  protect,
  setDumpable,
  unmap,
  waitSync,
} from "./syscalls.ts";

// Block layout: byte offsets, as in the .equ lines of ffi/spawner/*.S.
const CLONE_FLAGS = 0;
const STATUS = 8;
const ERRNO = 16;
const DETAIL = 24;
const GRANDCHILD = 32;
const FLAGS = 40;
const GID = 48;
const UID = 56;
const ROOT_FD = 64;
const CWD_FD = 72;
const CWD_PATH = 80;
const NSTEPS = 88;
const STEPS = 96;
const NMAPS = 104;
const MAPS = 112;
const PATHS = 120;
const ARGV = 128;
const ENVP = 136;
const STACK1 = 144;
const STACK2 = 152;
const MASK_ALL = 160;
const MASK_NONE = 176;
const DOT = 216;
const ZERO = 218;
const PIDFD_FD = 224;
const PIDFD_MASK = 232;
const CGROUP_FD = 240;
const PRE_OPS = 248;
const POST_OPS = 264;
const HEADER = 512; // the last field, POST_OPS, ends at 280
const STACK_SIZE = 16 * 1024;

// FLAGS bits.
const F_FORK = 1;
const F_SETGROUPS = 2;
const F_SETGID = 4;
const F_SETUID = 8;
const F_CHROOT = 16;
const F_KEEPCWD = 32;
const F_FCHDIR = 64;
const F_CHDIR = 128;
const F_SETSID = 256;
const F_CTTY = 512;
const F_CLOSEFROM = 1024;
const F_NODUMP = 2048;

const CLONE_VM = 0x100;
const CLONE_VFORK = 0x4000;
const SIGCHLD = 17;

/** The stage a failed child reports, as in ffi/spawner/*.S. */
export const Stage = {
  setns: 1,
  fork: 2,
  root: 3,
  cwd: 4,
  setsid: 5,
  ctty: 6,
  setgroups: 7,
  setgid: 8,
  setuid: 9,
  stdio: 10,
  closeFrom: 11,
  exec: 12,
  cgroup: 13,
  op: 14,
} as const;

/** A stage name, such as `"setns"`. */
export type StageName = keyof typeof Stage;

/** Everything the native child does, in its order. */
export interface SpawnPlan {
  /**
   * Namespaces to join: `[fd, CLONE_NEW* flag]`. Entry 0 is the user
   * namespace (fd -1 when not joined); it gets its own pass, as in nsenter.
   */
  steps: readonly (readonly [number, number])[];
  /**
   * Join these namespaces (CLONE_NEW* mask) of the process behind a pidfd in
   * one setns first; when that fails, the steps are joined one by one.
   */
  pidfd?: { fd: number; mask: number };
  /** The target's cgroup.procs, open for writing: the child moves itself there first. */
  cgroupFd?: number;
  /** Ops that make new namespaces, before the pid-namespace clone (see {@linkcode SpawnOp}). */
  preOps?: readonly SpawnOp[];
  /** Ops in the process that execs, after that clone (mounting /proc in a new pid namespace). */
  postOps?: readonly SpawnOp[];
  /**
   * Make the child non-dumpable before it joins anything (default true): it
   * keeps the caller's memory and descriptors out of reach from inside a
   * target. Off when making new namespaces: nobody is inside them yet, and a
   * non-dumpable process cannot write its own /proc/self/uid_map.
   */
  noDump?: boolean;
  /** Clone once more after joining, so that the command enters the pid namespace. */
  fork: boolean;
  /**
   * Share memory with the child (CLONE_VM), as posix_spawn does. False gives
   * the child a copy of its own (a fork; its cost grows with the caller's
   * memory): only needed to join a time namespace, which the kernel refuses
   * to a process that shares its memory.
   */
  shareMemory: boolean;
  /** fchdir(rootFd); chroot("."). */
  rootFd?: number;
  /** fchdir(cwdFd), after the root. */
  cwdFd?: number;
  /** chdir(cwdPath), resolved inside, after the root. */
  cwdPath?: string;
  /** setsid() and make fd 0 the controlling terminal. */
  session?: { controllingTerminal: boolean };
  /** setgroups(0, NULL) before gid and uid; EPERM is tolerated. */
  dropGroups?: boolean;
  gid?: number;
  uid?: number;
  /** dup3(from, to): every `from` must be 3 or above, every `to` 0..2. */
  stdio: readonly (readonly [number, number])[];
  /** Close every descriptor from 3 up before execve. */
  closeFrom: boolean;
  /** Paths to try with execve, in order. */
  candidates: readonly string[];
  argv: readonly string[];
  env: readonly string[];
}

/** One op of the spawner's list (ffi/spawner/x86_64.S, run_ops). */
export type SpawnOp =
  | { op: "unshare"; flags: number }
  | { op: "write"; path: string; data: string }
  | { op: "mount"; source: string | null; target: string; fstype: string | null; flags: number }
  | { op: "sethostname"; name: string };

/** What came of a spawn. */
export type SpawnResult =
  | { ok: true; pid: number }
  | { ok: false; stage: StageName; errno: number; detail: number };

interface Loaded {
  call: (block: Deno.PointerObject) => bigint;
  /** The same, on one of Deno's pool threads: that thread waits out the vfork, this one goes on. */
  callOffThread: (block: Deno.PointerObject) => Promise<bigint>;
  /** The address of ns_forward_signal, a signal handler. */
  forwardSignal: Deno.PointerObject;
  /** The handler's data page: the pidfd signals go to (-1: none yet). */
  target: Int32Array;
  /** The handler's data page: bits of signals that came with no pidfd set. */
  pending: BigInt64Array;
  /** The handler's data page: nonzero to pass on kernel-sent signals too. */
  all: Int32Array;
  /** Blocks not in use: each spawn takes one, and gives it back when the child is done with it. */
  free: Block[];
}

/** A block: mapped once and reused, with views over it. */
interface Block {
  address: Deno.PointerObject;
  size: number;
  bytes: Uint8Array;
  words: BigInt64Array;
  /** The address as a number: user-space addresses fit in 53 bits (47 or 48 used). */
  base: number;
}

let loaded: Loaded | undefined;

const PAGE = 4096;
const encoder = new TextEncoder();

/** Base64 to bytes: Uint8Array.fromBase64 where the runtime has it (Deno 2.5+), else atob. */
function decodeBase64(text: string): Uint8Array {
  const fromBase64 = (Uint8Array as { fromBase64?: (s: string) => Uint8Array }).fromBase64;
  return fromBase64 ? fromBase64(text) : Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function load(): Loaded {
  if (loaded) return loaded;
  const code = SPAWNER_CODE[Deno.build.arch];
  if (!code) throw new Error(`ns-tool has no spawner for ${Deno.build.arch}`);
  const bytes = decodeBase64(code.image);
  // One page of code (the build checks it fits), then the handler's data page.
  const address = mapAnonymous(2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
  if (typeof address === "number") throw new Error(`Cannot map the spawner: errno ${-address}`);
  const pages = Deno.UnsafePointerView.getArrayBuffer(address, 2 * PAGE);
  new Uint8Array(pages, 0, PAGE).set(bytes);
  const target = new Int32Array(pages, PAGE, 1);
  const pending = new BigInt64Array(pages, PAGE + 8, 1);
  const all = new Int32Array(pages, PAGE + 16, 1);
  target[0] = -1;
  // W^X: the code page becomes executable only; the data page stays writable.
  if (protect(address, PAGE, PROT_READ | PROT_EXEC) < 0) {
    throw new Error("Cannot make the spawner executable");
  }
  const base = Deno.UnsafePointer.value(address);
  const at = (offset: number) => Deno.UnsafePointer.create(base + BigInt(offset))!;
  const definition = { parameters: ["pointer"], result: "i64" } as const;
  const entry = at(code.entries.ns_spawn) as Deno.PointerObject<typeof definition>;
  const fn = new Deno.UnsafeFnPointer(entry, definition);
  const offThread = new Deno.UnsafeFnPointer(entry, { ...definition, nonblocking: true });
  loaded = {
    call: (block) => fn.call(block),
    callOffThread: (block) => offThread.call(block),
    free: [],
    forwardSignal: at(code.entries.ns_forward_signal),
    target,
    pending,
    all,
  };
  return loaded;
}

/** The native signal handler that passes signals on to the command; see ffi/spawner/x86_64.S. */
export interface SignalForwarder {
  /** The handler, to install with sigaction(2). */
  handler: Deno.PointerObject;
  /** Sets the pidfd signals go to (-1: none). */
  target(pidfd: number): void;
  /**
   * Whether to pass on kernel-sent signals too (a terminal's Ctrl-C, a
   * hangup). Off by default: a command in the caller's terminal gets those
   * itself. On for a command with a pty of its own.
   */
  passAll(on: boolean): void;
  /** Takes the signals that came while no pidfd was set (and clears them). */
  takePending(): number[];
}

/** The native signal forwarder of this module instance. */
export function signalForwarder(): SignalForwarder {
  const state = load();
  return {
    handler: state.forwardSignal,
    target: (pidfd) => void Atomics.store(state.target, 0, pidfd),
    passAll: (on) => void Atomics.store(state.all, 0, on ? 1 : 0),
    takePending: () => {
      const bits = Atomics.exchange(state.pending, 0, 0n);
      const signals = [];
      for (let signal = 1; signal < 64; signal++) {
        if (bits & (1n << BigInt(signal))) signals.push(signal);
      }
      return signals;
    },
  };
}

/** Lays out a plan in the block. Addresses are numbers (see {@linkcode Block}). */
class BlockWriter {
  readonly bytes: Uint8Array;
  readonly words: BigInt64Array;
  readonly base: number;
  #offset = HEADER;

  /** `clear`: a new layout, over a zeroed header (else: reading back). */
  constructor(block: Block, clear = true) {
    this.bytes = block.bytes;
    this.words = block.words;
    this.base = block.base;
    if (clear) this.bytes.fill(0, 0, HEADER);
  }

  set(offset: number, value: number | bigint): void {
    this.words[offset / 8] = BigInt(value);
  }

  get(offset: number): number {
    return Number(this.words[offset / 8]);
  }

  /** Moves the offset to a multiple of `n`; returns it. */
  #align(n: number): number {
    this.#offset = Math.ceil(this.#offset / n) * n;
    return this.#offset;
  }

  /** Copies bytes in, 8-aligned; returns their address. */
  put(data: Uint8Array): number {
    const at = this.#align(8);
    this.bytes.set(data, at);
    this.#offset += data.length;
    return this.base + at;
  }

  /** Writes `text` as UTF-8 with a NUL, 8-aligned; returns its address. */
  putString(text: string): number {
    const at = this.#align(8);
    // ASCII, byte by byte (most strings: no view or result object per string); else encodeInto.
    let end = at;
    for (let i = 0; i < text.length; i++, end++) {
      const unit = text.charCodeAt(i);
      if (unit >= 0x80) {
        end = at + encoder.encodeInto(text, this.bytes.subarray(at)).written;
        break;
      }
      this.bytes[end] = unit;
    }
    this.bytes[end] = 0;
    this.#offset = end + 1;
    return this.base + at;
  }

  /** Copies an array of 64-bit words in; returns its address. */
  putWords(words: readonly number[]): number {
    const at = this.#align(8);
    for (let i = 0; i < words.length; i++) this.words[at / 8 + i] = BigInt(words[i]!);
    this.#offset += words.length * 8;
    return this.base + at;
  }

  /** Writes strings and a NULL-terminated array of pointers to them; returns the array's address. */
  putStrings(strings: readonly string[]): number {
    const array = this.putWords(new Array<number>(strings.length + 1).fill(0));
    const first = (array - this.base) / 8;
    strings.forEach((text, i) => this.words[first + i] = BigInt(this.putString(text)));
    return array;
  }

  /** Reserves a stack; returns its top, 16-aligned. */
  putStack(): number {
    this.#offset = this.#align(16) + STACK_SIZE;
    return this.base + this.#offset;
  }
}

function blockSize(plan: SpawnPlan): number {
  let size = HEADER + 2 * STACK_SIZE + 64;
  // An upper bound, without encoding: a UTF-16 unit is at most 3 bytes of UTF-8. Each string
  // also takes its NUL, 8-byte alignment and a pointer. (Loops, not a joined array: this runs
  // on every spawn, and the garbage showed in heap profiles.)
  const count = (s: string) => (size += s.length * 3 + 1 + 8 + 8);
  for (const list of [plan.argv, plan.env, plan.candidates]) list.forEach(count);
  count(plan.cwdPath ?? "");
  for (const op of [...(plan.preOps ?? []), ...(plan.postOps ?? [])]) {
    for (const value of Object.values(op)) if (typeof value === "string") count(value);
  }
  const ops = (plan.preOps?.length ?? 0) + (plan.postOps?.length ?? 0);
  size += (plan.steps.length * 3 + plan.stdio.length * 2 + ops * 6 + 8) * 8;
  return Math.ceil(size / 4096) * 4096;
}

/** Free blocks kept for the next spawns; more are unmapped. */
const KEEP_FREE = 8;

function takeBlock(size: number): Block {
  const { free } = load();
  const i = free.findIndex((b) => b.size >= size);
  if (i >= 0) return free.splice(i, 1)[0]!;
  const address = mapAnonymous(size, PROT_READ | PROT_WRITE, MAP_SHARED);
  if (typeof address === "number") throw new Error(`Cannot map the spawn block: errno ${-address}`);
  const buffer = Deno.UnsafePointerView.getArrayBuffer(address, size);
  return {
    address,
    size,
    bytes: new Uint8Array(buffer),
    words: new BigInt64Array(buffer),
    base: Number(Deno.UnsafePointer.value(address)),
  };
}

function giveBack(block: Block): void {
  const { free } = load();
  if (free.length < KEEP_FREE) free.push(block);
  else unmap(block.address, block.size);
}

/**
 * Spawns whose child may still hold this process's memory, and this
 * process's dumpable flag from before the first of them. The child makes the
 * memory non-dumpable (see x86_64.S, step 0); with CLONE_VM that is the
 * caller's memory too, and credential changes in the child do the same: the
 * flag is put back when the last of them is done.
 */
let inFlight = 0;
let dumpableBefore = -1;

/**
 * Starts the command as the plan says. Synchronous: when it returns, the
 * command has called execve (then `ok` with its pid, a child of this process)
 * or the native child has failed and been reaped.
 */
export function spawn(plan: SpawnPlan): SpawnResult {
  const block = begin(plan);
  return end(plan, block, () => Number(loaded!.call(block.address)));
}

/**
 * As {@linkcode spawn}, but one of Deno's pool threads waits while the child
 * joins and calls execve, so this thread can start other commands meanwhile.
 * That costs a hand-over to the pool and back: worth it only when commands
 * run side by side.
 */
export async function spawnOffThread(plan: SpawnPlan): Promise<SpawnResult> {
  const block = begin(plan);
  let pid;
  try {
    pid = Number(await loaded!.callOffThread(block.address));
  } catch (error) {
    end(plan, block, () => -1);
    throw error;
  }
  return end(plan, block, () => pid);
}

/** Takes a block and lays out the plan in it. */
function begin(plan: SpawnPlan): Block {
  const block = takeBlock(blockSize(plan));
  try {
    layOut(plan, new BlockWriter(block));
  } catch (error) {
    giveBack(block);
    throw error;
  }
  if (inFlight++ === 0) dumpableBefore = getDumpable();
  return block;
}

/** Writes the plan into the block, as ffi/spawner/*.S reads it. */
function layOut(plan: SpawnPlan, b: BlockWriter): void {
  b.set(CLONE_FLAGS, (plan.shareMemory ? CLONE_VM : 0) | CLONE_VFORK | SIGCHLD);
  let flags = (plan.fork ? F_FORK : 0) | (plan.noDump === false ? 0 : F_NODUMP);
  if (plan.dropGroups) flags |= F_SETGROUPS;
  if (plan.gid !== undefined) {
    flags |= F_SETGID;
    b.set(GID, plan.gid);
  }
  if (plan.uid !== undefined) {
    flags |= F_SETUID;
    b.set(UID, plan.uid);
  }
  if (plan.rootFd !== undefined) {
    flags |= F_CHROOT;
    b.set(ROOT_FD, plan.rootFd);
    if (plan.cwdFd === undefined && plan.cwdPath === undefined) flags |= F_KEEPCWD;
  }
  if (plan.cwdFd !== undefined) {
    flags |= F_FCHDIR;
    b.set(CWD_FD, plan.cwdFd);
  }
  if (plan.cwdPath !== undefined) {
    flags |= F_CHDIR;
    b.set(CWD_PATH, b.putString(plan.cwdPath));
  }
  if (plan.session) {
    flags |= F_SETSID;
    if (plan.session.controllingTerminal) flags |= F_CTTY;
  }
  if (plan.closeFrom) flags |= F_CLOSEFROM;
  b.set(FLAGS, flags);
  b.set(NSTEPS, plan.steps.length);
  b.set(STEPS, b.putWords(plan.steps.flatMap(([fd, flag]) => [fd, flag, 0])));
  b.set(NMAPS, plan.stdio.length);
  b.set(MAPS, b.putWords(plan.stdio.flat()));
  b.set(PATHS, b.putStrings(plan.candidates));
  b.set(ARGV, b.putStrings(plan.argv));
  b.set(ENVP, b.putStrings(plan.env));
  for (
    const [offset, ops] of [[PRE_OPS, plan.preOps ?? []], [POST_OPS, plan.postOps ?? []]] as const
  ) {
    const words = ops.flatMap((op): number[] => {
      const text = (value: string | null) => (value === null ? 0 : b.putString(value));
      switch (op.op) {
        case "unshare":
          return [1, op.flags, 0, 0, 0, 0];
        case "write": {
          const data = encoder.encode(op.data);
          return [2, text(op.path), b.put(data), data.length, 0, 0];
        }
        case "mount":
          return [3, text(op.source), text(op.target), text(op.fstype), op.flags, 0];
        case "sethostname": {
          const name = encoder.encode(op.name);
          return [4, b.put(name), name.length, 0, 0, 0];
        }
      }
    });
    b.set(offset, ops.length);
    b.set(offset + 8, b.putWords(words));
  }
  b.set(STACK1, b.putStack());
  b.set(STACK2, b.putStack());
  b.set(MASK_ALL, -1n);
  b.set(MASK_NONE, 0);
  b.bytes.set([0x2e, 0], DOT); // "."
  b.bytes.set([0x30, 0], ZERO); // "0", written to cgroup.procs
  b.set(PIDFD_FD, plan.pidfd?.fd ?? -1); // fd 0 is a valid descriptor: -1 means none
  b.set(PIDFD_MASK, plan.pidfd?.mask ?? 0);
  b.set(CGROUP_FD, plan.cgroupFd ?? -1);
}

/** Runs the call (the child's pid, or a negative errno), then reads back what happened. */
function end(plan: SpawnPlan, block: Block, call: () => number): SpawnResult {
  let pid;
  try {
    pid = call();
  } finally {
    if (--inFlight === 0 && dumpableBefore > 0) setDumpable(dumpableBefore);
  }
  const result = outcome(plan, new BlockWriter(block, false), pid);
  giveBack(block);
  return result;
}

function outcome(plan: SpawnPlan, b: BlockWriter, pid: number): SpawnResult {
  if (pid < 0) return { ok: false, stage: "fork", errno: -pid, detail: 0 };
  const grandchild = plan.fork ? b.get(GRANDCHILD) : 0;
  const status = b.get(STATUS);
  if (plan.fork) waitSync(pid); // the middle process has exited
  if (status !== 0) {
    if (grandchild > 0) waitSync(grandchild);
    else if (!plan.fork) waitSync(pid);
    const stage = (Object.keys(Stage) as StageName[]).find((k) => Stage[k] === status)!;
    return { ok: false, stage, errno: b.get(ERRNO), detail: b.get(DETAIL) };
  }
  if (plan.fork && grandchild <= 0) {
    return { ok: false, stage: "fork", errno: 10, /* ECHILD */ detail: 0 };
  }
  return { ok: true, pid: plan.fork ? grandchild : pid };
}
