//! The runtime directory: created private to the user, and refused if someone else owns it.

use std::fs;
use std::path::Path;

use super::super::DiscoveryError;

/// Creates `base` and `dir` (below it) if needed, private to this user (0700 on Unix).
///
/// The fallback base lives in the shared temporary directory, where another user could have
/// created it first to watch or spoof advertisements; a directory owned by someone else is
/// refused. A `base` that already existed keeps its mode (it may be a directory the operator
/// chose and shares); the cluster directory is always made private.
pub(super) fn prepare(base: &Path, dir: &Path) -> Result<(), DiscoveryError> {
    let fail = |path: &Path, reason: String| DiscoveryError::RuntimeDir {
        path: path.to_owned(),
        reason,
    };
    let base_existed = base.exists();
    fs::create_dir_all(dir).map_err(|e| fail(dir, format!("cannot create it: {e}")))?;
    secure(base, !base_existed).map_err(|reason| fail(base, reason))?;
    secure(dir, true).map_err(|reason| fail(dir, reason))?;
    fs::read_dir(dir).map_err(|e| fail(dir, format!("cannot list it: {e}")))?;
    Ok(())
}

#[cfg(unix)]
fn secure(path: &Path, make_private: bool) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    let meta = fs::metadata(path).map_err(|e| format!("cannot inspect it: {e}"))?;
    if let Some(uid) = current_uid() {
        if meta.uid() != uid {
            return Err(format!(
                "it belongs to uid {}, not to this user (uid {uid}); remove it or choose another directory",
                meta.uid()
            ));
        }
    }
    if make_private && meta.mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make it private (0700): {e}"))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn secure(_path: &Path, _make_private: bool) -> Result<(), String> {
    Ok(())
}

/// This process's user id, where it can be learnt without unsafe code: on Linux, the owner of
/// `/proc/self` is the process's effective user.
pub(super) fn current_uid() -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        fs::metadata("/proc/self").ok().map(|m| m.uid())
    }
    #[cfg(not(unix))]
    {
        None
    }
}
