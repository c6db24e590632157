// The library (mod.ts) against real namespaces: results, handles, errors, and
// that its caller is left untouched.
import assert from "node:assert/strict";
import { execInNamespace, NamespaceError, spawnInNamespace } from "../mod.ts";
import { nsLink, rootTest, startNobodyTarget, startTarget, type Target } from "./_helpers.ts";

const decoder = new TextDecoder();
const text = (bytes: Uint8Array) => decoder.decode(bytes);
const HOST_TYPES = ["uts", "ipc", "net", "mnt", "pid", "cgroup", "user", "time"];

function container(hostname: string): Promise<Target> {
  return startTarget(
    [
      "--uts",
      "--ipc",
      "--net",
      "--mount",
      "--pid",
      "--fork",
      "--mount-proc",
      "sh",
      "-c",
      `hostname ${hostname} && exec sleep 60`,
    ],
    async (pid) => {
      const out = await execInNamespace({ pid, namespaces: ["uts"], command: ["hostname"] });
      return text(out.stdout) === `${hostname}\n`;
    },
  );
}

/** Every namespace of every thread of this process, plus cwd and root. */
function callerState(): Record<string, string | undefined> {
  const state: Record<string, string | undefined> = {
    cwd: Deno.cwd(),
    root: Deno.readLinkSync("/proc/self/root"),
  };
  for (const task of Deno.readDirSync("/proc/self/task")) {
    for (const t of [...HOST_TYPES, "pid_for_children", "time_for_children"]) {
      state[`${t}`] ??= nsLink("self", t);
      const link = (() => {
        try {
          return Deno.readLinkSync(`/proc/self/task/${task.name}/ns/${t}`);
        } catch {
          return undefined; // the thread has just ended
        }
      })();
      if (link !== undefined && link !== state[t]) state[`${t} of thread ${task.name}`] = link;
    }
  }
  return state;
}

rootTest("execInNamespace() returns code, signal, success, stdout and stderr", async () => {
  await using target = await container("lib-target");
  const out = await execInNamespace({
    pid: target.pid,
    command: ["sh", "-c", "hostname; echo oops >&2; exit 3"],
  });
  assert.equal(text(out.stdout), "lib-target\n");
  assert.equal(text(out.stderr), "oops\n");
  assert.equal(out.code, 3);
  assert.equal(out.success, false);
  assert.equal(out.signal, null);
  assert.ok(out.stdout instanceof Uint8Array);
  const ok = await execInNamespace({ pid: target.pid, namespaces: ["uts"], command: ["true"] });
  assert.deepEqual([ok.code, ok.success, ok.stdout.length], [0, true, 0]);
});

rootTest(
  "output larger than a pipe arrives whole, collected or streamed, as with Deno.Command",
  async () => {
    await using target = await container("lib-big");
    // 3 MB of numbered lines on stdout and 200 kB on stderr, interleaved: neither pipe may stall.
    const script = "seq 1 400000 & seq 1 40000 >&2; wait";
    const expected = await new Deno.Command("sh", { args: ["-c", script] }).output();
    const out = await execInNamespace({ pid: target.pid, command: ["sh", "-c", script] });
    assert.equal(out.code, 0);
    assert.equal(out.stdout.length, expected.stdout.length);
    assert.deepEqual(out.stdout, expected.stdout);
    assert.deepEqual(out.stderr, expected.stderr);
    // The stream, read chunk by chunk, gives the same bytes.
    const child = spawnInNamespace({
      pid: target.pid,
      command: ["seq", "1", "400000"],
      stdout: "piped",
    });
    const chunks = await Array.fromAsync(child.stdout);
    assert.ok(chunks.length > 1);
    assert.deepEqual(
      new Uint8Array(await new Blob(chunks as Uint8Array<ArrayBuffer>[]).arrayBuffer()),
      expected.stdout,
    );
    assert.equal((await child.status).code, 0);
  },
);

