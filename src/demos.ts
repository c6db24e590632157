/**
 * What `ns-tool TYPE` without a command shows: a short demonstration of what
 * a new namespace of that type isolates, inside next to outside.
 *
 * @module
 */
import type { CreateArgs } from "./cli_args.ts";
import type { NewNamespaceOptions } from "./create.ts";
import type { NamespaceType } from "./namespaces.ts";
import { readText } from "../ffi/syscalls.ts";

/** A demonstration: the options it adds, the command inside, and what it prints outside. */
interface Demo {
  options(args: CreateArgs): Partial<NewNamespaceOptions>;
  outside(): string;
}

function file(path: string): string {
  const text = readText(path);
  return typeof text === "number" ? "" : text;
}

function shell(script: string): Partial<NewNamespaceOptions> {
  return { command: ["/bin/sh", "-c", script] };
}

const interfaces = (text: string) =>
  text.split("\n").slice(2).map((l) => l.split(":")[0]!.trim()).filter(Boolean).join(" ");

/** The demonstrations, by namespace type. */
export const DEMOS: Record<NamespaceType, Demo> = {
  uts: {
    options: (args) => ({
      hostname: args.hostname ?? "ns-tool-demo",
      ...shell('echo "inside:  hostname $(hostname)"'),
    }),
    outside: () => `hostname ${file("/proc/sys/kernel/hostname").trim()}`,
  },
  ipc: {
    options: () =>
      shell(
        'ipcmk -Q >/dev/null 2>&1; echo "inside:  $(($(wc -l < /proc/sysvipc/msg) - 1)) System V message queue(s), one just made"',
      ),
    outside: () =>
      `${file("/proc/sysvipc/msg").trim().split("\n").length - 1} System V message queue(s)`,
  },
  mnt: {
    options: () =>
      shell(
        "mount -t tmpfs ns-tool-demo /mnt && echo \"inside:  $(grep -c ' /mnt ' /proc/self/mounts) mount(s) on /mnt (a tmpfs just made)\"",
      ),
    outside: () =>
      `${
        file("/proc/self/mounts").split("\n").filter((l) => l.split(" ")[1] === "/mnt").length
      } mount(s) on /mnt`,
  },
  net: {
    options: () =>
      shell(
        `echo "inside:  interfaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')"`,
      ),
    outside: () => `interfaces: ${interfaces(file("/proc/net/dev"))}`,
  },
  pid: {
    options: () => ({
      mountProc: true,
      ...shell('echo "inside:  my pid is $$; $(ls -d /proc/[0-9]* | wc -l) process(es) in /proc"'),
    }),
    outside: () =>
      `my pid is ${Deno.pid}; ${
        [...Deno.readDirSync("/proc")].filter((e) => /^\d+$/.test(e.name)).length
      } process(es) in /proc`,
  },
  cgroup: {
    options: () => shell('echo "inside:  cgroup $(grep ^0:: /proc/self/cgroup)"'),
    outside: () =>
      `cgroup ${file("/proc/self/cgroup").split("\n").find((l) => l.startsWith("0::"))}`,
  },
  user: {
    options: () => ({ mapRootUser: true, ...shell('echo "inside:  $(id)"') }),
    outside: () => `uid=${Deno.uid()} gid=${Deno.gid()}`,
  },
  time: {
    options: (args) => ({
      ...(args.boottime === undefined && args.monotonic === undefined ? { boottime: 864000 } : {}),
      ...shell('echo "inside:  uptime $(cut -d" " -f1 /proc/uptime) s"'),
    }),
    outside: () => `uptime ${file("/proc/uptime").split(" ")[0]} s`,
  },
};
