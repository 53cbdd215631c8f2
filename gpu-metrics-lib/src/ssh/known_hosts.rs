//! OpenSSH `known_hosts` files: lookup (plain, `[host]:port`, wildcard, negated
//! and hashed `|1|salt|hash` entries, `@revoked` markers) and appending.
//!
//! This is implemented here rather than through libssh2's `knownhost` API
//! because that API does not match `[host]:port` entries the way OpenSSH
//! does, and we want one behaviour we test ourselves.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::SshError;

/// The SHA256 fingerprint of a public key blob, exactly as `ssh` prints it:
/// `SHA256:` followed by the unpadded base64 of the SHA-256 of the blob.
pub fn fingerprint_sha256(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

/// The key type named inside a public key blob (its first SSH string), for
/// example `ssh-ed25519`, `ssh-rsa` or `ecdsa-sha2-nistp256`.
pub fn key_type_of_blob(blob: &[u8]) -> Option<&str> {
    let len_bytes: [u8; 4] = blob.get(..4)?.try_into().ok()?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    let name = blob.get(4..4usize.checked_add(len)?)?;
    std::str::from_utf8(name).ok()
}

/// How `ssh` names a key type in "… key fingerprint is …" (`ED25519`, `RSA`,
/// `ECDSA`, `DSA`); the type itself when it is not one of those.
pub fn key_type_label(key_type: &str) -> &str {
    match key_type {
        "ssh-ed25519" => "ED25519",
        "ssh-rsa" => "RSA",
        "ssh-dss" => "DSA",
        t if t.starts_with("ecdsa-sha2-") => "ECDSA",
        t => t,
    }
}

/// The name a host is looked up under: `host` for port 22, `[host]:port`
/// otherwise (as OpenSSH does), lower-cased.
pub fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// What a known_hosts file says about a host's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// An entry for this host holds exactly this key.
    Match {
        /// 1-based line number of the matching entry.
        line: usize,
    },
    /// The host is known, but with another key: a changed key.
    Mismatch {
        /// 1-based line number of the entry that holds the other key.
        line: usize,
    },
    /// The key is marked `@revoked` for this host.
    Revoked {
        /// 1-based line number of the `@revoked` entry.
        line: usize,
    },
    /// No entry for this host.
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Debug, Clone)]
enum Hosts {
    /// Comma-separated patterns, each possibly negated with `!`.
    Patterns(Vec<String>),
    /// `|1|base64(salt)|base64(hmac-sha1(salt, name))`.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

#[derive(Debug, Clone)]
struct Entry {
    line: usize,
    marker: Marker,
    hosts: Hosts,
    key_type: String,
    blob: Vec<u8>,
}

/// A parsed known_hosts file.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    path: PathBuf,
    entries: Vec<Entry>,
}

