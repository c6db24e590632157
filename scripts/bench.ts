/**
 * Benchmarks ns-tool against util-linux nsenter, all figures in one run:
 *
 * 1. the CLI as a whole process, against nsenter and against `deno run` of a
 *    hello-world script (the runtime's floor), with peak memory;
 * 2. the library per call, sequential and 64 concurrent, against
 *    `Deno.Command("nsenter")`;
 * 3. growth: many sequential calls (time, RSS, descriptors) and time per call
 *    as the number of joined namespace types grows.
 *
 * Every comparison runs in interleaved rounds (A B A B ...), so that drift on
 * a noisy machine hits every side alike. The targets are started here with
 * `unshare` and killed by pid at the end, also on error or Ctrl-C.
 *
 * ```sh
 * deno task bench            # full run, a few minutes at most
 * deno task bench --quick    # small counts: a smoke run
 * ```
 *
 * Progress goes to stderr; the tables go to stdout and, as markdown with a
 * line describing the machine, to bench-results/latest.md.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { execInNamespace, type NamespaceType } from "../mod.ts";

// ---------------------------------------------------------------------------
// Settings

interface Settings {
  /** Interleaved rounds of every CLI variant (wall time). */
  cliRounds: number;
  /** Interleaved rounds of every CLI variant under /usr/bin/time (peak RSS). */
  rssRounds: number;
  /** Sequential library calls per side, in batches of `seqBatch`. */
  seqCalls: number;
  seqBatch: number;
  /** Rounds of `concurrency` calls at once, per side. */
  concRounds: number;
  concurrency: number;
  /** Sequential calls of the growth run, and the window compared at each end. */
  growthCalls: number;
  growthWindow: number;
  /** Calls per namespace set and side in the sweep, in batches of `sweepBatch`. */
  sweepCalls: number;
  sweepBatch: number;
}

const FULL: Settings = {
  cliRounds: 40,
  rssRounds: 5,
  seqCalls: 400,
  seqBatch: 10,
  concRounds: 16,
  concurrency: 64,
  growthCalls: 10_000,
  growthWindow: 1_000,
  sweepCalls: 200,
  sweepBatch: 10,
};

const QUICK: Settings = {
  cliRounds: 6,
  rssRounds: 2,
  seqCalls: 40,
  seqBatch: 10,
  concRounds: 3,
  concurrency: 64,
  growthCalls: 1_000,
  growthWindow: 100,
  sweepCalls: 20,
  sweepBatch: 10,
};

const HELP = `Usage: deno task bench [--quick] [--out FILE]

  --quick     small counts, for a smoke run (seconds instead of minutes)
  --out FILE  where to write the markdown (default bench-results/latest.md)
  -h, --help  this text
`;

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = fileURLToPath(new URL("../cli.ts", import.meta.url));
const DEFAULT_OUT = fileURLToPath(new URL("../bench-results/latest.md", import.meta.url));
const DENO = Deno.execPath();
const TIME = "/usr/bin/time";
const CORES = navigator.hardwareConcurrency;

/** nsenter's flag per namespace type. */
const NSENTER_FLAG: Record<NamespaceType, string> = {
  uts: "-u",
  ipc: "-i",
  net: "-n",
  mnt: "-m",
  pid: "-p",
  cgroup: "-C",
  user: "-U",
  time: "-T",
};

/** The order ns-tool joins them in; the sweep adds them one by one. */
const SWEEP_ORDER: readonly NamespaceType[] = [
  "uts",
  "ipc",
  "net",
  "mnt",
  "pid",
  "cgroup",
  "user",
  "time",
];

function progress(message: string): void {
  console.error(`[bench] ${message}`);
}

/** A call that gives no result for this long stops the bench (killing what it started). */
const STALL_MS = 60_000;
let lastBeat = performance.now();

function beat(): void {
  lastBeat = performance.now();
}

/** Child processes this script waits for, killed by pid if the bench stops. */
const live = new Set<Deno.ChildProcess>();

/** CPU time in ms: [this process, its reaped children], from /proc/self/stat (10 ms ticks). */
function cpuTimes(): [number, number] {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
  // Fields 14-17 of stat(5): utime, stime, cutime, cstime, here at 11-14.
  const tick = 10;
  return [((f[11] ?? 0) + (f[12] ?? 0)) * tick, ((f[13] ?? 0) + (f[14] ?? 0)) * tick];
}

/** Adds the CPU time (self + reaped children) that `work` takes to `total`. */
async function withCpu<T>(total: { ms: number }, work: () => Promise<T>): Promise<T> {
  const [s0, c0] = cpuTimes();
  const result = await work();
  const [s1, c1] = cpuTimes();
  total.ms += s1 - s0 + c1 - c0;
  return result;
}

// ---------------------------------------------------------------------------
// Statistics

interface Summary {
  n: number;
  median: number;
  p10: number;
  p90: number;
  min: number;
  max: number;
  mean: number;
}

