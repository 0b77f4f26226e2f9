//! The environment's root file system: a fresh tmpfs that becomes `/` by `pivot_root`.
//!
//! It holds, read-only, the host's system directories a runtime needs (programs and shared
//! libraries), an `/etc` made of a short list of host files plus Kappa's own `passwd` and
//! `group`, a minimal `/dev`, empty mount points for the environment's binds (`/var/task`,
//! `/var/runtime`, `/opt`, `/tmp`; `/var/lang` is made when a runtime needs it) and an empty
//! `/proc` for the PID namespace's init to mount. It is built while the sandbox waits in the pool; the binds are attached when the
//! function is known. Nothing else of the host exists inside: not `/root`, `/home`, `/srv`, the
//! data dir or other functions.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::unistd::{chdir, pivot_root};

use crate::enter::{SandboxError, remount_read_only};
use crate::spec::{Bind, SANDBOX_GID, SANDBOX_UID};

/// Host directories shown read-only at the same path: programs, interpreters in `/usr`, shared
/// libraries. Where the host has a merged `/usr`, `/bin` and friends are symlinks and are
/// recreated as the same symlinks.
const SYSTEM_DIRS: [&str; 7] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// Host files and directories under `/etc` a runtime may read, each for a reason: the dynamic
/// loader's cache and configuration; name resolution (hosts, resolv.conf, nsswitch, gai,
/// services, protocols); TLS trust roots (ssl, ca-certificates, pki); the time zone; the OS
/// description; Debian's alternatives, which some `/usr/bin` programs are symlinks into.
/// Deliberately absent: shadow files, sudoers, ssh keys, machine-id and every other host secret.
const ETC_ENTRIES: [&str; 17] = [
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "nsswitch.conf",
    "hosts",
    "resolv.conf",
    "host.conf",
    "gai.conf",
    "services",
    "protocols",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "localtime",
    "os-release",
    "alternatives",
];

/// Device nodes bound from the host into the environment's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Where the new root is assembled before `pivot_root` (inside this mount namespace only).
const STAGING: &str = "/tmp";

/// Where the function's binds are attached once it is known: they exist, empty, in every root.
/// Others (`/var/lang`, for managed runtimes only) are made under `/var` when attached.
const BIND_TARGETS: [&str; 4] = ["/var/task", "/var/runtime", "/opt", "/tmp"];

/// A small tmpfs of its own, writable until the function's binds are attached, so mount points
/// only some functions have can be made then.
const VAR: &str = "/var";

