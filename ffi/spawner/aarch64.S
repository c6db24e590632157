/*
 * ns-tool spawner for aarch64 Linux. The same program as x86_64.S, step for
 * step; read that file for the why. Differences that matter here:
 * - system calls: number in x8, arguments x0..x5, result in x0; the kernel
 *   keeps every other register, so x9 is free scratch across svc.
 * - clone(flags, newsp, parent_tid, tls, child_tid): tls before child_tid.
 * - O_DIRECTORY is 040000 (not 0200000 as on x86_64).
 * - No dup2: dup3 with flags 0 (sources are never equal to targets).
 * - The image is written to fresh memory and made executable with mprotect,
 *   which makes the kernel synchronise the instruction cache for the page.
 *
 * Block layout and constants must match ffi/_spawner.ts. ns_forward_signal is
 * the signal handler described in x86_64.S.
 */
        .text
        .globl  ns_spawn

        .equ CLONE_FLAGS, 0
        .equ STATUS, 8
        .equ ERRNO, 16
        .equ DETAIL, 24
        .equ GRANDCHILD, 32
        .equ FLAGS, 40
        .equ GID, 48
        .equ UID, 56
        .equ ROOT_FD, 64
        .equ CWD_FD, 72
        .equ CWD_PATH, 80
        .equ NSTEPS, 88
        .equ STEPS, 96
        .equ NMAPS, 104
        .equ MAPS, 112
        .equ PATHS, 120
        .equ ARGV, 128
        .equ ENVP, 136
        .equ STACK1, 144
        .equ STACK2, 152
        .equ MASK_ALL, 160
        .equ MASK_OLD, 168
        .equ MASK_NONE, 176
        .equ SIGACT_DFL, 184
        .equ DOT, 216
        .equ ZERO, 218
        .equ PIDFD_FD, 224
        .equ PIDFD_MASK, 232
        .equ CGROUP_FD, 240
        .equ PRE_OPS, 248
        .equ POST_OPS, 264

/* FLAGS bit numbers (tbz/tbnz test bits) */
        .equ B_FORK, 0
        .equ B_SETGROUPS, 1
        .equ B_SETGID, 2
        .equ B_SETUID, 3
        .equ B_CHROOT, 4
        .equ B_KEEPCWD, 5
        .equ B_FCHDIR, 6
        .equ B_CHDIR, 7
        .equ B_SETSID, 8
        .equ B_CTTY, 9
        .equ B_CLOSEFROM, 10
        .equ B_NODUMP, 11

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
        .equ S_OP, 14

        .equ SYS_dup3, 24
        .equ SYS_ioctl, 29
        .equ SYS_chdir, 49
        .equ SYS_fchdir, 50
        .equ SYS_chroot, 51
        .equ SYS_openat, 56
        .equ SYS_write, 64
        .equ SYS_exit_group, 94
        .equ SYS_rt_sigaction, 134
        .equ SYS_rt_sigprocmask, 135
        .equ SYS_setresuid, 147
        .equ SYS_setresgid, 149
        .equ SYS_setsid, 157
        .equ SYS_setgroups, 159
        .equ SYS_clone, 220
        .equ SYS_execve, 221
        .equ SYS_setns, 268
        .equ SYS_close_range, 436
        .equ SYS_close, 57
        .equ SYS_mount, 40
        .equ SYS_sethostname, 161
        .equ SYS_unshare, 97
        .equ SYS_prctl, 167
        .equ SYS_pidfd_send_signal, 424
        .equ PR_SET_DUMPABLE, 4
        .equ DATA_PAGE, 4096

        .equ CLONE_PARENT, 0x8000
        .equ TIOCSCTTY, 0x540e

/* x19 = block, x20 = counter or stage, x21 = pass, x22 = element pointer,
 * x23 = detail or last errno, x24 = FLAGS, x25 = saved fd or "saw EACCES" */
