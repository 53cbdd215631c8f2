//! The SSH gateway flags every binary shares ([`SshArgs`]: `--ssh-host`,
//! `--ssh-port`, `--ssh-user`, `--ssh-identity`, `--ssh-known-hosts`,
//! `--ssh-accept-new`) and the defaults they fall back to: the user and home
//! directory of the current user ([`current_user`]), read from the password
//! database, not from `$USER`/`$HOME`.
//!
//! The `clap` derive is behind the `cli` feature; without it [`SshArgs`] is
//! a plain struct (fill it from any source and call [`SshArgs::to_config`]).
//!
//! ```
//! use gpu_metrics::ssh::{SshArgs, SshArgsError};
//!
//! // No --ssh-host: no tunnel.
//! assert!(SshArgs::default().to_config().unwrap().is_none());
//! // --ssh-host needs --ssh-identity.
//! let args = SshArgs { ssh_host: Some("gw".into()), ..SshArgs::default() };
//! assert!(matches!(args.to_config(), Err(SshArgsError::NeedsIdentity)));
//! // Flags win over a config file's values.
//! let file = SshArgs { ssh_port: Some(2222), ssh_user: Some("file".into()), ..SshArgs::default() };
//! let flags = SshArgs { ssh_user: Some("flag".into()), ..SshArgs::default() };
//! let merged = flags.or(file);
//! assert_eq!((merged.ssh_port, merged.ssh_user.as_deref()), (Some(2222), Some("flag")));
//! ```

use std::ffi::{CStr, OsStr};
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::{DEFAULT_PORT, SshConfig, SshError};

/// The user this process runs as (its effective uid), from the password
/// database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentUser {
    /// The effective uid.
    pub uid: libc::uid_t,
    /// Its user name.
    pub name: String,
    /// Its home directory.
    pub home: PathBuf,
}

impl CurrentUser {
    /// `~/.ssh/known_hosts` of this user.
    pub fn known_hosts(&self) -> PathBuf {
        self.home.join(".ssh").join("known_hosts")
    }
}

/// Why [`current_user`] found no usable user name or home directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CurrentUserError {
    /// The password database has no entry for the uid (a container running
    /// as an arbitrary uid, for example).
    #[error("uid {uid} has no entry in the password database")]
    NotFound {
        /// The effective uid.
        uid: libc::uid_t,
    },
    /// The lookup itself failed (NSS, I/O).
    #[error("cannot look up uid {uid} in the password database: {source}")]
    Lookup {
        /// The effective uid.
        uid: libc::uid_t,
        /// The error `getpwuid_r` returned.
        source: io::Error,
    },
    /// The entry's user name is empty or not UTF-8.
    #[error("the password database entry of uid {uid} has no usable user name")]
    BadName {
        /// The effective uid.
        uid: libc::uid_t,
    },
    /// The entry's home directory is empty.
    #[error("the password database entry of uid {uid} ({user}) has no home directory")]
    NoHome {
        /// The effective uid.
        uid: libc::uid_t,
        /// Its user name.
        user: String,
    },
}

/// Largest buffer offered to `getpwuid_r` before giving up on `ERANGE`.
const MAX_PASSWD_BUF: usize = 1 << 20;

/// Looks up the current user (`getpwuid_r(geteuid())`): name and home
/// directory. `$USER` and `$HOME` are not consulted (they may be unset, or
/// another user's under `sudo`).
///
/// # Errors
/// [`CurrentUserError`]: no entry for the uid, the lookup failing, or an
/// entry without a usable name or home directory.
pub fn current_user() -> Result<CurrentUser, CurrentUserError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    // SAFETY: sysconf has no preconditions; -1 (no limit known) is handled.
    let hint = unsafe { libc::sysconf(libc::_SC_GETPW_R_SIZE_MAX) };
    let mut len = usize::try_from(hint)
        .ok()
        .filter(|&n| n > 0)
        .unwrap_or(1024)
        .min(MAX_PASSWD_BUF);
    loop {
        let mut buf = vec![0 as libc::c_char; len];
        let mut pwd = MaybeUninit::<libc::passwd>::uninit();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: `pwd` and `found` are
        // writable locals, `buf` is `len` writable bytes. On success `found`
        // points at `pwd`, whose strings point into `buf`, which outlives
        // their use below.
        let rc =
            unsafe { libc::getpwuid_r(uid, pwd.as_mut_ptr(), buf.as_mut_ptr(), len, &mut found) };
        if rc == libc::ERANGE && len < MAX_PASSWD_BUF {
            len = (len * 2).min(MAX_PASSWD_BUF);
            continue;
        }
        if found.is_null() {
            // POSIX: 0 with no result is "not found"; glibc and others may
            // report that as one of these codes instead.
            return Err(match rc {
                0 | libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => {
                    CurrentUserError::NotFound { uid }
                }
                rc => CurrentUserError::Lookup {
                    uid,
                    source: io::Error::from_raw_os_error(rc),
                },
            });
        }
        // SAFETY: `found` is non-null, so getpwuid_r filled `pwd`; its string
        // fields are null or NUL-terminated strings inside `buf`.
        let (name, home) = unsafe {
            let pwd = &*found;
            let text = |p: *const libc::c_char| {
                if p.is_null() {
                    &[][..]
                } else {
                    CStr::from_ptr(p).to_bytes()
                }
            };
            (text(pwd.pw_name).to_vec(), text(pwd.pw_dir).to_vec())
        };
        let name = String::from_utf8(name)
            .ok()
            .filter(|n| !n.is_empty())
            .ok_or(CurrentUserError::BadName { uid })?;
        if home.is_empty() {
            return Err(CurrentUserError::NoHome { uid, user: name });
        }
        return Ok(CurrentUser {
            uid,
            name,
            home: PathBuf::from(OsStr::from_bytes(&home)),
        });
    }
}

