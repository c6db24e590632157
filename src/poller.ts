/**
 * When a descriptor is ready, for every command at once: one poll(2), on one
 * of Deno's pool threads, watches all the descriptors the library waits on
 * (the parent's ends of pipes and ptys, the commands' pidfds).
 *
 * A blocking read or wait4 per descriptor would hold a pool thread for as long
 * as its command runs, and Deno's pool has about 32 threads: 64 commands at
 * once, three descriptors each, queued behind one another (measured for
 * issue 7). Here readiness is all the pool thread learns; the reads, writes
 * and reaping happen on the caller's thread, on non-blocking descriptors.
 *
 * The poll is ppoll(2) with signals blocked (but glibc's own), so a signal
 * seldom interrupts it. A descriptor waited on is closed through
 * {@linkcode closeWhenUnwatched}, which wakes the poll and closes it once the
 * poll has let go of it (its number could otherwise be reused under a poll in
 * flight).
 *
 * @module
 */
import { close, eventFd, pollAsync, POLLIN, read, write } from "../ffi/syscalls.ts";

interface Waiter {
  fd: number;
  events: number;
  resolve(revents: number): void;
}

/** A wait for a descriptor. */
export interface Readiness {
  /** What poll(2) reported for it; 0 once cancelled; -1 when poll(2) itself fails. */
  ready: Promise<number>;
  /** Ends the wait at once. */
  cancel(): void;
}

const waiters = new Set<Waiter>();
/** Written to interrupt the poll in flight, so that it starts again with the waiters of now. */
let wakeFd = -1;
/** idle: no poll; queued: one starts in a microtask, with every waiter added until then. */
let state: "idle" | "queued" | "polling" = "idle";
let woken = false;
/** The descriptors of the poll in flight, and those to close once it has returned. */
let watched = new Set<number>();
const closeAfterPoll: number[] = [];
/** Failures of poll(2) in a row taken for EINTR (glibc's SIGSETXID) and retried; then given up. */
const RETRIES = 100;
/** An eventfd's counter is written as 8 bytes: add 1. */
const WAKE = new Uint8Array(new BigUint64Array([1n]).buffer);

function wake(): void {
  if (state === "polling" && !woken) {
    woken = true;
    write(wakeFd, WAKE);
  }
}

/**
 * Waits until `fd` has one of `events` (POLLIN, POLLOUT), or an error or
 * hang-up; resolves with what poll(2) reported.
 *
 * @throws {Error} when no eventfd can be made (out of descriptors)
 */
export function whenReady(fd: number, events: number): Readiness {
  if (wakeFd < 0) {
    wakeFd = eventFd();
    if (wakeFd < 0) throw new Error(`Cannot make an eventfd: errno ${-wakeFd}`);
  }
  let waiter!: Waiter;
  const ready = new Promise<number>((resolve) => {
    waiter = { fd, events, resolve };
  });
  waiters.add(waiter);
  if (state === "idle") {
    // From a microtask: the waits asked for in the same stretch (a command's pipes and its
    // pidfd) go into the first poll together, not into a poll interrupted at once.
    state = "queued";
    queueMicrotask(run);
  } else {
    wake();
  }
  return {
    ready,
    cancel: () => {
      if (!waiters.delete(waiter)) return;
      waiter.resolve(0);
      // The poll in flight stops watching it (and, with no waiter left, ends).
      if (watched.has(fd)) wake();
    },
  };
}

/** Closes `fd` now, or, while the poll in flight watches it, as soon as that poll returns. */
export function closeWhenUnwatched(fd: number): void {
  if (state === "polling" && watched.has(fd)) {
    closeAfterPoll.push(fd);
    wake();
  } else {
    close(fd);
  }
}

/** Polls while anyone waits; the poll in flight keeps the event loop alive, and only then. */
async function run(): Promise<void> {
  state = "polling";
  let failures = 0;
  try {
    while (waiters.size > 0) {
      const list = [...waiters];
      const buffer = new ArrayBuffer(8 * (list.length + 1));
      const fds = new Int32Array(buffer);
      const flags = new Int16Array(buffer);
      fds[0] = wakeFd;
      flags[2] = POLLIN;
      list.forEach((waiter, i) => {
        fds[2 * (i + 1)] = waiter.fd;
        flags[4 * (i + 1) + 2] = waiter.events;
      });
      watched = new Set(list.map((waiter) => waiter.fd));
      let n;
      try {
        n = await pollAsync(new Uint8Array(buffer), list.length + 1);
      } catch {
        n = -1; // the call itself failed: as a failed poll
      }
      watched = new Set();
      for (const fd of closeAfterPoll.splice(0)) close(fd);
      // Wake-ups asked for from here on interrupt the next poll.
      woken = false;
      if (flags[3] !== 0) read(wakeFd, new Uint8Array(8));
      failures = n < 0 ? failures + 1 : 0;
      if (n < 0 && failures < RETRIES) continue;
      list.forEach((waiter, i) => {
        // A poll that keeps failing (no memory): tell every waiter.
        const revents = n < 0 ? -1 : flags[4 * (i + 1) + 3]!;
        if (revents !== 0 && waiters.delete(waiter)) waiter.resolve(revents);
      });
    }
  } finally {
    state = "idle";
    woken = false;
    for (const fd of closeAfterPoll.splice(0)) close(fd);
  }
}
