//! Real cgroups: limits written, memory past the limit OOM-killed, a fork storm held by
//! `pids.max`, peak memory, killing and removal, and a dead server's leftovers cleaned up.
//!
//! Needs root and a cgroup hierarchy with the memory, cpu and pids controllers (v1 or v2) at
//! /sys/fs/cgroup; otherwise each test says why it is skipped and passes. CI runs them as root.
//! The groups live under `kappa-test/<test>-<pid>`, apart from a real server's `kappa/`.
//!
//! The child processes are this test binary run again (see `helper_process`) or `sh`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::symlink;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kappa_sandbox::{
    CgroupConfig, CgroupError, CgroupManager, CgroupVersion, DEFAULT_CGROUP_ROOT,
    EnvironmentCgroup, EnvironmentLimits, StaleScope, cleanup_stale, join_cgroup,
};
use nix::unistd::Pid;

const PARENT: &str = "kappa-test";
const MB: u64 = 1024 * 1024;
/// Set in a helper process: the `cgroup.procs` files (one per line) to join first.
const JOIN: &str = "KAPPA_CGROUP_TEST_JOIN";
/// Set in a helper process: megabytes to allocate (and touch) once told to go.
const ALLOC_MB: &str = "KAPPA_CGROUP_TEST_ALLOC_MB";

/// Not a test of its own: the child process of the other tests when run with `ALLOC_MB` set.
/// Joins the groups in `JOIN` (printing `joined`), waits for a line on stdin, allocates, prints
/// `allocated`, and holds the memory until stdin closes.
#[test]
fn helper_process() {
    let Ok(megabytes) = std::env::var(ALLOC_MB) else {
        return;
    };
    let mut out = std::io::stdout();
    if let Ok(files) = std::env::var(JOIN) {
        let files: Vec<PathBuf> = files.lines().map(PathBuf::from).collect();
        join_cgroup(&files).expect("joining the cgroup");
        writeln!(out, "joined").unwrap();
        out.flush().unwrap();
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let megabytes: usize = megabytes.parse().unwrap();
    let chunks: Vec<Vec<u8>> = (0..megabytes)
        .map(|_| std::hint::black_box(vec![0x5a; 1 << 20]))
        .collect();
    writeln!(out, "allocated").unwrap();
    out.flush().unwrap();
    while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
    std::hint::black_box(chunks);
    std::process::exit(0);
}

/// A manager for `test` at `root`, or `None` (with the reason printed) where real cgroups cannot
/// be made.
fn manager_at(root: &Path, test: &str) -> Option<CgroupManager> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping {test}: making cgroups needs root");
        return None;
    }
    let config = CgroupConfig {
        root: root.to_owned(),
        parent: PARENT.to_owned(),
        instance: format!("{test}-{}", std::process::id()),
    };
    match CgroupManager::new(&config) {
        Ok(manager) => Some(manager),
        Err(err @ (CgroupError::NoHierarchy { .. } | CgroupError::MissingControllers { .. })) => {
            eprintln!("skipping {test}: {err}");
            None
        }
        Err(err) => panic!("making the cgroup manager: {err:?}"),
    }
}

fn manager(test: &str) -> Option<CgroupManager> {
    manager_at(Path::new(DEFAULT_CGROUP_ROOT), test)
}

