//! The pod network of one private CRI setup on the host: choosing a free subnet and bridge
//! name, and removing what CNI created (the bridge, and any `CNI-*` iptables chain and
//! rule that refers to the subnet). Acts only on names and addresses this setup chose.

use std::process::Command;
use std::time::Duration;

use crate::process::run_with_timeout;

const CMD_TIMEOUT: Duration = Duration::from_secs(20);

/// The subnet and bridge of one setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    /// Bridge device name (at most 15 bytes).
    pub bridge: String,
    /// The third octet of `10.88.<n>.0/24`.
    pub octet: u8,
}

fn run(args: &[&str]) -> Option<String> {
    let (prog, rest) = args.split_first()?;
    let mut cmd = Command::new(prog);
    cmd.args(rest);
    run_with_timeout(&mut cmd, CMD_TIMEOUT)
        .ok()
        .filter(|o| o.code() == 0)
        .map(|o| o.stdout)
}

impl PodNetwork {
    /// Picks a `10.88.<n>.0/24` that no host route or address uses, and a bridge name
    /// (`wpc<pid hex><seq>`) that is not a link yet.
    pub fn choose(seq: u32) -> Self {
        let used = format!(
            "{}{}",
            run(&["ip", "-4", "route", "show"]).unwrap_or_default(),
            run(&["ip", "-4", "addr", "show"]).unwrap_or_default()
        );
        // A random start per process, spread by `seq` so setups of one process differ
        // even before their bridges exist.
        static BASE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        let base = *BASE.get_or_init(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            std::process::id() ^ nanos
        });
        let start = base.wrapping_add(seq.wrapping_mul(13)) % 250;
        let octet = (0..250u32)
            .map(|i| ((start + i) % 250 + 2) as u8)
            .find(|o| !used.contains(&format!("10.88.{o}.")))
            .unwrap_or(2);
        let mut bridge = format!("wpc{:x}n{seq}", std::process::id());
        bridge.truncate(15);
        Self { bridge, octet }
    }

    /// `10.88.<n>.0/24`.
    pub fn subnet(&self) -> String {
        format!("10.88.{}.0/24", self.octet)
    }

    /// `10.88.<n>.`: every address of the subnet starts with it.
    pub fn prefix(&self) -> String {
        format!("10.88.{}.", self.octet)
    }

    /// True while the bridge device exists.
    pub fn bridge_exists(&self) -> bool {
        std::path::Path::new("/sys/class/net")
            .join(&self.bridge)
            .exists()
    }

    /// `table: rule` for every iptables rule (nat, filter) that mentions the subnet or a
    /// chain such a rule jumps to.
    pub fn iptables_rules(&self) -> Vec<String> {
        let mut found = Vec::new();
        for table in ["nat", "filter"] {
            let dump = run(&["iptables-save", "-t", table]).unwrap_or_default();
            let ours = owned_chains(&dump, &self.prefix());
            for line in dump.lines().filter(|l| l.starts_with("-A ")) {
                let f: Vec<String> = split_rule(line);
                let chain = f.get(1).map(String::as_str).unwrap_or_default();
                if line.contains(&self.prefix())
                    || ours.iter().any(|c| c == chain)
                    || jumps_to(&f).is_some_and(|t| ours.contains(&t))
                {
                    found.push(format!("{table}: {line}"));
                }
            }
        }
        found
    }

    /// Deletes the bridge and the iptables rules and `CNI-*` chains of the subnet; returns
    /// what failed.
    pub fn remove(&self) -> Vec<String> {
        let mut failed = Vec::new();
        for table in ["nat", "filter"] {
            let dump = run(&["iptables-save", "-t", table]).unwrap_or_default();
            let ours = owned_chains(&dump, &self.prefix());
            // Rules in other chains that name the subnet or jump into ours go first.
            for line in dump.lines().filter(|l| l.starts_with("-A ")) {
                let f = split_rule(line);
                let chain = f.get(1).cloned().unwrap_or_default();
                let mentions = line.contains(&self.prefix())
                    || jumps_to(&f).is_some_and(|t| ours.contains(&t));
                if mentions && !ours.contains(&chain) {
                    let mut args = vec!["iptables", "-t", table, "-D"];
                    args.extend(f.iter().skip(1).map(String::as_str));
                    if run(&args).is_none() {
                        failed.push(format!("iptables -t {table} -D {}", &line[3..]));
                    }
                }
            }
            for chain in &ours {
                let flushed = run(&["iptables", "-t", table, "-F", chain]);
                if flushed.is_none() || run(&["iptables", "-t", table, "-X", chain]).is_none() {
                    failed.push(format!("iptables -t {table} -X {chain}"));
                }
            }
        }
        if self.bridge_exists() && run(&["ip", "link", "del", &self.bridge]).is_none() {
            failed.push(format!("ip link del {}", self.bridge));
        }
        failed
    }
}

/// `CNI-*` chains with a rule that mentions `prefix` or that such a rule jumps to.
fn owned_chains(dump: &str, prefix: &str) -> Vec<String> {
    let mut ours: Vec<String> = Vec::new();
    for line in dump
        .lines()
        .filter(|l| l.starts_with("-A ") && l.contains(prefix))
    {
        let f = split_rule(line);
        let candidates = [f.get(1).cloned(), jumps_to(&f)];
        for c in candidates.into_iter().flatten() {
            if c.starts_with("CNI-") && !ours.contains(&c) {
                ours.push(c);
            }
        }
    }
    ours
}

/// The `-j`/`-g` target of a split rule.
fn jumps_to(fields: &[String]) -> Option<String> {
    fields
        .iter()
        .position(|f| f == "-j" || f == "-g")
        .and_then(|i| fields.get(i + 1).cloned())
}

/// Splits an `iptables-save` rule into arguments; double quotes group (comments).
fn split_rule(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            '\\' if quoted => cur.extend(chars.next()),
            ' ' if !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            _ => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = r#"*nat
:POSTROUTING ACCEPT [0:0]
:CNI-abc - [0:0]
:CNI-other - [0:0]
-A POSTROUTING -s 10.88.7.5/32 -m comment --comment "name: \"x\" id: \"y\"" -j CNI-abc
-A POSTROUTING -s 10.1.0.5/32 -j CNI-other
-A CNI-abc -d 10.88.7.0/24 -j ACCEPT
-A CNI-other -d 10.1.0.0/24 -j ACCEPT
COMMIT
"#;

    /// Only the chain tied to the subnet is ours; the other CNI chain is left alone.
    #[test]
    fn finds_only_chains_of_the_subnet() {
        assert_eq!(owned_chains(DUMP, "10.88.7."), vec!["CNI-abc".to_string()]);
    }

    /// Quoted comments stay one argument, with their escaped quotes.
    #[test]
    fn splits_quoted_comments() {
        let f = split_rule(r#"-A P -m comment --comment "name: \"x\"" -j CNI-abc"#);
        assert_eq!(f[5], r#"name: "x""#);
        assert_eq!(jumps_to(&f).as_deref(), Some("CNI-abc"));
    }
}
