/*
 * ns-tool spawner for x86_64 Linux: start a command inside other namespaces
 * without changing any namespace of the calling (multithreaded) process.
 *
 *   long ns_spawn(struct block *b);   returns the child's pid, or -errno of clone
 *
 * Why native code: namespaces belong to a thread, Deno always runs many threads,
 * and no JavaScript can run in a forked child. So the calling thread clones a
 * child (CLONE_VM|CLONE_VFORK, as glibc's posix_spawn does; without CLONE_VM
 * when a time namespace is joined, because the kernel refuses setns(time) to a
 * process that shares its memory). Only this code runs in the child. It makes
 * the setns, credential and execve system calls, touching nothing but the
 * block (built by ffi/_spawner.ts, MAP_SHARED so a fork-mode child reports
 * back too) and its own stack inside the block. The caller's thread is
 * suspended until the child has called execve or exited (CLONE_VFORK).
 *
 * A failing step stores {stage, errno, detail} in the block and exits 127.
 * The layout and the constants below must match ffi/_spawner.ts; the byte
 * image there is made from this file by scripts/build-spawner.ts.
 *
 *   void ns_forward_signal(int sig);   a signal handler
 *
 * The CLI installs it for the signals it passes on: it sends the signal to
 * the command through the pidfd stored in the page that follows the image
 * (ffi/_spawner.ts maps that page read-write). With no pidfd there yet (-1),
 * it sets the signal's bit in the pending word after it, atomically, for the
 * CLI to pass on, then looks at the pidfd once more, so that a signal never
 * waits in that word once the CLI has taken it. It makes only raw system
 * calls and atomic bit operations, so it is async-signal-safe, and it works
 * while the event loop is busy.
 */
        .intel_syntax noprefix
        .text
        .globl  ns_spawn

/* block layout, byte offsets */
        .equ CLONE_FLAGS, 0
        .equ STATUS, 8          /* out: stage that failed, 0 = none */
        .equ ERRNO, 16          /* out: positive errno */
        .equ DETAIL, 24         /* out: index of the failing step */
        .equ GRANDCHILD, 32     /* out: pid of the command when FORK is set */
        .equ FLAGS, 40
        .equ GID, 48
        .equ UID, 56
        .equ ROOT_FD, 64
        .equ CWD_FD, 72
        .equ CWD_PATH, 80
        .equ NSTEPS, 88
        .equ STEPS, 96          /* NSTEPS x {fd, nstype, joined} */
        .equ NMAPS, 104
        .equ MAPS, 112          /* NMAPS x {from, to} */
        .equ PATHS, 120         /* NULL-terminated candidates for execve */
        .equ ARGV, 128
        .equ ENVP, 136
        .equ STACK1, 144        /* stack top of the child */
        .equ STACK2, 152        /* stack top of the grandchild (FORK) */
        .equ MASK_ALL, 160      /* kernel sigset: every signal */
        .equ MASK_OLD, 168      /* caller's mask, saved */
        .equ MASK_NONE, 176     /* the command's mask: empty */
        .equ SIGACT_DFL, 184    /* struct kernel_sigaction { SIG_DFL } */
        .equ DOT, 216           /* "." */
        .equ ZERO, 218          /* "0" */
        .equ PIDFD_FD, 224      /* pidfd of the target, -1 for none */
        .equ PIDFD_MASK, 232    /* CLONE_NEW* flags to join through it */
        .equ CGROUP_FD, 240     /* the target's cgroup.procs, open for writing; -1 for none */
        .equ PRE_OPS, 248       /* ops before the pid-namespace clone: {count, pointer} */
        .equ POST_OPS, 264      /* ops after it, in the process that execs */
        /* the header ends at 280; ffi/_spawner.ts puts the data after 512 */
/* An op is 6 words {kind, a, b, c, d, e}, run in order; they make new namespaces:
 *   1 unshare(a)   2 write file: open(a) write(b, c bytes) close
 *   3 mount(a, b, c, d, e)   4 sethostname(a, b bytes) */