image_start:
ns_spawn:
        stp     x19, x20, [sp, #-64]!
        stp     x21, x22, [sp, #16]
        stp     x23, x24, [sp, #32]
        str     x25, [sp, #48]
        mov     x19, x0

        mov     x8, #SYS_rt_sigprocmask
        mov     x0, #0                          /* SIG_BLOCK */
        add     x1, x19, #MASK_ALL
        add     x2, x19, #MASK_OLD
        mov     x3, #8
        svc     #0

        mov     x8, #SYS_clone
        ldr     x0, [x19, #CLONE_FLAGS]
        ldr     x1, [x19, #STACK1]
        mov     x2, #0
        mov     x3, #0
        mov     x4, #0
        svc     #0
        cbz     x0, child

        mov     x20, x0
        mov     x8, #SYS_rt_sigprocmask
        mov     x0, #2                          /* SIG_SETMASK */
        add     x1, x19, #MASK_OLD
        mov     x2, #0
        mov     x3, #8
        svc     #0
        mov     x0, x20
        ldr     x25, [sp, #48]
        ldp     x23, x24, [sp, #32]
        ldp     x21, x22, [sp, #16]
        ldp     x19, x20, [sp], #64
        ret

child:
        /* 0. not dumpable while holding the caller's memory and descriptors */
        ldr     x9, [x19, #FLAGS]
        tbz     x9, #B_NODUMP, 1f
        mov     x8, #SYS_prctl
        mov     x0, #PR_SET_DUMPABLE
        mov     x1, #0
        svc     #0
1:
        /* 1. every handler back to SIG_DFL */
        mov     x20, #1
reset_signal:
        mov     x8, #SYS_rt_sigaction
        mov     x0, x20
        add     x1, x19, #SIGACT_DFL
        mov     x2, #0
        mov     x3, #8
        svc     #0
        add     x20, x20, #1
        cmp     x20, #64
        b.ls    reset_signal

        /* 1a. drop groups before any setns too (see x86_64.S) */
        ldr     x9, [x19, #FLAGS]
        tbz     x9, #B_SETGROUPS, 1f
        mov     x8, #SYS_setgroups
        mov     x0, #0
        mov     x1, #0
        svc     #0
1:
        /* 1b. into the target's cgroup, before any setns */
        ldr     x0, [x19, #CGROUP_FD]
        tbnz    x0, #63, 2f
        add     x1, x19, #ZERO
        mov     x2, #1
        mov     x8, #SYS_write
        svc     #0
        tbnz    x0, #63, cgroup_failed
2:
        /* 1c. all namespaces at once through the pidfd; else the passes */
        ldr     x0, [x19, #PIDFD_FD]
        tbnz    x0, #63, 2f
        ldr     x1, [x19, #PIDFD_MASK]
        mov     x8, #SYS_setns
        svc     #0
        cbz     x0, joined
2:
        /* 2. two passes over the steps, as nsenter */
        mov     x21, #0
pass:
        mov     x20, #1
        sub     x20, x20, x21
step:
        ldr     x9, [x19, #NSTEPS]
        cmp     x20, x9
        b.hs    pass_done
        ldr     x22, [x19, #STEPS]
        mov     x9, #24
        madd    x22, x20, x9, x22
        ldr     x0, [x22]
        tbnz    x0, #63, next_step              /* fd -1: not requested */
        ldr     x9, [x22, #16]
        cbnz    x9, next_step                   /* joined in pass 0 */
        ldr     x1, [x22, #8]
        mov     x8, #SYS_setns
        svc     #0
        cbnz    x0, step_failed
        mov     x9, #1
        str     x9, [x22, #16]
next_step:
        add     x20, x20, #1
        b       step
step_failed:
        cbz     x21, next_step
        mov     x23, x20
        mov     x20, #S_SETNS
        b       fail
pass_done:
        add     x21, x21, #1
        cmp     x21, #2
        b.lo    pass
joined:

        /* 2b. make new namespaces, if asked */
        add     x22, x19, #PRE_OPS
        mov     x23, #0
        bl      run_ops
        cbnz    x0, fail

        /* 3. enter the pid namespace: clone again, as the caller's child */
        ldr     x9, [x19, #FLAGS]
        tbz     x9, #B_FORK, root_dir
        mov     x8, #SYS_clone
        ldr     x0, [x19, #CLONE_FLAGS]
        orr     x0, x0, #CLONE_PARENT
        ldr     x1, [x19, #STACK2]
        mov     x2, #0
        mov     x3, #0
        mov     x4, #0
        svc     #0
        cbz     x0, root_dir
        tbnz    x0, #63, fork_failed
        str     x0, [x19, #GRANDCHILD]
        mov     x8, #SYS_exit_group
        mov     x0, #0
        svc     #0
fork_failed:
        mov     x23, #0
        mov     x20, #S_FORK
        b       fail

        /* 4. ops of the process that execs, then root and working directory */
root_dir:
        add     x22, x19, #POST_OPS
        mov     x23, #1000
        bl      run_ops
        cbnz    x0, fail
        ldr     x24, [x19, #FLAGS]
        tbz     x24, #B_CHROOT, work_dir
        mov     x25, #-1
        tbz     x24, #B_KEEPCWD, enter_root
        mov     x8, #SYS_openat
        mov     x0, #-100                       /* AT_FDCWD */
        add     x1, x19, #DOT
        movz    x2, #0x4000                     /* O_DIRECTORY */
        movk    x2, #0x8, lsl #16               /* | O_CLOEXEC (0x80000) */
        mov     x3, #0
        svc     #0
        tbnz    x0, #63, cwd_failed
        mov     x25, x0
enter_root:
        mov     x8, #SYS_fchdir
        ldr     x0, [x19, #ROOT_FD]
        svc     #0
        cbnz    x0, root_failed
        mov     x8, #SYS_chroot
        add     x0, x19, #DOT
        svc     #0
        cbnz    x0, root_failed
        tbnz    x25, #63, work_dir
        mov     x8, #SYS_fchdir
        mov     x0, x25
        svc     #0
        cbnz    x0, cwd_failed
work_dir:
        tbz     x24, #B_FCHDIR, 1f
        mov     x8, #SYS_fchdir
        ldr     x0, [x19, #CWD_FD]
        svc     #0
        cbnz    x0, cwd_failed
1:      tbz     x24, #B_CHDIR, session
        mov     x8, #SYS_chdir
        ldr     x0, [x19, #CWD_PATH]
        svc     #0
        cbnz    x0, cwd_failed

        /* 5. own session (controlling terminal after step 7) */
session:
        tbz     x24, #B_SETSID, credentials
        mov     x8, #SYS_setsid
        svc     #0
        tbnz    x0, #63, setsid_failed

        /* 6. credentials: groups, gid, uid */
credentials:
        tbz     x24, #B_SETGROUPS, 1f
        mov     x8, #SYS_setgroups
        mov     x0, #0
        mov     x1, #0
        svc     #0
        cmn     x0, #1                          /* -EPERM: setgroups is denied */
        b.eq    1f
        cbnz    x0, setgroups_failed
1:      tbz     x24, #B_SETGID, 1f
        mov     x8, #SYS_setresgid
        ldr     x0, [x19, #GID]
        mov     x1, x0
        mov     x2, x0
        svc     #0
        cbnz    x0, setgid_failed
1:      tbz     x24, #B_SETUID, stdio
        mov     x8, #SYS_setresuid
        ldr     x0, [x19, #UID]
        mov     x1, x0
        mov     x2, x0
        svc     #0
        cbnz    x0, setuid_failed

        /* 7. standard descriptors, then close the rest if asked */
stdio:
        mov     x20, #0
1:      ldr     x9, [x19, #NMAPS]
        cmp     x20, x9
        b.hs    2f
        ldr     x22, [x19, #MAPS]
        add     x22, x22, x20, lsl #4
        mov     x8, #SYS_dup3
        ldr     x0, [x22]
        ldr     x1, [x22, #8]
        mov     x2, #0
        svc     #0
        tbnz    x0, #63, stdio_failed
        add     x20, x20, #1
        b       1b
        /* 7b. fd 0, now the command's terminal, as controlling terminal */
2:      tbz     x24, #B_CTTY, 3f
        mov     x8, #SYS_ioctl
        mov     x0, #0
        mov     x1, #TIOCSCTTY
        mov     x2, #0
        svc     #0
        cbnz    x0, ctty_failed
3:      tbz     x24, #B_CLOSEFROM, signal_mask
        mov     x8, #SYS_close_range
        mov     x0, #3
        mov     x1, #0xffffffff
        mov     x2, #0
        svc     #0
        cbnz    x0, closefrom_failed

        /* 8. no signal blocked */
signal_mask:
        mov     x8, #SYS_rt_sigprocmask
        mov     x0, #2
        add     x1, x19, #MASK_NONE
        mov     x2, #0
        mov     x3, #8
        svc     #0

        /* 9. execve each candidate, as execvp */
        ldr     x22, [x19, #PATHS]
        mov     x25, #0
        mov     x23, #-2
exec_next:
        ldr     x0, [x22]
        cbz     x0, exec_done
        ldr     x1, [x19, #ARGV]
        ldr     x2, [x19, #ENVP]
        mov     x8, #SYS_execve
        svc     #0
        mov     x23, x0
        add     x22, x22, #8
        cmn     x0, #13                         /* EACCES */
        b.ne    1f
        mov     x25, #1
        b       exec_next
1:      cmn     x0, #2                          /* ENOENT */
        b.eq    exec_next
        cmn     x0, #20                         /* ENOTDIR */
        b.eq    exec_next
        cmn     x0, #19                         /* ENODEV */
        b.eq    exec_next
        cmn     x0, #110                        /* ETIMEDOUT */
        b.eq    exec_next
        cmn     x0, #116                        /* ESTALE */
        b.eq    exec_next
        b       exec_failed
exec_done:
        cbz     x25, exec_failed
        mov     x23, #-13
exec_failed:
        mov     x0, x23
        mov     x23, #0
        mov     x20, #S_EXEC
        b       fail

root_failed:
        mov     x20, #S_ROOT
        b       fail0
cwd_failed:
        mov     x20, #S_CWD
        b       fail0
setsid_failed:
        mov     x20, #S_SETSID
        b       fail0
ctty_failed:
        mov     x20, #S_CTTY
        b       fail0
setgroups_failed:
        mov     x20, #S_SETGROUPS
        b       fail0
setgid_failed:
        mov     x20, #S_SETGID
        b       fail0
setuid_failed:
        mov     x20, #S_SETUID
        b       fail0
closefrom_failed:
        mov     x20, #S_CLOSEFROM
        b       fail0
cgroup_failed:
        mov     x20, #S_CGROUP
        b       fail0
stdio_failed:
        mov     x23, x20
        mov     x20, #S_STDIO
        b       fail
fail0:
        mov     x23, #0
        /* x0 = -errno, x20 = stage, x23 = detail; STATUS is written last */
fail:
        neg     x0, x0
        str     x0, [x19, #ERRNO]
        str     x23, [x19, #DETAIL]
        str     x20, [x19, #STATUS]
        mov     x8, #SYS_exit_group
        mov     x0, #127
        svc     #0

/* run_ops: x22 = &{count, pointer}, x23 = index base. Returns x0 = 0, or
 * x0 = -errno with x20 = S_OP and x23 = the failing op's index. Uses x9-x16
 * and x20-x22; makes no calls (x30 holds the return address). */
run_ops:
        ldr     x9, [x22]                       /* count */
        ldr     x22, [x22, #8]                  /* ops */
        mov     x20, #0                         /* i */
1:      cmp     x20, x9
        b.hs    9f
        ldr     x10, [x22]                      /* kind */
        cmp     x10, #1
        b.eq    10f
        cmp     x10, #2
        b.eq    20f
        cmp     x10, #3
        b.eq    30f
        cmp     x10, #4
        b.eq    40f
        mov     x0, #-22
        b       8f
10:     mov     x8, #SYS_unshare
        ldr     x0, [x22, #8]
        svc     #0
        b       7f
20:     mov     x8, #SYS_openat
        mov     x0, #-100
        ldr     x1, [x22, #8]
        movz    x2, #0x0001
        movk    x2, #0x8, lsl #16               /* O_WRONLY|O_CLOEXEC */
        mov     x3, #0
        svc     #0
        tbnz    x0, #63, 8f
        mov     x11, x0                         /* fd */
        mov     x8, #SYS_write
        ldr     x1, [x22, #16]
        ldr     x2, [x22, #24]
        svc     #0
        mov     x12, x0
        mov     x8, #SYS_close
        mov     x0, x11
        svc     #0
        mov     x0, x12
        b       7f
30:     mov     x8, #SYS_mount
        ldr     x0, [x22, #8]
        ldr     x1, [x22, #16]
        ldr     x2, [x22, #24]
        ldr     x3, [x22, #32]
        ldr     x4, [x22, #40]
        svc     #0
        b       7f
40:     mov     x8, #SYS_sethostname
        ldr     x0, [x22, #8]
        ldr     x1, [x22, #16]
        svc     #0
7:      tbnz    x0, #63, 8f
        add     x20, x20, #1
        add     x22, x22, #48
        b       1b
8:      add     x23, x23, x20
        mov     x20, #S_OP
        ret
9:      mov     x0, #0
        ret

        .globl  ns_forward_signal
ns_forward_signal:
        /* SA_SIGINFO: x1 = siginfo; skip kernel-sent signals unless told all */
        adr     x9, image_start
        add     x9, x9, #DATA_PAGE
        ldr     w10, [x1, #8]                   /* si_code */
        cmp     w10, #0
        b.le    2f
        ldr     w10, [x9, #16]
        cbz     w10, 3f
2:      mov     x1, x0                          /* the signal */
        ldrsw   x0, [x9]                        /* the command's pidfd */
        tbnz    x0, #63, 1f
        mov     x2, #0
        mov     x3, #0
        mov     x8, #SYS_pidfd_send_signal
        svc     #0
        ret
        /* no command yet: set the signal's bit in the pending word, atomically */
1:      add     x10, x9, #8
        mov     x11, #1
        lsl     x11, x11, x1
4:      ldaxr   x12, [x10]
        orr     x12, x12, x11
        stlxr   w13, x12, [x10]
        cbnz    w13, 4b
        /* look at the pidfd again (see x86_64.S): with one now, take the bit
         * back and send the signal if the bit was still there */
        dmb     ish
        ldrsw   x0, [x9]
        tbnz    x0, #63, 3f
5:      ldaxr   x12, [x10]
        bic     x13, x12, x11
        stlxr   w14, x13, [x10]
        cbnz    w14, 5b
        tst     x12, x11
        b.eq    3f
        mov     x2, #0
        mov     x3, #0
        mov     x8, #SYS_pidfd_send_signal
        svc     #0
3:      ret