/** Linear-interpolated quantile of an ascending array. */
function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  const a = sorted[lo]!;
  const b = sorted[hi]!;
  return a + (b - a) * (at - lo);
}

function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const sum = sorted.reduce((s, v) => s + v, 0);
  return {
    n: sorted.length,
    median: quantile(sorted, 0.5),
    p10: quantile(sorted, 0.1),
    p90: quantile(sorted, 0.9),
    min: sorted[0] ?? NaN,
    max: sorted[sorted.length - 1] ?? NaN,
    mean: sorted.length ? sum / sorted.length : NaN,
  };
}

function ms(value: number, digits = 2): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "n/a";
}

function ratio(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}x` : "n/a";
}

/** Bytes in a MiB. */
const MIB = 1048576;

function mib(bytes: number): string {
  return Number.isFinite(bytes) ? (bytes / MIB).toFixed(1) : "n/a";
}

// ---------------------------------------------------------------------------
// Output: padded markdown tables read well on a terminal and render as markdown.

type Align = "l" | "r";

function table(header: readonly string[], rows: readonly string[][], align: readonly Align[]) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const cell = (text: string, i: number) => {
    const width = widths[i] ?? 0;
    return (align[i] ?? "l") === "r" ? text.padStart(width) : text.padEnd(width);
  };
  const line = (cells: readonly string[]) =>
    `| ${header.map((_, i) => cell(cells[i] ?? "", i)).join(" | ")} |`;
  const rule = `|${
    widths.map((w, i) => ((align[i] ?? "l") === "r" ? `${"-".repeat(w + 1)}:` : "-".repeat(w + 2)))
      .join("|")
  }|`;
  return [line(header), rule, ...rows.map(line)].join("\n");
}

class Report {
  readonly #parts: string[] = [];
  heading(text: string): void {
    this.#parts.push(`## ${text}`);
  }
  text(text: string): void {
    this.#parts.push(text);
  }
  table(header: readonly string[], rows: readonly string[][], align: readonly Align[]): void {
    this.#parts.push(table(header, rows, align));
  }
  toString(): string {
    return this.#parts.join("\n\n") + "\n";
  }
}

// ---------------------------------------------------------------------------
// Processes: targets and timed runs

interface Target {
  /** The unshare process. */
  unshare: Deno.ChildProcess;
  /** The sleep inside the new namespaces (pid 1 there), as this process sees it. */
  pid: number;
  exited: boolean;
  label: string;
}

const targets: Target[] = [];

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    const text = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/children`);
    for (const word of text.trim().split(/\s+/)) if (word) out.push(Number(word));
  }
  return out;
}

function nsId(pid: number | "self", type: NamespaceType): string {
  try {
    return Deno.readLinkSync(`/proc/${pid}/ns/${type}`);
  } catch {
    return "?";
  }
}

function parentOf(pid: number): number {
  // Field 4 of /proc/PID/stat, after the parenthesised command name.
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

/** Starts `unshare ... sleep 3600` and finds the sleep, once it has been exec'd. */
async function startTarget(label: string, extraFlags: readonly string[]): Promise<Target> {
  const args = [
    ...extraFlags,
    "--uts",
    "--ipc",
    "--net",
    "--mount",
    "--pid",
    "--cgroup",
    "--fork",
    "--mount-proc",
    // If this script dies without cleaning up, the kernel kills the sleep with unshare.
    "--kill-child",
    "sleep",
    "3600",
  ];
  const unshare = new Deno.Command("unshare", {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const target: Target = { unshare, pid: 0, exited: false, label };
  targets.push(target);
  unshare.status.then(() => target.exited = true);
  const ownMnt = nsId("self", "mnt");
  const deadline = performance.now() + 5000;
  while (performance.now() < deadline) {
    if (target.exited) throw new Error(`unshare ${args.join(" ")} exited early`);
    for (const pid of childrenOf(unshare.pid)) {
      let comm = "";
      try {
        comm = Deno.readTextFileSync(`/proc/${pid}/comm`).trim();
      } catch {
        continue;
      }
      if (comm === "sleep" && nsId(pid, "mnt") !== ownMnt && pid > 1 && pid !== Deno.pid) {
        target.pid = pid;
        return target;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`no sleep process appeared under unshare (pid ${unshare.pid})`);
}

/** SIGKILL to every target (the sleep is pid 1 of its namespace: only SIGKILL reaches it). */
function killTargetsNow(): void {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  for (const t of targets) {
    if (t.exited) continue;
    try {
      // Only while it is still unshare's child: never a reused pid.
      if (t.pid > 1 && parentOf(t.pid) === t.unshare.pid) Deno.kill(t.pid, "SIGKILL");
    } catch {
      // already gone
    }
    try {
      t.unshare.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
}

async function stopTargets(): Promise<void> {
  killTargetsNow();
  await Promise.all(targets.map((t) => t.unshare.status));
}

/** Runs a command to the end; throws unless it exits 0. Returns the wall time in ms. */
async function timedRun(cmd: string, args: readonly string[]): Promise<number> {
  const start = performance.now();
  const child = new Deno.Command(cmd, {
    args: [...args],
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  live.add(child);
  const status = await child.status;
  const elapsed = performance.now() - start;
  live.delete(child);
  beat();
  if (!status.success) throw new Error(`${cmd} ${args.join(" ")} exited ${status.code}`);
  return elapsed;
}

/** One run with stderr shown on failure: to check a variant before timing it. */
async function checkRun(cmd: string, args: readonly string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args: [...args], cwd: ROOT, stdin: "null" }).output();
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`${cmd} ${args.join(" ")} exited ${out.code}: ${err}`);
  }
}

/** Peak RSS in bytes of a run under GNU time (%M: ru_maxrss from wait4, in KiB). */
async function maxRss(cmd: string, args: readonly string[], scratch: string): Promise<number> {
  const out = await new Deno.Command(TIME, {
    args: ["-f", "%M", "-o", scratch, cmd, ...args],
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).output();
  if (!out.success) throw new Error(`${TIME} ${cmd} ${args.join(" ")} exited ${out.code}`);
  const kib = Number(Deno.readTextFileSync(scratch).trim().split("\n").pop());
  return kib * 1024;
}

function hasGnuTime(): boolean {
  try {
    return Deno.statSync(TIME).isFile;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// Library calls

async function libCall(pid: number, namespaces?: readonly NamespaceType[]): Promise<void> {
  const out = await execInNamespace(
    namespaces ? { pid, namespaces, command: ["true"] } : { pid, command: ["true"] },
  );
  if (!out.success) {
    throw new Error(
      `execInNamespace: true exited ${out.code}: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
}

