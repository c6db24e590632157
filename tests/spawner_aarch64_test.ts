/**
 * Runs the aarch64 spawner for real on an x86_64 machine: the image shipped in
 * ffi/_spawner_code.ts (assembled from ffi/spawner/aarch64.S) is loaded by a
 * static aarch64 harness, tests/fixtures/spawner_harness_aarch64.c, under
 * qemu-aarch64-static. The harness lays out blocks as ffi/_spawner.ts does, calls
 * ns_spawn once per case and prints one JSON line per case; the expectations are
 * here.
 *
 * An execve of an aarch64 program inside qemu-user goes to the host kernel, which
 * needs a binfmt_misc entry for aarch64 ELF files (qemu 7.2 has no -execve
 * option). Unless the host has one, the harness runs under `unshare --user
 * --mount` and registers qemu in a binfmt_misc instance of its own (Linux 6.7+),
 * so nothing on the host changes. Without either, the cases that need a
 * successful execve are skipped with the reason printed.
 *
 * Debian packages: qemu-user-static, gcc-aarch64-linux-gnu (brings
 * binutils-aarch64-linux-gnu), libc6-dev-arm64-cross; util-linux for unshare.
 */
import assert from "node:assert/strict";
import { SPAWNER_CODE } from "../ffi/_spawner_code.ts";

const ROOT = new URL("../", import.meta.url);
const HARNESS_SOURCE = new URL("tests/fixtures/spawner_harness_aarch64.c", ROOT).pathname;
const ASSEMBLY_SOURCE = new URL("ffi/spawner/aarch64.S", ROOT).pathname;
const QEMU_BINFMT_P = "/usr/libexec/qemu-binfmt/aarch64-binfmt-P";
const decoder = new TextDecoder();

/** The full path of `name` on PATH, or undefined. */
function which(name: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch {
      // not here
    }
  }
  return undefined;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The reason to skip when some of `tools` are missing (with their Debian packages). */
function missing(tools: Record<string, string>): string | undefined {
  const absent = Object.keys(tools).filter((tool) => !which(tool));
  if (Deno.build.os !== "linux") return "requires Linux";
  if (absent.length === 0) return undefined;
  const packages = [...new Set(absent.map((tool) => tools[tool]))].join(" ");
  return `requires ${absent.join(" and ")} (apt-get install ${packages})`;
}

