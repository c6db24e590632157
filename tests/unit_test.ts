// Unprivileged unit tests: parsing, the namespace table, error mapping, status decoding.
import assert from "node:assert/strict";
import { waitFor } from "./_helpers.ts";
import {
  helpText,
  parseCli,
  parseExecOptions,
  parseNamespaceList,
  parsePid,
  UsageError,
} from "../src/cli_args.ts";
import { NamespaceError } from "../src/errors.ts";
import { candidatePaths, decodeWaitStatus, signalNumber } from "../src/exec.ts";
import { DEFAULT_NAMESPACES, NAMESPACE_TABLE, normalizeNamespaces } from "../src/namespaces.ts";
import { execInNamespace, spawnInNamespace } from "../mod.ts";

Deno.test("parsePid() accepts positive integers and rejects everything else", () => {
  assert.equal(parsePid("1234"), 1234);
  for (const bad of ["0", "-1", "abc", "12a", "1.5", "", "99999999"]) {
    assert.throws(() => parsePid(bad), UsageError, bad);
  }
  assert.throws(() => parsePid(undefined), /Missing --pid/);
});

Deno.test("parseNamespaceList() orders and dedupes, and names the valid types", () => {
  assert.deepEqual(parseNamespaceList(undefined), ["uts", "ipc", "net", "mnt"]);
  assert.deepEqual(parseNamespaceList("mnt,uts,uts, net"), ["uts", "net", "mnt"]);
  assert.throws(
    () => parseNamespaceList("uts,bogus"),
    /Unknown namespace type 'bogus' \(valid: uts, ipc, net, mnt, pid, cgroup, user, time\)/,
  );
  assert.throws(() => parseNamespaceList(","), /No namespace type/);
});

Deno.test("the namespace table matches the kernel's CLONE_NEW* flags", () => {
  const flags = Object.fromEntries(NAMESPACE_TABLE.map((ns) => [ns.type, ns.flag]));
  // include/uapi/linux/sched.h
  assert.deepEqual(flags, {
    uts: 0x04000000,
    ipc: 0x08000000,
    net: 0x40000000,
    mnt: 0x00020000,
    pid: 0x20000000,
    cgroup: 0x02000000,
    user: 0x10000000,
    time: 0x00000080,
  });
  assert.deepEqual(DEFAULT_NAMESPACES, ["uts", "ipc", "net", "mnt"]);
  assert.deepEqual(normalizeNamespaces(["time", "user", "uts"]), ["uts", "user", "time"]);
});

Deno.test("parseExecOptions() stops at -- or the first positional, keeping the command's options", () => {
  assert.deepEqual(parseExecOptions(["-p", "1", "--", "ls", "-l"]), {
    values: { pid: "1" },
    command: ["ls", "-l"],
  });
  assert.deepEqual(parseExecOptions(["-p1", "ip", "-br", "link"]), {
    values: { pid: "1" },
    command: ["ip", "-br", "link"],
  });
  assert.deepEqual(
    parseExecOptions(["--pid=1", "-n", "net", "--preserve-credentials", "--", "--weird"]),
    {
      values: { pid: "1", "ns-types": "net", "preserve-credentials": true },
      command: ["--weird"],
    },
  );
  assert.deepEqual(parseExecOptions(["--ns-types", "uts", "-p", "1"]), {
    values: { "ns-types": "uts", pid: "1" },
    command: [],
  });
  assert.throws(() => parseExecOptions(["--pid"]), /Option '--pid' needs a value/);
  assert.throws(() => parseExecOptions(["-p"]), /Option '-p' needs a value/);
  assert.throws(() => parseExecOptions(["--help=yes"]), /Option '--help' takes no value/);
  assert.throws(() => parseExecOptions(["--bogus", "x"]), /Unknown option '--bogus'/);
  assert.throws(() => parseExecOptions(["-xyz"]), /Unknown option '-x'/);
});