impl KnownHosts {
    /// Reads and parses `path`. A missing file is an empty list; lines that
    /// cannot be parsed are skipped (with a debug log), as OpenSSH does.
    ///
    /// # Errors
    /// [`SshError::KnownHosts`] when the file exists but cannot be read.
    pub fn load(path: &Path) -> Result<Self, SshError> {
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(SshError::KnownHosts {
                    path: path.to_path_buf(),
                    op: "read",
                    source,
                });
            }
        };
        Ok(Self::parse(path, &text))
    }

    /// Parses known_hosts text (`path` is only used in messages).
    pub fn parse(path: &Path, text: &str) -> Self {
        let entries = text
            .lines()
            .enumerate()
            .filter_map(|(i, l)| {
                let entry = parse_line(i + 1, l);
                if entry.is_none() && !l.trim().is_empty() && !l.trim_start().starts_with('#') {
                    log::debug!(
                        "known_hosts {}:{}: unparsable line skipped",
                        path.display(),
                        i + 1
                    );
                }
                entry
            })
            .collect();
        KnownHosts {
            path: path.to_path_buf(),
            entries,
        }
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks `blob` (the server's public key blob) for `host`:`port`.
    ///
    /// Strict: when the host is known with any key and none equals `blob`, the
    /// result is [`HostKeyStatus::Mismatch`], even if the known keys are of
    /// another type (the connection prefers known key types, so a server that
    /// still has its old key offers it).
    pub fn check(&self, host: &str, port: u16, blob: &[u8]) -> HostKeyStatus {
        let name = lookup_name(host, port);
        let key_type = key_type_of_blob(blob).unwrap_or("");
        let mut matched = None;
        let mut mismatch_same_type = None;
        let mut mismatch_any = None;
        for e in self.entries.iter().filter(|e| e.hosts.matches(&name)) {
            match e.marker {
                Marker::CertAuthority => {}
                Marker::Revoked => {
                    if e.blob == blob {
                        return HostKeyStatus::Revoked { line: e.line };
                    }
                }
                Marker::None => {
                    if e.blob == blob {
                        matched.get_or_insert(e.line);
                    } else if e.key_type == key_type {
                        mismatch_same_type.get_or_insert(e.line);
                    } else {
                        mismatch_any.get_or_insert(e.line);
                    }
                }
            }
        }
        match (matched, mismatch_same_type.or(mismatch_any)) {
            (Some(line), _) => HostKeyStatus::Match { line },
            (None, Some(line)) => HostKeyStatus::Mismatch { line },
            (None, None) => HostKeyStatus::NotFound,
        }
    }

    /// The key types (`ssh-ed25519`, `ssh-rsa`, …) known for `host`:`port`, in
    /// file order, without duplicates.
    pub fn known_key_types(&self, host: &str, port: u16) -> Vec<String> {
        let name = lookup_name(host, port);
        let mut types: Vec<String> = Vec::new();
        for e in &self.entries {
            if e.marker == Marker::None && e.hosts.matches(&name) && !types.contains(&e.key_type) {
                types.push(e.key_type.clone());
            }
        }
        types
    }

    /// Appends `host`:`port`'s key to `path` in OpenSSH format
    /// (`[host]:port keytype base64` for ports other than 22), creating the
    /// file (and its directory, mode 0700) when missing.
    ///
    /// # Errors
    /// [`SshError::KnownHosts`] when the file cannot be created or written.
    pub fn append(path: &Path, host: &str, port: u16, blob: &[u8]) -> Result<(), SshError> {
        let err = |source| SshError::KnownHosts {
            path: path.to_path_buf(),
            op: "append to",
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(err)?;
        }
        let key_type = key_type_of_blob(blob).unwrap_or("unknown");
        let mut line = format!(
            "{} {} {}\n",
            lookup_name(host, port),
            key_type,
            STANDARD.encode(blob)
        );
        let mut file: File = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(err)?;
        // Keep the file line-oriented if its last line lacks a newline.
        let len = file.metadata().map_err(err)?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1)).map_err(err)?;
            file.read_exact(&mut last).map_err(err)?;
            if last[0] != b'\n' {
                line.insert(0, '\n');
            }
        }
        file.write_all(line.as_bytes()).map_err(err)?;
        file.flush().map_err(err)
    }
}

impl Hosts {
    fn matches(&self, name: &str) -> bool {
        match self {
            Hosts::Hashed { salt, hash } => {
                let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(salt) else {
                    return false;
                };
                mac.update(name.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
            Hosts::Patterns(patterns) => {
                let mut positive = false;
                for p in patterns {
                    if let Some(neg) = p.strip_prefix('!') {
                        if glob_match(&neg.to_ascii_lowercase(), name) {
                            return false;
                        }
                    } else if glob_match(&p.to_ascii_lowercase(), name) {
                        positive = true;
                    }
                }
                positive
            }
        }
    }
}

fn parse_line(line_no: usize, line: &str) -> Option<Entry> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => return None,
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = fields.next()?;
    }
    let key_type = fields.next()?.to_string();
    let blob = STANDARD.decode(fields.next()?).ok()?;
    let hosts = if let Some(rest) = first.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|')?;
        Hosts::Hashed {
            salt: STANDARD.decode(salt).ok()?,
            hash: STANDARD.decode(hash).ok()?,
        }
    } else if first.starts_with('|') {
        return None;
    } else {
        Hosts::Patterns(first.split(',').map(str::to_string).collect())
    };
    Some(Entry {
        line: line_no,
        marker,
        hosts,
        key_type,
        blob,
    })
}

