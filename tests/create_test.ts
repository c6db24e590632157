// Making namespaces (ns-tool unshare and the per-type commands) and seeing
// them (ns-tool proc), against util-linux unshare and lsns.
import assert from "node:assert/strict";
import {
  execInNewNamespaces,
  listNamespaces,
  NamespaceError,
  spawnInNewNamespaces,
} from "../mod.ts";
import {
  nobodyCli,
  nsLink,
  rootTest,
  run,
  runCli,
  runNsenter,
  startCli,
  startTarget,
} from "./_helpers.ts";

const decoder = new TextDecoder();
const TYPES = ["uts", "ipc", "net", "mnt", "pid", "cgroup", "user", "time"] as const;
const UNSHARE_FLAG: Record<string, string> = {
  uts: "--uts",
  ipc: "--ipc",
  net: "--net",
  mnt: "--mount",
  pid: "--pid",
  cgroup: "--cgroup",
  user: "--user",
  time: "--time",
};
const COMMAND: Record<string, string> = { mnt: "mount" };

Deno.test("listNamespaces() of ns-tool itself: every type, all the caller's", () => {
  const records = listNamespaces();
  assert.deepEqual(records.map((r) => r.type), TYPES);
  for (const r of records) {
    assert.equal(r.link, `${r.type}:[${r.inode}]`);
    assert.equal(r.sameAsCaller, true);
    assert.equal(r.link, Deno.readLinkSync(`/proc/self/ns/${r.type}`));
  }
  assert.throws(
    () => listNamespaces(999999),
    (e) => e instanceof NamespaceError && e.code === "ENOENT",
  );
});

rootTest("ns-tool proc shows the same inodes as lsns, as a table and as JSON", async () => {
  await using target = await startTarget(["--uts", "--net", "--pid", "--fork", "sleep", "30"]);
  const json = await runCli(["proc", "--pid", String(target.pid), "--json"]);
  const records = JSON.parse(json.stdout) as {
    type: string;
    inode: number;
    link: string;
    sameAsCaller: boolean;
  }[];
  // lsns scans every process: while parallel tests start and end processes it now and then
  // leaves a namespace out (seen under load). Ask again until it names every type we report.
  let fromLsns: Record<string, number> = {};
  for (let attempt = 0; attempt < 5; attempt++) {
    const lsns = await run("lsns", ["-p", String(target.pid), "-n", "-o", "NS,TYPE"]);
    fromLsns = Object.fromEntries(
      lsns.stdout.trim().split("\n").map((l) => l.trim().split(/\s+/)).map((
        [ns, type],
      ) => [type, Number(ns)]),
    );
    if (records.every((r) => fromLsns[r.type] !== undefined)) break;
  }
  for (const r of records) assert.equal(r.inode, fromLsns[r.type], r.type);
  const same = Object.fromEntries(records.map((r) => [r.type, r.sameAsCaller]));
  assert.deepEqual(same, {
    uts: false,
    ipc: true,
    net: false,
    mnt: true,
    pid: false,
    cgroup: true,
    user: true,
    time: true,
  });
  const table = await runCli(["proc", "-p", String(target.pid)]);
  assert.match(table.stdout, /^TYPE\s+INODE\s+LINK\s+SAME AS CALLER\n/);
  assert.match(
    table.stdout,
    new RegExp(
      `\\nnet\\s+\\d+\\s+${nsLink(target.pid, "net")!.replace(/[[\]]/g, "\\$&")}\\s+no\\n`,
    ),
  );
  const missing = await runCli(["proc", "-p", "999999"]);
  assert.equal(
    missing.stderr,
    "ns-tool: Failed to open namespace /proc/999999/ns/uts: ENOENT: No such file or directory\n",
  );
  assert.equal(missing.code, 1);
});

rootTest(
  "each per-type command makes a new namespace of that type and only that one, as unshare",
  async () => {
    for (const type of TYPES) {
      const script = `for t in ${TYPES.join(" ")}; do readlink /proc/self/ns/$t; done`;
      const ours = await runCli([COMMAND[type] ?? type, "--", "sh", "-c", script]);
      const theirs = await run("unshare", [
        UNSHARE_FLAG[type]!,
        ...(type === "pid" ? ["--fork"] : []),
        "sh",
        "-c",
        script,
      ]);
      assert.equal(ours.stderr, "", type);
      const changed = (text: string) =>
        text.trim().split("\n").map((
          link,
          i,
        ) => (link === nsLink("self", TYPES[i]!) ? "" : TYPES[i]!)).filter(Boolean);
      assert.deepEqual(changed(ours.stdout), [type], type);
      assert.deepEqual(changed(ours.stdout), changed(theirs.stdout), type);
    }
  },
);

