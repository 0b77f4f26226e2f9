//! The seccomp filter against the real kernel.
//!
//! Each check runs in a child: this test binary again, told by `KAPPA_SECCOMP_PROBE` to run only
//! `probe_in_filtered_child` with the filter installed, either before `exec` (as
//! `kappa __sandbox-init` does) or by `install_seccomp` on the probe's own thread. The probes
//! use arguments that fail differently without the filter (`unfiltered_probes_fail_differently`
//! checks that here), so the filter is what refuses them. Needs root only in the sense that
//! root is where the refused calls would otherwise succeed; CI runs as root.

use std::ffi::c_long;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use kappa_sandbox::{SyscallFilter, install_seccomp};
use nix::errno::Errno;
use nix::libc;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

const PROBE_ENV: &str = "KAPPA_SECCOMP_PROBE";
const PROBE_PASSED: &str = "seccomp probe: every check passed";
/// A mount point that does not exist: unfiltered, mount and umount2 fail with ENOENT.
const MISSING_PATH: &str = "/nonexistent-kappa-seccomp-probe";
/// `open_tree_attr`, added in Linux 6.15, after the table the policy was reviewed against.
const SYS_OPEN_TREE_ATTR: c_long = 467;
/// Bit 30 marks x32-ABI syscall numbers on x86_64.
const X32_SYSCALL_BIT: c_long = 0x4000_0000;

/// The errno of a raw syscall's result, or `None` if it succeeded.
fn errno_of(ret: c_long) -> Option<Errno> {
    (ret == -1).then(Errno::last)
}