/// One of the [`SshArgs`] flags, to name it in errors the way each tool
/// names its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshFlag {
    /// `--ssh-host`.
    Host,
    /// `--ssh-port`.
    Port,
    /// `--ssh-user`.
    User,
    /// `--ssh-identity`.
    Identity,
    /// `--ssh-known-hosts`.
    KnownHosts,
    /// `--ssh-accept-new`.
    AcceptNew,
}

impl SshFlag {
    /// The flag without its dashes: `ssh-host`.
    pub fn flag(self) -> &'static str {
        match self {
            SshFlag::Host => "ssh-host",
            SshFlag::Port => "ssh-port",
            SshFlag::User => "ssh-user",
            SshFlag::Identity => "ssh-identity",
            SshFlag::KnownHosts => "ssh-known-hosts",
            SshFlag::AcceptNew => "ssh-accept-new",
        }
    }

    /// The config-file key: `ssh_host`.
    pub fn key(self) -> &'static str {
        match self {
            SshFlag::Host => "ssh_host",
            SshFlag::Port => "ssh_port",
            SshFlag::User => "ssh_user",
            SshFlag::Identity => "ssh_identity",
            SshFlag::KnownHosts => "ssh_known_hosts",
            SshFlag::AcceptNew => "ssh_accept_new",
        }
    }

    /// The flag an [`SshConfig`] field comes from (`--ssh-host` for the
    /// ones no flag sets).
    fn of_field(field: &str) -> SshFlag {
        match field {
            "port" => SshFlag::Port,
            "user" => SshFlag::User,
            "identity_file" => SshFlag::Identity,
            "known_hosts" => SshFlag::KnownHosts,
            _ => SshFlag::Host,
        }
    }
}

/// Why [`SshArgs::to_config`] refused the flags.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SshArgsError {
    /// `--ssh-host` without `--ssh-identity`.
    #[error("--ssh-host needs --ssh-identity")]
    NeedsIdentity,
    /// A default (user name, known_hosts) needs the current user, and the
    /// password database has none: give the flag.
    #[error("no default without a current user: {source}; give --{}", flag.flag())]
    NoCurrentUser {
        /// The flag that needs the default.
        flag: SshFlag,
        /// Why there is no current user.
        source: CurrentUserError,
    },
    /// [`SshConfig`] validation refused a value (the message names the
    /// [`SshConfig`] field; [`SshArgsError::flag`] the flag).
    #[error("{source}")]
    Invalid {
        /// The flag the bad value came from.
        flag: SshFlag,
        /// [`SshError::InvalidConfig`].
        source: SshError,
    },
}

impl SshArgsError {
    /// The flag the error is about (`--ssh-host` for [`Self::NeedsIdentity`]).
    pub fn flag(&self) -> SshFlag {
        match self {
            SshArgsError::NeedsIdentity => SshFlag::Host,
            SshArgsError::NoCurrentUser { flag, .. } | SshArgsError::Invalid { flag, .. } => *flag,
        }
    }
}

