//! These tests mount: they need root, loop devices and mke2fs, and say so when skipped.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use kappa_sandbox::loop_device;
use nix::fcntl::{FallocateFlags, fallocate};

use super::*;

const MIB: u64 = 1 << 20;

fn volumes_possible() -> bool {
    let possible =
        nix::unistd::geteuid().is_root() && loop_device::available() && Formatter::find().is_some();
    if !possible {
        eprintln!("skipped: needs root, /dev/loop-control and mke2fs");
    }
    possible
}

fn open(dir: &Path) -> TmpStorage {
    TmpStorage::open(
        dir,
        TmpSettings {
            volumes: true,
            owner: Some(TmpOwner { uid: 993, gid: 990 }),
        },
    )
    .unwrap()
}

fn available_bytes(path: &Path) -> u64 {
    let stat = nix::sys::statvfs::statvfs(path).unwrap();
    stat.blocks_available() * stat.fragment_size()
}

/// Mounts below `dir` and loop devices backed by files below it.
fn leftovers(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mounts = stale::mounts_below(dir, Path::new(stale::MOUNTINFO));
    let devices = loop_device::attached(Path::new(stale::SYS_BLOCK))
        .into_iter()
        .filter(|l| l.backing_file.starts_with(dir))
        .map(|l| l.device)
        .collect();
    (mounts, devices)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Allocate `bytes` more in a new file of the volume (as writing would, without the I/O).
fn allocate(dir: &Path, name: &str, bytes: u64) -> nix::Result<()> {
    let file = std::fs::File::create(dir.join(name)).unwrap();
    fallocate(
        &file,
        FallocateFlags::empty(),
        0,
        i64::try_from(bytes).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_holds_its_size_and_refuses_more() {
    if !volumes_possible() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let storage = open(&dir.path().join("environments"));
    assert_eq!(storage.kind(), TmpKind::Volumes);
    for size in [512u32, 513, 700, 1024, 2048, 3000, 4096, 8192, 10_240] {
        let tmp = storage.take(size).await.unwrap();
        let available = available_bytes(tmp.path());
        let cap = u64::from(size) * MIB;
        assert!(
            (cap..=cap + MAX_SLACK_MIB * MIB).contains(&available),
            "{size} MiB: {available} bytes available"
        );
        // The root is the runtime user's, private, and empty, as Lambda's /tmp.
        let meta = std::fs::metadata(tmp.path()).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (993, 990, TMP_MODE)
        );
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
        if size == 512 {
            allocate(tmp.path(), "all", cap).unwrap();
            assert_eq!(
                allocate(tmp.path(), "more", MAX_SLACK_MIB * MIB + MIB),
                Err(nix::Error::ENOSPC)
            );
        }
    }
    storage.shut_down().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ended_tmp_is_unmounted_detached_and_deleted() {
    if !volumes_possible() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let storage = open(&dir.path().join("environments"));
    let root = dir.path().join("environments").canonicalize().unwrap();
    let tmp = storage.take(700).await.unwrap();
    let path = tmp.path().to_path_buf();
    let image = path.with_extension("img");
    std::fs::write(path.join("data"), b"x").unwrap();
    assert_eq!(std::fs::metadata(&image).unwrap().mode() & 0o777, 0o600);
    let (mounts, _) = leftovers(&root);
    assert!(mounts.contains(&path), "{mounts:?}");
    drop(tmp);
    wait_until("the volume to go", || {
        let (mounts, devices) = leftovers(&root);
        !mounts.contains(&path)
            && !image.exists()
            && !path.exists()
            && devices.len() == mounts.len()
    });
    storage.shut_down().await;
    assert_eq!(leftovers(&root), (vec![], vec![]));
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_releases_what_a_killed_server_left() {
    if !volumes_possible() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let environments = dir.path().join("environments");
    let killed = open(&environments);
    let tmp = killed.take(512).await.unwrap();
    let old_image = tmp.path().with_extension("img");
    // A SIGKILL: nothing is torn down. (`Volume` has no destructor: the worker, stopped with
    // its ready volumes forgotten, leaves them as they are.)
    {
        let mut state = killed.shared.lock();
        state.ready.clear();
        state.stopping = true;
    }
    std::mem::forget(tmp);
    std::mem::forget(killed);
    let root = environments.canonicalize().unwrap();
    assert!(!leftovers(&root).0.is_empty());

    let restarted = open(&environments);
    let (_, devices) = leftovers(&root);
    assert!(!old_image.exists());
    // What remains is the new run's own ready volumes.
    for device in &devices {
        let backing = loop_device::attached(Path::new(stale::SYS_BLOCK))
            .into_iter()
            .find(|l| &l.device == device)
            .unwrap()
            .backing_file;
        assert!(backing.exists(), "{backing:?} is attached but deleted");
    }
    // The new run's worker may be between attaching a ready volume and mounting it.
    wait_until("each attached volume to be mounted", || {
        let (mounts, devices) = leftovers(&root);
        mounts.len() == devices.len()
    });
    restarted.shut_down().await;
    wait_until("everything to be released", || {
        leftovers(&root) == (vec![], vec![])
    });
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_volumes_tmp_is_a_plain_directory() {
    let dir = tempfile::tempdir().unwrap();
    let storage = TmpStorage::open(
        &dir.path().join("environments"),
        TmpSettings {
            volumes: false,
            owner: None,
        },
    )
    .unwrap();
    assert_eq!(storage.kind(), TmpKind::Directories);
    let tmp = storage.take(512).await.unwrap();
    let path = tmp.path().to_path_buf();
    std::fs::write(path.join("file"), b"x").unwrap();
    drop(tmp);
    wait_until("the directory to go", || !path.exists());
    storage.shut_down().await;
}
