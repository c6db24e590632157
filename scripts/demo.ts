/**
 * The demo a newcomer runs first (`deno task demo`, as root): it starts a
 * throwaway target with its own hostname, network, mounts and pids, enters it
 * with ns-tool, shows what the command sees next to what the host sees, and
 * cleans up.
 *
 * @module
 */
import { execInNamespace, NAMESPACE_TABLE } from "../mod.ts";

const decoder = new TextDecoder();
const CLI = new URL("../cli.ts", import.meta.url).pathname;
const TYPES = ["uts", "ipc", "net", "mnt", "pid", "cgroup"] as const;

function say(text = "") {
  console.log(text);
}

async function hostSide(command: string[]): Promise<string> {
  const out = await new Deno.Command(command[0]!, {
    args: command.slice(1),
    stdout: "piped",
    stderr: "null",
  })
    .output();
  return decoder.decode(out.stdout).trimEnd();
}

/** Starts the target and returns its pid (the child of unshare) and a way to kill it. */
async function startTarget(): Promise<{ pid: number; stop: () => Promise<void> }> {
  const setup = [
    "hostname ns-tool-demo",
    "ip link set lo up 2>/dev/null",
    "exec sleep 300",
  ].join("; ");
  const unshare = new Deno.Command("unshare", {
    args: [
      ...TYPES.map((t) => (t === "mnt" ? "--mount" : `--${t}`)),
      "--fork",
      "--mount-proc",
      "sh",
      "-c",
      setup,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const stop = async () => {
    for (const pid of [target, unshare.pid]) {
      try {
        if (pid > 0) Deno.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await unshare.status;
  };
  let target = 0;
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    try {
      const children = Deno.readTextFileSync(`/proc/${unshare.pid}/task/${unshare.pid}/children`)
        .trim();
      target = Number(children.split(/\s+/)[0]) || 0;
      if (target && Deno.readTextFileSync(`/proc/${target}/cmdline`).startsWith("sleep")) {
        return { pid: target, stop };
      }
    } catch {
      // not there yet
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await stop();
  throw new Error("The demo target did not start (is util-linux unshare installed?)");
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => "  " + r.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd())
    .join("\n");
}

if (import.meta.main) {
  if (Deno.uid() !== 0) {
    console.error(
      "demo: making and joining namespaces needs root (CAP_SYS_ADMIN): run it as root, or with sudo",
    );
    Deno.exit(1);
  }
  const target = await startTarget();
  try {
    const pid = target.pid;
    say(`Started a throwaway target: pid ${pid}, made by`);
    say(`  unshare --uts --ipc --net --mount --pid --cgroup --fork --mount-proc sh -c '...'`);
    say();

    const inside = (command: string[]) =>
      execInNamespace({ pid, namespaces: [...TYPES], command }).then((out) =>
        decoder.decode(out.stdout).trimEnd()
      );

    say("Hostname");
    say(table([
      ["host", await hostSide(["hostname"])],
      ["inside the target", await inside(["hostname"])],
    ]));
    say();

    say("Network interfaces (ip -br link): the target has only its own loopback");
    say("  host:");
    for (const line of (await hostSide(["ip", "-br", "link"])).split("\n")) say(`    ${line}`);
    say("  inside the target:");
    for (const line of (await inside(["ip", "-br", "link"])).split("\n")) say(`    ${line}`);
    say();

    say("Processes inside the target (ps -o pid,comm): its own pid namespace");
    for (const line of (await inside(["ps", "-o", "pid,comm"])).split("\n")) say(`    ${line}`);
    say();

    say("Namespace inodes: the host's, the target's, and the command's own as it sees them");
    const seen = (await inside([
      "sh",
      "-c",
      `for t in ${TYPES.join(" ")}; do readlink /proc/self/ns/$t; done`,
    ]))
      .split("\n");
    const rows = [["type", "host", "target", "command (inside)", ""]];
    TYPES.forEach((type, i) => {
      const host = Deno.readLinkSync(`/proc/self/ns/${type}`);
      const theirs = Deno.readLinkSync(`/proc/${pid}/ns/${type}`);
      const label = NAMESPACE_TABLE.find((ns) => ns.type === type)!.label;
      rows.push([
        type,
        host,
        theirs,
        seen[i] ?? "?",
        seen[i] === theirs ? `joined (${label})` : "NOT JOINED",
      ]);
    });
    say(table(rows));
    say();

    say(`The same from the command line:`);
    say(`  $ deno run -A cli.ts exec --pid ${pid} -- hostname`);
    const cli = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", CLI, "exec", "--pid", String(pid), "--", "hostname"],
      stdout: "piped",
    }).output();
    say(`  ${decoder.decode(cli.stdout).trim()}`);
  } finally {
    await target.stop();
    say();
    say(`Cleaned up: killed the target (pid ${target.pid}) and its unshare parent.`);
  }
}