/// The SSH gateway flags, shared by the binaries (`#[command(flatten)]`
/// with the `cli` feature). Every field is optional so that a config file can
/// supply it ([`SshArgs::or`]); [`SshArgs::to_config`] applies the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct SshArgs {
    /// SSH gateway host: pushes travel through local forwards opened to it
    /// (their URLs are resolved on the gateway's side).
    #[cfg_attr(feature = "cli", arg(long, value_name = "HOST"))]
    pub ssh_host: Option<String>,

    /// SSH gateway port. [default: 22]
    #[cfg_attr(feature = "cli", arg(long, value_name = "PORT"))]
    pub ssh_port: Option<u16>,

    /// SSH user. [default: the current user]
    #[cfg_attr(feature = "cli", arg(long, value_name = "USER"))]
    pub ssh_user: Option<String>,

    /// SSH private key (ed25519 or RSA; OpenSSH or PEM format); required
    /// with --ssh-host.
    #[cfg_attr(feature = "cli", arg(long, value_name = "PATH"))]
    pub ssh_identity: Option<PathBuf>,

    /// known_hosts file the gateway's key must match. [default: the current
    /// user's ~/.ssh/known_hosts]
    #[cfg_attr(feature = "cli", arg(long, value_name = "PATH"))]
    pub ssh_known_hosts: Option<PathBuf>,

    /// Accept and record an unknown gateway host key (a changed key is always
    /// refused; `--ssh-accept-new=false` overrides a config file).
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            value_name = "BOOL",
            num_args = 0..=1,
            default_missing_value = "true",
            require_equals = true
        )
    )]
    pub ssh_accept_new: Option<bool>,
}

impl SshArgs {
    /// Field by field, `self`'s value, else `fallback`'s (flags over a
    /// config file).
    #[must_use]
    pub fn or(self, fallback: SshArgs) -> SshArgs {
        SshArgs {
            ssh_host: self.ssh_host.or(fallback.ssh_host),
            ssh_port: self.ssh_port.or(fallback.ssh_port),
            ssh_user: self.ssh_user.or(fallback.ssh_user),
            ssh_identity: self.ssh_identity.or(fallback.ssh_identity),
            ssh_known_hosts: self.ssh_known_hosts.or(fallback.ssh_known_hosts),
            ssh_accept_new: self.ssh_accept_new.or(fallback.ssh_accept_new),
        }
    }