/* FLAGS bits */
        .equ F_FORK, 1          /* clone again after setns: enter the pid namespace */
        .equ F_SETGROUPS, 2     /* setgroups(0, NULL); EPERM (setgroups denied) is tolerated */
        .equ F_SETGID, 4
        .equ F_SETUID, 8
        .equ F_CHROOT, 16       /* fchdir(ROOT_FD); chroot(".") */
        .equ F_KEEPCWD, 32      /* with F_CHROOT: come back to the directory from before */
        .equ F_FCHDIR, 64       /* fchdir(CWD_FD) */
        .equ F_CHDIR, 128       /* chdir(CWD_PATH) */
        .equ F_SETSID, 256
        .equ F_CTTY, 512        /* ioctl(0, TIOCSCTTY, 0) */
        .equ F_CLOSEFROM, 1024  /* close_range(3, ~0, 0) */
        .equ F_NODUMP, 2048     /* prctl(PR_SET_DUMPABLE, 0) before joining anything */

/* stages reported in STATUS */
        .equ S_SETNS, 1
        .equ S_FORK, 2
        .equ S_ROOT, 3
        .equ S_CWD, 4
        .equ S_SETSID, 5
        .equ S_CTTY, 6
        .equ S_SETGROUPS, 7
        .equ S_SETGID, 8
        .equ S_SETUID, 9
        .equ S_STDIO, 10
        .equ S_CLOSEFROM, 11
        .equ S_EXEC, 12
        .equ S_CGROUP, 13
        .equ S_OP, 14           /* DETAIL: op index, + 1000 for POST_OPS */

/* system call numbers */
        .equ SYS_write, 1
        .equ SYS_ioctl, 16
        .equ SYS_rt_sigaction, 13
        .equ SYS_rt_sigprocmask, 14
        .equ SYS_clone, 56
        .equ SYS_execve, 59
        .equ SYS_chdir, 80
        .equ SYS_fchdir, 81
        .equ SYS_setsid, 112
        .equ SYS_setresuid, 117
        .equ SYS_setresgid, 119
        .equ SYS_setgroups, 116
        .equ SYS_chroot, 161
        .equ SYS_exit_group, 231
        .equ SYS_openat, 257
        .equ SYS_dup3, 292
        .equ SYS_setns, 308
        .equ SYS_close_range, 436
        .equ SYS_close, 3
        .equ SYS_mount, 165
        .equ SYS_sethostname, 170
        .equ SYS_unshare, 272
        .equ SYS_prctl, 157
        .equ SYS_pidfd_send_signal, 424
        .equ PR_SET_DUMPABLE, 4
        .equ DATA_PAGE, 4096    /* the read-write page after the image */

        .equ CLONE_PARENT, 0x8000
        .equ TIOCSCTTY, 0x540e
        .equ O_DIR_RDONLY_CLOEXEC, 0x90000      /* O_RDONLY|O_DIRECTORY|O_CLOEXEC */

image_start:
ns_spawn:
        push    rbx
        push    r12
        push    r13
        push    r14
        push    r15
        mov     r12, rdi                        /* r12 = block, in parent and child */

        /* No signal handler may run in the child: they are the caller's. */
        mov     eax, SYS_rt_sigprocmask
        xor     edi, edi                        /* SIG_BLOCK */
        lea     rsi, [r12 + MASK_ALL]
        lea     rdx, [r12 + MASK_OLD]
        mov     r10d, 8
        syscall

        mov     eax, SYS_clone
        mov     rdi, [r12 + CLONE_FLAGS]
        mov     rsi, [r12 + STACK1]
        xor     edx, edx
        xor     r10d, r10d
        xor     r8d, r8d
        syscall
        test    rax, rax
        jz      child

        /* Parent: the child has called execve or exited. Restore the mask. */
        mov     rbx, rax
        mov     eax, SYS_rt_sigprocmask
        mov     edi, 2                          /* SIG_SETMASK */
        lea     rsi, [r12 + MASK_OLD]
        xor     edx, edx
        mov     r10d, 8
        syscall
        mov     rax, rbx
        pop     r15
        pop     r14
        pop     r13
        pop     r12
        pop     rbx
        ret

