//! What a killed server leaves under its environments directory: mounted `/tmp` volumes, loop
//! devices attached to their images, the images. Released at the next start and after a stop.

use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use kappa_sandbox::loop_device;
use nix::mount::MntFlags;

/// The kernel's view of this process's mounts.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";
/// Where the kernel lists block devices, loop devices with their backing files among them.
pub const SYS_BLOCK: &str = "/sys/block";

/// What [`release`] found and let go.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    pub mounts: usize,
    pub devices: usize,
}

/// Unmount everything mounted at or below `dir` and detach every loop device whose backing
/// file is below `dir` (`dir` canonical). Devices still held by a mount elsewhere detach by
/// themselves once it goes. Failures are logged; the caller removes the files.
pub fn release(dir: &Path, mountinfo: &Path, sys_block: &Path) -> Released {
    let mut released = Released::default();
    let mut mounts = mounts_below(dir, mountinfo);
    // Deepest first, so a mount below another goes before its parent.
    mounts.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
    for mount in mounts {
        match nix::mount::umount2(&mount, MntFlags::MNT_DETACH) {
            Ok(()) => released.mounts += 1,
            Err(err) => {
                tracing::warn!(mount = %mount.display(), %err, "unmounting a leftover /tmp volume failed");
            }
        }
    }
    for attached in loop_device::attached(sys_block) {
        if !attached.backing_file.starts_with(dir) {
            continue;
        }
        match loop_device::detach(&attached.device) {
            Ok(()) => released.devices += 1,
            Err(err) => {
                tracing::warn!(device = %attached.device.display(), error = %err, "detaching a leftover /tmp loop device failed");
            }
        }
    }
    released
}

/// Mount points at or below `dir`, from a mountinfo file.
pub fn mounts_below(dir: &Path, mountinfo: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(mountinfo) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
        .filter(|point| point.starts_with(dir))
        .collect()
}

/// mountinfo writes space, tab, newline and backslash in paths as `\` and three octal digits.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if let [b'\\', a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7', ..] = bytes[i..] {
            out.push((a - b'0') * 64 + (b - b'0') * 8 + (c - b'0'));
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_below_a_directory_are_found_with_escapes_undone() {
        let dir = tempfile::tempdir().unwrap();
        let info = dir.path().join("mountinfo");
        std::fs::write(
            &info,
            "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
             90 27 7:0 / /data/environments/abc rw,nosuid,nodev - ext4 /dev/loop0 rw\n\
             91 27 7:1 / /data/environments/with\\040space rw - ext4 /dev/loop1 rw\n\
             92 27 7:2 / /data/environments-other/x rw - ext4 /dev/loop2 rw\n\
             93 27 7:3 / /data/code rw - ext4 /dev/loop3 rw\n",
        )
        .unwrap();
        assert_eq!(
            mounts_below(Path::new("/data/environments"), &info),
            vec![
                PathBuf::from("/data/environments/abc"),
                PathBuf::from("/data/environments/with space"),
            ]
        );
        assert!(mounts_below(Path::new("/data/environments"), &dir.path().join("none")).is_empty());
    }

    #[test]
    fn unescape_leaves_other_backslashes_alone() {
        assert_eq!(unescape(r"a\134b\011c"), PathBuf::from("a\\b\tc"));
        assert_eq!(unescape(r"a\xyz"), PathBuf::from(r"a\xyz"));
        assert_eq!(unescape(r"end\04"), PathBuf::from(r"end\04"));
    }
}