/// Build the new root (everything but the function's binds, which get empty mount points) and
/// make it `/`, read-only; then attach the `early` binds a prestarted runtime needs before its
/// function (cloned first: the staging tmpfs hides the host's `/tmp`).
pub(crate) fn build_and_enter(early: &[Bind]) -> Result<(), SandboxError> {
    let early_trees = early
        .iter()
        .map(|bind| {
            crate::detached_mount::clone_tree(&bind.source).map_err(|source| SandboxError::Attach {
                target: bind.target.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let root = Path::new(STAGING);
    mount_tmpfs(
        root,
        MsFlags::MS_NODEV,
        "size=1m",
        "mounting the root tmpfs",
    )?;
    for dir in SYSTEM_DIRS {
        show_system_dir(root, Path::new(dir))?;
    }
    build_etc(root)?;
    build_dev(root)?;
    let var = inside(root, Path::new(VAR));
    make_dir(&var)?;
    mount_tmpfs(&var, MsFlags::MS_NODEV, "size=64k", "mounting /var")?;
    for target in BIND_TARGETS {
        make_dir(&inside(root, Path::new(target)))?;
    }
    make_dir(&root.join("proc"))?;
    enter(root)?;
    make_var_mount_points(early)?;
    attach_trees(early, early_trees)
}

/// Attach the function's binds, each from the detached mount the server sent for it, at their
/// targets in the finished root; all but the writable ones read-only. Then `/var` is made
/// read-only like the rest.
pub(crate) fn attach_binds(binds: &[Bind], trees: Vec<OwnedFd>) -> Result<(), SandboxError> {
    make_var_mount_points(binds)?;
    remount_read_only(Path::new(VAR), MsFlags::empty()).map_err(|source| SandboxError::Root {
        step: "making /var read-only",
        source,
    })?;
    attach_trees(binds, trees)
}

/// Mount points under `/var` that not every root has (`/var/lang`), while `/var` is writable.
fn make_var_mount_points(binds: &[Bind]) -> Result<(), SandboxError> {
    for bind in binds {
        if bind.target.starts_with(VAR) && !bind.target.exists() {
            make_dir(&bind.target)?;
        }
    }
    Ok(())
}

/// Attach each bind from its detached mount; all but the writable ones read-only.
fn attach_trees(binds: &[Bind], trees: Vec<OwnedFd>) -> Result<(), SandboxError> {
    if binds.len() != trees.len() {
        return Err(SandboxError::BindCount {
            binds: binds.len(),
            trees: trees.len(),
        });
    }
    for (bind, tree) in binds.iter().zip(trees) {
        crate::detached_mount::attach(&tree, &bind.target).map_err(|source| {
            SandboxError::Attach {
                target: bind.target.clone(),
                source,
            }
        })?;
        if !bind.writable {
            remount_read_only(&bind.target, MsFlags::MS_BIND).map_err(|source| {
                SandboxError::Bind {
                    path: bind.target.clone(),
                    source,
                }
            })?;
        }
    }
    Ok(())
}

/// `pivot_root` into `root`, detach the old root, and make the new one read-only.
fn enter(root: &Path) -> Result<(), SandboxError> {
    let step = |step: &'static str| move |source: nix::Error| SandboxError::Root { step, source };
    chdir(root).map_err(step("entering the new root"))?;
    // The old root ends up stacked under the new one at "."; detaching "." removes it.
    pivot_root(".", ".").map_err(step("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(step("detaching the host's root"))?;
    chdir("/").map_err(step("entering /"))?;
    remount_read_only(Path::new("/"), MsFlags::empty()).map_err(step("making / read-only"))
}

/// A fresh tmpfs (mode 755, nosuid, plus `flags`) of `size` at `target`.
fn mount_tmpfs(
    target: &Path,
    flags: MsFlags,
    size: &str,
    step: &'static str,
) -> Result<(), SandboxError> {
    let options = format!("mode=755,{size}");
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | flags,
        Some(options.as_str()),
    )
    .map_err(|source| SandboxError::Root { step, source })
}

fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn make_dir(path: &Path) -> Result<(), SandboxError> {
    fs::create_dir_all(path).map_err(|source| SandboxError::MountPoint {
        path: path.to_owned(),
        source,
    })
}

fn make_file(path: &Path, contents: &[u8]) -> Result<(), SandboxError> {
    fs::write(path, contents).map_err(|source| SandboxError::MountPoint {
        path: path.to_owned(),
        source,
    })
}

fn make_symlink(target: &Path, link: &Path) -> Result<(), SandboxError> {
    symlink(target, link).map_err(|source| SandboxError::MountPoint {
        path: link.to_owned(),
        source,
    })
}

/// Recreate a host symlink, or bind a host directory read-only; absent ones are skipped.
fn show_system_dir(root: &Path, host: &Path) -> Result<(), SandboxError> {
    let Ok(meta) = fs::symlink_metadata(host) else {
        return Ok(());
    };
    let target = inside(root, host);
    if meta.file_type().is_symlink() {
        let points_to = fs::read_link(host).map_err(|source| SandboxError::MountPoint {
            path: host.to_owned(),
            source,
        })?;
        return make_symlink(&points_to, &target);
    }
    if meta.is_dir() {
        make_dir(&target)?;
        bind_read_only(host, &target)?;
    }
    Ok(())
}

/// `/etc`: Kappa's `passwd` and `group` naming the sandbox user, and the listed host entries.
fn build_etc(root: &Path) -> Result<(), SandboxError> {
    let etc = root.join("etc");
    make_dir(&etc)?;
    let passwd = format!(
        "root:x:0:0:root:/root:/sbin/nologin\nsbx_user1051:x:{SANDBOX_UID}:{SANDBOX_GID}::/home/sbx_user1051:/sbin/nologin\n"
    );
    make_file(&etc.join("passwd"), passwd.as_bytes())?;
    let group = format!("root:x:0:\nsbx_user1051:x:{SANDBOX_GID}:\n");
    make_file(&etc.join("group"), group.as_bytes())?;
    for name in ETC_ENTRIES {
        let host = Path::new("/etc").join(name);
        // Follows symlinks: what the host resolves is what the runtime reads.
        let Ok(meta) = fs::metadata(&host) else {
            continue;
        };
        let target = etc.join(name);
        if meta.is_dir() {
            make_dir(&target)?;
        } else if meta.is_file() {
            make_file(&target, b"")?;
        } else {
            continue;
        }
        bind_read_only(&host, &target)?;
    }
    Ok(())
}

/// A minimal `/dev`: the harmless character devices and the usual `/proc/self/fd` links. No
/// `/dev/shm`, as on Lambda.
fn build_dev(root: &Path) -> Result<(), SandboxError> {
    let dev = root.join("dev");
    make_dir(&dev)?;
    mount_tmpfs(&dev, MsFlags::MS_NOEXEC, "size=64k", "mounting /dev")?;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        if !host.exists() {
            continue;
        }
        let target = dev.join(name);
        make_file(&target, b"")?;
        mount(
            Some(&host),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|source| SandboxError::Bind {
            path: host.clone(),
            source,
        })?;
    }
    for (name, points_to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        make_symlink(Path::new(points_to), &dev.join(name))?;
    }
    remount_read_only(&dev, MsFlags::MS_NOEXEC).map_err(|source| SandboxError::Root {
        step: "making /dev read-only",
        source,
    })
}

fn bind_read_only(host: &Path, target: &Path) -> Result<(), SandboxError> {
    let bind_error = |source| SandboxError::Bind {
        path: host.to_owned(),
        source,
    };
    mount(
        Some(host),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(bind_error)?;
    remount_read_only(target, MsFlags::MS_BIND).map_err(bind_error)
}