child:
        /* 0. Not dumpable: while this process (or, for a pid namespace, its
         * child, which inherits the flag) holds the caller's memory and a copy
         * of its descriptors, nobody inside the target may ptrace it or read
         * /proc/PID/mem, /proc/PID/fd. The flag belongs to the memory, so with
         * CLONE_VM it lands on the caller's too: ffi/_spawner.ts puts the
         * caller's back after the call. execve gives the command its own. */
        test    qword ptr [r12 + FLAGS], F_NODUMP
        jz      1f
        mov     eax, SYS_prctl
        mov     edi, PR_SET_DUMPABLE
        xor     esi, esi
        syscall
1:
        /* 1. Every handler back to SIG_DFL (SIGKILL and SIGSTOP refuse: ignored). */
        mov     ebx, 1
reset_signal:
        mov     eax, SYS_rt_sigaction
        mov     edi, ebx
        lea     rsi, [r12 + SIGACT_DFL]
        xor     edx, edx
        mov     r10d, 8
        syscall
        inc     ebx
        cmp     ebx, 64
        jbe     reset_signal

        /* 1a. Groups go first, before any setns, as nsenter does: inside a
         * user namespace whose setgroups is "deny" the call after joining
         * (step 6) fails, and the command would keep the caller's groups.
         * Failure here is expected for an unprivileged caller (its own groups). */
        test    qword ptr [r12 + FLAGS], F_SETGROUPS
        jz      1f
        mov     eax, SYS_setgroups
        xor     edi, edi
        xor     esi, esi
        syscall
1:
        /* 1b. Into the target's cgroup: write "0" (this process) to its
         * cgroup.procs, opened by the caller. Before any setns: the kernel
         * checks the move against the writer's cgroup namespace. */
        mov     rdi, [r12 + CGROUP_FD]
        test    rdi, rdi
        js      2f
        mov     eax, SYS_write
        lea     rsi, [r12 + ZERO]
        mov     edx, 1
        syscall
        test    rax, rax
        js      cgroup_failed
2:
        /* 1c. With a pidfd (Linux 5.8+), join every namespace in one
         * all-or-nothing setns that names this very process, never one that
         * reused its pid. If the kernel refuses (too old, or a namespace is
         * refused), the passes below join the files one by one, and so also
         * tell which namespace failed. */
        mov     rdi, [r12 + PIDFD_FD]
        test    rdi, rdi
        js      2f
        mov     rsi, [r12 + PIDFD_MASK]
        mov     eax, SYS_setns
        syscall
        test    rax, rax
        jz      joined
2:
        /* 2. Join the namespaces in two passes, as nsenter does. Step 0 is the
         * user namespace. Pass 0 joins steps 1.. and ignores failures, so root
         * enters the user namespace last; pass 1 joins step 0 and then every
         * step not joined yet, so an unprivileged owner gains its rights in the
         * user namespace first. A failure in pass 1 is final. */
        xor     r15d, r15d                      /* pass */
pass:
        mov     ebx, 1
        sub     ebx, r15d                       /* first step: 1, then 0 */
step:
        cmp     rbx, [r12 + NSTEPS]
        jae     pass_done
        imul    r13, rbx, 24
        add     r13, [r12 + STEPS]              /* r13 = &steps[rbx] */
        mov     rdi, [r13]                      /* fd; fd 0 is a valid descriptor */
        test    rdi, rdi
        js      next_step                       /* -1: not requested */
        cmp     qword ptr [r13 + 16], 0
        jne     next_step                       /* joined in pass 0 */
        mov     rsi, [r13 + 8]                  /* CLONE_NEW* */
        mov     eax, SYS_setns
        syscall
        test    rax, rax
        jnz     step_failed
        mov     qword ptr [r13 + 16], 1
next_step:
        inc     rbx
        jmp     step
step_failed:
        test    r15d, r15d
        jz      next_step
        mov     r14, rbx
        mov     ebx, S_SETNS
        jmp     fail
