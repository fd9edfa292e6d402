//! The signing secret: from config, or generated once into `<data-dir>/jwt-secret`
//! (mode 0600) so `collab serve` and `collab token` agree without any configuration.

use std::{fs, io::Write, path::Path};

use anyhow::Context;

const SECRET_FILE: &str = "jwt-secret";
/// Shorter secrets make HS256 brute-forceable; refuse them.
const MIN_SECRET_LEN: usize = 32;

pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = configured {
        anyhow::ensure!(
            secret.len() >= MIN_SECRET_LEN,
            "the JWT secret must be at least {MIN_SECRET_LEN} bytes long"
        );
        return Ok(secret.as_bytes().to_vec());
    }
    let path = data_dir.join(SECRET_FILE);
    match fs::read_to_string(&path) {
        Ok(secret) => {
            let secret = secret.trim();
            anyhow::ensure!(
                secret.len() >= MIN_SECRET_LEN,
                "{} is too short",
                path.display()
            );
            return Ok(secret.as_bytes().to_vec());
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    }
    fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())?;
            file.sync_all()?;
            Ok(secret.into_bytes())
        }
        // Another process created it first: use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            load_or_create(None, data_dir)
        }
        Err(error) => Err(error).with_context(|| format!("creating {}", path.display())),
    }
}
