// User and time namespaces, which the kernel refuses to multithreaded callers:
// joined by the spawner's child, compared with util-linux nsenter -U / -T.
import assert from "node:assert/strict";
import { execInNamespace } from "../mod.ts";
import {
  asNobody,
  nobodyCli,
  nsLink,
  rootTest,
  runCli,
  running,
  runNsenter,
  startNobodyTarget,
  startTarget,
} from "./_helpers.ts";

const decoder = new TextDecoder();
const ROOTLESS = [
  "--user",
  "--map-root-user",
  "--uts",
  "--ipc",
  "--net",
  "--mount",
  "--pid",
  "--fork",
  "--mount-proc",
  "sh",
  "-c",
  "hostname rootless && exec sleep 60",
];
const INSIDE = "id; hostname; for t in user uts pid mnt; do readlink /proc/self/ns/$t; done";

/** A target started by nobody in a user namespace nobody owns. */
function rootlessOfNobody() {
  return startNobodyTarget(ROOTLESS, running("sleep"));
}

rootTest("root enters a rootless container: uid 0 inside, same as nsenter -U", async () => {
  await using target = await startTarget(ROOTLESS, running("sleep"));
  const types = "user,uts,ipc,net,mnt,pid";
  const ours = await runCli([
    "exec",
    "-p",
    String(target.pid),
    "-n",
    types,
    "--",
    "sh",
    "-c",
    INSIDE,
  ]);
  const theirs = await runNsenter([
    "-t",
    String(target.pid),
    "-U",
    "-u",
    "-i",
    "-n",
    "-m",
    "-p",
    "sh",
    "-c",
    INSIDE,
  ]);
  assert.equal(ours.stderr, "");
  assert.equal(ours.stdout, theirs.stdout);
  const [id, hostname, user] = ours.stdout.split("\n");
  assert.equal(id, "uid=0(root) gid=0(root) groups=0(root)");
  assert.equal(hostname, "rootless");
  assert.equal(user, nsLink(target.pid, "user"));
});

rootTest("--preserve-credentials keeps the caller's ids, same as nsenter", async () => {
  await using target = await rootlessOfNobody();
  // nobody owns the namespace: host uid 65534 is uid 0 inside, host root is unmapped.
  const ours = await runCli([
    "exec",
    "-p",
    String(target.pid),
    "-n",
    "user,uts",
    "--preserve-credentials",
    "--",
    "id",
  ]);
  const theirs = await runNsenter([
    "-t",
    String(target.pid),
    "-U",
    "-u",
    "--preserve-credentials",
    "id",
  ]);
  assert.equal(ours.stdout, theirs.stdout);
  assert.match(ours.stdout, /^uid=65534\(nobody\) gid=65534\(nogroup\)/);
  const dropped = await runCli(["exec", "-p", String(target.pid), "-n", "user,uts", "--", "id"]);
  assert.equal(dropped.stdout, "uid=0(root) gid=0(root) groups=0(root)\n");
});

rootTest(
  "an unprivileged owner enters its rootless container, where nsenter 2.38 fails",
  async () => {
    await using target = await rootlessOfNobody();
    for (const extra of [[], ["--preserve-credentials"]]) {
      const ours = await nobodyCli([
        "exec",
        "-p",
        String(target.pid),
        "-n",
        "user,uts,ipc,net,mnt,pid",
        ...extra,
        "--",
        "sh",
        "-c",
        INSIDE,
      ]);
      assert.equal(ours.stderr, "", String(extra));
      assert.equal(ours.code, 0);
      const [id, hostname, user, uts, pid, mnt] = ours.stdout.split("\n");
      assert.equal(id, "uid=0(root) gid=0(root) groups=0(root)", String(extra));
      assert.equal(hostname, "rootless");
      assert.deepEqual(
        [user, uts, pid, mnt],
        ["user", "uts", "pid", "mnt"].map((t) => nsLink(target.pid, t)),
      );
    }
    // The reference: nsenter needs --preserve-credentials there (setgroups is denied inside).
    const nsenter = await asNobody("nsenter", [
      "-t",
      String(target.pid),
      "-U",
      "-u",
      "sh",
      "-c",
      "id",
    ]);
    assert.notEqual(nsenter.code, 0);
    assert.match(nsenter.stderr, /setgroups failed/);
    const preserved = await asNobody("nsenter", [
      "-t",
      String(target.pid),
      "-U",
      "-u",
      "--preserve-credentials",
      "id",
    ]);
    const ours = await nobodyCli([
      "exec",
      "-p",
      String(target.pid),
      "-n",
      "user,uts",
      "--preserve-credentials",
      "--",
      "id",
    ]);
    assert.equal(ours.stdout, preserved.stdout);
  },
);