pass_done:
        inc     r15d
        cmp     r15d, 2
        jb      pass
joined:

        /* 2b. Make new namespaces, if asked (ns-tool unshare). */
        lea     r13, [r12 + PRE_OPS]
        xor     r14d, r14d
        call    run_ops
        test    rax, rax
        jnz     fail

        /* 3. setns(pid) moves only our future children: clone once more. With
         * CLONE_PARENT the command becomes the caller's own child; this
         * process reports its pid and exits once the command has exec'd. */
        test    qword ptr [r12 + FLAGS], F_FORK
        jz      root_dir
        mov     eax, SYS_clone
        mov     rdi, [r12 + CLONE_FLAGS]
        or      rdi, CLONE_PARENT
        mov     rsi, [r12 + STACK2]
        xor     edx, edx
        xor     r10d, r10d
        xor     r8d, r8d
        syscall
        test    rax, rax
        jz      root_dir                        /* the grandchild goes on */
        js      fork_failed
        mov     [r12 + GRANDCHILD], rax
        mov     eax, SYS_exit_group
        xor     edi, edi
        syscall
fork_failed:
        xor     r14d, r14d
        mov     ebx, S_FORK
        jmp     fail

        /* 4. Root, then working directory (after the ops that must run in the
         * process that execs, such as mounting /proc inside a new pid namespace). */
root_dir:
        lea     r13, [r12 + POST_OPS]
        mov     r14d, 1000
        call    run_ops
        test    rax, rax
        jnz     fail
        mov     r13, [r12 + FLAGS]
        test    r13, F_CHROOT
        jz      work_dir
        mov     r15, -1
        test    r13, F_KEEPCWD
        jz      enter_root
        mov     eax, SYS_openat
        mov     rdi, -100                       /* AT_FDCWD */
        lea     rsi, [r12 + DOT]
        mov     edx, O_DIR_RDONLY_CLOEXEC
        xor     r10d, r10d
        syscall
        test    rax, rax
        js      cwd_failed
        mov     r15, rax
enter_root:
        mov     eax, SYS_fchdir
        mov     rdi, [r12 + ROOT_FD]
        syscall
        test    rax, rax
        jnz     root_failed
        mov     eax, SYS_chroot
        lea     rdi, [r12 + DOT]
        syscall
        test    rax, rax
        jnz     root_failed
        test    r15, r15
        js      work_dir
        mov     eax, SYS_fchdir
        mov     rdi, r15
        syscall
        test    rax, rax
        jnz     cwd_failed
work_dir:
        test    r13, F_FCHDIR
        jz      1f
        mov     eax, SYS_fchdir
        mov     rdi, [r12 + CWD_FD]
        syscall
        test    rax, rax
        jnz     cwd_failed
1:      test    r13, F_CHDIR
        jz      session
        mov     eax, SYS_chdir
        mov     rdi, [r12 + CWD_PATH]
        syscall
        test    rax, rax
        jnz     cwd_failed

        /* 5. Own session (its controlling terminal is set after step 7,
         * once fd 0 is the command's). */
session:
        test    r13, F_SETSID
        jz      credentials
        mov     eax, SYS_setsid
        syscall
        test    rax, rax
        js      setsid_failed

        /* 6. Credentials: groups, gid, uid - the uid last, since it gives up
         * the right to change the others. Raw system calls change only this
         * process (no glibc broadcast to threads: it has none). */
credentials:
        test    r13, F_SETGROUPS
        jz      1f
        mov     eax, SYS_setgroups
        xor     edi, edi
        xor     esi, esi
        syscall
        cmp     rax, -1                         /* -EPERM: /proc/self/setgroups is "deny" */
        je      1f
        test    rax, rax
        jnz     setgroups_failed
1:      test    r13, F_SETGID
        jz      1f
        mov     eax, SYS_setresgid
        mov     rdi, [r12 + GID]
        mov     rsi, rdi
        mov     rdx, rdi
        syscall
        test    rax, rax
        jnz     setgid_failed