async function nsenterCall(pid: number, namespaces: readonly NamespaceType[]): Promise<void> {
  const out = await new Deno.Command("nsenter", {
    args: ["-t", String(pid), ...namespaces.map((t) => NSENTER_FLAG[t]), "true"],
  }).output();
  if (!out.success) {
    throw new Error(`nsenter exited ${out.code}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

async function timeCalls(n: number, call: () => Promise<void>, into: number[]): Promise<void> {
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    await call();
    into.push(performance.now() - start);
    beat();
  }
}

function openDescriptors(): number {
  // The directory's own descriptor is counted too, the same at both ends.
  let n = 0;
  for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
  return n;
}

/** Children of this process other than the targets' unshare processes. */
function ownChildren(): number {
  const mine = new Set(targets.map((t) => t.unshare.pid));
  return childrenOf(Deno.pid).filter((pid) => !mine.has(pid)).length;
}

// ---------------------------------------------------------------------------
// The figures

interface Verdict {
  what: string;
  value: string;
  target: string;
  met: boolean;
}

async function cliFigure(
  s: Settings,
  pid: number,
  hello: string,
  spawnTrue: string,
  scratch: string,
  report: Report,
  verdicts: Verdict[],
): Promise<void> {
  const P = String(pid);
  const variants = [
    { name: "deno run hello.ts (floor)", cmd: DENO, args: ["run", "-A", hello] },
    {
      name: "ns-tool CLI (uts,ipc,net,mnt)",
      cmd: DENO,
      args: ["run", "-A", CLI, "exec", "--pid", P, "--", "true"],
    },
    {
      name: "ns-tool CLI -n uts,ipc,net,mnt,pid",
      cmd: DENO,
      args: ["run", "-A", CLI, "exec", "--pid", P, "-n", "uts,ipc,net,mnt,pid", "--", "true"],
    },
    {
      name: "nsenter -u -i -n -m",
      cmd: "nsenter",
      args: ["-t", P, "-u", "-i", "-n", "-m", "true"],
    },
    {
      name: "nsenter -u -i -n -m -p",
      cmd: "nsenter",
      args: ["-t", P, "-u", "-i", "-n", "-m", "-p", "true"],
    },
    // Where the time goes: Deno's floor for any program that runs a command, and ns-tool's
    // start-up with the imports of the exec path but no FFI and no spawn.
    { name: "deno run: hello + Deno.Command(true)", cmd: DENO, args: ["run", "-A", spawnTrue] },
    { name: "ns-tool --version (imports only)", cmd: DENO, args: ["run", "-A", CLI, "--version"] },
  ] as const;
  progress(`figure 1: CLI whole process, ${variants.length} variants x ${s.cliRounds} rounds`);
  for (const v of variants) await checkRun(v.cmd, v.args);
  for (const v of variants) await timedRun(v.cmd, v.args); // warm the caches
  const times = variants.map(() => [] as number[]);
  const cpu = variants.map(() => ({ ms: 0 }));
  for (let round = 0; round < s.cliRounds; round++) {
    // Interleaved; the starting variant rotates so that none always follows the same one.
    for (let k = 0; k < variants.length; k++) {
      const i = (round + k) % variants.length;
      const v = variants[i]!;
      times[i]!.push(await withCpu(cpu[i]!, () => timedRun(v.cmd, v.args)));
    }
    if ((round + 1) % 10 === 0) progress(`  round ${round + 1}/${s.cliRounds}`);
  }
  const rss = variants.map(() => [] as number[]);
  const gnuTime = hasGnuTime();
  if (gnuTime) {
    progress(`  peak RSS: ${s.rssRounds} rounds under ${TIME} -f %M`);
    for (let round = 0; round < s.rssRounds; round++) {
      for (let k = 0; k < variants.length; k++) {
        const i = (round + k) % variants.length;
        const v = variants[i]!;
        rss[i]!.push(await maxRss(v.cmd, v.args, scratch));
        beat();
      }
    }
  }
  const sums = times.map(summarize);
  const rssSums = rss.map(summarize);
  const [hello$, cli$, cliPid$, ns$, nsPid$] = sums as [
    Summary,
    Summary,
    Summary,
    Summary,
    Summary,
  ];
  const vsHello = (x: Summary) => ratio(x.median / hello$.median);
  const vsNsenter = [undefined, cli$.median / ns$.median, cliPid$.median / nsPid$.median];
  report.heading("1. CLI, whole process");
  report.text(
    `Wall time from spawn to exit as seen by this script (\`Deno.Command(...).spawn().status\`, ` +
      `stdio null, cwd ${ROOT}), ${s.cliRounds} interleaved rounds after one warm-up run each. ` +
      `Target pid ${pid}. CPU: user+system time of the run and everything it reaped, from this ` +
      `process's cutime/cstime (/proc/self/stat, 10 ms ticks), summed over the rounds and ` +
      `divided by them. Peak RSS: ${
        gnuTime
          ? `median of ${s.rssRounds} runs of \`${TIME} -f %M\`, i.e. ru_maxrss from wait4: the ` +
            `largest resident set of the process (across its execve) and of any child it waited ` +
            `for, not a sum over processes`
          : `${TIME} not found (\`apt-get install time\`), not measured`
      }.`,
  );
  report.table(
    [
      "variant",
      "n",
      "median ms",
      "p10 ms",
      "p90 ms",
      "min ms",
      "max ms",
      "CPU ms/run",
      "peak RSS MiB",
      "vs hello",
      "vs nsenter",
    ],
    variants.map((v, i) => {
      const x = sums[i]!;
      return [
        v.name,
        String(x.n),
        ms(x.median),
        ms(x.p10),
        ms(x.p90),
        ms(x.min),
        ms(x.max),
        ms(cpu[i]!.ms / x.n, 1),
        gnuTime ? mib(rssSums[i]!.median) : "n/a",
        vsHello(x),
        vsNsenter[i] === undefined ? "" : ratio(vsNsenter[i]!),
      ];
    }),
    ["l", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r"],
  );
  verdicts.push({
    what: "CLI (default namespaces) / deno hello world",
    value: ratio(cli$.median / hello$.median),
    target: "<= 1.25x",
    met: cli$.median / hello$.median <= 1.25,
  });
  verdicts.push({
    what: "CLI (with pid) / deno hello world",
    value: ratio(cliPid$.median / hello$.median),
    target: "<= 1.25x",
    met: cliPid$.median / hello$.median <= 1.25,
  });
}

async function libraryFigure(
  s: Settings,
  pid: number,
  report: Report,
  verdicts: Verdict[],
): Promise<void> {
  const defaults: readonly NamespaceType[] = ["uts", "ipc", "net", "mnt"];
  const lib = () => libCall(pid);
  const nse = () => nsenterCall(pid, defaults);
  progress(
    `figure 2: library, ${s.seqCalls} sequential calls per side in batches of ${s.seqBatch}`,
  );
  await timeCalls(10, lib, []);
  await timeCalls(10, nse, []);
  const seqLib: number[] = [];
  const seqNs: number[] = [];
  const cpu = { seqLib: { ms: 0 }, seqNs: { ms: 0 }, concLib: { ms: 0 }, concNs: { ms: 0 } };
  for (let round = 0; round * s.seqBatch < s.seqCalls; round++) {
    const n = Math.min(s.seqBatch, s.seqCalls - round * s.seqBatch);
    const a = () => withCpu(cpu.seqLib, () => timeCalls(n, lib, seqLib));
    const b = () => withCpu(cpu.seqNs, () => timeCalls(n, nse, seqNs));
    if (round % 2 === 0) {
      await a();
      await b();
    } else {
      await b();
      await a();
    }
  }
  progress(`  ${s.concurrency} concurrent calls x ${s.concRounds} rounds per side`);
  const burst = async (call: () => Promise<void>, total: { ms: number }): Promise<number> => {
    const start = performance.now();
    await withCpu(total, () => Promise.all(Array.from({ length: s.concurrency }, call)));
    beat();
    return (performance.now() - start) / s.concurrency;
  };
  await burst(lib, { ms: 0 });
  await burst(nse, { ms: 0 });
  const concLib: number[] = [];
  const concNs: number[] = [];
  for (let round = 0; round < s.concRounds; round++) {
    if (round % 2 === 0) {
      concLib.push(await burst(lib, cpu.concLib));
      concNs.push(await burst(nse, cpu.concNs));
    } else {
      concNs.push(await burst(nse, cpu.concNs));
      concLib.push(await burst(lib, cpu.concLib));
    }
  }
  const conc = s.concurrency;
  const rows: [string, string, Summary, number][] = [
    ["sequential", "execInNamespace", summarize(seqLib), cpu.seqLib.ms / seqLib.length],
    ["sequential", "Deno.Command nsenter", summarize(seqNs), cpu.seqNs.ms / seqNs.length],
    [
      `${conc} concurrent`,
      "execInNamespace",
      summarize(concLib),
      cpu.concLib.ms / (concLib.length * conc),
    ],
    [
      `${conc} concurrent`,
      "Deno.Command nsenter",
      summarize(concNs),
      cpu.concNs.ms / (concNs.length * conc),
    ],
  ];
  const seqRatio = rows[1]![2].median / rows[0]![2].median;
  const concRatio = rows[3]![2].median / rows[2]![2].median;
  report.heading("2. Library, per call");
  report.text(
    `\`execInNamespace({ pid, command: ["true"] })\` (uts,ipc,net,mnt; stdout and stderr piped) ` +
      `against \`new Deno.Command("nsenter", { args: ["-t", pid, "-u", "-i", "-n", "-m", "true"] })` +
      `.output()\` (also piped), in this process. Sequential: each call timed on its own, ` +
      `${s.seqCalls} per side in alternating batches of ${s.seqBatch}. Concurrent: wall time of ` +
      `\`Promise.all\` over ${s.concurrency} calls divided by ${s.concurrency}, ${s.concRounds} ` +
      `alternating rounds per side (n counts rounds). CPU: user+system time of this process and ` +
      `its reaped children (the commands, nsenter) per call, from /proc/self/stat; with ` +
      `${CORES} cores, concurrent calls cannot average less wall time than CPU / ${CORES}.`,
  );
  report.table(
    [
      "mode",
      "implementation",
      "n",
      "median ms/call",
      "p10",
      "p90",
      "min",
      "max",
      "CPU ms/call",
      "nsenter / lib",
    ],
    rows.map(([mode, impl, x, cpuPerCall], i) => [
      mode,
      impl,
      String(x.n),
      ms(x.median, 3),
      ms(x.p10, 3),
      ms(x.p90, 3),
      ms(x.min, 3),
      ms(x.max, 3),
      ms(cpuPerCall, 3),
      i === 0 ? ratio(seqRatio) : i === 2 ? ratio(concRatio) : "",
    ]),
    ["l", "l", "r", "r", "r", "r", "r", "r", "r", "r"],
  );
  verdicts.push({
    what: "library sequential: nsenter time / library time",
    value: ratio(seqRatio),
    target: ">= 2x",
    met: seqRatio >= 2,
  });
  verdicts.push({
    what: `library ${s.concurrency} concurrent: nsenter time / library time`,
    value: ratio(concRatio),
    target: ">= 2x",
    met: concRatio >= 2,
  });
}

/** Deno.memoryUsage() after a full collection, when the bench runs with --expose-gc (deno task bench). */
function memoryAfterGc(): Deno.MemoryUsage {
  (globalThis as { gc?: () => void }).gc?.();
  return Deno.memoryUsage();
}

async function growthFigure(
  s: Settings,
  pid: number,
  report: Report,
  verdicts: Verdict[],
): Promise<void> {
  progress(`figure 3a: ${s.growthCalls} sequential library calls`);
  const gcNote = "gc" in globalThis
    ? "after a full garbage collection (--expose-gc)"
    : "without a forced GC (run with --v8-flags=--expose-gc for one)";
  const before = { mem: memoryAfterGc(), fds: openDescriptors(), kids: ownChildren() };
  const times: number[] = [];
  // A reference after every 10th call, so that a machine that slows down over the run is not
  // taken for growth: Deno.Command running true, the same kind of work without ns-tool.
  const refTimes: number[] = [];
  const lib = () => libCall(pid);
  const reference = async () => {
    const out = await new Deno.Command("true").output();
    if (!out.success) throw new Error("true failed");
  };
  const step = Math.max(1, Math.floor(s.growthCalls / 5));
  const curve: string[] = [
    `0: ${mib(before.mem.rss)} / ${mib(before.mem.heapTotal)} / ${mib(before.mem.heapUsed)}`,
  ];
  // RSS less V8's heap reservation: what ns-tool could leak outside the V8 heap.
  const outsideHeap = (m: Deno.MemoryUsage) => m.rss - m.heapTotal;
  const outsideAt: number[] = [outsideHeap(before.mem)];
  for (let done = 0; done < s.growthCalls; done += step) {
    for (let i = 0; i < Math.min(step, s.growthCalls - done); i += 10) {
      await timeCalls(Math.min(10, s.growthCalls - done - i), lib, times);
      await timeCalls(1, reference, refTimes);
    }
    const now = memoryAfterGc();
    outsideAt.push(outsideHeap(now));
    curve.push(
      `${Math.min(done + step, s.growthCalls)}: ${mib(now.rss)} / ${mib(now.heapTotal)} / ${
        mib(now.heapUsed)
      }`,
    );
    progress(`  ${Math.min(done + step, s.growthCalls)}/${s.growthCalls}`);
  }
  const after = { mem: memoryAfterGc(), fds: openDescriptors(), kids: ownChildren() };
  const w = Math.min(s.growthWindow, Math.floor(times.length / 2));
  const first = summarize(times.slice(0, w));
  const last = summarize(times.slice(times.length - w));
  const refFirst = summarize(refTimes.slice(0, Math.ceil(w / 10)));
  const refLast = summarize(refTimes.slice(refTimes.length - Math.ceil(w / 10)));
  const relative = (last.median / refLast.median) / (first.median / refFirst.median);
  report.heading("3a. Growth over many calls");
  report.text(
    `${s.growthCalls} sequential \`execInNamespace({ pid, command: ["true"] })\` calls in this ` +
      `process (after figures 1 and 2), with a reference call (\`Deno.Command("true")\`) after ` +
      `every 10th; the first and last ${w} compared. RSS and heap from ` +
      `\`Deno.memoryUsage()\` ${gcNote}; descriptors counted in /proc/self/fd; child ` +
      `processes (other than the targets' unshare) from /proc/self/task/*/children: unreaped ` +
      `commands would show here.`,
  );
  report.table(
    ["measure", `first ${w}`, `last ${w}`, "change"],
    [
      [
        "median ms/call",
        ms(first.median, 3),
        ms(last.median, 3),
        ratio(last.median / first.median),
      ],
      ["p10 ms/call", ms(first.p10, 3), ms(last.p10, 3), ratio(last.p10 / first.p10)],
      ["p90 ms/call", ms(first.p90, 3), ms(last.p90, 3), ratio(last.p90 / first.p90)],
      ["mean ms/call", ms(first.mean, 3), ms(last.mean, 3), ratio(last.mean / first.mean)],
      [
        "reference median ms/call",
        ms(refFirst.median, 3),
        ms(refLast.median, 3),
        ratio(refLast.median / refFirst.median),
      ],
      [
        "median / reference median",
        ratio(first.median / refFirst.median),
        ratio(last.median / refLast.median),
        ratio(relative),
      ],
    ],
    ["l", "r", "r", "r"],
  );
  const signed = (v: number, f: (x: number) => string) => `${v >= 0 ? "+" : ""}${f(v)}`;
  report.table(
    ["measure", "before", "after", "change"],
    [
      [
        "RSS MiB",
        mib(before.mem.rss),
        mib(after.mem.rss),
        signed(after.mem.rss - before.mem.rss, mib),
      ],
      [
        "V8 heap used MiB",
        mib(before.mem.heapUsed),
        mib(after.mem.heapUsed),
        signed(after.mem.heapUsed - before.mem.heapUsed, mib),
      ],
      [
        "open descriptors",
        String(before.fds),
        String(after.fds),
        signed(after.fds - before.fds, String),
      ],
      [
        "child processes",
        String(before.kids),
        String(after.kids),
        signed(after.kids - before.kids, String),
      ],
    ],
    ["l", "r", "r", "r"],
  );
  report.text(
    `RSS / V8 heap reserved (heapTotal) / V8 heap used, MiB, by calls done: ${
      curve.join(", ")
    }. RSS rises with heapTotal: V8 enlarges its young generation under the allocation rate ` +
      `(about 43 kB a call), up to its default limit. With \`--v8-flags=--max-semi-space-size=2\`` +
      ` RSS stayed at 54-57 MiB over 16,000 calls (heapTotal 10-11 MiB): measured for issue 7.`,
  );
  // Flat: the last calls no slower than the first against the reference (within 10%), the
  // heap within 2 MiB after a collection, RSS outside V8's heap reservation settled (within
  // 2 MiB over the second half: the allocator warms up first), not one descriptor or child more.
  const heapGrowth = after.mem.heapUsed - before.mem.heapUsed;
  const outsideLate = outsideAt.at(-1)! - outsideAt[Math.floor(outsideAt.length / 2)]!;
  verdicts.push({
    what: `growth over ${s.growthCalls} calls: time vs reference, heap, RSS outside it, fds, kids`,
    value: `${ratio(relative)}, ${signed(heapGrowth, mib)}, ${signed(outsideLate, mib)} MiB, ${
      signed(after.fds - before.fds, String)
    }, ${signed(after.kids - before.kids, String)}`,
    target: "<= 1.10x, < 2, < 2 MiB, +0, +0",
    met: relative <= 1.1 && heapGrowth < 2 * MIB && outsideLate < 2 * MIB &&
      after.fds === before.fds && after.kids === before.kids,
  });
}

interface SweepRow {
  types: NamespaceType[];
  target: Target;
}

async function sweepFigure(
  s: Settings,
  main: Target,
  extra: Target | undefined,
  extraNote: string,
  report: Report,
): Promise<void> {
  const own = (t: Target, type: NamespaceType) => nsId(t.pid, type) !== nsId("self", type);
  const rows: SweepRow[] = [];
  const notes: string[] = [];
  const prefix: NamespaceType[] = [];
  for (const type of SWEEP_ORDER) {
    prefix.push(type);
    if (own(main, type)) {
      rows.push({ types: [...prefix], target: main });
    } else if (extra && own(extra, type)) {
      rows.push({ types: [...prefix], target: extra });
      notes.push(
        `${type}: target ${main.label} shares this script's ${type} namespace (nothing to join); ` +
          `measured on target ${extra.label} instead.`,
      );
    } else {
      notes.push(
        `${type}: skipped, target ${main.label} shares this script's ${type} namespace` +
          (extraNote ? ` (${extraNote})` : "") + ".",
      );
      prefix.pop();
    }
  }
  // Rows that cannot be joined here are dropped (and said so), not fatal.
  const usable: SweepRow[] = [];
  for (const row of rows) {
    try {
      await libCall(row.target.pid, row.types);
      await nsenterCall(row.target.pid, row.types);
      usable.push(row);
    } catch (error) {
      notes.push(`${row.types.join(",")}: skipped, joining failed: ${(error as Error).message}`);
    }
  }
  progress(
    `figure 3b: namespace sweep, ${usable.length} sets x ${s.sweepCalls} calls per side`,
  );
  const lib = usable.map(() => [] as number[]);
  const ns = usable.map(() => [] as number[]);
  for (let round = 0; round * s.sweepBatch < s.sweepCalls; round++) {
    const n = Math.min(s.sweepBatch, s.sweepCalls - round * s.sweepBatch);
    for (let k = 0; k < usable.length; k++) {
      const i = (round + k) % usable.length;
      const row = usable[i]!;
      const a = () => timeCalls(n, () => libCall(row.target.pid, row.types), lib[i]!);
      const b = () => timeCalls(n, () => nsenterCall(row.target.pid, row.types), ns[i]!);
      if (round % 2 === 0) {
        await a();
        await b();
      } else {
        await b();
        await a();
      }
    }
  }
  report.heading("3b. Time per call by joined namespace types");
  report.text(
    `\`execInNamespace({ pid, namespaces, command: ["true"] })\` against \`Deno.Command\` of ` +
      `nsenter with the same flags, each call timed on its own, ${s.sweepCalls} per set and side, ` +
      `in interleaved batches of ${s.sweepBatch}.`,
  );
  report.table(
    [
      "namespaces",
      "target",
      "n",
      "lib median ms",
      "lib p10",
      "lib p90",
      "nsenter median ms",
      "nsenter / lib",
    ],
    usable.map((row, i) => {
      const a = summarize(lib[i]!);
      const b = summarize(ns[i]!);
      return [
        row.types.join(","),
        row.target.label,
        String(a.n),
        ms(a.median, 3),
        ms(a.p10, 3),
        ms(a.p90, 3),
        ms(b.median, 3),
        ratio(b.median / a.median),
      ];
    }),
    ["l", "l", "r", "r", "r", "r", "r", "r"],
  );
  if (usable.some((row) => row.types.includes("time"))) {
    notes.push(
      `time: joining it needs a single-threaded process, so the spawner cannot share this ` +
        `process's memory (no CLONE_VM) and forks it instead; that cost grows with this ` +
        `process's memory (RSS now ${mib(Deno.memoryUsage().rss)} MiB).`,
    );
  }
  if (notes.length) report.text(notes.map((n) => `- ${n}`).join("\n"));
}

// ---------------------------------------------------------------------------
// Machine line

/** Which code was measured: the commit, and whether the tree had uncommitted changes. */
async function treeLine(): Promise<string> {
  try {
    const git = async (...args: string[]) => {
      // No optional locks: never touch the index while others use the checkout.
      const out = await new Deno.Command("git", {
        args: ["-C", ROOT, ...args],
        env: { GIT_OPTIONAL_LOCKS: "0" },
        stderr: "null",
      }).output();
      return out.success ? new TextDecoder().decode(out.stdout).trim() : undefined;
    };
    const head = await git("rev-parse", "--short", "HEAD");
    if (head === undefined) return "Tree: not a git checkout.";
    const changed = (await git("status", "--porcelain", "--untracked-files=no"))?.split("\n")
      .filter(Boolean).length ?? 0;
    return `Tree: git ${head}` +
      (changed ? `, plus uncommitted changes in ${changed} tracked files.` : ", clean.");
  } catch {
    return "Tree: git not available.";
  }
}

function machineLine(): string {
  let model = "unknown CPU";
  let cores = navigator.hardwareConcurrency;
  try {
    const info = Deno.readTextFileSync("/proc/cpuinfo");
    model = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? model;
    cores = info.split("\n").filter((l) => /^processor\s*:/.test(l)).length || cores;
  } catch {
    // keep the defaults
  }
  const load = Deno.loadavg().map((l) => l.toFixed(2)).join(" ");
  return `Machine: ${model}, ${cores} cores, Linux ${Deno.osRelease()}, Deno ${Deno.version.deno} ` +
    `(V8 ${Deno.version.v8}), ${new Date().toISOString()}, load average at start ${load}`;
}

// ---------------------------------------------------------------------------

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean" },
      out: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(HELP.trimEnd());
    return;
  }
  const s = values.quick ? QUICK : FULL;
  const outPath = values.out ?? DEFAULT_OUT;
  const machine = machineLine();
  const started = performance.now();
  const report = new Report();
  const verdicts: Verdict[] = [];

  const hello = Deno.makeTempFileSync({ prefix: "ns-tool-bench-hello-", suffix: ".ts" });
  const spawnTrue = Deno.makeTempFileSync({ prefix: "ns-tool-bench-spawn-", suffix: ".ts" });
  const scratch = Deno.makeTempFileSync({ prefix: "ns-tool-bench-time-" });
  const removeTemp = () => {
    for (const file of [hello, spawnTrue, scratch]) {
      try {
        Deno.removeSync(file);
      } catch {
        // already gone
      }
    }
  };
  // Ctrl-C, kill, or a call that never returns: kill what was started, by pid, and stop.
  const abort = (message: string, code: number) => {
    progress(message);
    killTargetsNow();
    removeTemp();
    Deno.exit(code);
  };
  const onSignal = () => abort("interrupted: killing the targets", 130);
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  beat();
  const watchdog = setInterval(() => {
    if (performance.now() - lastBeat > STALL_MS) {
      abort(`no progress for ${STALL_MS / 1000} s (a call hangs?): stopping`, 1);
    }
  }, 1000);
  try {
    Deno.writeTextFileSync(hello, 'console.log("Hello, world!");\n');
    Deno.writeTextFileSync(
      spawnTrue,
      'console.log("Hello, world!");\nawait new Deno.Command("true").output();\n',
    );
    progress("starting targets");
    const main = await startTarget("A", []);
    let extra: Target | undefined;
    let extraNote = "";
    try {
      extra = await startTarget("B", ["--user", "--map-root-user", "--time"]);
    } catch (error) {
      extraNote = `a second target with its own user and time namespaces could not be started: ${
        (error as Error).message
      }`;
    }
    progress(`target A pid ${main.pid}${extra ? `, target B pid ${extra.pid}` : ""}`);

    report.text(`# ns-tool benchmark\n\n${machine}\n\n${await treeLine()}`);
    report.text(
      `Mode: ${values.quick ? "--quick (smoke run, small counts)" : "full"}. ` +
        `Target A: \`unshare --uts --ipc --net --mount --pid --cgroup --fork --mount-proc ` +
        `--kill-child sleep 3600\` (pid ${main.pid}). ` +
        (extra
          ? `Target B: the same plus \`--user --map-root-user --time\` (pid ${extra.pid}). `
          : `Target B (own user and time namespaces): not started. `) +
        `Times in milliseconds; pN is the N-th percentile.`,
    );

    await cliFigure(s, main.pid, hello, spawnTrue, scratch, report, verdicts);
    await libraryFigure(s, main.pid, report, verdicts);
    await growthFigure(s, main.pid, report, verdicts);
    await sweepFigure(s, main, extra, extraNote, report);

    report.heading("Targets");
    report.table(
      ["figure", "value", "target", "met"],
      verdicts.map((v) => [v.what, v.value, v.target, v.met ? "yes" : "NO"]),
      ["l", "r", "l", "l"],
    );
    report.text(`Total bench time ${((performance.now() - started) / 1000).toFixed(1)} s.`);

    const text = report.toString();
    console.log(text);
    Deno.mkdirSync(dirname(outPath), { recursive: true });
    const tmp = `${outPath}.tmp`;
    Deno.writeTextFileSync(tmp, text);
    Deno.renameSync(tmp, outPath);
    progress(`wrote ${outPath}`);
  } finally {
    clearInterval(watchdog);
    await stopTargets();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    removeTemp();
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    // The targets are already killed (main's finally); exit even if a stuck call holds the loop.
    console.error(`[bench] failed: ${error instanceof Error ? error.message : String(error)}`);
    Deno.exit(1);
  }
}
