//! Quoting for POSIX shells: how a client value reaches a shell as one
//! single-quoted word (SSH commands, Slurm job scripts). Needs no SSH, so it
//! is available without the `ssh` feature.

/// Quotes one argument for a POSIX shell: wrapped in single quotes, each `'`
/// written as `'\''`. The result is always one word, taken literally.
pub fn shell_quote(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Joins `argv` into one command line for a POSIX shell, every argument
/// quoted by [`shell_quote`].
pub fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_is_posix_single_quotes() {
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("abc"), "'abc'");
        assert_eq!(shell_quote("a b'c"), "'a b'\\''c'");
        assert_eq!(
            shell_quote("$(rm -rf /); `x` \"y\" \\ *"),
            "'$(rm -rf /); `x` \"y\" \\ *'"
        );
        assert_eq!(shell_quote("'"), "''\\'''");
        assert_eq!(
            shell_join(&["printf".into(), "%s".into(), "a b'c".into()]),
            "'printf' '%s' 'a b'\\''c'"
        );
    }

    #[test]
    fn quoting_round_trips_through_sh() {
        let args: Vec<String> = vec![
            "a b'c".into(),
            String::new(),
            "$HOME `id` $(id) \"q\" \\n\n\t;|&<>*?[]{}~!#".into(),
            "''''".into(),
            "ünïcode ✓".into(),
        ];
        let mut argv = vec!["printf".to_string(), "%s\\0".to_string()];
        argv.extend(args.iter().cloned());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(shell_join(&argv))
            .output()
            .unwrap();
        let got: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .split('\0')
            .map(str::to_string)
            .collect();
        let mut expected = args.clone();
        expected.push(String::new());
        assert_eq!(got, expected);
    }
}
