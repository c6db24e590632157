// `ns-tool exec` against real namespaces, compared with util-linux nsenter.
import assert from "node:assert/strict";
import {
  CLI_SHELL,
  nobodyCli,
  NSENTER_FLAG,
  nsenterArgs,
  nsLink,
  rootTest,
  run,
  runCli,
  runNsenter,
  startCli,
  startTarget,
} from "./_helpers.ts";

const ALL_BUT_USER_TIME = ["uts", "ipc", "net", "mnt", "pid", "cgroup"];
/** A target with every namespace type but user and time, its own hostname and /proc. */
const CONTAINER = [
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
  "hostname test-container && exec sleep 60",
];

async function hostnameIs(pid: number, name: string): Promise<boolean> {
  const out = await runNsenter(["-t", String(pid), "-u", "hostname"]);
  return out.stdout.trim() === name;
}

// The three tests of the original lesson.

rootTest("a target made with unshare --uts is in a different UTS namespace", async () => {
  await using target = await startTarget(["--uts", "sleep", "5"]);
  const theirs = nsLink(target.pid, "uts");
  const ours = nsLink("self", "uts");
  assert.match(theirs ?? "", /^uts:\[\d+\]$/);
  assert.notEqual(theirs, ours);
});

rootTest("exec --pid TARGET -- hostname prints the target's hostname", async () => {
  await using target = await startTarget(
    ["--uts", "--pid", "--fork", "--mount-proc", "sh", "-c", "hostname test-container && sleep 10"],
    (pid) => hostnameIs(pid, "test-container"),
  );
  const out = await runCli(["exec", "--pid", String(target.pid), "--", "hostname"]);
  assert.equal(out.stdout, "test-container\n");
  assert.equal(out.code, 0);
  assert.equal(out.stderr, "");
});

rootTest("exec --pid 999999 fails with No such file or directory and runs nothing", async () => {
  const out = await runCli(["exec", "--pid", "999999", "--", "echo", "test"]);
  assert.equal(
    out.stderr,
    "ns-tool: Failed to open namespace /proc/999999/ns/uts: ENOENT: No such file or directory\n",
  );
  assert.equal(out.stdout, "");
  assert.equal(out.code, 1);
});

// Every behaviour of the exec issue, against nsenter where nsenter has it.

rootTest("exec joins the same namespaces as nsenter: inode links match", async () => {
  await using target = await startTarget(CONTAINER, (pid) => hostnameIs(pid, "test-container"));
  // With pid and mnt joined, /proc/self inside is the command's own.
  const script = "for t in cgroup ipc mnt net pid uts; do readlink /proc/self/ns/$t; done";
  const ours = await runCli([
    "exec",
    "-p",
    String(target.pid),
    "-n",
    ALL_BUT_USER_TIME.join(","),
    "--",
    "sh",
    "-c",
    script,
  ]);
  const theirs = await runNsenter([
    ...nsenterArgs(target.pid, ALL_BUT_USER_TIME),
    "sh",
    "-c",
    script,
  ]);
  assert.equal(ours.stderr, "");
  assert.equal(ours.stdout, theirs.stdout);
  const expected = ["cgroup", "ipc", "mnt", "net", "pid", "uts"].map((t) => nsLink(target.pid, t))
    .join("\n");
  assert.equal(ours.stdout.trim(), expected);
});