fn run_probe_child(mode: &str, filter: Option<SyscallFilter>) -> Output {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let mut command = Command::new(exe);
    command
        .args([
            "probe_in_filtered_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PROBE_ENV, mode);
    if let Some(filter) = filter {
        // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe
        // work is allowed. `SyscallFilter::install` makes the prctl and seccomp syscalls on a
        // filter compiled before the fork and allocates nothing; only its error path allocates
        // here, and the child then exits without running anything else.
        unsafe {
            command.pre_exec(move || filter.install().map_err(std::io::Error::other));
        }
    }
    command.output().expect("the probe child runs")
}

fn assert_probe_passed(output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(PROBE_PASSED),
        "probe child failed: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
}

#[test]
fn filter_installed_before_exec_refuses_escapes_and_keeps_ordinary_syscalls() {
    let filter = SyscallFilter::for_host().expect("the policy compiles for this host");
    assert_probe_passed(&run_probe_child("pre_exec", Some(filter)));
}

#[test]
fn install_seccomp_filters_the_calling_thread() {
    assert_probe_passed(&run_probe_child("install_seccomp", None));
}

/// Without the filter the probes fail with other errors (or succeed), so in the filtered child
/// the errno comes from the filter. Only harmless probes are repeated here, in the test process.
#[test]
fn unfiltered_probes_fail_differently() {
    let mounted = mount(
        Some("none"),
        MISSING_PATH,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    );
    assert_eq!(mounted, Err(Errno::ENOENT));
    // SAFETY: clone3 with a null argument struct of size 0 is rejected before it reads memory.
    let clone3 = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
    assert_eq!(errno_of(clone3), Some(Errno::EINVAL));
    // SAFETY: bpf with a null, zero-sized attribute reads nothing and creates nothing.
    let bpf = unsafe { libc::syscall(libc::SYS_bpf, 0, std::ptr::null::<u8>(), 0) };
    assert_ne!(errno_of(bpf), Some(Errno::EPERM));
    // SAFETY: open_tree_attr on fd -1 with a null path fails before doing anything.
    let open_tree_attr = unsafe {
        libc::syscall(
            SYS_OPEN_TREE_ATTR,
            -1,
            std::ptr::null::<u8>(),
            0,
            std::ptr::null::<u8>(),
            0,
        )
    };
    assert_ne!(errno_of(open_tree_attr), Some(Errno::EPERM));
}

/// The child's side: a no-op in a normal test run.
#[test]
fn probe_in_filtered_child() {
    let Ok(mode) = std::env::var(PROBE_ENV) else {
        return;
    };
    let status_path = match mode.as_str() {
        // The whole process was filtered before exec.
        "pre_exec" => "/proc/self/status",
        // libtest runs this on a thread of its own; seccomp filters are per thread.
        "install_seccomp" => {
            install_seccomp().expect("installing the filter");
            "/proc/thread-self/status"
        }
        other => panic!("unknown probe mode {other}"),
    };
    // Check the filter is on before trying anything that would change the machine without it.
    let status = std::fs::read_to_string(status_path).expect("reading the status file");
    assert!(status.contains("\nSeccomp:\t2\n"), "{status}");
    assert!(status.contains("\nNoNewPrivs:\t1\n"), "{status}");

    refused_calls_fail_with_the_policy_errno();
    ordinary_calls_still_work();
    println!("{PROBE_PASSED}");
}

fn refused_calls_fail_with_the_policy_errno() {
    let mounted = mount(
        Some("none"),
        MISSING_PATH,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    );
    assert_eq!(mounted, Err(Errno::EPERM), "mount");
    assert_eq!(
        umount2(MISSING_PATH, MntFlags::empty()),
        Err(Errno::EPERM),
        "umount2"
    );
    assert_eq!(
        unshare(CloneFlags::CLONE_NEWNS),
        Err(Errno::EPERM),
        "unshare"
    );

    // SAFETY: PTRACE_TRACEME ignores the other arguments.
    let traceme = unsafe {
        libc::ptrace(
            libc::PTRACE_TRACEME,
            0,
            std::ptr::null_mut::<u8>(),
            std::ptr::null_mut::<u8>(),
        )
    };
    assert_eq!(errno_of(traceme), Some(Errno::EPERM), "ptrace");

    const KEYCTL_GET_KEYRING_ID: c_long = 0;
    const KEY_SPEC_SESSION_KEYRING: c_long = -3;
    // SAFETY: integer arguments only.
    let keyctl = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_GET_KEYRING_ID,
            KEY_SPEC_SESSION_KEYRING,
            0,
        )
    };
    assert_eq!(errno_of(keyctl), Some(Errno::EPERM), "keyctl");

    // SAFETY: a null, zero-sized attribute; see `unfiltered_probes_fail_differently`.
    let bpf = unsafe { libc::syscall(libc::SYS_bpf, 0, std::ptr::null::<u8>(), 0) };
    assert_eq!(errno_of(bpf), Some(Errno::EPERM), "bpf");

    // SAFETY: reading zero iovecs from ourselves touches no memory.
    let vm_read = unsafe {
        libc::syscall(
            libc::SYS_process_vm_readv,
            libc::getpid(),
            std::ptr::null::<u8>(),
            0,
            std::ptr::null::<u8>(),
            0,
            0,
        )
    };
    assert_eq!(errno_of(vm_read), Some(Errno::EPERM), "process_vm_readv");

    let sigchld = c_long::from(libc::SIGCHLD);
    let new_user = c_long::from(libc::CLONE_NEWUSER) | sigchld;
    // SAFETY: a fork-like clone (no CLONE_VM, stack 0 = copy of ours); should it ever succeed,
    // the child leaves at once with `_exit` and the parent reaps it before failing.
    let cloned = unsafe { libc::syscall(libc::SYS_clone, new_user, 0, 0, 0, 0) };
    if cloned == 0 {
        // SAFETY: `_exit` ends the cloned child without running any of the parent's code.
        unsafe { libc::_exit(0) };
    }
    if cloned > 0 {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(cloned).expect("a pid fits in i32"));
        let _ = nix::sys::wait::waitpid(pid, None);
    }
    assert_eq!(errno_of(cloned), Some(Errno::EPERM), "clone(CLONE_NEWUSER)");

    // SAFETY: see `unfiltered_probes_fail_differently`.
    let clone3 = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
    assert_eq!(errno_of(clone3), Some(Errno::ENOSYS), "clone3");

    // SAFETY: see `unfiltered_probes_fail_differently`.
    let open_tree_attr = unsafe {
        libc::syscall(
            SYS_OPEN_TREE_ATTR,
            -1,
            std::ptr::null::<u8>(),
            0,
            std::ptr::null::<u8>(),
            0,
        )
    };
    assert_eq!(
        errno_of(open_tree_attr),
        Some(Errno::ENOSYS),
        "open_tree_attr"
    );
    // SAFETY: getpid through its x32 number takes no arguments.
    let x32_getpid = unsafe { libc::syscall(X32_SYSCALL_BIT | libc::SYS_getpid) };
    if cfg!(target_arch = "x86_64") {
        assert_eq!(errno_of(x32_getpid), Some(Errno::ENOSYS), "x32 getpid");
    }

    const ADDR_NO_RANDOMIZE: libc::c_ulong = 0x0004_0000;
    // SAFETY: personality only reads its integer argument.
    let no_aslr = unsafe { libc::personality(ADDR_NO_RANDOMIZE) };
    assert_eq!(
        errno_of(c_long::from(no_aslr)),
        Some(Errno::EPERM),
        "personality"
    );
    // SAFETY: as above; 0xffffffff only queries.
    let query = unsafe { libc::personality(0xffff_ffff) };
    assert!(query >= 0, "personality query: {}", Errno::last());
}

fn ordinary_calls_still_work() {
    // write(2) to stdout and getpid(2).
    println!("probe running as pid {}", std::process::id());
    assert_eq!(
        u32::try_from(nix::unistd::getpid().as_raw()).ok(),
        Some(std::process::id())
    );
    // A thread: pthread_create tries clone3, gets ENOSYS and falls back to clone.
    let answer = std::thread::spawn(|| 6 * 7)
        .join()
        .expect("the thread runs");
    assert_eq!(answer, 42);
    // A child process: fork/vfork and execve, also under the filter.
    let status = Command::new("/bin/true")
        .status()
        .expect("spawning /bin/true");
    assert!(status.success(), "/bin/true: {status}");
    // Files and FIFOs in a temporary directory.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("file");
    std::fs::write(&file, b"kappa").expect("writing a file");
    assert_eq!(std::fs::read(&file).expect("reading it back"), b"kappa");
    nix::unistd::mkfifo(
        &dir.path().join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo (mknodat with S_IFIFO) stays allowed");
}