/// Matches `name` against an OpenSSH pattern with `*` and `?`.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(kind: &str, body: &[u8]) -> Vec<u8> {
        let mut b = (kind.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind.as_bytes());
        b.extend_from_slice(body);
        b
    }

    fn hashed(name: &str, salt: &[u8]) -> String {
        let mut mac = Hmac::<Sha1>::new_from_slice(salt).unwrap();
        mac.update(name.as_bytes());
        format!(
            "|1|{}|{}",
            STANDARD.encode(salt),
            STANDARD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn fingerprint_has_the_ssh_shape() {
        // The exact value is checked against `ssh-keygen -lf` in the
        // integration tests; here the shape: unpadded base64 of 32 bytes.
        let fp = fingerprint_sha256(&blob("ssh-ed25519", &[7; 36]));
        assert!(fp.starts_with("SHA256:"));
        assert_eq!(fp.len(), 7 + 43);
        assert!(!fp.ends_with('='));
    }

    #[test]
    fn key_type_is_read_from_blob() {
        assert_eq!(
            key_type_of_blob(&blob("ssh-ed25519", &[1, 2])),
            Some("ssh-ed25519")
        );
        assert_eq!(key_type_of_blob(&[0, 0, 0, 9, b'a']), None);
        assert_eq!(key_type_label("ssh-ed25519"), "ED25519");
        assert_eq!(key_type_label("ecdsa-sha2-nistp256"), "ECDSA");
    }

    #[test]
    fn plain_port_hashed_and_negated_entries() {
        let k1 = blob("ssh-ed25519", &[1; 32]);
        let k2 = blob("ssh-ed25519", &[2; 32]);
        let k3 = blob("ssh-rsa", &[3; 64]);
        let text = format!(
            "# comment\n\
             gw.example,10.0.0.1 ssh-ed25519 {k1}\n\
             [127.0.0.1]:2222 ssh-ed25519 {k2}\n\
             {h} ssh-rsa {k3}\n\
             *.cluster,!bad.cluster ssh-ed25519 {k1}\n\
             garbage line\n\
             @revoked [127.0.0.1]:2223 ssh-ed25519 {k1}\n",
            k1 = STANDARD.encode(&k1),
            k2 = STANDARD.encode(&k2),
            k3 = STANDARD.encode(&k3),
            h = hashed("[node7]:2200", b"0123456789abcdefghij"),
        );
        let kh = KnownHosts::parse(Path::new("kh"), &text);
        assert_eq!(
            kh.check("gw.example", 22, &k1),
            HostKeyStatus::Match { line: 2 }
        );
        assert_eq!(
            kh.check("GW.EXAMPLE", 22, &k1),
            HostKeyStatus::Match { line: 2 }
        );
        assert_eq!(
            kh.check("gw.example", 22, &k2),
            HostKeyStatus::Mismatch { line: 2 }
        );
        // A plain entry does not cover a non-standard port.
        assert_eq!(kh.check("gw.example", 2222, &k1), HostKeyStatus::NotFound);
        assert_eq!(
            kh.check("127.0.0.1", 2222, &k2),
            HostKeyStatus::Match { line: 3 }
        );
        assert_eq!(
            kh.check("127.0.0.1", 2222, &k1),
            HostKeyStatus::Mismatch { line: 3 }
        );
        assert_eq!(kh.check("127.0.0.1", 22, &k2), HostKeyStatus::NotFound);
        assert_eq!(
            kh.check("node7", 2200, &k3),
            HostKeyStatus::Match { line: 4 }
        );
        assert_eq!(
            kh.check("node7", 2200, &k1),
            HostKeyStatus::Mismatch { line: 4 }
        );
        assert_eq!(kh.check("node7", 22, &k3), HostKeyStatus::NotFound);
        assert_eq!(
            kh.check("a.cluster", 22, &k1),
            HostKeyStatus::Match { line: 5 }
        );
        assert_eq!(kh.check("bad.cluster", 22, &k1), HostKeyStatus::NotFound);
        assert_eq!(
            kh.check("127.0.0.1", 2223, &k1),
            HostKeyStatus::Revoked { line: 7 }
        );
        assert_eq!(
            kh.known_key_types("node7", 2200),
            vec!["ssh-rsa".to_string()]
        );
    }

    #[test]
    fn append_writes_openssh_format_and_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/known_hosts");
        let k = blob("ssh-ed25519", &[9; 32]);
        KnownHosts::append(&path, "127.0.0.1", 2022, &k).unwrap();
        std::fs::write(&path, std::fs::read_to_string(&path).unwrap().trim_end()).unwrap();
        KnownHosts::append(&path, "gw", 22, &k).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = format!(
            "[127.0.0.1]:2022 ssh-ed25519 {b}\ngw ssh-ed25519 {b}\n",
            b = STANDARD.encode(&k)
        );
        assert_eq!(text, expected);
        let kh = KnownHosts::load(&path).unwrap();
        assert_eq!(
            kh.check("127.0.0.1", 2022, &k),
            HostKeyStatus::Match { line: 1 }
        );
        assert_eq!(kh.check("gw", 22, &k), HostKeyStatus::Match { line: 2 });
    }

    #[test]
    fn glob() {
        assert!(glob_match("*", "x"));
        assert!(glob_match("n?de*", "node12"));
        assert!(!glob_match("n?de", "node12"));
        assert!(glob_match("[10.0.0.*]:22*", "[10.0.0.5]:2222"));
    }
}