rootTest("the library joins a user namespace with and without preserveCredentials", async () => {
  await using target = await rootlessOfNobody();
  const id = async (preserveCredentials: boolean) =>
    decoder.decode(
      (await execInNamespace({
        pid: target.pid,
        namespaces: ["user", "uts"],
        command: ["id", "-u"],
        preserveCredentials,
      }))
        .stdout,
    );
  assert.equal(await id(false), "0\n");
  // Host root is not mapped in nobody's namespace: it shows as the overflow uid.
  assert.equal(await id(true), "65534\n");
});

rootTest("joining your own user namespace fails clearly, not with a bare EINVAL", async () => {
  await using target = await startTarget(["--uts", "sleep", "30"]);
  const out = await runCli(["exec", "-p", String(target.pid), "-n", "user", "--", "true"]);
  assert.equal(out.code, 1);
  assert.equal(
    out.stderr,
    `ns-tool: Failed to join user namespace of process ${target.pid}: EINVAL: Invalid argument (it is the caller's own user namespace, which the kernel refuses to enter again)\n`,
  );
});

rootTest("a time namespace shows the target's boot clock, as with nsenter -T", async () => {
  await using target = await startTarget([
    "--time",
    "--boottime",
    "864000",
    "--fork",
    "sleep",
    "60",
  ]);
  const uptime = (text: string) => Number(text.split(" ")[0]);
  const host = uptime(await Deno.readTextFile("/proc/uptime"));
  const ours = await runCli([
    "exec",
    "-p",
    String(target.pid),
    "-n",
    "time",
    "--",
    "cat",
    "/proc/uptime",
  ]);
  const theirs = await runNsenter(["-t", String(target.pid), "-T", "cat", "/proc/uptime"]);
  assert.equal(ours.stderr, "");
  assert.ok(
    Math.abs(uptime(ours.stdout) - uptime(theirs.stdout)) < 5,
    `${ours.stdout} vs ${theirs.stdout}`,
  );
  assert.ok(uptime(ours.stdout) - host > 864000 - 5, `${ours.stdout} vs host ${host}`);
  // The command's own links name the target's time namespace.
  const link = await runCli([
    "exec",
    "-p",
    String(target.pid),
    "-n",
    "time",
    "--",
    "readlink",
    "/proc/self/ns/time",
  ]);
  assert.equal(link.stdout.trim(), nsLink(target.pid, "time"));
  // Side by side through the library: spawned from pool threads, by fork (no shared memory).
  const outs = await Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      execInNamespace({
        pid: target.pid,
        namespaces: i % 2 ? ["time"] : ["time", "uts"],
        command: ["cat", "/proc/uptime"],
      })),
  );
  for (const out of outs) {
    assert.equal(out.code, 0);
    assert.ok(uptime(new TextDecoder().decode(out.stdout)) - host > 864000 - 5);
  }
});

rootTest("time, user and pid together: the command is in all three", async () => {
  await using target = await startTarget([
    "--user",
    "--map-root-user",
    "--time",
    "--boottime",
    "86400",
    "--pid",
    "--fork",
    "--mount-proc",
    "sleep",
    "60",
  ]);
  const out = await runCli([
    "exec",
    "-p",
    String(target.pid),
    "-n",
    "user,mnt,pid,time",
    "--",
    "sh",
    "-c",
    "echo $$; for t in user pid time; do readlink /proc/self/ns/$t; done",
  ]);
  assert.equal(out.stderr, "");
  const [pid, ...links] = out.stdout.trim().split("\n");
  assert.ok(Number(pid) > 1 && Number(pid) < 1000, `pid ${pid}`);
  assert.deepEqual(links, ["user", "pid", "time"].map((t) => nsLink(target.pid, t)));
});