rootTest(
  "cancelling a stream with a read in flight ends it at once; the command runs on",
  async () => {
    await using target = await container("lib-cancel");
    await using child = spawnInNamespace({
      pid: target.pid,
      command: ["sleep", "30"],
      stdout: "piped",
    });
    const reader = child.stdout.getReader();
    const read = reader.read();
    const started = performance.now();
    await reader.cancel();
    assert.deepEqual(await read, { value: undefined, done: true });
    assert.ok(performance.now() - started < 1000, "the cancel waited for the command");
    child.kill("SIGKILL");
    assert.equal((await child.status).signal, "SIGKILL");
  },
);

const POLLER_PROBE = new URL("./fixtures/poller_probe.ts", import.meta.url).pathname;

rootTest(
  "a cancelled stream lets the process end although a background process holds the pipe",
  async () => {
    await using target = await container("lib-probe");
    const started = performance.now();
    const probe = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", POLLER_PROBE, "cancel", String(target.pid)],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    // Before the fix it hung for minutes: stop it rather than the test run.
    const watchdog = setTimeout(() => probe.kill("SIGKILL"), 10_000);
    const out = await probe.output().finally(() => clearTimeout(watchdog));
    assert.equal(out.code, 0);
    assert.equal(text(out.stdout), '{"done":true}\n');
    // The background sleep holds the pipe for 5 s; the probe must not wait for it.
    assert.ok(
      performance.now() - started < 3000,
      "the poll of a closed pipe kept the process alive",
    );
  },
);

rootTest(
  "signals to every thread, the poll's own included, do not cut a command's output",
  async () => {
    await using target = await container("lib-probe");
    const probe = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", POLLER_PROBE, "signals", String(target.pid)],
      stdout: "piped",
    }).spawn();
    const reader = probe.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while (!seen.includes("ready\n")) {
      const chunk = await reader.read();
      if (chunk.done) throw new Error(`the probe ended before it was ready: ${seen}`);
      seen += chunk.value;
    }
    // tgkill(2), as no Deno API signals one thread: SIGWINCH to each thread, every 10 ms.
    const SYS_TGKILL = Deno.build.arch === "aarch64" ? 131 : 234;
    const lib = Deno.dlopen("libc.so.6", {
      syscall: { parameters: ["i64", "i64", "i64", "i64"], result: "i64" },
    });
    try {
      const until = performance.now() + 800;
      while (performance.now() < until) {
        for (const task of Deno.readDirSync(`/proc/${probe.pid}/task`)) {
          lib.symbols.syscall(BigInt(SYS_TGKILL), BigInt(probe.pid), BigInt(task.name), 28n);
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    } finally {
      lib.close();
    }
    for (let chunk; !(chunk = await reader.read()).done;) seen += chunk.value;
    assert.equal((await probe.status).code, 0);
    const [, result, signalled] = seen.trim().split("\n");
    assert.deepEqual(JSON.parse(result!), { code: 0, stdout: "out\n", stderr: "err\n" });
    assert.equal(signalled, "signalled");
  },
);

rootTest(
  "a command that closes its output and runs on is waited for, its exit code kept",
  async () => {
    await using target = await container("lib-closes");
    const started = performance.now();
    const out = await execInNamespace({
      pid: target.pid,
      command: ["sh", "-c", "echo early; exec >&- 2>&-; sleep 0.3; exit 7"],
    });
    assert.equal(text(out.stdout), "early\n");
    assert.equal(out.code, 7);
    assert.ok(performance.now() - started >= 300);
  },
);

rootTest("setgid() in this process while the poll waits returns at once", async () => {
  // glibc makes every thread of the process take its SIGSETXID; the poll's thread must not
  // keep it blocked until the poll ends.
  await using target = await container("lib-setxid");
  const lib = Deno.dlopen("libc.so.6", {
    setgid: { parameters: ["u32"], result: "i32" },
    getgid: { parameters: [], result: "u32" },
  });
  try {
    const output = execInNamespace({
      pid: target.pid,
      command: ["sh", "-c", "sleep 1.5; echo done"],
    });
    await new Promise((resolve) => setTimeout(resolve, 200)); // the poll is in flight now
    const started = performance.now();
    assert.equal(lib.symbols.setgid(lib.symbols.getgid()), 0);
    const took = performance.now() - started;
    const out = await output;
    assert.ok(took < 500, `setgid took ${took.toFixed(0)} ms`);
    assert.equal(text(out.stdout), "done\n");
    assert.equal(out.code, 0);
  } finally {
    lib.close();
  }
});