    /// With no `--ssh-host`, the first of `--ssh-identity`, `--ssh-port`,
    /// `--ssh-user` that is given anyway (a mistake the tools refuse);
    /// `None` when `--ssh-host` is given or none of them is.
    pub fn given_without_host(&self) -> Option<SshFlag> {
        if self.ssh_host.is_some() {
            return None;
        }
        [
            (self.ssh_identity.is_some(), SshFlag::Identity),
            (self.ssh_port.is_some(), SshFlag::Port),
            (self.ssh_user.is_some(), SshFlag::User),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }

    /// The validated [`SshConfig`], `None` without `--ssh-host`. Defaults:
    /// port 22, the current user ([`current_user`]) and their
    /// `~/.ssh/known_hosts`, `accept_new` off; the password database is
    /// read only when a default needs it. Other settings are
    /// [`SshConfig::builder`]'s.
    ///
    /// # Errors
    /// [`SshArgsError::NeedsIdentity`] for a host without a key,
    /// [`SshArgsError::NoCurrentUser`] when a default needs a current user
    /// that cannot be found, [`SshArgsError::Invalid`] naming the flag whose
    /// value [`SshConfig::validate`] refused.
    pub fn to_config(&self) -> Result<Option<SshConfig>, SshArgsError> {
        let Some(host) = &self.ssh_host else {
            return Ok(None);
        };
        let identity = self
            .ssh_identity
            .clone()
            .ok_or(SshArgsError::NeedsIdentity)?;
        let me = std::cell::OnceCell::new();
        let lookup = |flag: SshFlag| -> Result<&CurrentUser, SshArgsError> {
            if let Some(u) = me.get() {
                return Ok(u);
            }
            let u =
                current_user().map_err(|source| SshArgsError::NoCurrentUser { flag, source })?;
            Ok(me.get_or_init(|| u))
        };
        let user = match &self.ssh_user {
            Some(u) => u.clone(),
            None => lookup(SshFlag::User)?.name.clone(),
        };
        let known_hosts = match &self.ssh_known_hosts {
            Some(k) => k.clone(),
            None => lookup(SshFlag::KnownHosts)?.known_hosts(),
        };
        SshConfig::builder(host.as_str(), user, identity)
            .port(self.ssh_port.unwrap_or(DEFAULT_PORT))
            .known_hosts(known_hosts)
            .accept_new(self.ssh_accept_new.unwrap_or(false))
            .build()
            .map(Some)
            .map_err(|source| SshArgsError::Invalid {
                flag: match &source {
                    SshError::InvalidConfig { field, .. } => SshFlag::of_field(field),
                    _ => SshFlag::Host,
                },
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_host() -> SshArgs {
        SshArgs {
            ssh_host: Some("gw".into()),
            ssh_identity: Some("/k".into()),
            ..SshArgs::default()
        }
    }

    #[test]
    fn current_user_comes_from_the_password_database() {
        let me = current_user().expect("current user");
        // SAFETY: no preconditions.
        assert_eq!(me.uid, unsafe { libc::geteuid() });
        assert!(!me.name.is_empty());
        assert!(me.home.is_absolute(), "{me:?}");
        assert!(me.known_hosts().ends_with(".ssh/known_hosts"));
        if let Ok(out) = std::process::Command::new("id").arg("-un").output()
            && out.status.success()
        {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), me.name);
        }
    }

    #[test]
    fn defaults_are_the_current_users() {
        let me = current_user().expect("current user");
        let c = with_host().to_config().expect("ok").expect("some");
        assert_eq!(c.host, "gw");
        assert_eq!(c.port, 22);
        assert_eq!(c.user, me.name);
        assert_eq!(c.known_hosts, me.home.join(".ssh/known_hosts"));
        assert!(!c.accept_new);
    }

    #[test]
    fn given_values_are_used() {
        let c = SshArgs {
            ssh_port: Some(2222),
            ssh_user: Some("svc".into()),
            ssh_known_hosts: Some("/etc/aif/known_hosts".into()),
            ssh_accept_new: Some(true),
            ..with_host()
        }
        .to_config()
        .expect("ok")
        .expect("some");
        assert_eq!(c.destination(), "svc@gw:2222");
        assert_eq!(c.known_hosts, PathBuf::from("/etc/aif/known_hosts"));
        assert_eq!(c.identity_file, PathBuf::from("/k"));
        assert!(c.accept_new);
    }

    #[test]
    fn errors_name_their_flag() {
        assert!(SshArgs::default().to_config().expect("ok").is_none());
        let no_key = SshArgs {
            ssh_identity: None,
            ..with_host()
        };
        let e = no_key.to_config().unwrap_err();
        assert!(matches!(e, SshArgsError::NeedsIdentity), "{e}");
        assert_eq!(e.flag(), SshFlag::Host);
        for (args, flag) in [
            (
                SshArgs {
                    ssh_user: Some("a b".into()),
                    ..with_host()
                },
                SshFlag::User,
            ),
            (
                SshArgs {
                    ssh_port: Some(0),
                    ..with_host()
                },
                SshFlag::Port,
            ),
            (
                SshArgs {
                    ssh_host: Some("-oProxyCommand=x".into()),
                    ..with_host()
                },
                SshFlag::Host,
            ),
            (
                SshArgs {
                    ssh_identity: Some(PathBuf::new()),
                    ..with_host()
                },
                SshFlag::Identity,
            ),
        ] {
            let e = args.to_config().unwrap_err();
            assert_eq!(e.flag(), flag, "{e}");
            assert!(
                e.to_string().starts_with("invalid SSH configuration: "),
                "{e}"
            );
        }
    }

    #[test]
    fn flags_win_and_strays_are_found() {
        let file = SshArgs {
            ssh_host: Some("file-gw".into()),
            ssh_port: Some(2222),
            ssh_accept_new: Some(true),
            ..SshArgs::default()
        };
        let flags = SshArgs {
            ssh_host: Some("flag-gw".into()),
            ssh_accept_new: Some(false),
            ..SshArgs::default()
        };
        let m = flags.or(file);
        assert_eq!(m.ssh_host.as_deref(), Some("flag-gw"));
        assert_eq!(m.ssh_port, Some(2222));
        assert_eq!(m.ssh_accept_new, Some(false));
        assert_eq!(m.given_without_host(), None);
        let stray = SshArgs {
            ssh_user: Some("u".into()),
            ssh_port: Some(1),
            ..SshArgs::default()
        };
        assert_eq!(stray.given_without_host(), Some(SshFlag::Port));
        assert_eq!(SshArgs::default().given_without_host(), None);
        assert_eq!(SshFlag::KnownHosts.flag(), "ssh-known-hosts");
        assert_eq!(SshFlag::KnownHosts.key(), "ssh_known_hosts");
    }

    #[cfg(feature = "cli")]
    #[test]
    fn flags_parse() {
        use clap::Parser;

        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            ssh: SshArgs,
        }
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).map(|c| c.ssh)
        };
        let a = parse(&[
            "--ssh-host",
            "gw",
            "--ssh-port",
            "2222",
            "--ssh-user",
            "u",
            "--ssh-identity",
            "/k",
            "--ssh-known-hosts",
            "/kh",
            "--ssh-accept-new",
        ])
        .expect("parse");
        assert_eq!(
            a,
            SshArgs {
                ssh_host: Some("gw".into()),
                ssh_port: Some(2222),
                ssh_user: Some("u".into()),
                ssh_identity: Some("/k".into()),
                ssh_known_hosts: Some("/kh".into()),
                ssh_accept_new: Some(true),
            }
        );
        assert_eq!(parse(&[]).expect("parse"), SshArgs::default());
        assert_eq!(
            parse(&["--ssh-accept-new=false"])
                .expect("parse")
                .ssh_accept_new,
            Some(false)
        );
        assert!(parse(&["--ssh-accept-new=maybe"]).is_err());
        assert!(parse(&["--ssh-port", "x"]).is_err());
    }
}