fn spawn_helper(
    megabytes: u64,
    join: Option<&EnvironmentCgroup>,
) -> (Child, BufReader<ChildStdout>) {
    let mut command =
        Command::new(std::env::current_exe().expect("the test binary knows its path"));
    command
        .args([
            "--exact",
            "helper_process",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(ALLOC_MB, megabytes.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(env) = join {
        let files: Vec<String> = env
            .procs_files()
            .iter()
            .map(|f| f.to_str().expect("cgroup paths are UTF-8").to_owned())
            .collect();
        command.env(JOIN, files.join("\n"));
    }
    let mut child = command.spawn().expect("spawning the helper");
    let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    (child, stdout)
}

/// Read the child's output until a line equal to `word`.
fn expect_line(stdout: &mut BufReader<ChildStdout>, word: &str) {
    let mut line = String::new();
    loop {
        line.clear();
        let n = stdout
            .read_line(&mut line)
            .expect("reading the helper's output");
        assert!(n > 0, "the helper ended before printing {word:?}");
        if line.trim() == word {
            return;
        }
    }
}

fn go(child: &mut Child) {
    child
        .stdin
        .as_mut()
        .expect("stdin is piped")
        .write_all(b"go\n")
        .expect("telling the child to go");
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let mut status = None;
    if !wait_until(timeout, || {
        status = child.try_wait().expect("polling the child");
        status.is_some()
    }) {
        let _ = child.kill();
        panic!("child {} did not exit within {timeout:?}", child.id());
    }
    status.expect("set when the wait ended")
}

fn pid_of(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in i32"))
}

/// The group's directories (one per controller on v1).
fn dirs(env: &EnvironmentCgroup) -> Vec<PathBuf> {
    env.procs_files()
        .iter()
        .map(|f| f.parent().expect("a procs file is in its group").to_owned())
        .collect()
}

/// `file` in whichever of the group's directories has it.
fn control_file(env: &EnvironmentCgroup, file: &str) -> Option<String> {
    dirs(env).iter().find_map(|d| {
        std::fs::read_to_string(d.join(file))
            .ok()
            .map(|t| t.trim().to_owned())
    })
}

/// Kill and remove the group, and check nothing of it is left.
fn remove_and_check(env: EnvironmentCgroup) {
    let dirs = dirs(&env);
    env.kill_all().expect("killing the group's processes");
    assert!(env.processes().expect("listing").is_empty());
    env.remove().expect("removing the group");
    for dir in dirs {
        assert!(!dir.exists(), "{dir:?} is left");
    }
}

#[test]
fn limits_are_written() {
    let Some(manager) = manager("limits") else {
        return;
    };
    let env = manager
        .create("env", &EnvironmentLimits::for_memory_size(128))
        .unwrap();
    let file = |name| control_file(&env, name);
    match env.version() {
        CgroupVersion::V1 => {
            assert_eq!(
                file("memory.limit_in_bytes").unwrap(),
                (128 * MB).to_string()
            );
            if let Some(memsw) = file("memory.memsw.limit_in_bytes") {
                assert_eq!(memsw, (128 * MB).to_string());
            }
            assert_eq!(file("cpu.cfs_period_us").unwrap(), "20000");
            assert_eq!(file("cpu.cfs_quota_us").unwrap(), "1440");
            assert_eq!(file("cpu.shares").unwrap(), "73");
        }
        CgroupVersion::V2 => {
            assert_eq!(file("memory.max").unwrap(), (128 * MB).to_string());
            if let Some(swap) = file("memory.swap.max") {
                assert_eq!(swap, "0");
            }
            assert_eq!(file("cpu.max").unwrap(), "1440 20000");
            assert_eq!(file("cpu.weight").unwrap(), "7");
        }
    }
    assert_eq!(file("pids.max").unwrap(), "1024");
    remove_and_check(env);
    manager.remove().unwrap();
}

/// A pooled group is sized when its function is known, up or down: on v1 the memory+swap limit
/// must move first when growing (the kernel refuses a memory limit above it) and last when
/// shrinking.
#[test]
fn groups_can_be_resized_both_ways() {
    let Some(manager) = manager("resize") else {
        return;
    };
    let env = manager
        .create("env", &EnvironmentLimits::for_memory_size(128))
        .unwrap();
    for mb in [1024, 256, 10240, 128] {
        env.apply_limits(&EnvironmentLimits::for_memory_size(mb))
            .unwrap_or_else(|e| panic!("resizing to {mb} MB: {e}"));
        let limit = control_file(&env, "memory.limit_in_bytes")
            .or_else(|| control_file(&env, "memory.max"))
            .unwrap();
        assert_eq!(limit.trim(), (mb * MB).to_string());
    }
    remove_and_check(env);
    manager.remove().unwrap();
}

#[test]
fn memory_past_the_limit_is_oom_killed() {
    let Some(manager) = manager("oom") else {
        return;
    };
    let limits = EnvironmentLimits {
        memory_bytes: 64 * MB,
        ..EnvironmentLimits::for_memory_size(64)
    };
    let env = manager.create("env", &limits).unwrap();
    let (mut child, _stdout) = spawn_helper(256, None);
    env.add_process(pid_of(&child)).unwrap();
    assert_eq!(env.processes().unwrap(), vec![pid_of(&child)]);
    assert!(!env.oom_killed().unwrap());
    go(&mut child);
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert!(env.oom_killed().unwrap());
    assert!(env.oom_kills().unwrap() >= 1);
    let peak = env.peak_memory_bytes().unwrap();
    assert!(peak > 32 * MB && peak <= 64 * MB, "peak {peak}");
    remove_and_check(env);
}

#[test]
fn peak_memory_follows_use() {
    let Some(manager) = manager("peak") else {
        return;
    };
    let env = manager
        .create("env", &EnvironmentLimits::for_memory_size(128))
        .unwrap();
    // The child joins the group itself, as __sandbox-init does, then allocates.
    let (mut child, mut stdout) = spawn_helper(40, Some(&env));
    expect_line(&mut stdout, "joined");
    assert_eq!(env.processes().unwrap(), vec![pid_of(&child)]);
    let before = env.peak_memory_bytes().unwrap();
    go(&mut child);
    expect_line(&mut stdout, "allocated");
    let peak = env.peak_memory_bytes().unwrap();
    assert!((40 * MB..128 * MB).contains(&peak), "peak {peak}");
    assert!(peak > before, "peak {peak}, before {before}");
    assert!(!env.oom_killed().unwrap());

    assert_eq!(env.kill_all().unwrap(), 1);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(5)).signal(),
        Some(9)
    );
    // The figure outlives the processes, for the REPORT of an environment that died.
    assert!(env.peak_memory_bytes().unwrap() >= peak);
    remove_and_check(env);
}

/// A shell that, once told to go, starts 2,000 `sleep`s as fast as it can (each ends within
/// 20 s, so the storm is bounded even if everything else failed).
fn spawn_fork_storm() -> Child {
    Command::new("sh")
        .args([
            "-c",
            "read go; i=0; while [ $i -lt 2000 ]; do sleep 20 & i=$((i+1)); done; wait",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning sh")
}

fn check_fork_storm_is_held(manager: &CgroupManager) {
    let limits = EnvironmentLimits {
        pids_max: 32,
        ..EnvironmentLimits::for_memory_size(128)
    };
    let env = manager.create("env", &limits).expect("making the group");
    let mut shell = spawn_fork_storm();
    env.add_process(pid_of(&shell)).expect("adding the shell");
    go(&mut shell);
    assert!(
        wait_until(Duration::from_secs(20), || {
            env.pids_limit_hits().expect("reading pids.events") > 0
        }),
        "the storm never reached pids.max"
    );
    let count = env.processes().expect("listing").len();
    assert!(count <= 32, "{count} processes in a group limited to 32");
    // Kill while the shell may still be forking.
    assert!(env.kill_all().expect("killing the storm") >= 1);
    assert!(env.processes().expect("listing").is_empty());
    wait_exit(&mut shell, Duration::from_secs(5));
    remove_and_check(env);
}

#[test]
fn fork_storm_is_held_by_pids_max() {
    let Some(manager) = manager("forks") else {
        return;
    };
    check_fork_storm_is_held(&manager);
}

/// On v1 without the freezer, `kill_all` kills one by one until the group is empty: the same
/// hierarchies, seen through a root without a `freezer` mount.
#[test]
fn fork_storm_is_killed_without_the_freezer() {
    let root = Path::new(DEFAULT_CGROUP_ROOT);
    if root.join("cgroup.controllers").exists() {
        eprintln!("skipping: cgroup v2 has no freezer to do without");
        return;
    }
    let fake_root = tempfile::tempdir().unwrap();
    for controller in ["memory", "cpu", "pids"] {
        symlink(root.join(controller), fake_root.path().join(controller)).unwrap();
    }
    let Some(manager) = manager_at(fake_root.path(), "nofreezer") else {
        return;
    };
    check_fork_storm_is_held(&manager);
}

/// What a server killed with SIGKILL leaves: groups with running processes, and no destructor.
fn leave_behind(manager: CgroupManager) -> (Child, Vec<PathBuf>) {
    let env = manager
        .create("env", &EnvironmentLimits::for_memory_size(128))
        .expect("making the group");
    let sleeper = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawning sleep");
    env.add_process(pid_of(&sleeper)).expect("adding sleep");
    let dirs = dirs(&env);
    std::mem::forget(env);
    std::mem::forget(manager);
    (sleeper, dirs)
}

#[test]
fn a_dead_servers_groups_are_cleaned_up() {
    let Some(manager) = manager("stale") else {
        return;
    };
    let instance = format!("stale-{}", std::process::id());
    let (mut sleeper, dirs) = leave_behind(manager);
    let cleaned = cleanup_stale(
        Path::new(DEFAULT_CGROUP_ROOT),
        PARENT,
        StaleScope::Instance(&instance),
    )
    .unwrap();
    assert_eq!(cleaned.groups, 2);
    assert_eq!(cleaned.processes, 1);
    assert_eq!(
        wait_exit(&mut sleeper, Duration::from_secs(5)).signal(),
        Some(9)
    );
    for dir in &dirs {
        assert!(!dir.exists(), "{dir:?}");
        assert!(!dir.parent().unwrap().exists(), "{dir:?}'s server group");
    }
}

#[test]
fn a_restarted_server_takes_over_its_groups() {
    let Some(manager) = manager("restart") else {
        return;
    };
    let (mut sleeper, dirs) = leave_behind(manager);
    let manager = self::manager("restart").unwrap();
    assert_eq!(
        wait_exit(&mut sleeper, Duration::from_secs(5)).signal(),
        Some(9)
    );
    for dir in &dirs {
        assert!(!dir.exists(), "{dir:?}");
        assert!(dir.parent().unwrap().is_dir(), "{dir:?}'s server group");
    }
    let env = manager
        .create("env", &EnvironmentLimits::for_memory_size(128))
        .unwrap();
    remove_and_check(env);
    manager.remove().unwrap();
    for dir in &dirs {
        assert!(!dir.parent().unwrap().exists(), "{dir:?}'s server group");
    }
}