1:      test    r13, F_SETUID
        jz      stdio
        mov     eax, SYS_setresuid
        mov     rdi, [r12 + UID]
        mov     rsi, rdi
        mov     rdx, rdi
        syscall
        test    rax, rax
        jnz     setuid_failed

        /* 7. Standard descriptors (every source is >= 3, every target <= 2),
         * then optionally close everything else. */
stdio:
        xor     ebx, ebx
1:      cmp     rbx, [r12 + NMAPS]
        jae     2f
        mov     r14, rbx
        shl     r14, 4
        add     r14, [r12 + MAPS]
        mov     eax, SYS_dup3
        mov     rdi, [r14]
        mov     rsi, [r14 + 8]
        xor     edx, edx
        syscall
        test    rax, rax
        js      stdio_failed
        inc     rbx
        jmp     1b
        /* 7b. fd 0, now the command's terminal, becomes its controlling terminal. */
2:      test    r13, F_CTTY
        jz      3f
        mov     eax, SYS_ioctl
        xor     edi, edi
        mov     esi, TIOCSCTTY
        xor     edx, edx
        syscall
        test    rax, rax
        jnz     ctty_failed
3:      test    r13, F_CLOSEFROM
        jz      signal_mask
        mov     eax, SYS_close_range
        mov     edi, 3
        mov     esi, -1
        xor     edx, edx
        syscall
        test    rax, rax
        jnz     closefrom_failed

        /* 8. The command starts with no signal blocked. */
signal_mask:
        mov     eax, SYS_rt_sigprocmask
        mov     edi, 2                          /* SIG_SETMASK */
        lea     rsi, [r12 + MASK_NONE]
        xor     edx, edx
        mov     r10d, 8
        syscall

        /* 9. execve each candidate path in turn, as execvp does: go on after
         * ENOENT, ENOTDIR, ENODEV, ETIMEDOUT, ESTALE; remember EACCES. */
        mov     r13, [r12 + PATHS]
        xor     r15d, r15d                      /* saw EACCES */
        mov     r14, -2                         /* -ENOENT if there is no candidate */
exec_next:
        mov     rdi, [r13]
        test    rdi, rdi
        jz      exec_done
        mov     rsi, [r12 + ARGV]
        mov     rdx, [r12 + ENVP]
        mov     eax, SYS_execve
        syscall
        mov     r14, rax
        add     r13, 8
        cmp     rax, -13                        /* EACCES */
        jne     1f
        mov     r15d, 1
        jmp     exec_next
1:      cmp     rax, -2                         /* ENOENT */
        je      exec_next
        cmp     rax, -20                        /* ENOTDIR */
        je      exec_next
        cmp     rax, -19                        /* ENODEV */
        je      exec_next
        cmp     rax, -110                       /* ETIMEDOUT */
        je      exec_next
        cmp     rax, -116                       /* ESTALE */
        je      exec_next
        jmp     exec_failed
exec_done:
        test    r15d, r15d
        jz      exec_failed
        mov     r14, -13
exec_failed:
        mov     rax, r14
        xor     r14d, r14d
        mov     ebx, S_EXEC
        jmp     fail

root_failed:
        mov     ebx, S_ROOT
        jmp     fail0
cwd_failed:
        mov     ebx, S_CWD
        jmp     fail0
setsid_failed:
        mov     ebx, S_SETSID
        jmp     fail0
ctty_failed:
        mov     ebx, S_CTTY
        jmp     fail0
setgroups_failed:
        mov     ebx, S_SETGROUPS
        jmp     fail0
setgid_failed:
        mov     ebx, S_SETGID
        jmp     fail0
setuid_failed:
        mov     ebx, S_SETUID
        jmp     fail0
closefrom_failed:
        mov     ebx, S_CLOSEFROM
        jmp     fail0
cgroup_failed:
        mov     ebx, S_CGROUP
        jmp     fail0
stdio_failed:
        mov     r14, rbx
        mov     ebx, S_STDIO
        jmp     fail
fail0:
        xor     r14d, r14d
        /* rax = -errno, ebx = stage, r14 = detail. STATUS is written last. */
