//! The timeline of a Create across its processes (the shim, the builder, libcontainer's main,
//! intermediate and init processes), for `scripts/trace-start.sh`: a contributor's tool, off
//! unless the shim's environment (containerd's) names a file in `WASMPOD_TIMELINE`. Each
//! [`mark`] appends `pid label nanoseconds` there through libcontainer's own marks (a vendored
//! patch, `libcontainer::timeline`), whose descriptor the processes forked for a build inherit.
//! The stage timings of `crate::stages` say how long each part of Create took; this says where
//! inside libcontainer's part the time went (the forks, the cgroups, the namespaces,
//! pivot_root), which no single process can time.

use std::os::fd::IntoRawFd;
use std::sync::OnceLock;

/// The environment variable naming the timeline file.
pub const ENV: &str = "WASMPOD_TIMELINE";

/// Records that the build reached `label` now, when a timeline was asked for.
pub fn mark(label: &str) {
    static OPENED: OnceLock<()> = OnceLock::new();
    OPENED.get_or_init(|| {
        if let Some(path) = std::env::var_os(ENV) {
            // Close-on-exec, as std opens files: a native container's program does not inherit it.
            match std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
            {
                Ok(file) => libcontainer::timeline::record_to(file.into_raw_fd()),
                Err(e) => log::warn!("{ENV}={}: {e}", path.to_string_lossy()),
            }
        }
    });
    libcontainer::timeline::mark(label);
}

#[cfg(test)]
mod tests {
    use std::os::fd::IntoRawFd;

    use super::super::builder::in_builder_process;

    #[test]
    fn a_build_is_marked_by_the_shim_and_by_the_builder_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timeline");
        let file = std::fs::File::create(&path).unwrap();
        // Left open for the test binary's life: a closed number could be reused by another
        // test's file while builds of other tests mark.
        libcontainer::timeline::record_to(file.into_raw_fd());
        // SAFETY: getpid has no preconditions.
        let builder = in_builder_process(|| Ok(unsafe { libc::getpid() })).unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        let at = |pid: u32, label: &str| -> u128 {
            let prefix = format!("{pid} {label} ");
            let line = text.lines().find(|l| l.starts_with(&prefix));
            let line = line.unwrap_or_else(|| panic!("no {prefix:?} in {text}"));
            line[prefix.len()..].parse().unwrap()
        };
        let started = at(builder as u32, "builder: start");
        let answered = at(builder as u32, "builder: answered");
        let received = at(std::process::id(), "shim: answer received");
        assert!(started <= answered && answered <= received, "{text}");
    }
}
