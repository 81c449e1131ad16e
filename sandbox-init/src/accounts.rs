//! Accounts from `/etc/passwd` and `/etc/group`, parsed by hand: the binary is linked
//! statically with glibc, where NSS lookups (`getpwnam`) are unavailable.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// One `/etc/passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// Parses `/etc/passwd` text, skipping malformed lines.
pub fn parse_passwd(text: &str) -> Vec<Account> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 || line.starts_with('#') {
                return None;
            }
            Some(Account {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_owned(),
                shell: f[6].to_owned(),
            })
        })
        .collect()
}

/// Parses `/etc/group` text into (name, gid) pairs.
pub fn parse_group(text: &str) -> Vec<(String, u32)> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 || line.starts_with('#') {
                return None;
            }
            Some((f[0].to_owned(), f[2].parse().ok()?))
        })
        .collect()
}

fn read_or_empty(path: &str) -> io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

/// Looks an account up by name.
pub fn lookup(name: &str) -> io::Result<Option<Account>> {
    Ok(parse_passwd(&read_or_empty("/etc/passwd")?)
        .into_iter()
        .find(|a| a.name == name))
}

/// Names of users and groups, loaded once per request that needs many.
#[derive(Debug, Default)]
pub struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    /// Loads both files (missing files give numeric names).
    pub fn load() -> Self {
        let mut names = Names::default();
        for a in parse_passwd(&read_or_empty("/etc/passwd").unwrap_or_default()) {
            names.users.entry(a.uid).or_insert(a.name);
        }
        for (name, gid) in parse_group(&read_or_empty("/etc/group").unwrap_or_default()) {
            names.groups.entry(gid).or_insert(name);
        }
        names
    }

    /// The user name of `uid`, or the number.
    pub fn user(&self, uid: u32) -> String {
        self.users
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    /// The group name of `gid`, or the number.
    pub fn group(&self, gid: u32) -> String {
        self.groups
            .get(&gid)
            .cloned()
            .unwrap_or_else(|| gid.to_string())
    }
}

/// Makes sure the account `name` exists (uid = gid = `uid`) with its home directory,
/// adding it to `/etc/passwd` and `/etc/group` when the image lacks it.
pub fn ensure_account(name: &str, uid: u32, home: &str) -> io::Result<Account> {
    let account = match lookup(name)? {
        Some(account) => account,
        None => {
            let groups = parse_group(&read_or_empty("/etc/group")?);
            if !groups.iter().any(|(n, _)| n == name) {
                append_line("/etc/group", &format!("{name}:x:{uid}:"))?;
            }
            let shell = if Path::new("/bin/bash").exists() {
                "/bin/bash"
            } else {
                "/bin/sh"
            };
            append_line(
                "/etc/passwd",
                &format!("{name}:x:{uid}:{uid}::{home}:{shell}"),
            )?;
            Account {
                name: name.to_owned(),
                uid,
                gid: uid,
                home: home.to_owned(),
                shell: shell.to_owned(),
            }
        }
    };
    if !Path::new(&account.home).exists() {
        std::fs::create_dir_all(&account.home)?;
        std::fs::set_permissions(&account.home, std::fs::Permissions::from_mode(0o755))?;
        std::os::unix::fs::chown(&account.home, Some(account.uid), Some(account.gid))?;
    }
    Ok(account)
}

fn append_line(path: &str, line: &str) -> io::Result<()> {
    let existing = read_or_empty(path)?;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    if !existing.is_empty() && !existing.ends_with('\n') {
        file.write_all(b"\n")?;
    }
    writeln!(file, "{line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_and_skips_junk() {
        let text = "root:x:0:0:root:/root:/bin/bash\n\
                    # comment\n\
                    broken line\n\
                    user:x:1000:1000::/home/user:/bin/sh\n\
                    bad:x:notanumber:1::/:/bin/sh\n";
        let accounts = parse_passwd(text);
        assert_eq!(accounts.len(), 2);
        assert_eq!(
            accounts[1],
            Account {
                name: "user".into(),
                uid: 1000,
                gid: 1000,
                home: "/home/user".into(),
                shell: "/bin/sh".into()
            }
        );
    }

    #[test]
    fn parses_groups() {
        let groups = parse_group("root:x:0:\nusers:x:100:a,b\nnope\n");
        assert_eq!(groups, vec![("root".into(), 0), ("users".into(), 100)]);
    }

    #[test]
    fn unknown_ids_are_numbers() {
        let names = Names::default();
        assert_eq!(names.user(4242), "4242");
        assert_eq!(names.group(7), "7");
    }
}