async function run(cmd: string, args: string[], cwd?: string): Promise<Deno.CommandOutput> {
  return await new Deno.Command(cmd, {
    args,
    ...(cwd ? { cwd } : {}),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
}

async function runOk(cmd: string, args: string[]): Promise<void> {
  const out = await run(cmd, args);
  assert.equal(out.code, 0, `${cmd} ${args.join(" ")} failed:\n${decoder.decode(out.stderr)}`);
}

function image(): Uint8Array {
  const base64 = SPAWNER_CODE.aarch64?.image;
  assert.ok(base64, "ffi/_spawner_code.ts has no aarch64 image");
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

const ASSEMBLER_SKIP = missing({
  "aarch64-linux-gnu-as": "binutils-aarch64-linux-gnu",
  "aarch64-linux-gnu-objcopy": "binutils-aarch64-linux-gnu",
});
if (ASSEMBLER_SKIP) console.log(`skipped: aarch64 image check: ${ASSEMBLER_SKIP}`);

Deno.test({
  name: "the aarch64 image in ffi/_spawner_code.ts is the one ffi/spawner/aarch64.S assembles to",
  ignore: ASSEMBLER_SKIP !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "ns-tool-aarch64-as-" });
    try {
      await runOk("aarch64-linux-gnu-as", ["-o", `${dir}/a.o`, ASSEMBLY_SOURCE]);
      await runOk("aarch64-linux-gnu-objcopy", [
        "-O",
        "binary",
        "-j",
        ".text",
        `${dir}/a.o`,
        `${dir}/a.bin`,
      ]);
      const assembled = await Deno.readFile(`${dir}/a.bin`);
      assert.deepEqual(image(), assembled, "run deno task build-spawner");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** What the harness found out about the machine (its first line). */
interface HarnessEnv {
  aarch64_exec: boolean;
  argv0_preserved: boolean;
  binfmt: string;
  binfmt_error: string;
  uid_map: string;
  setgroups: string;
  nodename: string;
  uid: number;
  gid: number;
  self: string;
  workdir: string;
}

/** What came of one case: the call, the block afterwards, the wait status, the output. */
interface Outcome {
  name: string;
  skip?: string;
  ret: number;
  status: number;
  errno: number;
  detail: number;
  grandchild: number;
  exit: number;
  signal: number;
  /** A bit per callee-saved register (x19..x29, then sp) that changed across ns_spawn. */
  clobbered: number;
  /** The caller's signal mask is the same after ns_spawn as before. */
  mask_restored: boolean;
  /** The `joined` word of each step, read back from the block. */
  joined: number[];
  stdout: string;
  stderr: string;
  /** What the case's own checks in the harness found (a file's text, a pipe's). */
  extra: string;
}

/** A case of ns_forward_signal: its data page afterwards and what it did. */
interface ForwardOutcome {
  name: string;
  /** The pending word, in decimal (it does not fit a double). */
  pending: string;
  /** The pidfd word (1000: the pidfd of the case) and the pass-all word. */
  target: number;
  all: number;
  /** A bit per callee-saved register (x19..x29, then sp) that changed across a call. */
  clobbered: number;
  got: string;
}

/** An outcome line of a ns_forward_signal case. */
function forward(o: Outcome): ForwardOutcome {
  return o as unknown as ForwardOutcome;
}

/** The pending word with these signals' bits. */
function bits(...signals: number[]): string {
  return signals.reduce((word, signal) => word | (1n << BigInt(signal)), 0n).toString();
}

/** What the harness's `child` mode prints, unless a case says otherwise. */
interface Report {
  argv: string[];
  env?: string[];
  nodename?: string;
  cwd?: string;
  sidLeader?: "yes" | "no";
  sigusr1?: string;
  sigpipe?: string;
  blocked?: string;
  fd100?: "open" | "closed";
  rootMarker?: "yes" | "no";
}

const ENOENT = 2;
const ENOEXEC = 8;
const EBADF = 9;
const EACCES = 13;
const EINVAL = 22;
const ENOTTY = 25;
const ENOSPC = 28;
const SIGUSR1 = 10;
const SIGUSR2 = 12;
const SIGCHLD = 17;
/** Stages of ffi/spawner/*.S (Stage in ffi/_spawner.ts). */
const S_FORK = 2;
const S_CGROUP = 13;
const S_OP = 14;
const UTS_NAME = "ns-harness-uts";
const CHILD_STDERR = "stderr from the child\n";

function reportText(env: HarnessEnv, want: Report): string {
  const argv = [...want.argv];
  // A binfmt_misc entry without the P flag hands the program its path as argv[0].
  if (!env.argv0_preserved) argv[0] = env.self;
  const lines = [
    `argc=${argv.length}`,
    ...argv.map((arg, i) => `argv[${i}]=${arg}`),
    `envc=${want.env?.length ?? 0}`,
    `nodename=${want.nodename ?? env.nodename}`,
    `cwd=${want.cwd ?? env.workdir}`,
    `uid=${env.uid},${env.uid},${env.uid}`,
    `gid=${env.gid},${env.gid},${env.gid}`,
    `sid_leader=${want.sidLeader ?? "no"}`,
    `sigusr1=${want.sigusr1 ?? "default"}`,
    `sigpipe=${want.sigpipe ?? "default"}`,
    `blocked=${want.blocked ?? "none"}`,
    `fd100=${want.fd100 ?? "open"}`,
    `root_marker=${want.rootMarker ?? "no"}`,
  ];
  return lines.join("\n") + "\n";
}

/**
 * Compares the child's report with the expected one. qemu-user hands an emulated
 * program its environment in reverse order, so the env[i] lines are compared as
 * a set here; "exec: a host program gets envp in order" checks the order.
 */
function assertReport(env: HarnessEnv, stdout: string, want: Report): void {
  const isEnv = (line: string) => /^env\[\d+\]=/.test(line);
  const lines = stdout.split("\n");
  const gotEnv = lines.filter(isEnv).map((line) => line.replace(/^env\[\d+\]=/, ""));
  assert.equal(lines.filter((line) => !isEnv(line)).join("\n"), reportText(env, want));
  assert.deepEqual(gotEnv.sort(), [...(want.env ?? [])].sort());
}

/** Checks that hold for every call of the routine. */
function assertCall(o: Outcome): void {
  assert.equal(o.clobbered, 0, `ns_spawn changed callee-saved registers: mask ${o.clobbered}`);
  assert.equal(o.mask_restored, true, "ns_spawn did not restore the caller's signal mask");
}

function assertSucceeded(env: HarnessEnv, o: Outcome, exit: number, want: Report): void {
  assertCall(o);
  assert.ok(o.ret > 0, `ns_spawn returned ${o.ret}`);
  assert.deepEqual(
    { status: o.status, errno: o.errno, detail: o.detail, exit: o.exit, signal: o.signal },
    { status: 0, errno: 0, detail: 0, exit, signal: 0 },
  );
  assertReport(env, o.stdout, want);
  assert.equal(o.stderr, CHILD_STDERR);
}

function assertFailed(o: Outcome, stage: number, errno: number, detail = 0): void {
  assertCall(o);
  assert.ok(o.ret > 0, `ns_spawn returned ${o.ret}`);
  assert.deepEqual(
    { status: o.status, errno: o.errno, detail: o.detail, exit: o.exit, signal: o.signal },
    { status: stage, errno, detail, exit: 127, signal: 0 },
  );
  assert.equal(o.stdout, "", "the command must not have run");
  assert.equal(o.stderr, "");
}

type Check = (o: Outcome, env: HarnessEnv) => void;

/** Every case the harness runs, in its order, with what must come of it. */
const CASES: [string, Check][] = [
  ["control: fork and execve without the spawner keep SIG_IGN and the mask", (o, env) => {
    // Without the routine's resets the checks below would see this.
    assert.equal(o.exit, 0);
    assertReport(env, o.stdout, {
      argv: ["control", "child", "0"],
      sigusr1: "ignore",
      sigpipe: "ignore",
      blocked: "12",
    });
  }],
  ["exec: argv, envp, stdio maps and the exit status", (o, env) => {
    assertSucceeded(env, o, 42, {
      argv: ["spawned-argv0", "child", "42", "two words", "ünï"],
      env: ["A=1", "B=two words"],
    });
  }],
  ["exec: a host program gets envp in order", (o) => {
    assertCall(o);
    assert.deepEqual({ status: o.status, exit: o.exit }, { status: 0, exit: 0 });
    assert.equal(o.stdout, "A=1\nB=two words\nC=ünï\n");
  }],
  ["exec: without CLONE_VM (fork mode)", (o, env) => {
    assertSucceeded(env, o, 3, { argv: ["fork-mode", "child", "3"] });
  }],
  ["exec: ENOENT on every candidate", (o) => assertFailed(o, 12, ENOENT)],
  ["exec: no candidate at all", (o) => assertFailed(o, 12, ENOENT)],
  ["exec: EACCES is remembered past a later ENOENT", (o) => assertFailed(o, 12, EACCES)],
  ["exec: goes on after EACCES and ENOTDIR", (o, env) => {
    assertSucceeded(env, o, 5, { argv: ["after-eacces", "child", "5"] });
  }],
  ["exec: ENOEXEC ends the search", (o) => assertFailed(o, 12, ENOEXEC)],
  ["stdio: a bad source reports stage 10 and its map index", (o) => {
    // Maps 0 and 1 are the captured stdout and stderr; map 2 is {999, 0}.
    assertFailed(o, 10, EBADF, 2);
  }],
  ["setns: joins a uts namespace and skips fd -1 steps", (o, env) => {
    assertSucceeded(env, o, 0, { argv: ["setns", "child", "0"], nodename: UTS_NAME });
    assert.deepEqual(o.joined, [0, 1, 0]);
  }],
  ["setns: step 0 is joined in the second pass", (o, env) => {
    assertSucceeded(env, o, 0, { argv: ["setns0", "child", "0"], nodename: UTS_NAME });
    assert.deepEqual(o.joined, [1]);
  }],
  ["setns: a bad fd reports stage 1 and its step index", (o) => {
    assertFailed(o, 1, EBADF, 2);
    assert.deepEqual(o.joined, [0, 1, 0]);
  }],
  ["setns: the wrong namespace type reports EINVAL", (o) => {
    assertFailed(o, 1, EINVAL, 1);
    assert.deepEqual(o.joined, [0, 0]);
  }],
  ["setns: a bad fd in step 0 reports detail 0", (o) => {
    assertFailed(o, 1, EBADF, 0);
    assert.deepEqual(o.joined, [0]);
  }],
  ["fork: clone(CLONE_PARENT) for a pid namespace", (o) => {
    // qemu-user refuses clone(CLONE_PARENT) with EINVAL: what is tested here is
    // that the routine reports a failed second clone as stage 2.
    assertFailed(o, 2, EINVAL);
    assert.equal(o.grandchild, 0);
  }],
  ["cwd: chdir to a path", (o, env) => {
    assertSucceeded(env, o, 0, { argv: ["chdir", "child", "0"], cwd: `${env.workdir}/root/sub` });
  }],
  ["cwd: a missing path reports stage 4", (o) => assertFailed(o, 4, ENOENT)],
  ["cwd: fchdir to a descriptor", (o, env) => {
    assertSucceeded(env, o, 0, { argv: ["fchdir", "child", "0"], cwd: `${env.workdir}/root/sub` });
  }],
  ["cwd: a bad descriptor reports stage 4", (o) => assertFailed(o, 4, EBADF)],
  ["root: chroot, then chdir inside it", (o, env) => {
    assertSucceeded(env, o, 0, { argv: ["chroot", "child", "0"], cwd: "/sub", rootMarker: "yes" });
  }],
  ["root: chroot keeps the working directory", (o, env) => {
    // The harness runs this case from root/sub.
    assertSucceeded(env, o, 0, { argv: ["keepcwd", "child", "0"], cwd: "/sub", rootMarker: "yes" });
  }],
  ["root: a bad root descriptor reports stage 3", (o) => assertFailed(o, 3, EBADF)],
  ["session: setsid", (o, env) => {
    assertSucceeded(env, o, 0, { argv: ["setsid", "child", "0"], sidLeader: "yes" });
  }],
  ["session: no terminal on fd 0 reports stage 6", (o) => assertFailed(o, 6, ENOTTY)],
  ["credentials: setgroups, setresgid and setresuid to 0", (o, env) => {
    // With /proc/self/setgroups "deny" setgroups fails with EPERM, which is tolerated.
    assertSucceeded(env, o, 0, { argv: ["creds", "child", "0"] });
  }],
  ["credentials: an unmapped gid reports stage 8", (o) => assertFailed(o, 8, EINVAL)],
  ["credentials: an unmapped uid reports stage 9", (o) => assertFailed(o, 9, EINVAL)],
  ["closefrom: close_range closes inherited descriptors", (o, env) => {
    assertSucceeded(env, o, 0, { argv: ["closefrom", "child", "0"], fd100: "closed" });
  }],
  ["clone: a refused clone returns -errno to the caller", (o) => {
    assertCall(o);
    assert.deepEqual({ ret: o.ret, status: o.status, exit: o.exit }, {
      ret: -EINVAL,
      status: 0,
      exit: -1,
    });
  }],
  ["ops: unshare(CLONE_NEWUTS) before the clone, sethostname of b bytes after", (o, env) => {
    // The name is "ns-op-hostEXTRA" with b = 10: the length comes from b.
    assertSucceeded(env, o, 0, { argv: ["ops-uts", "child", "0"], nodename: "ns-op-host" });
    assert.equal(o.extra, env.nodename, "the harness's own host name changed");
  }],
  ["ops: PRE_OPS run after the setns passes", (o) => {
    // Before the passes, setns would have put the child back into the target's namespace.
    assertCall(o);
    assert.deepEqual({ status: o.status, exit: o.exit, stdout: o.stdout, joined: o.joined }, {
      status: 0,
      exit: 0,
      stdout: "ns-op-pre\n",
      joined: [0, 1],
    });
  }],
  ["ops: a write op writes its bytes at the start of the file", (o) => {
    assertCall(o);
    assert.deepEqual({ status: o.status, exit: o.exit }, { status: 0, exit: 0 });
    // O_WRONLY|O_CLOEXEC: no O_TRUNC, no O_APPEND, c = 5 bytes.
    assert.equal(o.extra, "helloxxxxx");
  }],
  ["ops: a write op that cannot open its file reports stage 14 and the index", (o) => {
    assertFailed(o, S_OP, ENOENT, 1);
  }],
  ["ops: a write op reports the errno of write", (o) => {
    // /dev/full opens, and write fails: its error survives the close.
    assertFailed(o, S_OP, ENOSPC, 0);
  }],
  ["ops: mount a tmpfs in a mount namespace of its own", (o) => {
    assertCall(o);
    assert.deepEqual({ status: o.status, exit: o.exit, stderr: o.stderr }, {
      status: 0,
      exit: 0,
      stderr: "",
    });
    // source, target, fstype, flags (MS_NOSUID|MS_NODEV|MS_NOEXEC) and data ("mode=0713").
    const [type, mode, options, superblock, ...rest] = o.stdout.split("\n");
    assert.deepEqual({ type, mode, options, rest }, {
      type: "tmpfs",
      mode: "713",
      options: "rw,nosuid,nodev,noexec,relatime",
      rest: [""],
    });
    assert.match(superblock!, /^tmpfs ns-op-tmpfs rw(,[^ ]*)?,mode=713(,[^ ]*)?$/);
    assert.equal(o.extra, "harness_mounted=no");
  }],
  ["ops: an unknown op kind reports stage 14, EINVAL and its index", (o) => {
    assertFailed(o, S_OP, EINVAL, 2);
  }],
  ["ops: a failing POST op reports detail 1000 + its index", (o) => {
    assertFailed(o, S_OP, ENOENT, 1001);
  }],
  ["ops: kind 0 as the first POST op reports detail 1000", (o) => {
    assertFailed(o, S_OP, EINVAL, 1000);
  }],
  ["ops: POST_OPS run before the working directory changes", (o, env) => {
    assertCall(o);
    assert.deepEqual({ status: o.status, exit: o.exit, stdout: o.stdout, extra: o.extra }, {
      status: 0,
      exit: 0,
      stdout: `${env.workdir}/root/sub\n`,
      extra: "file=post below=no",
    });
  }],
  ["ops: PRE_OPS run before the pid-namespace clone", (o) => {
    // A failing PRE op wins over the clone that qemu-user refuses.
    assertFailed(o, S_OP, EINVAL, 0);
    assert.equal(o.grandchild, 0);
  }],
  ["ops: POST_OPS run after the pid-namespace clone", (o) => {
    // The clone fails first (qemu-user refuses CLONE_PARENT): the bad POST op is never reached.
    assertFailed(o, S_FORK, EINVAL, 0);
  }],
  ['cgroup: "0" is written to CGROUP_FD', (o) => {
    assertCall(o);
    assert.deepEqual({ status: o.status, exit: o.exit, extra: o.extra }, {
      status: 0,
      exit: 0,
      extra: "0",
    });
  }],
  ["cgroup: a bad descriptor reports stage 13", (o) => assertFailed(o, S_CGROUP, EBADF)],
  ["cgroup: a refused write reports its errno", (o) => assertFailed(o, S_CGROUP, ENOSPC)],
  ["cgroup: the move comes after setgroups and before setns and ops", (o) => {
    // setgroups before any setns fails here (EPERM: setgroups is "deny") and is
    // ignored; the bad cgroup fd then wins over a bad setns step and a bad op.
    assertFailed(o, S_CGROUP, EBADF);
    assert.deepEqual(o.joined, [0, 0]);
  }],
  ["pidfd: an invalid pidfd falls through to the passes", (o) => {
    assertCall(o);
    assert.deepEqual({ status: o.status, exit: o.exit, stdout: o.stdout, joined: o.joined }, {
      status: 0,
      exit: 0,
      stdout: `${UTS_NAME}\n`,
      joined: [0, 1],
    });
  }],
  ["pidfd: a refused mask falls through to the passes", (o) => {
    // setns(pidfd, 0) is EINVAL; the step then joins by its namespace file.
    assertCall(o);
    assert.deepEqual({ status: o.status, exit: o.exit, stdout: o.stdout, joined: o.joined }, {
      status: 0,
      exit: 0,
      stdout: `${UTS_NAME}\n`,
      joined: [1],
    });
  }],
  ["pidfd: one setns through the pidfd, and no passes", (o) => {
    // Step 1 has a bad fd: had the passes run, this would be stage 1.
    assertCall(o);
    assert.deepEqual({ status: o.status, exit: o.exit, stdout: o.stdout, joined: o.joined }, {
      status: 0,
      exit: 0,
      stdout: `${UTS_NAME}\n`,
      joined: [0, 0],
    });
  }],
  ["nodump: the child is not dumpable before it joins anything", (o) => {
    assertCall(o);
    assert.deepEqual({ status: o.status, exit: o.exit }, { status: 0, exit: 0 });
    // mm_access refuses a non-dumpable process to a caller without CAP_SYS_PTRACE.
    assert.equal(o.extra, `environ_errno=${EACCES} fifo=100000`);
  }],
  ["nodump: without F_NODUMP the child stays dumpable", (o) => {
    assertCall(o);
    assert.deepEqual({ status: o.status, exit: o.exit }, { status: 0, exit: 0 });
    assert.equal(o.extra, "environ_errno=0 fifo=100000");
  }],
  ["session: TIOCSCTTY comes after the stdio maps", (o) => {
    // fd 0 is /dev/null until the maps make it a pty: only then can it be the terminal.
    assertCall(o);
    assert.deepEqual({ status: o.status, errno: o.errno, exit: o.exit, stderr: o.stderr }, {
      status: 0,
      errno: 0,
      exit: 0,
      stderr: "",
    });
    assert.match(o.extra, /^\/dev\/pts\/\d+$/);
    assert.equal(o.stdout, `ctty=yes\n${o.extra}\n`);
  }],
  ["forward: with no pidfd, signals a process sent set their pending bits", (line) => {
    // SI_USER, SI_QUEUE, SI_TKILL; signal 63 came with garbage in the upper half of x0.
    const o = forward(line);
    assert.deepEqual(o, {
      ...o,
      pending: bits(SIGUSR1, SIGUSR2, 40, 63),
      target: -1,
      all: 0,
      clobbered: 0,
    });
  }],
  ["forward: kernel-sent signals are dropped unless pass-all is set", (line) => {
    // SI_KERNEL and CLD_EXITED-like codes (> 0) drop; with pass-all, SIGINT (2) passes.
    const o = forward(line);
    assert.deepEqual(o, { ...o, got: "dropped=0", pending: bits(2), all: 1, clobbered: 0 });
  }],
  ["forward: with a pidfd the signal goes to that process", (line) => {
    // The process got SIGUSR1 and, with pass-all, SIGTERM, both as SI_USER from us;
    // the kernel-sent SIGINT before pass-all never came; nothing went pending.
    const o = forward(line);
    assert.deepEqual(o, {
      ...o,
      got: "10:0:parent 15:0:parent none",
      pending: "0",
      target: 1000,
      clobbered: 0,
    });
  }],
  ["forward: installed with SA_SIGINFO, it takes real signals", (line) => {
    // kill() passes; SIGCHLD (CLD_EXITED) is dropped, then passed with pass-all.
    const o = forward(line);
    assert.deepEqual(o, {
      ...o,
      got: `kill=${bits(SIGUSR1)} chld=${bits(SIGUSR1)} chld_all=${bits(SIGUSR1, SIGCHLD)}`,
      pending: bits(SIGUSR1, SIGCHLD),
    });
  }],
];

/** Whether the host itself runs aarch64 ELF files through binfmt_misc. */
function hostBinfmt(): boolean {
  try {
    return Deno.readTextFileSync("/proc/sys/fs/binfmt_misc/qemu-aarch64").startsWith("enabled");
  } catch {
    return false;
  }
}

/** Runs the harness, in a binfmt_misc sandbox if need be: its JSON lines, and why no sandbox. */
async function runHarness(qemu: string, harness: string, bin: string, work: string) {
  const forward = String(SPAWNER_CODE.aarch64!.entries.ns_forward_signal);
  const direct = [qemu, harness, "run", bin, forward, work];
  const unshare = which("unshare");
  const attempts = [direct];
  let why = hostBinfmt() ? "" : "unshare is not installed (util-linux)";
  if (!hostBinfmt() && unshare) {
    const [interpreter, flags] = exists(QEMU_BINFMT_P) ? [QEMU_BINFMT_P, "PF"] : [qemu, "F"];
    attempts.unshift([
      unshare,
      "--user",
      "--map-root-user",
      "--mount",
      "--",
      ...direct,
      interpreter,
      flags,
    ]);
  }
  let failure = "";
  for (const [cmd, ...args] of attempts) {
    const out = await run(cmd!, args, work);
    const text = decoder.decode(out.stdout);
    // unshare fails before the harness starts when user namespaces are off.
    if (out.code !== 0 && !text.startsWith('{"kind":"env"')) {
      why = `${cmd} exited ${out.code}: ${decoder.decode(out.stderr).trim()}`;
      failure += `${why}\n`;
      continue;
    }
    assert.equal(out.code, 0, `harness failed:\n${decoder.decode(out.stderr)}\n${text}`);
    const lines = text.trimEnd().split("\n").map((line) => JSON.parse(line));
    return { lines, why: lines[0]?.binfmt_error || why };
  }
  throw new Error(`Cannot run the harness:\n${failure}`);
}

const HARNESS_SKIP = missing({
  "qemu-aarch64-static": "qemu-user-static",
  "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
});
if (HARNESS_SKIP) console.log(`skipped: ns_spawn on aarch64 under qemu-user: ${HARNESS_SKIP}`);

Deno.test({
  name: "ns_spawn on aarch64 (under qemu-user) joins, maps, execs and reports failures",
  ignore: HARNESS_SKIP !== undefined,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "ns-tool-aarch64-" });
    try {
      const harness = `${dir}/harness`;
      const bin = `${dir}/aarch64.bin`;
      const work = `${await Deno.realPath(dir)}/work`;
      await Deno.mkdir(work);
      await runOk("aarch64-linux-gnu-gcc", [
        "-static",
        "-O2",
        "-Wall",
        "-Wextra",
        "-o",
        harness,
        HARNESS_SOURCE,
      ]);
      await Deno.writeFile(bin, image());

      const { lines, why } = await runHarness(which("qemu-aarch64-static")!, harness, bin, work);
      const env: HarnessEnv = lines[0];
      assert.equal(lines[0].kind, "env");
      const outcomes: Outcome[] = lines.filter((line) => line.kind === "case");
      assert.deepEqual(lines.at(-1), { kind: "done", cases: CASES.length });
      assert.deepEqual(outcomes.map((o) => o.name), CASES.map(([name]) => name));
      if (!env.aarch64_exec) {
        console.log(
          "skipped: cases that need an aarch64 execve: no binfmt_misc entry for aarch64 " +
            `on the host, and none could be made in a user namespace: ${why}`,
        );
      }

      for (const [i, [name, check]] of CASES.entries()) {
        const o = outcomes[i]!;
        if (o.skip) console.log(`skipped: ${name}: ${o.skip}`);
        await t.step({ name, ignore: o.skip !== undefined, fn: () => check(o, env) });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