rootTest("exec joins uts, ipc, net and mnt by default and leaves pid alone", async () => {
  await using target = await startTarget(CONTAINER, (pid) => hostnameIs(pid, "test-container"));
  // The command reports its host pid; read its links from the host while it sleeps.
  const child = new Deno.Command("sh", {
    args: ["-c", `${CLI_SHELL} exec -p ${target.pid} -- sh -c 'echo $$; exec sleep 5'`],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  const pid = Number(new TextDecoder().decode(value).trim());
  try {
    for (const t of ["uts", "ipc", "net", "mnt"]) {
      assert.equal(nsLink(pid, t), nsLink(target.pid, t), t);
    }
    for (const t of ["pid", "cgroup", "user"]) assert.equal(nsLink(pid, t), nsLink("self", t), t);
  } finally {
    Deno.kill(pid, "SIGKILL");
    reader.releaseLock();
    await child.stdout.cancel();
    await child.status;
  }
});

rootTest("with pid joined the command sees a small in-namespace pid, as with nsenter", async () => {
  await using target = await startTarget(CONTAINER, (pid) => hostnameIs(pid, "test-container"));
  const types = ["uts", "ipc", "net", "mnt", "pid"];
  const script = "echo $$; cut -d' ' -f4 /proc/$$/stat";
  const ours = await runCli([
    "exec",
    "-p",
    String(target.pid),
    "-n",
    types.join(","),
    "--",
    "sh",
    "-c",
    script,
  ]);
  const theirs = await runNsenter([...nsenterArgs(target.pid, types), "sh", "-c", script]);
  const [pid, ppid] = ours.stdout.trim().split("\n").map(Number);
  assert.ok(pid! > 1 && pid! < 1000, `in-namespace pid ${pid}`);
  // The parent is outside the namespace, so it shows as 0, as with nsenter.
  assert.equal(ppid, 0);
  assert.equal(theirs.stdout.trim().split("\n")[1], "0");
  assert.equal(ours.code, 0);
});

rootTest("exit codes pass through as with nsenter, and death by signal is re-raised", async () => {
  await using target = await startTarget(CONTAINER, (pid) => hostnameIs(pid, "test-container"));
  for (const types of [["uts"], ["uts", "pid", "mnt"]]) {
    for (const script of ["exit 0", "exit 42", "exit 255", "kill -TERM $$", "kill -KILL $$"]) {
      const args = ["sh", "-c", script];
      const ours = await runCli([
        "exec",
        "-p",
        String(target.pid),
        "-n",
        types.join(","),
        "--",
        ...args,
      ]);
      const theirs = await runNsenter([...nsenterArgs(target.pid, types), ...args]);
      assert.equal(ours.code, theirs.code, `${types}: ${script}`);
      assert.equal(ours.signal, theirs.signal, `${types}: ${script}`);
    }
  }
  // Seen from a shell: 128 + n.
  const shell = await run("sh", [
    "-c",
    `${CLI_SHELL} exec -p ${target.pid} -- sh -c 'kill -TERM $$'; echo $?`,
  ]);
  assert.equal(shell.stdout.trim(), "143");
});

rootTest(
  "exec forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the command",
  async () => {
    await using target = await startTarget(CONTAINER, (pid) => hostnameIs(pid, "test-container"));
    for (
      const signal of ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"] as const
    ) {
      const name = signal.slice(3);
      const script =
        `trap 'echo got ${name}; exit 7' ${name}; echo ready; while :; do sleep 0.05; done`;
      const cli = startCli(["exec", "-p", String(target.pid), "--", "sh", "-c", script]);
      await cli.until(/ready/);
      cli.kill(signal);
      const { output, status } = await cli.finish();
      assert.match(output, new RegExp(`got ${name}`), signal);
      assert.equal(status.code, 7, signal);
    }
  },
);

rootTest("a forwarded SIGTERM never orphans a command that outlives it", async () => {
  await using target = await startTarget(CONTAINER, (pid) => hostnameIs(pid, "test-container"));
  const script = "trap '' TERM; echo $$; sleep 0.5; echo done";
  const cli = startCli(["exec", "-p", String(target.pid), "--", "sh", "-c", script]);
  const commandPid = Number((await cli.until(/^\d+\n/)).split("\n")[0]);
  cli.kill("SIGTERM");
  const { output, status } = await cli.finish();
  assert.match(output, /done/);
  assert.equal(status.code, 0);
  // ns-tool waited for it: the command is gone, not left running without a parent.
  assert.equal(nsLink(commandPid, "uts"), undefined);
});

rootTest("stdin, stdout and stderr pass through", async () => {
  await using target = await startTarget(CONTAINER, (pid) => hostnameIs(pid, "test-container"));
  const out = await runCli(
    ["exec", "-p", String(target.pid), "--", "sh", "-c", "cat; echo to-stderr >&2"],
    { stdin: "hello from the host\n" },
  );
  assert.equal(out.stdout, "hello from the host\n");
  assert.equal(out.stderr, "to-stderr\n");
});

rootTest("the environment passes through and signal dispositions and mask are reset", async () => {
  await using target = await startTarget(CONTAINER, (pid) => hostnameIs(pid, "test-container"));
  const types = "uts,ipc,net,mnt,pid";
  const out = await runCli(
    [
      "exec",
      "-p",
      String(target.pid),
      "-n",
      types,
      "--",
      "sh",
      "-c",
      "echo $NS_TOOL_TEST; grep -E '^Sig(Blk|Ign)' /proc/self/status",
    ],
    { env: { NS_TOOL_TEST: "passed-through" } },
  );
  assert.equal(out.stderr, "");
  const lines = out.stdout.trim().split("\n");
  assert.equal(lines[0], "passed-through");
  // Deno ignores SIGPIPE; the command must not inherit that, nor any blocked signal.
  assert.deepEqual(lines.slice(1), ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"]);
  // And so a broken pipe ends the writer quietly, as in a shell.
  const pipe = await runCli(["exec", "-p", String(target.pid), "--", "sh", "-c", "yes | head -c1"]);
  assert.equal(pipe.stdout, "y");
  assert.equal(pipe.stderr, "");
});

rootTest("the command gets exactly the caller's descriptors, none of ns-tool's", async () => {
  await using target = await startTarget(CONTAINER, (pid) => hostnameIs(pid, "test-container"));
  for (const types of ["uts,ipc,net,mnt,pid", "uts,net"]) {
    // The caller hands over fd 3 and fd 5; sh lists what it has, with link targets.
    const list = "for f in /proc/$$/fd/*; do echo ${f##*/} $(readlink $f); done";
    const withFds = (cmd: string) => `exec 3</dev/null 5>/dev/null; ${cmd} sh -c '${list}'`;
    const ours = await run("sh", [
      "-c",
      withFds(`${CLI_SHELL} exec -p ${target.pid} -n ${types} --`),
    ]);
    const nsFlags = types.split(",").map((t) => NSENTER_FLAG[t]).join(" ");
    const theirs = await run("sh", ["-c", withFds(`nsenter -t ${target.pid} ${nsFlags}`)]);
    assert.equal(ours.stderr, "");
    assert.match(ours.stdout, /^3 \/dev\/null$/m);
    assert.match(ours.stdout, /^5 \/dev\/null$/m);
    // No namespace file, pidfd, directory or pipe of ns-tool's own.
    assert.doesNotMatch(ours.stdout, /(mnt|net|uts|ipc|pid|cgroup):\[|anon_inode|^\d+ \/proc/m);
    const shape = (text: string) => text.replace(/pipe:\[\d+\]/g, "pipe");
    assert.equal(shape(ours.stdout), shape(theirs.stdout), types);
  }
});

rootTest(
  "the working directory is kept without mnt and is the target's root with mnt",
  async () => {
    await using target = await startTarget(CONTAINER, (pid) => hostnameIs(pid, "test-container"));
    const cwd = await Deno.makeTempDir();
    try {
      for (const types of [["uts", "net"], ["uts", "mnt"]]) {
        const ours = await runCli([
          "exec",
          "-p",
          String(target.pid),
          "-n",
          types.join(","),
          "--",
          "pwd",
        ], { cwd });
        const theirs = await runNsenter([...nsenterArgs(target.pid, types), "pwd"], { cwd });
        assert.equal(ours.stdout, theirs.stdout, String(types));
        assert.equal(ours.stdout.trim(), types.includes("mnt") ? "/" : cwd);
      }
    } finally {
      await Deno.remove(cwd);
    }
  },
);

rootTest("a program that is not found exits 127, one that cannot run 126, as nsenter", async () => {
  await using target = await startTarget(CONTAINER, (pid) => hostnameIs(pid, "test-container"));
  const notExecutable = await Deno.makeTempFile(); // mode 0600, in /tmp, which the target shares
  try {
    for (
      const [program, code, text] of [
        ["no-such-program-here", 127, "ENOENT: No such file or directory"],
        [notExecutable, 126, "EACCES: Permission denied"],
      ] as const
    ) {
      const ours = await runCli(["exec", "-p", String(target.pid), "--", program]);
      const theirs = await runNsenter([
        ...nsenterArgs(target.pid, ["uts", "ipc", "net", "mnt"]),
        program,
      ]);
      assert.equal(ours.code, code, program);
      assert.equal(theirs.code, code, program);
      assert.equal(ours.stderr, `ns-tool: Failed to execute ${program}: ${text}\n`);
      assert.equal(ours.stdout, "");
    }
  } finally {
    await Deno.remove(notExecutable);
  }
});

rootTest(
  "with mnt joined the program is looked up inside the target's mount namespace",
  async () => {
    // The target mounts a tmpfs with its own program over /usr/local/bin, visible only inside.
    await using target = await startTarget(
      [
        "--mount",
        "--fork",
        "sh",
        "-c",
        "mount -t tmpfs tmpfs /usr/local/bin && printf '#!/bin/sh\\necho inside\\n' > /usr/local/bin/ns-tool-probe && chmod +x /usr/local/bin/ns-tool-probe && exec sleep 60",
      ],
      async (pid) =>
        (await runNsenter(["-t", String(pid), "-m", "test", "-x", "/usr/local/bin/ns-tool-probe"]))
          .code === 0,
    );
    const env = { PATH: "/usr/local/bin:/usr/bin:/bin" };
    const inside = await runCli([
      "exec",
      "-p",
      String(target.pid),
      "-n",
      "mnt",
      "--",
      "ns-tool-probe",
    ], { env });
    assert.equal(inside.stdout, "inside\n");
    const outside = await runCli([
      "exec",
      "-p",
      String(target.pid),
      "-n",
      "uts",
      "--",
      "ns-tool-probe",
    ], { env });
    assert.equal(outside.code, 127);
  },
);

rootTest("cgroup namespaces are joined", async () => {
  await using target = await startTarget(CONTAINER, (pid) => hostnameIs(pid, "test-container"));
  const script = "readlink /proc/self/ns/cgroup; cat /proc/self/cgroup";
  const ours = await runCli([
    "exec",
    "-p",
    String(target.pid),
    "-n",
    "mnt,pid,cgroup",
    "--",
    "sh",
    "-c",
    script,
  ]);
  const theirs = await runNsenter([
    ...nsenterArgs(target.pid, ["mnt", "pid", "cgroup"]),
    "sh",
    "-c",
    script,
  ]);
  assert.equal(ours.stdout, theirs.stdout);
  assert.equal(ours.stdout.split("\n")[0], nsLink(target.pid, "cgroup"));
});

rootTest(
  "an unprivileged caller is told which namespace was refused and why, and nothing runs",
  async () => {
    await using target = await startTarget(CONTAINER, (pid) => hostnameIs(pid, "test-container"));
    const dir = await Deno.makeTempDir();
    await Deno.chmod(dir, 0o777);
    try {
      const out = await nobodyCli(["exec", "-p", String(target.pid), "--", "touch", `${dir}/ran`]);
      assert.equal(out.code, 1, out.stderr);
      assert.match(
        out.stderr,
        /^ns-tool: Failed to open namespace \/proc\/\d+\/ns\/uts: EACCES: Permission denied \(joining needs CAP_SYS_ADMIN over the namespace; run as root\)\n$/,
      );
      await assert.rejects(() => Deno.stat(`${dir}/ran`), Deno.errors.NotFound);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

rootTest("exec works with stdin closed (fd 0 is a valid descriptor)", async () => {
  await using target = await startTarget(CONTAINER, (pid) => hostnameIs(pid, "test-container"));
  for (const types of ["uts", "uts,ipc,net,mnt,pid"]) {
    const ours = await run("sh", [
      "-c",
      `${CLI_SHELL} exec -p ${target.pid} -n ${types} -- hostname 0<&-`,
    ]);
    assert.equal(ours.stdout, "test-container\n", `${types}: ${ours.stderr}`);
  }
});

rootTest(
  "a refused join names the namespace and CAP_SYS_ADMIN, exits 1, and nothing runs",
  async () => {
    // nobody's own process: nobody may open its namespace files, but not join them.
    await using target = await startTarget(
      ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "30"],
      (pid) => Deno.readTextFileSync(`/proc/${pid}/cmdline`).startsWith("sleep"),
    );
    const dir = await Deno.makeTempDir();
    await Deno.chmod(dir, 0o777);
    try {
      const out = await nobodyCli(["exec", "-p", String(target.pid), "--", "touch", `${dir}/ran`]);
      assert.equal(
        out.stderr,
        `ns-tool: Failed to join uts namespace of process ${target.pid}: EPERM: Operation not permitted (joining needs CAP_SYS_ADMIN over the namespace; run as root)\n`,
      );
      assert.equal(out.code, 1);
      await assert.rejects(() => Deno.stat(`${dir}/ran`), Deno.errors.NotFound);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/** Whether anything listens on TCP 127.0.0.1:9229 (Deno's SIGUSR1 inspector). */
function inspectorListening(): boolean {
  const table = Deno.readTextFileSync("/proc/net/tcp");
  return table.split("\n").some((line) => / 0100007F:240D 00000000:0000 0A /.test(line));
}

rootTest("SIGUSR1 reaches the command and opens no inspector in ns-tool", async () => {
  await using target = await startTarget(CONTAINER, (pid) => hostnameIs(pid, "test-container"));
  assert.equal(inspectorListening(), false, "something already listens on 9229");
  const script = "trap 'echo got USR1; exit 5' USR1; echo ready; while :; do sleep 0.05; done";
  const cli = startCli(["exec", "-p", String(target.pid), "--", "sh", "-c", script]);
  await cli.until(/ready/);
  // Past Deno's 500 ms grace period, after which plain Deno starts its inspector on SIGUSR1.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  cli.kill("SIGUSR1");
  const { output, status } = await cli.finish();
  assert.match(output, /got USR1/);
  assert.equal(status.code, 5);
  assert.equal(inspectorListening(), false);
});
