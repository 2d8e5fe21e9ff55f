//! What the integration tests share: running a test again in a child
//! process (for seccomp filters and for stderr), and the filter.

#![allow(dead_code)]

use std::process::{Command, Output};

/// The environment variable that makes a test the child's part.
pub const CHILD: &str = "RUST_API_TEST_CHILD";

/// True in the child that `run_child` started for `name`.
pub fn is_child(name: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|v| v == name)
}

/// Runs the test `name` of this test binary alone in a child process,
/// which sees `is_child(name)`; returns its status and output.
pub fn run_child(name: &str, envs: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run the test binary again")
}

/// True if LD_PRELOAD of libmemscope.so is expected (`make test` runs the
/// tests plain and preloaded).
pub fn expect_loaded() -> bool {
    std::env::var_os("EXPECT_MEMSCOPE_LOADED").is_some()
}

/// Kills the whole process (SIGSYS) on every syscall the calling thread
/// makes except those in `allowed`; only this thread is filtered.
pub fn allow_only_syscalls(allowed: &[libc::c_long]) {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const NR_OFFSET: u32 = 0;
    const ARCH_OFFSET: u32 = 4;
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let n = allowed.len();
    assert!(n < 200);
    let mut f = vec![
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, ARCH_OFFSET),
        jeq(AUDIT_ARCH_X86_64, 1, 0),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, NR_OFFSET),
    ];
    for (i, nr) in allowed.iter().enumerate() {
        // A match jumps over the remaining tests and the kill.
        f.push(jeq(*nr as u32, (n - i) as u8, 0));
    }
    f.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_KILL_PROCESS));
    f.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
    let prog = libc::sock_fprog {
        len: f.len() as u16,
        filter: f.as_mut_ptr(),
    };
    // SAFETY: a valid filter program for the calling thread.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog
            ),
            0
        );
    }
    std::mem::forget(f);
}

/// The bypass line memscope prints once when scopes cannot act.
pub const BYPASS_LINE: &str = "this program's allocations do not go through memscope";

/// The line this crate prints when it forwards to a loaded library.
pub const FORWARD_LINE: &str = "libmemscope.so is loaded too";