rootTest(
  "unshare --ns-types with --hostname, --mount-proc and --map-root-user: the same isolation as util-linux unshare",
  async () => {
    const script =
      "hostname; echo $$; ps -o comm= | head -1; id -u; cat /proc/self/uid_map | tr -s ' '";
    const ours = await runCli([
      "unshare",
      "-n",
      "uts,pid,mnt,user",
      "--hostname",
      "made-here",
      "--mount-proc",
      "--map-root-user",
      "--",
      "sh",
      "-c",
      script,
    ]);
    const theirs = await run("unshare", [
      "--uts",
      "--pid",
      "--fork",
      "--mount-proc",
      "--map-root-user",
      "sh",
      "-c",
      `hostname made-here; ${script}`,
    ]);
    assert.equal(ours.stderr, "");
    assert.equal(ours.stdout, theirs.stdout);
    assert.match(ours.stdout, /^made-here\n1\nsh\n0\n 0 0 1\n$/);
    assert.equal(Deno.hostname(), (await run("hostname", [])).stdout.trim());
  },
);

rootTest(
  "an unprivileged user makes namespaces with a user namespace, and is told why without one",
  async () => {
    const ok = await nobodyCli([
      "unshare",
      "-n",
      "user,uts,net",
      "-r",
      "--hostname",
      "mine",
      "--",
      "sh",
      "-c",
      "id -u; hostname",
    ]);
    assert.equal(ok.stderr, "");
    assert.equal(ok.stdout, "0\nmine\n");
    const refused = await nobodyCli(["uts", "--", "true"]);
    assert.equal(refused.code, 1);
    assert.equal(
      refused.stderr,
      "ns-tool: Failed to create new namespaces: EPERM: Operation not permitted (creating namespaces needs CAP_SYS_ADMIN: run as root, or create a user namespace too (--map-root-user))\n",
    );
  },
);

rootTest(
  "a time namespace made with --boottime shows the offset, as unshare --time --boottime",
  async () => {
    const uptime = (text: string) => Number(text.split(" ")[0]);
    const ours = await runCli(["time", "--boottime", "864000", "--", "cat", "/proc/uptime"]);
    const theirs = await run("unshare", ["--time", "--boottime", "864000", "cat", "/proc/uptime"]);
    assert.ok(
      Math.abs(uptime(ours.stdout) - uptime(theirs.stdout)) < 5,
      `${ours.stdout} vs ${theirs.stdout}`,
    );
    assert.ok(uptime(ours.stdout) > 864000);
  },
);

rootTest(
  "--persist keeps a namespace after the command ends, for exec --ns-path and nsenter; clean-up leaves nothing",
  async () => {
    const dir = await Deno.makeTempDir();
    const net = `${dir}/net`;
    const uts = `${dir}/uts`;
    try {
      const made = await runCli([
        "unshare",
        "-n",
        "net,uts",
        "--hostname",
        "kept",
        "--persist",
        `net=${net}`,
        "--persist",
        `uts=${uts}`,
        "--",
        "readlink",
        "/proc/self/ns/net",
      ]);
      assert.equal(made.stderr, "");
      const link = made.stdout.trim();
      assert.notEqual(link, nsLink("self", "net"));
      // The command has ended; the namespaces are still there.
      const viaNsenter = await runNsenter([
        `--net=${net}`,
        `--uts=${uts}`,
        "sh",
        "-c",
        "readlink /proc/self/ns/net; hostname",
      ]);
      assert.equal(viaNsenter.stdout, `${link}\nkept\n`);
      const viaNsTool = await runCli([
        "exec",
        "--ns-path",
        `net=${net}`,
        "--ns-path",
        `uts=${uts}`,
        "--",
        "sh",
        "-c",
        "readlink /proc/self/ns/net; hostname",
      ]);
      assert.equal(viaNsTool.stdout, viaNsenter.stdout);
    } finally {
      for (const path of [net, uts]) await run("umount", [path]);
      await Deno.remove(dir, { recursive: true });
    }
    const mounts = Deno.readTextFileSync("/proc/self/mountinfo");
    assert.equal(mounts.includes(dir), false, "a bind mount was left behind");
  },
);

