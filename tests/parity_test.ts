// nsenter parity: targets, working directory, root, credentials, environment,
// cgroup, fork, job control; each against util-linux nsenter on the same target.
import assert from "node:assert/strict";
import { execInNamespace, NamespaceError } from "../mod.ts";
import { spawnWith } from "../src/exec.ts";
import {
  CLI,
  CLI_SHELL,
  nsLink,
  rootTest,
  run,
  runCli,
  running,
  runNsenter,
  startNobodyTarget,
  startTarget,
  waitFor,
} from "./_helpers.ts";

/** A target with its own namespaces, a working directory, a variable and a directory of its own. */
const TARGET = [
  "--uts",
  "--ipc",
  "--net",
  "--mount",
  "--pid",
  "--cgroup",
  "--fork",
  "--mount-proc",
  "sh",
  "-c",
  "hostname parity && mkdir -p /run/parity-dir && cd /run/parity-dir && export TARGET_VAR=from-target && exec sleep 60",
];

/** Set up: in its directory and exec'd into sleep (whose environment has TARGET_VAR). */
function ready(pid: number): boolean {
  try {
    return Deno.readLinkSync(`/proc/${pid}/cwd`) === "/run/parity-dir" && running("sleep")(pid);
  } catch {
    return false;
  }
}

const EVERY_LINK =
  "for t in cgroup ipc mnt net pid uts user time; do readlink /proc/self/ns/$t; done";

rootTest("--all joins every namespace the target has, as nsenter --all", async () => {
  await using target = await startTarget(TARGET, ready);
  const ours = await runCli([
    "exec",
    "-p",
    String(target.pid),
    "--all",
    "--",
    "sh",
    "-c",
    EVERY_LINK,
  ]);
  const theirs = await runNsenter(["-t", String(target.pid), "--all", "sh", "-c", EVERY_LINK]);
  assert.equal(ours.stderr, "");
  assert.equal(ours.stdout, theirs.stdout);
  // The user namespace is ours, so it is skipped rather than refused.
  assert.equal(ours.stdout.split("\n")[6], nsLink("self", "user"));
  assert.equal(ours.stdout.split("\n")[3], nsLink(target.pid, "net"));
});

rootTest(
  "--ns-path joins a namespace behind a file, with or without --pid, as nsenter --net=FILE",
  async () => {
    const name = `ns-tool-test-${Deno.pid}`;
    assert.equal((await run("ip", ["netns", "add", name])).code, 0);
    try {
      const path = `/run/netns/${name}`;
      const ours = await runCli([
        "exec",
        "--ns-path",
        `net=${path}`,
        "--",
        "readlink",
        "/proc/self/ns/net",
      ]);
      const theirs = await runNsenter([`--net=${path}`, "readlink", "/proc/self/ns/net"]);
      assert.equal(ours.stderr, "");
      assert.equal(ours.stdout, theirs.stdout);
      assert.notEqual(ours.stdout.trim(), nsLink("self", "net"));
      // Mixed with --pid: net from the file, uts from the target.
      await using target = await startTarget(TARGET, ready);
      const mixed = await runCli([
        "exec",
        "-p",
        String(target.pid),
        "-n",
        "uts",
        "--ns-path",
        `net=${path}`,
        "--",
        "sh",
        "-c",
        "hostname; readlink /proc/self/ns/net",
      ]);
      assert.equal(mixed.stdout, `parity\n${ours.stdout}`);
    } finally {
      await run("ip", ["netns", "delete", name]);
    }
  },
);

rootTest("-w, -W and -r set the working and root directory as nsenter does", async () => {
  await using target = await startTarget(TARGET, ready);
  const p = String(target.pid);
  const cases: [string[], string[]][] = [
    [["-n", "mnt", "-w"], ["-m", "-w"]],
    [["-n", "mnt", "-w/etc"], ["-m", "-w/etc"]],
    [["-n", "mnt", "-W", "/run/parity-dir"], ["-m", "-W", "/run/parity-dir"]],
    [["-n", "mnt", "-r"], ["-m", "-r"]],
    [["-n", "mnt", "-r", "-w"], ["-m", "-r", "-w"]],
  ];
  for (const [ours, theirs] of cases) {
    const script = ["sh", "-c", "pwd; ls -d /run/parity-dir"];
    const a = await runCli(["exec", "-p", p, ...ours, "--", ...script], { cwd: "/var" });
    const b = await runNsenter(["-t", p, ...theirs, ...script], { cwd: "/var" });
    assert.equal(a.stdout, b.stdout, ours.join(" "));
    assert.equal(a.code, b.code, ours.join(" "));
  }
  const wd = await runCli(["exec", "-p", p, "-n", "mnt", "-w", "--", "pwd"]);
  assert.equal(wd.stdout, "/run/parity-dir\n");
});

