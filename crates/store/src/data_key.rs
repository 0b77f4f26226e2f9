//! The 256-bit data key that seals environment variables: generated at the first start and kept
//! in the data directory (`keys/data.key`, mode 0600), or read from a file the operator keeps
//! elsewhere. The file holds 64 hexadecimal characters and a newline (`openssl rand -hex 32`).
//!
//! A key file that exists but does not hold a key is an error, never a reason to make a new one:
//! a new key would leave every sealed environment unreadable.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum DataKeyError {
    #[error("reading the data key file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the data key file {} does not hold a key (64 hexadecimal characters): it is truncated or corrupt; restore it from a backup, since a new key could not open the environment variables already stored",
        path.display()
    )]
    Malformed { path: PathBuf },
    #[error("writing a new data key to {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no random bytes for a new data key")]
    Random(#[source] getrandom::Error),
}

/// A data key. Its bytes are never printed.
pub struct DataKey([u8; KEY_LEN]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A new random key.
    pub fn generate() -> Result<Self, DataKeyError> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes).map_err(DataKeyError::Random)?;
        Ok(Self(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Read the key in `path`.
    pub fn load(path: &Path) -> Result<Self, DataKeyError> {
        let text = fs::read_to_string(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::InvalidData => DataKeyError::Malformed {
                path: path.to_path_buf(),
            },
            _ => DataKeyError::Read {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let malformed = || DataKeyError::Malformed {
            path: path.to_path_buf(),
        };
        let hex_text = text.trim_end_matches(['\n', '\r']);
        if hex_text.len() != 2 * KEY_LEN {
            return Err(malformed());
        }
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(hex_text, &mut bytes).map_err(|_| malformed())?;
        Ok(Self(bytes))
    }

    /// Read the key in `path`, or, if there is no such file, generate one and write it there
    /// atomically (temporary file, fsync, rename, fsync of the directory). Returns whether it
    /// was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), DataKeyError> {
        match fs::symlink_metadata(path) {
            Ok(_) => return Ok((Self::load(path)?, false)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DataKeyError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        let key = Self::generate()?;
        key.write_new(path).map_err(|source| DataKeyError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok((key, true))
    }

    fn write_new(&self, path: &Path) -> std::io::Result<()> {
        let dir = path
            .parent()
            .ok_or_else(|| std::io::Error::other("the key path has no directory"))?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        let temporary = path.with_extension("key.tmp");
        // A leftover of a crash during an earlier first start holds no key anyone relies on.
        match fs::remove_file(&temporary) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        writeln!(file, "{}", hex::encode(self.0))?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, path)?;
        File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_is_written_once_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("data.key");
        let (first, created) = DataKey::load_or_create(&path).unwrap();
        assert!(created);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let (again, created) = DataKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(first.0, again.0);
        assert_eq!(fs::read_to_string(&path).unwrap().len(), 65);
        assert!(!path.with_extension("key.tmp").exists());
    }

    #[test]
    fn a_short_or_corrupt_key_file_is_an_error_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.key");
        let valid = hex::encode([7u8; KEY_LEN]);
        for bad in [
            String::new(),
            valid[..63].to_owned(),
            format!("{}zz", &valid[..62]),
            format!("{valid}00"),
        ] {
            fs::write(&path, &bad).unwrap();
            let err = DataKey::load_or_create(&path).unwrap_err();
            assert!(matches!(err, DataKeyError::Malformed { .. }), "{err:?}");
            assert!(err.to_string().contains("restore it from a backup"));
            assert_eq!(fs::read_to_string(&path).unwrap(), bad);
        }
        fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(
            DataKey::load(&path),
            Err(DataKeyError::Malformed { .. })
        ));
        fs::write(&path, format!("{valid}\n")).unwrap();
        assert_eq!(DataKey::load(&path).unwrap().0, [7u8; KEY_LEN]);
        assert!(matches!(
            DataKey::load(&dir.path().join("missing.key")),
            Err(DataKeyError::Read { .. })
        ));
    }

    #[test]
    fn keys_are_never_printed() {
        let key = DataKey::generate().unwrap();
        assert_eq!(format!("{key:?}"), "DataKey(..)");
    }
}
