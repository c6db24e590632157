// `exec -t`: a pseudo-terminal of the command's own, driven through real
// terminal sessions in tmux (send-keys to type, capture-pane to read).
import assert from "node:assert/strict";
import { NamespaceError, spawnInNamespace } from "../mod.ts";
import { CLI_SHELL, rootTest, run, runCli, running, startTarget, waitFor } from "./_helpers.ts";

const HAS_TMUX = (await run("sh", ["-c", "command -v tmux"])).code === 0;
if (!HAS_TMUX) console.log("skipped: exec -t tests: requires tmux (apt-get install tmux)");

const TARGET = [
  "--uts",
  "--pid",
  "--mount",
  "--fork",
  "--mount-proc",
  "sh",
  "-c",
  "hostname tty-target && exec sleep 60",
];
const ENV = { TERM: "xterm-256color", PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" };

/** A tmux session running a bare bash, on a server of its own; dispose kills the server. */
async function terminal(columns = 100, rows = 30) {
  const socket = `ns-tool-test-${Deno.pid}-${Math.random().toString(36).slice(2)}`;
  const tmux = (...args: string[]) => run("tmux", ["-L", socket, ...args], { env: ENV });
  const started = await tmux(
    "new-session",
    "-d",
    "-s",
    "t",
    "-x",
    String(columns),
    "-y",
    String(rows),
    "bash --norc --noprofile",
  );
  assert.equal(started.code, 0, started.stderr);
  const screen = async () => (await tmux("capture-pane", "-t", "t", "-p")).stdout;
  return {
    type: (...keys: string[]) => tmux("send-keys", "-t", "t", ...keys),
    screen,
    resize: (x: number, y: number) =>
      tmux("resize-window", "-t", "t", "-x", String(x), "-y", String(y)),
    until: (what: string, pattern: RegExp) =>
      waitFor(what, async () => (pattern.test(await screen()) ? true : undefined), 10000),
    [Symbol.asyncDispose]: async () => void await tmux("kill-server"),
  };
}

function ttyTest(name: string, fn: () => Promise<void>) {
  if (HAS_TMUX) rootTest(name, fn);
  else Deno.test({ name, ignore: true, fn });
}

ttyTest(
  "exec -t gives an interactive shell inside: prompt, resize, Ctrl-C, exit code, terminal restored",
  async () => {
    await using target = await startTarget(TARGET, running("sleep"));
    await using term = await terminal();
    await term.type(
      `${CLI_SHELL} exec -t -p ${target.pid} -n uts,mnt,pid -- sh; echo EXIT=$?; stty -a | grep -o -- ' -\\?icanon\\| -\\?echo ' | tr -d ' ' | tr '\\n' ,; echo`,
      "Enter",
    );
    await term.until("the prompt inside", /^#\s*$/m); // capture-pane trims the trailing space
    await term.type("hostname; echo pid=$$; stty size", "Enter");
    await term.until("the answers", /tty-target\npid=\d+\n30 100\n/);
    await term.resize(120, 40);
    await term.type("stty size", "Enter");
    await term.until("the new size", /\n40 120\n/);
    await term.type("sleep 100", "Enter");
    // Ctrl-C once sleep really runs; then the shell inside must give its prompt back.
    await waitFor(
      "sleep to run",
      async () => (await run("pgrep", ["-x", "-f", "sleep 100"])).code === 0 || undefined,
    );
    await term.type("C-c");
    await term.until("the prompt after Ctrl-C", /\^C\n#/);
    await term.type("echo still-here; exit 7", "Enter");
    await term.until("the end", /EXIT=7\n/);
    const screen = await term.screen();
    assert.match(screen, /\^C\n# echo still-here/);
    assert.match(screen, /still-here\nEXIT=7\n/);
    assert.match(screen, /\npid=([2-9]|\d\d)\n/, "a small pid inside the target's pid namespace");
    // Canonical mode and echo are back in the caller's terminal.
    await term.until("the terminal modes", /icanon,echo,/);
  },
);

ttyTest(
  "TIOCSTI from inside goes to the command's own pty, never to the caller's terminal",
  async () => {
    await using target = await startTarget(TARGET, running("sleep"));
    const marker = `/tmp/ns-tool-tiocsti-${Deno.pid}`;
    // Pushes "touch MARKER" into its terminal's input; whoever reads that terminal runs it.
    const inject =
      `/usr/bin/python3 -c 'import fcntl, termios; [fcntl.ioctl(0, termios.TIOCSTI, bytes([c])) for c in b"touch ${marker}\\n"]'`;
    try {
      for (
        const [tool, reaches] of [[`${CLI_SHELL} exec -t -p ${target.pid} -n uts --`, false], [
          `nsenter -t ${target.pid} -u`,
          true,
        ]] as const
      ) {
        await using term = await terminal();
        await term.type(`${tool} ${inject}; echo DONE`, "Enter");
        await term.until("the injection", /^DONE$/m);
        await new Promise((resolve) => setTimeout(resolve, 300));
        const exists = await Deno.stat(marker).then(() => true, () => false);
        // The control: without a pty of its own (nsenter), the caller's shell runs the injected text.
        assert.equal(exists, reaches, tool);
        await Deno.remove(marker).catch(() => {});
      }
    } finally {
      await Deno.remove(marker).catch(() => {});
    }
  },
);

ttyTest("exec -t without a terminal on stdin fails as docker does", async () => {
  await using target = await startTarget(TARGET, running("sleep"));
  const out = await runCli(["exec", "-t", "-p", String(target.pid), "--", "true"]);
  assert.equal(out.stderr, "ns-tool: the input device is not a TTY\n");
  assert.equal(out.code, 1);
});

rootTest(
  "the library's tty option: a pty inside the target, its size from the start, resize(), the exit status",
  async () => {
    await using target = await startTarget(TARGET, running("sleep"));
    const child = spawnInNamespace({
      pid: target.pid,
      namespaces: ["uts", "mnt", "pid"],
      command: ["sh", "-c", "stty size; hostname; tty; read line; stty size; exit 3"],
      tty: true,
      ttySize: { columns: 77, rows: 22 },
    });
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!/dev\/pts\/\d+\r?\n/.test(text)) text += (await reader.read()).value ?? "";
    child.resize(90, 30);
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("go\n"));
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    text = text.replaceAll("\r", "");
    // The size from the start (no resize yet), then after resize().
    assert.match(text, /^22 77\ntty-target\n\/dev\/pts\/\d+\n(go\n)?30 90\n$/);
    assert.equal((await child.status).code, 3);
    assert.throws(() => child.resize(1, 1), TypeError);
    await writer.close().catch(() => {});
  },
);

ttyTest("one Ctrl-C reaches a command in the caller's terminal once, as with nsenter", async () => {
  await using target = await startTarget(TARGET, running("sleep"));
  const counter =
    `/usr/bin/python3 -c 'import signal, time; n = [0]; signal.signal(signal.SIGINT, lambda *a: n.__setitem__(0, n[0] + 1)); print("ready", flush=True); time.sleep(1.5); print("count", n[0])'`;
  for (
    const tool of [`${CLI_SHELL} exec -p ${target.pid} -n uts --`, `nsenter -t ${target.pid} -u`]
  ) {
    await using term = await terminal();
    await term.type(`${tool} ${counter}`, "Enter");
    await term.until("ready", /^ready$/m);
    await term.type("C-c");
    await term.until("the count", /count \d+$/m); // after the terminal's echo of ^C
    assert.match(await term.screen(), /(\^C)?count 1$/m, tool);
  }
});

rootTest(
  "a container's fake ptmx (a symlink to a host file, a FIFO) is refused, never opened",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(`${dir}/secret`, "host only\n");
      for (const fake of [`ln -s ${dir}/secret /dev/pts/ptmx`, "mkfifo /dev/pts/ptmx"]) {
        await using target = await startTarget(
          [
            "--mount",
            "--fork",
            "sh",
            "-c",
            `mount -t tmpfs fake /dev/pts && ${fake} && exec sleep 60`,
          ],
          (pid) => {
            try {
              // Ready once the real ptmx (a character device) is hidden by the fake one.
              return !Deno.lstatSync(`/proc/${pid}/root/dev/pts/ptmx`).isCharDevice;
            } catch {
              return false;
            }
          },
        );
        const started = Date.now();
        assert.throws(
          () =>
            spawnInNamespace({
              pid: target.pid,
              namespaces: ["mnt"],
              command: ["true"],
              tty: true,
            }),
          (e) =>
            e instanceof NamespaceError && e.code === "ENODEV" &&
            e.message.includes("not the pty multiplexer"),
          fake,
        );
        assert.ok(Date.now() - started < 1000, "the FIFO's open must not block");
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