rootTest("-S and -G set uid and gid after joining and drop groups, as nsenter", async () => {
  await using target = await startTarget(TARGET, ready);
  for (
    const [ours, theirs] of [
      [["-S", "1234", "-G", "4321"], ["-S", "1234", "-G", "4321"]],
      [["-G", "4321"], ["-G", "4321"]],
      [["-S", "1234"], ["-S", "1234"]],
    ]
  ) {
    const a = await runCli(["exec", "-p", String(target.pid), "-n", "uts", ...ours!, "--", "id"]);
    const b = await runNsenter(["-t", String(target.pid), "-u", ...theirs!, "id"]);
    assert.equal(a.stdout, b.stdout, ours!.join(" "));
  }
  const both = await runCli([
    "exec",
    "-p",
    String(target.pid),
    "-n",
    "uts",
    "-S",
    "1234",
    "-G",
    "4321",
    "--",
    "id",
  ]);
  assert.match(both.stdout, /^uid=1234.* gid=4321.* groups=4321/);
});

rootTest("-e adds variables, --target-env starts from /proc/PID/environ", async () => {
  await using target = await startTarget(TARGET, ready);
  const script = ["sh", "-c", "echo ${TARGET_VAR:-none} ${EXTRA:-none} ${NS_TOOL_CALLER:-none}"];
  const env = { NS_TOOL_CALLER: "caller", PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" };
  const plain = await runCli(["exec", "-p", String(target.pid), "-e", "EXTRA=1", "--", ...script], {
    env,
  });
  assert.equal(plain.stdout, "none 1 caller\n");
  const fromTarget = await runCli(
    ["exec", "-p", String(target.pid), "--target-env", "-e", "EXTRA=2", "--", ...script],
    { env },
  );
  assert.equal(fromTarget.stdout, "from-target 2 none\n");
  const expected = Deno.readTextFileSync(`/proc/${target.pid}/environ`).split("\0").filter(Boolean)
    .sort();
  const dump = await runCli(["exec", "-p", String(target.pid), "--target-env", "--", "env", "-0"]);
  assert.deepEqual(dump.stdout.split("\0").filter(Boolean).sort(), expected);
});

rootTest("--join-cgroup runs the command in the target's cgroup v2 group", async () => {
  const cgroupRoot = Deno.readTextFileSync("/proc/self/mountinfo").split("\n").map((l) =>
    l.split(" ")
  )
    .find((f) => f[f.indexOf("-") + 1] === "cgroup2")?.[4];
  assert.ok(cgroupRoot, "no cgroup v2 hierarchy mounted");
  await using target = await startTarget(TARGET, ready);
  const group = `${cgroupRoot}/ns-tool-test-${Deno.pid}`;
  await Deno.mkdir(group);
  try {
    await Deno.writeTextFile(`${group}/cgroup.procs`, String(target.pid));
    const line = (text: string) => text.split("\n").find((l) => l.startsWith("0::"));
    const theirs = line(Deno.readTextFileSync(`/proc/${target.pid}/cgroup`));
    const ours = await runCli([
      "exec",
      "-p",
      String(target.pid),
      "-n",
      "uts",
      "--join-cgroup",
      "--",
      "cat",
      "/proc/self/cgroup",
    ]);
    assert.equal(ours.stderr, "");
    assert.equal(line(ours.stdout), theirs);
    assert.equal(theirs, `0::/ns-tool-test-${Deno.pid}`);
    const without = await runCli([
      "exec",
      "-p",
      String(target.pid),
      "-n",
      "uts",
      "--",
      "cat",
      "/proc/self/cgroup",
    ]);
    assert.notEqual(line(without.stdout), theirs);
  } finally {
    await target[Symbol.asyncDispose]();
    await waitFor("the group to empty", () => {
      try {
        Deno.removeSync(group);
        return true;
      } catch {
        return undefined;
      }
    });
  }
});

rootTest(
  "--no-fork keeps the command in our pid namespace, its children in the target's, as nsenter -F",
  async () => {
    await using target = await startTarget(TARGET, ready);
    // readlink is a child of the command, so it is inside either way; $$ is the command's own pid.
    const script = "readlink /proc/self/ns/pid; echo $$";
    for (const flags of [["-F"], []]) {
      const a = await runCli([
        "exec",
        "-p",
        String(target.pid),
        "-n",
        "pid",
        ...flags,
        "--",
        "sh",
        "-c",
        script,
      ]);
      const b = await runNsenter(["-t", String(target.pid), "-p", ...flags, "sh", "-c", script]);
      const [aLink, aPid] = a.stdout.trim().split("\n");
      const [bLink, bPid] = b.stdout.trim().split("\n");
      assert.equal(aLink, bLink, String(flags));
      assert.equal(aLink, nsLink(target.pid, "pid"));
      // Without fork the command keeps its host pid; with fork it has a small one inside.
      const outside = (pid: string | undefined) => Number(pid) > 100;
      assert.equal(outside(aPid), flags.length > 0, `pid ${aPid} with ${flags}`);
      assert.equal(outside(aPid), outside(bPid), `nsenter: pid ${bPid} with ${flags}`);
    }
  },
);

rootTest("without a command, $SHELL (else /bin/sh) runs inside", async () => {
  await using target = await startTarget(TARGET, ready);
  const out = await runCli(["exec", "-p", String(target.pid), "-n", "uts"], {
    stdin: "echo shell=$0; hostname\n",
    env: { SHELL: "/bin/sh", PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
  });
  assert.equal(out.stdout, "shell=/bin/sh\nparity\n");
});

rootTest(
  "when the command stops, ns-tool stops; continuing ns-tool continues the command, as nsenter",
  async () => {
    await using target = await startTarget(TARGET, ready);
    for (const tool of ["ns-tool", "nsenter"]) {
      const script = "kill -STOP $$; echo resumed";
      const args = tool === "ns-tool"
        ? [
          "run",
          "-A",
          "--quiet",
          CLI,
          "exec",
          "-p",
          String(target.pid),
          "-n",
          "uts",
          "--",
          "sh",
          "-c",
          script,
        ]
        : ["-t", String(target.pid), "-u", "sh", "-c", script];
      const child = new Deno.Command(tool === "ns-tool" ? Deno.execPath() : "nsenter", {
        args,
        stdout: "piped",
      }).spawn();
      const state = () => Deno.readTextFileSync(`/proc/${child.pid}/stat`).split(") ")[1]![0];
      await waitFor(`${tool} to stop`, () => (state() === "T" ? true : undefined));
      Deno.kill(child.pid, "SIGCONT");
      const out = await child.output();
      assert.equal(new TextDecoder().decode(out.stdout), "resumed\n", tool);
      assert.equal(out.code, 0, tool);
    }
  },
);

rootTest("a target that exits before the join is reported, and nothing runs", async () => {
  const target = await startTarget(["--uts", "sleep", "30"]);
  const pid = target.pid;
  await target[Symbol.asyncDispose](); // killed and reaped: the pid is free now
  const out = await runCli(["exec", "-p", String(pid), "-n", "uts", "--", "echo", "ran"]);
  assert.equal(out.stdout, "");
  assert.equal(out.code, 1);
  assert.match(
    out.stderr,
    new RegExp(`^ns-tool: Failed to open namespace /proc/${pid}/ns/uts: ENOENT`),
  );
});

rootTest(
  "a target that dies between the lookup and the join is never replaced by another",
  async () => {
    // sh reaps the target as soon as it dies, so its pid is free for reuse.
    const parent = new Deno.Command("sh", {
      args: ["-c", "unshare --uts sleep 30 & wait"],
      stdout: "null",
    }).spawn();
    try {
      const pid = await waitFor("the target", () => {
        try {
          const child = Deno.readTextFileSync(`/proc/${parent.pid}/task/${parent.pid}/children`)
            .trim();
          return child && Deno.readTextFileSync(`/proc/${child}/cmdline`).startsWith("sleep")
            ? Number(child)
            : undefined;
        } catch {
          return undefined;
        }
      });
      const marker = `/tmp/ns-tool-race-${Deno.pid}`;
      const error = (() => {
        try {
          spawnWith({ pid, namespaces: ["uts"], command: ["touch", marker] }, {
            afterOpen: () => {
              // Between opening the target's files and joining: kill it and let it be reaped.
              Deno.kill(pid, "SIGKILL");
              const deadline = Date.now() + 5000;
              while (Date.now() < deadline) {
                try {
                  Deno.statSync(`/proc/${pid}`);
                } catch {
                  return;
                }
              }
            },
          });
        } catch (e) {
          return e;
        }
      })();
      assert.ok(error instanceof NamespaceError, String(error));
      assert.equal(error.code, "ESRCH");
      assert.equal(
        error.message,
        `Failed to enter process ${pid}: ESRCH: No such process (process ${pid} has exited)`,
      );
      assert.throws(() => Deno.statSync(marker), Deno.errors.NotFound);
    } finally {
      parent.kill("SIGKILL");
      await parent.status;
    }
  },
);

rootTest(
  "a join through the pidfd opens no namespace file, and still lands in the target",
  async () => {
    await using target = await startTarget(TARGET, ready);
    let links: string[] = [];
    const child = spawnWith({
      pid: target.pid,
      namespaces: ["uts", "ipc", "net", "mnt", "pid"],
      command: ["readlink", "/proc/self/ns/uts", "/proc/self/ns/net", "/proc/self/ns/pid"],
      stdout: "piped",
    }, {
      afterOpen: () => {
        // What this process holds open just before the spawn.
        links = [...Deno.readDirSync("/proc/self/fd")].map((entry) => {
          try {
            return Deno.readLinkSync(`/proc/self/fd/${entry.name}`);
          } catch {
            return ""; // the directory's own descriptor, gone already
          }
        }).filter((link) => /^(uts|ipc|net|mnt|pid):\[/.test(link));
      },
    });
    const { code, stdout } = await child.output();
    assert.equal(code, 0);
    assert.deepEqual(links, []);
    const inside = new TextDecoder().decode(stdout).trim().split("\n");
    assert.deepEqual(inside, ["uts", "net", "pid"].map((type) => nsLink(target.pid, type)));
  },
);

rootTest("the library takes the same options", async () => {
  await using target = await startTarget(TARGET, ready);
  const out = await execInNamespace({
    pid: target.pid,
    namespaces: "all",
    command: ["sh", "-c", "pwd; id -u; echo $TARGET_VAR"],
    targetCwd: true,
    targetEnv: true,
    uid: 1234,
  });
  assert.equal(new TextDecoder().decode(out.stdout), "/run/parity-dir\n1234\nfrom-target\n");
  await assert.rejects(
    execInNamespace({ pid: target.pid, cwd: "/no/such/dir", command: ["true"] }),
    (e) => e instanceof NamespaceError && e.code === "ENOENT" && e.path === "/no/such/dir",
  );
  await assert.rejects(execInNamespace({ command: ["true"] }), TypeError);
});

rootTest("bad input to the new options is a one-line usage error and runs nothing", async () => {
  for (
    const args of [
      ["-S", "root"],
      ["-G", "-1"],
      ["--ns-path", "net"],
      ["--ns-path", "bogus=/x"],
      ["-e", "=x"],
      ["-a", "-n", "net"],
      ["-w", "-W", "/x"],
      ["-F", "--fork"],
    ]
  ) {
    const out = await runCli(["exec", "-p", "999999", ...args, "--", "echo", "ran"]);
    assert.equal(out.code, 2, args.join(" "));
    assert.equal(out.stdout, "");
    assert.match(out.stderr, /^ns-tool: [^\n]+\n$/, args.join(" "));
  }
  // Works with stdin closed too (fd 0 is a valid descriptor).
  const closed = await run("sh", [
    "-c",
    `${CLI_SHELL} exec -p ${Deno.pid} -n uts -- true 0<&-; echo $?`,
  ]);
  assert.equal(closed.stdout, "0\n");
});

rootTest(
  "joining a user namespace drops the caller's supplementary groups, as nsenter",
  async () => {
    // nobody's rootless container: setgroups is "deny" inside, so the groups must go before joining.
    await using target = await startNobodyTarget([
      "--user",
      "--map-root-user",
      "--uts",
      "--fork",
      "sleep",
      "60",
    ]);
    const withGroups = (cmd: string) =>
      `setpriv --groups=4,27 ${cmd} grep ^Groups: /proc/self/status`;
    const ours = await run("sh", [
      "-c",
      withGroups(`${CLI_SHELL} exec -p ${target.pid} -n user,uts --`),
    ]);
    const theirs = await run("sh", ["-c", withGroups(`nsenter -t ${target.pid} -U -u`)]);
    assert.equal(ours.stderr, "");
    assert.equal(ours.stdout, theirs.stdout);
    assert.match(ours.stdout, /^Groups:\s*$/m);
  },
);

rootTest(
  "--target-env without mnt is refused: the target's PATH would pick a host program",
  async () => {
    await using target = await startTarget(TARGET, ready);
    const out = await runCli([
      "exec",
      "-p",
      String(target.pid),
      "-n",
      "uts",
      "--target-env",
      "--",
      "hostname",
    ]);
    assert.equal(out.code, 2);
    assert.match(out.stderr, /^ns-tool: targetEnv needs mnt joined: [^\n]+\n$/);
    assert.equal(out.stdout, "");
  },
);

rootTest("a thread id is refused rather than joined without the pidfd guard", async () => {
  const thread = [...Deno.readDirSync("/proc/self/task")].map((t) => Number(t.name)).find((t) =>
    t !== Deno.pid
  );
  assert.ok(thread, "no second thread");
  const out = await runCli(["exec", "-p", String(thread), "-n", "uts", "--", "echo", "ran"]);
  assert.equal(out.stdout, "");
  assert.equal(out.code, 1);
  assert.match(
    out.stderr,
    new RegExp(`^ns-tool: Failed to open a pidfd for process ${thread}: E\\w+: .*thread id`),
  );
});