Deno.test("parseCli() reads exec, help and version, and reports usage errors", () => {
  const base = {
    kind: "exec",
    nsPaths: {},
    preserveCredentials: false,
    env: {},
    targetEnv: false,
    targetRoot: false,
    targetCwd: false,
    joinCgroup: false,
    fork: true,
    tty: false,
  };
  assert.deepEqual(parseCli(["exec", "-p", "7", "-n", "net,uts", "--", "hostname", "-f"]), {
    ...base,
    pid: 7,
    namespaces: ["uts", "net"],
    command: ["hostname", "-f"],
  });
  assert.deepEqual(parseCli(["exec", "-p", "7"]), { ...base, pid: 7, namespaces: undefined });
  assert.deepEqual(
    parseCli([
      "exec",
      "-p7",
      "-a",
      "-w",
      "-r/srv",
      "-S",
      "5",
      "-G5",
      "-e",
      "A=1",
      "--env=B=x=y",
      "--target-env",
      "--join-cgroup",
      "-F",
      "--ns-path",
      "net=/run/netns/blue",
      "--",
      "id",
    ]),
    {
      ...base,
      pid: 7,
      namespaces: "all",
      nsPaths: { net: "/run/netns/blue" },
      command: ["id"],
      env: { A: "1", B: "x=y" },
      targetEnv: true,
      uid: 5,
      gid: 5,
      root: "/srv",
      targetCwd: true,
      joinCgroup: true,
      fork: false,
    },
  );
  assert.deepEqual(parseCli(["exec", "--ns-path", "net=/x", "--", "ip", "a"]), {
    ...base,
    namespaces: undefined,
    nsPaths: { net: "/x" },
    command: ["ip", "a"],
  });
  assert.deepEqual(parseCli(["exec", "-p", "3", "-W", "/in", "--", "pwd"]).kind, "exec");
  assert.deepEqual(parseCli(["exec", "--help"]), { kind: "help", topic: "exec" });
  assert.deepEqual(parseCli([]), { kind: "help", topic: "main" });
  assert.deepEqual(parseCli(["--version"]), { kind: "version" });
  assert.throws(() => parseCli(["frobnicate"]), /Unknown command 'frobnicate'/);
  assert.throws(() => parseCli(["exec", "-p", "7", "-x", "--", "true"]), /Unknown option '-x'/);
  assert.throws(() => parseCli(["exec", "--", "true"]), /Missing --pid/);
});

Deno.test("helpText() lists every option and namespace type", () => {
  const text = helpText("exec");
  const options = [
    "--pid",
    "--ns-types",
    "--all",
    "--ns-path",
    "--wd",
    "--wdns",
    "--root",
    "--setuid",
    "--setgid",
    "--preserve-credentials",
    "--env",
    "--target-env",
    "--join-cgroup",
    "--tty",
    "--no-fork",
    "--fork",
    "--help",
  ];
  for (const option of options) {
    assert.match(text, new RegExp(option));
  }
  for (const ns of NAMESPACE_TABLE) assert.match(text, new RegExp(`\\b${ns.type}\\b`));
  // Every option's description starts in one column.
  const columns = text.split("\n").flatMap((line) => {
    const m = /^( {2}-.*?\S)( {2,})\S/.exec(line);
    return m ? [m[1]!.length + m[2]!.length] : [];
  });
  assert.equal(columns.length, options.length);
  assert.equal(new Set(columns).size, 1, `description columns: ${columns}`);
});

Deno.test("NamespaceError carries code, errno and syscall, and the system's text", () => {
  const error = new NamespaceError(2, {
    syscall: "open",
    action: "Failed to open namespace /proc/999999/ns/uts",
    path: "/proc/999999/ns/uts",
    nsType: "uts",
    pid: 999999,
  });
  assert.equal(
    error.message,
    "Failed to open namespace /proc/999999/ns/uts: ENOENT: No such file or directory",
  );
  assert.equal(error.code, "ENOENT");
  assert.equal(error.errno, 2);
  assert.equal(error.syscall, "open");
  assert.equal(error.nsType, "uts");
  assert.equal(error.name, "NamespaceError");
  const eperm = new NamespaceError(1, { syscall: "setns", action: "x", hint: "run as root" });
  assert.equal(eperm.message, "x: EPERM: Operation not permitted (run as root)");
});

Deno.test("decodeWaitStatus() reads exit codes and signals as Deno.CommandStatus does", () => {
  assert.deepEqual(decodeWaitStatus(0), { success: true, code: 0, signal: null });
  assert.deepEqual(decodeWaitStatus(42 << 8), { success: false, code: 42, signal: null });
  assert.deepEqual(decodeWaitStatus(15), { success: false, code: 143, signal: "SIGTERM" });
  assert.deepEqual(decodeWaitStatus(9 | 0x80), { success: false, code: 137, signal: "SIGKILL" });
  assert.equal(signalNumber("SIGUSR2"), 12);
  assert.throws(() => signalNumber("SIGBOGUS" as Deno.Signal), TypeError);
});