rootTest("execInNamespace() reports death by a signal as Deno.Command does", async () => {
  await using target = await container("lib-target");
  const out = await execInNamespace({ pid: target.pid, command: ["sh", "-c", "kill -KILL $$"] });
  assert.deepEqual([out.code, out.signal, out.success], [137, "SIGKILL", false]);
});

rootTest("spawnInNamespace() gives a handle with pid, stdio streams, kill and status", async () => {
  await using target = await container("lib-target");
  const child = spawnInNamespace({
    pid: target.pid,
    namespaces: ["uts", "ipc", "net", "mnt", "pid"],
    command: ["sh", "-c", "echo pid=$$; cat"],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  });
  assert.ok(child.pid > 0);
  // From here the command is in the target's pid namespace.
  assert.equal(nsLink(child.pid, "pid"), nsLink(target.pid, "pid"));
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode("through the pipe\n"));
  await writer.close();
  const out = await child.output();
  assert.match(text(out.stdout), /^pid=\d+\nthrough the pipe\n$/);
  assert.equal(out.code, 0);
  assert.throws(() => child.stderr, TypeError);
  assert.throws(() => child.kill(), TypeError);
});

rootTest("spawnInNamespace() kill() signals the command, and dispose cleans up", async () => {
  await using target = await container("lib-target");
  const child = spawnInNamespace({
    pid: target.pid,
    command: ["sleep", "30"],
    stdout: "null",
  });
  child.kill("SIGUSR1");
  assert.deepEqual(await child.status, { success: false, code: 138, signal: "SIGUSR1" });
  {
    await using second = spawnInNamespace({ pid: target.pid, command: ["sleep", "30"] });
    assert.ok(second.pid > 0);
  } // disposed: killed with SIGTERM and reaped
});