rootTest("the library makes namespaces with the same output shape as execInNamespace", async () => {
  const out = await execInNewNamespaces({
    namespaces: ["uts", "pid"],
    hostname: "lib",
    mountProc: true,
    command: ["sh", "-c", "hostname; echo $$"],
  });
  assert.equal(decoder.decode(out.stdout), "lib\n1\n");
  assert.deepEqual([out.code, out.success, out.signal], [0, true, null]);
  const child = spawnInNewNamespaces({ namespaces: ["net"], command: ["sleep", "30"] });
  // Seen from outside: a new net namespace, the rest the caller's (as lsns -p shows).
  assert.notEqual(nsLink(child.pid, "net"), nsLink("self", "net"));
  for (const t of ["uts", "mnt", "pid", "user"]) {
    assert.equal(nsLink(child.pid, t), nsLink("self", t), t);
  }
  child.kill();
  assert.equal((await child.status).signal, "SIGTERM");
  assert.throws(
    () => spawnInNewNamespaces({ namespaces: ["net"], hostname: "x", command: ["true"] }),
    TypeError,
  );
  assert.throws(
    () =>
      spawnInNewNamespaces({ namespaces: ["mnt"], persist: { mnt: "/tmp/x" }, command: ["true"] }),
    /Persisting a mount namespace is not supported/,
  );
});

rootTest("per-type commands without a command demonstrate what they isolate", async () => {
  const expect: Record<string, RegExp> = {
    uts: /inside: {2}hostname ns-tool-demo\noutside: hostname /,
    ipc: /inside: {2}1 System V message queue\(s\), one just made\noutside: 0 System V/,
    mount: /inside: {2}1 mount\(s\) on \/mnt.*\noutside: 0 mount\(s\) on \/mnt/,
    net: /inside: {2}interfaces: lo \noutside: interfaces: lo /,
    pid: /inside: {2}my pid is 1;/,
    cgroup: /inside: {2}cgroup 0::\/\n/,
    user: /inside: {2}uid=0\(root\)/,
    time: /inside: {2}uptime (8[6-9]\d{4}|9\d{5}|\d{7,})\.\d+ s\n/,
  };
  for (const [command, pattern] of Object.entries(expect)) {
    const out = await runCli([command]);
    assert.equal(out.code, 0, `${command}: ${out.stderr}`);
    assert.match(out.stdout, pattern, command);
    assert.match(out.stdout, /^A new \w+ namespace: /, command);
  }
});

rootTest("bad input to unshare is a one-line usage error and creates nothing", async () => {
  for (
    const args of [
      ["unshare", "--", "true"],
      ["unshare", "-n", "bogus"],
      ["uts", "-n", "net"],
      ["unshare", "-n", "net", "--persist", "net"],
      ["time", "--boottime", "soon"],
      ["uts", "--frobnicate"],
    ]
  ) {
    const out = await runCli(args);
    assert.equal(out.code, 2, args.join(" "));
    assert.match(out.stderr, /^ns-tool: [^\n]+\n$/, args.join(" "));
  }
  const mismatch = await runCli(["net", "--hostname", "x", "--", "true"]);
  assert.equal(mismatch.stderr, "ns-tool: hostname needs a new uts namespace\n");
  assert.equal(mismatch.code, 2);
});

rootTest(
  "--persist pid binds the new pid namespace once it has its pid 1, as unshare --pid=FILE",
  async () => {
    const dir = await Deno.makeTempDir();
    const file = `${dir}/pid`;
    const cli = startCli([
      "unshare",
      "-n",
      "pid",
      "--persist",
      `pid=${file}`,
      "--",
      "sh",
      "-c",
      "echo up; exec sleep 30",
    ]);
    try {
      await cli.until(/up/);
      const inside = await runNsenter([`--pid=${file}`, "sh", "-c", "echo $$"]);
      assert.equal(inside.stderr, "");
      assert.ok(Number(inside.stdout) > 1 && Number(inside.stdout) < 100, inside.stdout);
      // ns-tool itself stays in our pid namespace.
      assert.equal(nsLink(cli.pid, "pid"), nsLink("self", "pid"));
    } finally {
      // The namespace's pid 1 (ns-tool's child) ignores signals it has no handler for: SIGKILL it.
      const children = Deno.readTextFileSync(`/proc/${cli.pid}/task/${cli.pid}/children`).trim();
      for (const child of children.split(/\s+/).filter(Boolean)) {
        Deno.kill(Number(child), "SIGKILL");
      }
      cli.kill("SIGKILL");
      await cli.finish();
      await run("umount", [file]);
      await Deno.remove(dir, { recursive: true });
    }
  },
);

rootTest(
  "a command that cannot run leaves no persisted namespace behind (nothing half-done)",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      const out = await runCli([
        "unshare",
        "-n",
        "net,uts",
        "--persist",
        `net=${dir}/net`,
        "--persist",
        `uts=${dir}/uts`,
        "--",
        "no-such-program",
      ]);
      assert.equal(out.code, 127);
      assert.equal(
        Deno.readTextFileSync("/proc/self/mountinfo").includes(dir),
        false,
        "a bind mount was left",
      );
      assert.deepEqual([...Deno.readDirSync(dir)], [], "a file made for a bind was left");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