Deno.test("candidatePaths() searches PATH as execvp does", () => {
  assert.deepEqual(candidatePaths("ls", "/usr/bin:/bin"), ["/usr/bin/ls", "/bin/ls"]);
  // A directory named twice is tried once (the second try could only fail the same way).
  assert.deepEqual(candidatePaths("ls", "::/bin"), ["./ls", "/bin/ls"]);
  assert.deepEqual(candidatePaths("ls", "/usr/bin:/bin:/usr/bin"), ["/usr/bin/ls", "/bin/ls"]);
  assert.deepEqual(candidatePaths("./x", "/bin"), ["./x"]);
  assert.deepEqual(candidatePaths("ls", undefined), ["/bin/ls", "/usr/bin/ls"]);
  assert.deepEqual(candidatePaths("", "/bin"), []);
});

Deno.test("the library rejects bad arguments before touching anything", async () => {
  assert.throws(() => spawnInNamespace({ pid: 0, command: ["true"] }), RangeError);
  assert.throws(() => spawnInNamespace({ pid: 1.5, command: ["true"] }), RangeError);
  assert.throws(() => spawnInNamespace({ pid: 5, command: [] }), TypeError);
  assert.throws(() => spawnInNamespace({ pid: 5, command: ["a\0b"] }), TypeError);
  assert.throws(
    // deno-lint-ignore no-explicit-any
    () => spawnInNamespace({ pid: 5, namespaces: ["bogus" as any], command: ["true"] }),
    RangeError,
  );
  await assert.rejects(
    () => execInNamespace({ pid: 5, command: ["true"], stdin: "piped" }),
    TypeError,
  );
});

Deno.test("a missing process fails with ENOENT and its namespace file, as a typed error", async () => {
  const error = await execInNamespace({ pid: 999999, command: ["echo", "test"] }).then(
    () => undefined,
    (e) => e,
  );
  assert.ok(error instanceof NamespaceError, String(error));
  assert.equal(error.code, "ENOENT");
  assert.equal(error.path, "/proc/999999/ns/uts");
  assert.match(error.message, /No such file or directory/);
});

Deno.test("errno names and texts come from glibc, for every errno, not only libuv's", () => {
  // ENOEXEC, ECHILD and EUSERS have no libuv name; node:util returned undefined for them.
  assert.equal(new NamespaceError(8, { syscall: "execve", action: "x" }).code, "ENOEXEC");
  assert.equal(new NamespaceError(10, { syscall: "wait4", action: "x" }).code, "ECHILD");
  const eusers = new NamespaceError(87, { syscall: "setns", action: "Failed" });
  assert.equal(eusers.message, "Failed: EUSERS: Too many users");
  assert.equal(decodeWaitStatus(6).signal, "SIGABRT");
  assert.equal(decodeWaitStatus(29).signal, "SIGPOLL");
  assert.equal(signalNumber("SIGIO"), 29);
  assert.equal(signalNumber("SIGIOT" as Deno.Signal), 6);
});

Deno.test("the library rejects environment variables with NUL bytes or '=' in the name", () => {
  for (const env of [{ "A=B": "x" }, { A: "x\0y" }, { "": "x" }]) {
    assert.throws(() => spawnInNamespace({ pid: 5, command: ["true"], env }), TypeError);
  }
});

Deno.test("a target that has exited (a zombie) is reported as such", async () => {
  // The inner sleep ends first and stays a zombie: its parent, exec'd into sleep, never reaps it.
  const parent = new Deno.Command("sh", { args: ["-c", "sleep 0.01 & exec sleep 5"] }).spawn();
  try {
    const zombie = await waitFor("a zombie child", () => {
      try {
        const child = Deno.readTextFileSync(`/proc/${parent.pid}/task/${parent.pid}/children`)
          .trim();
        const state = child && Deno.readTextFileSync(`/proc/${child}/stat`).split(" ")[2];
        return state === "Z" ? Number(child) : undefined;
      } catch {
        return undefined;
      }
    });
    const error = await execInNamespace({ pid: zombie, command: ["true"] }).catch((e) => e);
    assert.ok(error instanceof NamespaceError);
    // The join through its pidfd finds no process (the files would be missing: ENOENT).
    assert.equal(error.code, "ESRCH");
    assert.match(error.message, new RegExp(`\\(process ${zombie} has exited\\)$`));
  } finally {
    parent.kill("SIGKILL");
    await parent.status;
  }
});
