//! The cgroup logic against fake v1 and v2 trees in a temporary directory. The fake kernel is
//! this: `mkdir` gives a group `cgroup.procs` (and `cgroup.subtree_control` on v2), the tests
//! write the other control files the kernel would have, and `rmdir` drops a directory's ordinary
//! files first (a real cgroup directory's control files go with it).
//! Real cgroups are exercised in `tests/cgroup.rs`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use tempfile::TempDir;

use super::*;

pub(super) fn fake_kernel_after_mkdir(dir: &Path) -> io::Result<()> {
    fs::write(dir.join("cgroup.procs"), "")?;
    let parent = dir.parent().expect("a new group has a parent");
    if parent.join("cgroup.subtree_control").exists() {
        fs::write(dir.join("cgroup.subtree_control"), "")?;
    }
    Ok(())
}

pub(super) fn fake_kernel_before_rmdir(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn put(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn get(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

/// A cgroup v2 root offering `controllers`.
fn fake_v2(controllers: &str) -> TempDir {
    let root = tempfile::tempdir().unwrap();
    put(&root.path().join("cgroup.controllers"), controllers);
    put(&root.path().join("cgroup.subtree_control"), "");
    put(&root.path().join("cgroup.procs"), "1\n");
    root
}

/// cgroup v1 with one mount per controller.
fn fake_v1(controllers: &[&str]) -> TempDir {
    let root = tempfile::tempdir().unwrap();
    for controller in controllers {
        put(&root.path().join(controller).join("cgroup.procs"), "1\n");
    }
    root
}

fn config(root: &Path, instance: &str) -> CgroupConfig {
    CgroupConfig {
        root: root.to_owned(),
        ..CgroupConfig::new(instance)
    }
}

/// What the kernel shows in a new v2 group whose parent enabled the controllers.
fn populate_v2(dir: &Path) {
    for (file, text) in [
        ("cgroup.procs", ""),
        ("cgroup.subtree_control", ""),
        ("memory.current", "0\n"),
        (
            "memory.events",
            "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
        ),
        ("pids.events", "max 0\n"),
    ] {
        put(&dir.join(file), text);
    }
}

const V1_ALL: [&str; 4] = ["memory", "cpu", "pids", "freezer"];

#[test]
fn limits_follow_memory_as_on_lambda() {
    let one_cpu = EnvironmentLimits::for_memory_size(1769);
    assert_eq!(one_cpu.memory_bytes, 1769 * 1024 * 1024);
    assert_eq!(one_cpu.cpu_millis, 1000);
    assert_eq!(one_cpu.cpu_quota_us(), 20_000);
    assert_eq!(one_cpu.cpu_weight(), 100);
    assert_eq!(one_cpu.cpu_shares(), 1024);
    assert_eq!(one_cpu.pids_max, 1024);

    let smallest = EnvironmentLimits::for_memory_size(128);
    assert_eq!(smallest.cpu_millis, 72);
    assert_eq!(smallest.cpu_quota_us(), 1440);
    assert_eq!(smallest.cpu_weight(), 7);
    assert_eq!(smallest.cpu_shares(), 73);

    let largest = EnvironmentLimits::for_memory_size(10_240);
    assert_eq!(largest.cpu_millis, 5788);
    assert_eq!(largest.cpu_quota_us(), 115_760);

    let tiny = EnvironmentLimits::for_memory_size(16);
    assert_eq!(tiny.cpu_millis, MIN_CPU_MILLIS);
    assert_eq!(tiny.cpu_quota_us(), 1000);
    let nothing = EnvironmentLimits {
        cpu_millis: 0,
        ..tiny
    };
    assert_eq!(nothing.cpu_quota_us(), 1000);
    assert_eq!(nothing.cpu_weight(), 1);
    assert_eq!(nothing.cpu_shares(), 2);
}

#[test]
fn detects_each_version_and_missing_controllers() {
    let v2 = fake_v2("cpuset cpu io memory hugetlb pids rdma misc\n");
    assert!(matches!(
        group::Hierarchy::detect(v2.path()),
        Ok(group::Hierarchy::V2(_))
    ));
    let v1 = fake_v1(&V1_ALL);
    let group::Hierarchy::V1(mounts) = group::Hierarchy::detect(v1.path()).unwrap() else {
        panic!("not v1");
    };
    assert_eq!(mounts.freezer, Some(v1.path().join("freezer")));
    let no_freezer = fake_v1(&["memory", "cpu", "pids"]);
    let group::Hierarchy::V1(mounts) = group::Hierarchy::detect(no_freezer.path()).unwrap() else {
        panic!("not v1");
    };
    assert_eq!(mounts.freezer, None);

    let err = CgroupManager::new(&config(fake_v2("cpu io\n").path(), "a")).unwrap_err();
    assert!(
        matches!(&err, CgroupError::MissingControllers { version: CgroupVersion::V2, missing, .. } if missing == &["memory", "pids"]),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("lacks the memory, pids controller(s)")
    );

    let err = CgroupManager::new(&config(fake_v1(&["memory", "freezer"]).path(), "a")).unwrap_err();
    assert!(
        matches!(&err, CgroupError::MissingControllers { version: CgroupVersion::V1, missing, .. } if missing == &["cpu", "pids"]),
        "{err:?}"
    );

    let empty = tempfile::tempdir().unwrap();
    let err = CgroupManager::new(&config(empty.path(), "a")).unwrap_err();
    assert!(matches!(err, CgroupError::NoHierarchy { .. }), "{err:?}");
}

#[test]
fn names_cannot_escape_their_directory() {
    for bad in ["", ".", "..", ".hidden", "a/b", "a b", &"x".repeat(65)] {
        assert!(
            matches!(check_name(bad), Err(CgroupError::InvalidName { .. })),
            "{bad:?}"
        );
    }
    for good in ["kappa", "0123abcd", "env-1_2.3", &"x".repeat(64)] {
        check_name(good).unwrap();
    }
    let root = fake_v2("cpu memory pids");
    let manager = CgroupManager::new(&config(root.path(), "server")).unwrap();
    let limits = EnvironmentLimits::for_memory_size(128);
    assert!(matches!(
        manager.create("../escape", &limits),
        Err(CgroupError::InvalidName { .. })
    ));
    assert!(matches!(
        CgroupManager::new(&CgroupConfig {
            parent: "/etc".into(),
            ..config(root.path(), "server")
        }),
        Err(CgroupError::InvalidName { .. })
    ));
}

#[test]
fn v2_manager_enables_controllers_down_to_the_server_group() {
    let root = fake_v2("cpuset cpu io memory pids");
    let manager = CgroupManager::new(&config(root.path(), "server-1")).unwrap();
    assert_eq!(manager.version(), CgroupVersion::V2);
    for dir in [
        root.path().to_owned(),
        root.path().join("kappa"),
        root.path().join("kappa/server-1"),
    ] {
        assert_eq!(
            get(&dir.join("cgroup.subtree_control")),
            "+cpu +memory +pids",
            "{dir:?}"
        );
    }
}

#[test]
fn v2_enabling_writes_only_what_is_missing() {
    let root = fake_v2("cpu memory pids");
    put(&root.path().join("cgroup.subtree_control"), "cpu memory\n");
    v2::enable_controllers(root.path()).unwrap();
    assert_eq!(get(&root.path().join("cgroup.subtree_control")), "+pids");
    put(
        &root.path().join("cgroup.subtree_control"),
        "cpu memory pids\n",
    );
    v2::enable_controllers(root.path()).unwrap();
    assert_eq!(
        get(&root.path().join("cgroup.subtree_control")),
        "cpu memory pids\n"
    );
}

#[test]
fn v2_environment_limits_membership_and_removal() {
    let root = fake_v2("cpu memory pids");
    let manager = CgroupManager::new(&config(root.path(), "server")).unwrap();
    let env = manager
        .create("env1", &EnvironmentLimits::for_memory_size(128))
        .unwrap();
    let dir = root.path().join("kappa/server/env1");
    assert_eq!(get(&dir.join("memory.max")), (128u64 << 20).to_string());
    assert!(!dir.join("memory.swap.max").exists());
    assert_eq!(get(&dir.join("cpu.max")), "1440 20000");
    assert_eq!(get(&dir.join("cpu.weight")), "7");
    assert_eq!(get(&dir.join("pids.max")), "1024");
    assert_eq!(env.name(), "env1");
    assert_eq!(env.version(), CgroupVersion::V2);
    assert_eq!(env.procs_files(), vec![dir.join("cgroup.procs")]);

    env.add_process(Pid::from_raw(4242)).unwrap();
    assert_eq!(get(&dir.join("cgroup.procs")), "4242");
    assert_eq!(env.processes().unwrap(), vec![Pid::from_raw(4242)]);

    // The same name twice is refused, and the first group is left alone.
    assert!(matches!(
        manager.create("env1", &EnvironmentLimits::for_memory_size(128)),
        Err(CgroupError::Exists { .. })
    ));
    assert!(dir.is_dir());

    put(&dir.join("cgroup.procs"), "");
    env.remove().unwrap();
    assert!(!dir.exists());
    assert!(root.path().join("kappa/server").is_dir());
    drop(manager);
    assert!(!root.path().join("kappa/server").exists());
    assert!(root.path().join("kappa").is_dir());
}

#[test]
fn v2_swap_is_disabled_where_the_kernel_accounts_it() {
    let dir = tempfile::tempdir().unwrap();
    put(&dir.path().join("memory.swap.max"), "max\n");
    v2::apply_limits(dir.path(), &EnvironmentLimits::for_memory_size(1769)).unwrap();
    assert_eq!(get(&dir.path().join("memory.swap.max")), "0");
    assert_eq!(get(&dir.path().join("cpu.max")), "20000 20000");
}

#[test]
fn v2_peak_memory_from_the_kernel_or_tracked() {
    let root = fake_v2("cpu memory pids");
    let manager = CgroupManager::new(&config(root.path(), "server")).unwrap();
    let env = manager
        .create("env", &EnvironmentLimits::for_memory_size(128))
        .unwrap();
    let dir = root.path().join("kappa/server/env");
    populate_v2(&dir);
    // No memory.peak (before Linux 5.19): the highest memory.current seen. The counter file is
    // opened once and read again each time: each read sees the value written since.
    for (current, peak) in [(100, 100), (50, 100), (300, 300), (0, 300)] {
        put(&dir.join("memory.current"), &format!("{current}\n"));
        assert_eq!(env.peak_memory_bytes().unwrap(), peak);
    }
    // With memory.peak (Linux 5.19+), the kernel's figure.
    let env = manager
        .create("env2", &EnvironmentLimits::for_memory_size(128))
        .unwrap();
    let dir = root.path().join("kappa/server/env2");
    populate_v2(&dir);
    put(&dir.join("memory.current"), "100\n");
    put(&dir.join("memory.peak"), "4096\n");
    assert_eq!(env.peak_memory_bytes().unwrap(), 4096);
    put(&dir.join("memory.peak"), "8192\n");
    assert_eq!(env.peak_memory_bytes().unwrap(), 8192);
}

#[test]
fn v2_oom_kills_and_pids_limit_hits_are_counted() {
    let root = fake_v2("cpu memory pids");
    let manager = CgroupManager::new(&config(root.path(), "server")).unwrap();
    let env = manager
        .create("env", &EnvironmentLimits::for_memory_size(128))
        .unwrap();
    let dir = root.path().join("kappa/server/env");
    populate_v2(&dir);
    assert!(!env.oom_killed().unwrap());
    assert_eq!(env.pids_limit_hits().unwrap(), 0);
    put(
        &dir.join("memory.events"),
        "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n",
    );
    put(&dir.join("pids.events"), "max 37\n");
    assert_eq!(env.oom_kills().unwrap(), 2);
    assert!(env.oom_killed().unwrap());
    assert_eq!(env.pids_limit_hits().unwrap(), 37);

    put(&dir.join("memory.events"), "oom_kill lots\n");
    assert!(matches!(env.oom_kills(), Err(CgroupError::Parse { .. })));
}

#[test]
fn v2_kill_all_uses_cgroup_kill() {
    let root = fake_v2("cpu memory pids");
    let manager = CgroupManager::new(&config(root.path(), "server")).unwrap();
    let env = manager
        .create("env", &EnvironmentLimits::for_memory_size(128))
        .unwrap();
    let dir = root.path().join("kappa/server/env");
    populate_v2(&dir);
    put(&dir.join("cgroup.kill"), "");
    // Nothing to kill: cgroup.kill is not touched.
    assert_eq!(env.kill_all().unwrap(), 0);
    assert_eq!(get(&dir.join("cgroup.kill")), "");
}

#[test]
fn v1_environment_spans_every_controller() {
    let root = fake_v1(&V1_ALL);
    let manager = CgroupManager::new(&config(root.path(), "server")).unwrap();
    assert_eq!(manager.version(), CgroupVersion::V1);
    let env = manager
        .create("env1", &EnvironmentLimits::for_memory_size(256))
        .unwrap();
    let at = |controller: &str| root.path().join(controller).join("kappa/server/env1");
    assert_eq!(
        get(&at("memory").join("memory.limit_in_bytes")),
        (256u64 << 20).to_string()
    );
    assert!(!at("memory").join("memory.memsw.limit_in_bytes").exists());
    assert_eq!(get(&at("cpu").join("cpu.cfs_period_us")), "20000");
    assert_eq!(get(&at("cpu").join("cpu.cfs_quota_us")), "2880");
    assert_eq!(get(&at("cpu").join("cpu.shares")), "147");
    assert_eq!(get(&at("pids").join("pids.max")), "1024");
    assert_eq!(
        env.procs_files(),
        V1_ALL
            .iter()
            .map(|c| at(c).join("cgroup.procs"))
            .collect::<Vec<PathBuf>>()
    );

    env.add_process(Pid::from_raw(777)).unwrap();
    for controller in V1_ALL {
        assert_eq!(get(&at(controller).join("cgroup.procs")), "777");
    }

    for controller in V1_ALL {
        put(&at(controller).join("cgroup.procs"), "");
    }
    put(&at("freezer").join("freezer.state"), "THAWED\n");
    env.remove().unwrap();
    for controller in V1_ALL {
        assert!(!at(controller).exists(), "{controller}");
        assert!(
            root.path().join(controller).join("kappa/server").is_dir(),
            "{controller}"
        );
    }
}

#[test]
fn v1_swap_is_disabled_where_the_kernel_accounts_it() {
    let dir = tempfile::tempdir().unwrap();
    let memory = dir.path().join("memory");
    put(
        &memory.join("memory.memsw.limit_in_bytes"),
        "9223372036854771712\n",
    );
    put(
        &memory.join("memory.limit_in_bytes"),
        "9223372036854771712\n",
    );
    put(&memory.join("memory.swappiness"), "60\n");
    let limits = EnvironmentLimits::for_memory_size(128);
    v1::apply_limits(
        &memory,
        &dir.path().join("cpu"),
        &dir.path().join("pids"),
        &limits,
    )
    .unwrap_err(); // the fake has no cpu directory
    assert_eq!(
        get(&memory.join("memory.memsw.limit_in_bytes")),
        (128u64 << 20).to_string()
    );
    assert_eq!(get(&memory.join("memory.swappiness")), "0");
}

#[test]
fn v1_peak_and_oom_come_from_the_memory_controller() {
    let root = fake_v1(&V1_ALL);
    let manager = CgroupManager::new(&config(root.path(), "server")).unwrap();
    let env = manager
        .create("env", &EnvironmentLimits::for_memory_size(128))
        .unwrap();
    let memory = root.path().join("memory/kappa/server/env");
    put(&memory.join("memory.max_usage_in_bytes"), "52428800\n");
    assert_eq!(env.peak_memory_bytes().unwrap(), 52_428_800);
    put(&memory.join("memory.max_usage_in_bytes"), "104857600\n");
    assert_eq!(env.peak_memory_bytes().unwrap(), 104_857_600);

    put(
        &memory.join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    );
    assert!(!env.oom_killed().unwrap());
    put(
        &memory.join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    );
    assert_eq!(env.oom_kills().unwrap(), 3);
    // Before Linux 4.13 there is no counter; being out of memory is all there is.
    put(
        &memory.join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 1\n",
    );
    assert_eq!(env.oom_kills().unwrap(), 1);

    put(
        &root.path().join("pids/kappa/server/env/pids.events"),
        "max 5\n",
    );
    assert_eq!(env.pids_limit_hits().unwrap(), 5);
}

#[test]
fn v1_freeze_and_thaw_write_the_freezer_state() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!v1::freeze(dir.path()).unwrap());
    put(&dir.path().join("freezer.state"), "THAWED\n");
    assert!(v1::freeze(dir.path()).unwrap());
    assert_eq!(get(&dir.path().join("freezer.state")), "FROZEN");
    v1::thaw(dir.path()).unwrap();
    assert_eq!(get(&dir.path().join("freezer.state")), "THAWED");
    // A group below, frozen by itself, is thawed too.
    put(&dir.path().join("env/freezer.state"), "FROZEN\n");
    v1::thaw(dir.path()).unwrap();
    assert_eq!(get(&dir.path().join("env/freezer.state")), "THAWED");
}

#[test]
fn dropping_an_environment_removes_its_groups() {
    for root in [fake_v1(&V1_ALL), fake_v2("cpu memory pids")] {
        let manager = CgroupManager::new(&config(root.path(), "server")).unwrap();
        let env = manager
            .create("env", &EnvironmentLimits::for_memory_size(128))
            .unwrap();
        let files = env.procs_files();
        assert!(files.iter().all(|f| f.parent().unwrap().is_dir()));
        drop(env);
        assert!(files.iter().all(|f| !f.parent().unwrap().exists()));
    }
}

#[test]
fn a_failed_create_leaves_no_group() {
    let root = fake_v1(&V1_ALL);
    let manager = CgroupManager::new(&config(root.path(), "server")).unwrap();
    // The pids group exists already (left by someone else): refused, and the memory and cpu
    // directories made before it are taken back.
    fs::create_dir_all(root.path().join("pids/kappa/server/env")).unwrap();
    let err = manager
        .create("env", &EnvironmentLimits::for_memory_size(128))
        .unwrap_err();
    assert!(matches!(err, CgroupError::Exists { .. }), "{err:?}");
    assert!(!root.path().join("memory/kappa/server/env").exists());
    assert!(!root.path().join("cpu/kappa/server/env").exists());
    assert!(root.path().join("pids/kappa/server/env").exists());
}

#[test]
fn a_new_manager_takes_over_what_its_predecessor_left() {
    for root in [fake_v1(&V1_ALL), fake_v2("cpu memory pids")] {
        let first = CgroupManager::new(&config(root.path(), "server")).unwrap();
        let env = first
            .create("env", &EnvironmentLimits::for_memory_size(128))
            .unwrap();
        let files = env.procs_files();
        // A server killed with SIGKILL runs no destructor.
        std::mem::forget(env);
        std::mem::forget(first);
        let other = CgroupManager::new(&config(root.path(), "other")).unwrap();
        let _env = other
            .create("env", &EnvironmentLimits::for_memory_size(128))
            .unwrap();

        let second = CgroupManager::new(&config(root.path(), "server")).unwrap();
        assert!(files.iter().all(|f| !f.parent().unwrap().exists()));
        assert!(
            files
                .iter()
                .all(|f| f.parent().unwrap().parent().unwrap().is_dir())
        );
        second
            .create("env", &EnvironmentLimits::for_memory_size(128))
            .unwrap();
        // The other server's group is untouched.
        assert!(
            root.path()
                .join(match other.version() {
                    CgroupVersion::V1 => "memory/kappa/other/env",
                    CgroupVersion::V2 => "kappa/other/env",
                })
                .is_dir()
        );
    }
}

#[test]
fn stale_groups_are_removed_by_instance_or_all() {
    for root in [fake_v1(&V1_ALL), fake_v2("cpu memory pids")] {
        for instance in ["a", "b", "c"] {
            let manager = CgroupManager::new(&config(root.path(), instance)).unwrap();
            for env in ["e1", "e2"] {
                std::mem::forget(
                    manager
                        .create(env, &EnvironmentLimits::for_memory_size(128))
                        .unwrap(),
                );
            }
            std::mem::forget(manager);
        }
        let parent = |instance: &str| match group::Hierarchy::detect(root.path()).unwrap() {
            group::Hierarchy::V1(_) => root.path().join("memory/kappa").join(instance),
            group::Hierarchy::V2(_) => root.path().join("kappa").join(instance),
        };

        let cleaned = cleanup_stale(root.path(), "kappa", StaleScope::Instance("a")).unwrap();
        assert_eq!(
            cleaned,
            StaleCleanup {
                groups: 3,
                processes: 0
            }
        );
        assert!(!parent("a").exists());
        assert!(parent("b").join("e1").is_dir());

        let none = cleanup_stale(root.path(), "kappa", StaleScope::Instance("a")).unwrap();
        assert_eq!(none, StaleCleanup::default());

        let cleaned = cleanup_stale(root.path(), "kappa", StaleScope::All).unwrap();
        assert_eq!(cleaned.groups, 6);
        assert!(!parent("b").exists());
        assert!(!parent("c").exists());
        assert!(parent("").is_dir());
    }
}

#[test]
fn join_writes_the_caller_into_each_group() {
    let root = fake_v1(&V1_ALL);
    let manager = CgroupManager::new(&config(root.path(), "server")).unwrap();
    let env = manager
        .create("env", &EnvironmentLimits::for_memory_size(128))
        .unwrap();
    join_cgroup(&env.procs_files()).unwrap();
    for file in env.procs_files() {
        assert_eq!(get(&file), "0");
        put(&file, "");
    }
    let missing = root.path().join("memory/kappa/server/nope/cgroup.procs");
    let err = join_cgroup(std::slice::from_ref(&missing)).unwrap_err();
    assert!(
        matches!(&err, CgroupError::Write { path, .. } if path == &missing),
        "{err:?}"
    );
}