rootTest("errors are NamespaceError with code, errno, syscall, path and type", async () => {
  await using target = await container("lib-target");
  const missing = await execInNamespace({ pid: target.pid, command: ["no-such-program"] })
    .catch((e) => e);
  assert.ok(missing instanceof NamespaceError);
  assert.deepEqual(
    [missing.code, missing.errno, missing.syscall, missing.path],
    ["ENOENT", 2, "execve", "no-such-program"],
  );
  assert.equal(
    missing.message,
    "Failed to execute no-such-program: ENOENT: No such file or directory",
  );
  const ownUser = await execInNamespace({
    pid: target.pid,
    namespaces: ["user"],
    command: ["true"],
  })
    .catch((e) => e);
  assert.ok(ownUser instanceof NamespaceError);
  assert.equal(ownUser.nsType, "user");
  assert.match(ownUser.message, /caller's own user namespace/);
});

rootTest("all or nothing: when one namespace fails, the command does not run", async () => {
  await using target = await container("lib-target");
  const marker = await Deno.makeTempFile();
  await Deno.remove(marker);
  // uts, net and mnt would work; user (our own) is refused, so nothing runs.
  await assert.rejects(
    execInNamespace({
      pid: target.pid,
      namespaces: ["uts", "net", "user"],
      command: ["touch", marker],
    }),
    NamespaceError,
  );
  await assert.rejects(Deno.stat(marker), Deno.errors.NotFound);
});

rootTest(
  "the caller's namespaces, cwd, root, threads, Workers and Deno.Command stay untouched",
  async () => {
    await using target = await container("lib-target");
    const before = callerState();
    const hostname = Deno.hostname();
    for (
      const namespaces of [["uts"], ["uts", "ipc", "net", "mnt"], ["uts", "mnt", "pid"]] as const
    ) {
      const out = await execInNamespace({ pid: target.pid, namespaces, command: ["hostname"] });
      assert.equal(text(out.stdout), "lib-target\n");
    }
    // Concurrent calls while async file reads run on the pool threads.
    const reads = Array.from({ length: 40 }, () => Deno.readTextFile("/proc/sys/kernel/hostname"));
    const calls = Array.from({ length: 40 }, (_, i) =>
      execInNamespace({
        pid: target.pid,
        namespaces: i % 2 ? ["uts", "mnt", "pid"] : ["uts", "net"],
        command: ["hostname"],
      }));
    for (const out of await Promise.all(calls)) assert.equal(text(out.stdout), "lib-target\n");
    for (const read of await Promise.all(reads)) assert.equal(read.trim(), hostname);
    assert.deepEqual(callerState(), before);

    // A Worker made now, a child process and async file operations all see the host.
    const worker = new Worker(
      `data:text/javascript,postMessage(Deno.readTextFileSync("/proc/sys/kernel/hostname").trim())`,
      { type: "module" },
    );
    const fromWorker = await new Promise((resolve) => (worker.onmessage = (e) => resolve(e.data)));
    worker.terminate();
    assert.equal(fromWorker, hostname);
    const command = await new Deno.Command("hostname", { stdout: "piped" }).output();
    assert.equal(text(command.stdout).trim(), hostname);
    assert.equal((await Deno.readTextFile("/proc/sys/kernel/hostname")).trim(), hostname);
    assert.deepEqual(callerState(), before);
  },
);

rootTest(
  "dozens of concurrent calls against different targets each land in their own",
  async () => {
    const targets: Target[] = [];
    try {
      for (let i = 0; i < 24; i++) {
        targets.push(
          await startTarget(
            ["--uts", "--net", "sh", "-c", `hostname target-${i} && exec sleep 60`],
            (pid) => Deno.readTextFileSync(`/proc/${pid}/cmdline`).startsWith("sleep"),
          ),
        );
      }
      const calls = targets.flatMap((target, i) =>
        [["uts"], ["uts", "net"], ["uts", "ipc", "net", "mnt"]].map(async (namespaces) => {
          const out = await execInNamespace({
            pid: target.pid,
            namespaces: namespaces as ["uts"],
            command: ["sh", "-c", "hostname; readlink /proc/$$/ns/net"],
          });
          return [i, namespaces.includes("net"), text(out.stdout)] as const;
        })
      );
      const results = await Promise.all(calls);
      assert.equal(results.length, 72);
      for (const [i, joinedNet, stdout] of results) {
        // These targets have no mount namespace of their own, so /proc is the host's
        // and /proc/$$ names the command's own net namespace.
        const [name, net] = stdout.trim().split("\n");
        assert.equal(name, `target-${i}`);
        assert.equal(net, joinedNet ? nsLink(targets[i]!.pid, "net") : nsLink("self", "net"));
      }
    } finally {
      for (const target of targets) await target[Symbol.asyncDispose]();
    }
  },
);

rootTest("no descriptor leaks over thousands of calls, failing ones included", async () => {
  await using target = await container("lib-target");
  // In a process of its own: test modules run in parallel share this one's descriptor table.
  const probe = new URL("./fixtures/leak_probe.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", probe, String(target.pid), "2000"],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.equal(out.code, 0);
  const report = JSON.parse(text(out.stdout));
  assert.equal(report.ok, 2020);
  assert.equal(report.failed, 600);
  assert.deepEqual(report.after, report.before);
});

rootTest(
  "joining a user namespace leaves the caller dumpable (memory is not shared then)",
  async () => {
    // Owned by nobody: uid 0 inside is host uid 65534, so entering changes real credentials,
    // which marks the memory of the process that does it non-dumpable.
    await using target = await startNobodyTarget([
      "--user",
      "--map-root-user",
      "--uts",
      "--pid",
      "--fork",
      "sleep",
      "60",
    ]);
    // In a process of its own: the flag belongs to the memory, which test modules running in
    // parallel share (their spawns clear it for a moment).
    const probe = new URL("./fixtures/dumpable_probe.ts", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", probe, String(target.pid)],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    assert.equal(out.code, 0);
    assert.deepEqual(JSON.parse(text(out.stdout)), {
      before: 1,
      sequential: [["user,uts", "0\n", 1], ["user,uts,pid", "0\n", 1]],
      concurrent: { outputs: ["0\n"], after: 1 },
    });
  },
);