fail:
        neg     rax
        mov     [r12 + ERRNO], rax
        mov     [r12 + DETAIL], r14
        mov     [r12 + STATUS], rbx
        mov     eax, SYS_exit_group
        mov     edi, 127
        syscall

/* run_ops: r13 = &{count, pointer}, r14 = index base for DETAIL. Returns
 * rax = 0, or rax = -errno with ebx = S_OP and r14 = the failing op's index.
 * It runs in the child, on the child's stack (call/ret use it). */
run_ops:
        mov     r15, [r13 + 8]
        xor     ebx, ebx                        /* i */
1:      cmp     rbx, [r13]
        jae     9f
        mov     rax, [r15]                      /* kind */
        cmp     rax, 1
        je      10f
        cmp     rax, 2
        je      20f
        cmp     rax, 3
        je      30f
        cmp     rax, 4
        je      40f
        mov     rax, -22                        /* EINVAL: unknown op */
        jmp     8f
10:     mov     eax, SYS_unshare
        mov     rdi, [r15 + 8]
        syscall
        jmp     7f
20:     mov     eax, SYS_openat
        mov     rdi, -100                       /* AT_FDCWD */
        mov     rsi, [r15 + 8]
        mov     edx, 0x80001                    /* O_WRONLY|O_CLOEXEC */
        xor     r10d, r10d
        syscall
        test    rax, rax
        js      8f
        push    rax
        mov     rdi, rax
        mov     eax, SYS_write
        mov     rsi, [r15 + 16]
        mov     rdx, [r15 + 24]
        syscall
        pop     rdi
        push    rax
        mov     eax, SYS_close
        syscall
        pop     rax
        jmp     7f
30:     mov     eax, SYS_mount
        mov     rdi, [r15 + 8]
        mov     rsi, [r15 + 16]
        mov     rdx, [r15 + 24]
        mov     r10, [r15 + 32]
        mov     r8, [r15 + 40]
        syscall
        jmp     7f
40:     mov     eax, SYS_sethostname
        mov     rdi, [r15 + 8]
        mov     rsi, [r15 + 16]
        syscall
7:      test    rax, rax
        js      8f
        inc     rbx
        add     r15, 48
        jmp     1b
8:      add     r14, rbx                        /* failing op */
        mov     ebx, S_OP
        ret
9:      xor     eax, eax
        ret

        .globl  ns_forward_signal
ns_forward_signal:
        /* Installed with SA_SIGINFO: rsi = siginfo. si_code > 0 means the kernel
         * sent it (a terminal's Ctrl-C, a hangup): the command, in the same
         * terminal's foreground group, got its own already. Pass on only what
         * a process sent, unless the word at DATA_PAGE + 16 says all (-t). */
        cmp     dword ptr [rsi + 8], 0          /* si_code */
        jle     2f
        cmp     dword ptr [rip + image_start + DATA_PAGE + 16], 0
        je      3f
2:      mov     esi, edi                        /* the signal */
        mov     edi, dword ptr [rip + image_start + DATA_PAGE]  /* the command's pidfd */
        test    edi, edi
        js      1f
        mov     eax, SYS_pidfd_send_signal
        xor     edx, edx
        xor     r10d, r10d
        syscall
        ret
        /* No command yet: remember the signal in the pending word (the CLI
         * passes these on once it knows the command). */
1:      mov     ecx, esi
        lock bts qword ptr [rip + image_start + DATA_PAGE + 8], rcx
        /* The CLI may have set the pidfd and taken the pending word between
         * the first look and that bit: look again. With a pidfd now, take the
         * bit back; if it was still there, the CLI has not seen it: send it. */
        mov     edi, dword ptr [rip + image_start + DATA_PAGE]
        test    edi, edi
        js      3f
        lock btr qword ptr [rip + image_start + DATA_PAGE + 8], rcx
        jnc     3f
        mov     eax, SYS_pidfd_send_signal
        xor     edx, edx
        xor     r10d, r10d
        syscall
3:      ret
