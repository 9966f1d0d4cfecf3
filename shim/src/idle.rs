//! What a process of the shim gives back once it has started its work and waits: the heap its
//! start freed (`malloc_trim`), and the pages of its own program file that starting mapped.
//!
//! Starting a container runs code an idle shim or guest never runs again: request decoding,
//! libcontainer's setup, the loader. The kernel maps each page of the binary a process runs,
//! and 64 KiB around it, and they stay mapped (and counted in its PSS) for the process's life.
//! `madvise(MADV_DONTNEED)` on the binary's clean file mappings unmaps them: the page cache keeps
//! the file as it keeps any file (the other processes that run the same binary share it), and
//! what the process runs again faults back in. Only mappings without an anonymous page are
//! released: those are the file's bytes exactly (a mapping the dynamic loader relocated, the
//! GOT, has private copies, and is left alone).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Releases the clean pages of this process's program file and the freed heap.
pub fn release_start_pages() {
    if let (Ok(exe), Ok(smaps)) = (
        std::fs::read_link("/proc/self/exe"),
        std::fs::read_to_string("/proc/self/smaps"),
    ) {
        for (start, end) in clean_file_mappings(&smaps, &exe) {
            // The kernel's fault-around stays: the code run again (a Kill, a Delete) comes back
            // 64 KiB at a time. Mapping page by page (`MADV_RANDOM`) lowered no PSS at 20 idle
            // containers and made every later request fault many times more.
            // SAFETY: the range is a whole mapping of the program file, read-only, with no
            // anonymous page: unmapping its pages loses nothing, the next access reads the
            // file again.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }
    // Last, so that the smaps text read above is given back too.
    // SAFETY: plain libc call; the allocator takes its own lock.
    unsafe { libc::malloc_trim(0) };
}

/// Releases the start pages of this process in `quiet`, from a thread of its own with a small
/// stack (the caller goes on running, e.g. a guest). A process that ends before never pays.
pub fn release_start_pages_in(quiet: Duration) {
    let spawned = std::thread::Builder::new()
        .name("idle-release".into())
        .stack_size(64 << 10)
        .spawn(move || {
            std::thread::sleep(quiet);
            release_start_pages();
        });
    // Without the thread the pages stay mapped: memory, not a fault.
    drop(spawned);
}

/// Releases the start pages of the shim once it has been quiet for a while: a container's
/// start maps the most code, and most of it is not run again while the container runs.
/// Each [`IdleRelease::touch`] (a Start) puts the release off; a container that ends before
/// it (`ctr run --rm` of a short program) never pays for it.
#[derive(Clone)]
pub struct IdleRelease {
    quiet: Duration,
    touches: Arc<AtomicU64>,
}

impl IdleRelease {
    /// Releases after `quiet` without a touch.
    pub fn after(quiet: Duration) -> Self {
        Self {
            quiet,
            touches: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Puts the release off by `quiet` from now. Needs a tokio runtime.
    pub fn touch(&self) {
        let mine = self.touches.fetch_add(1, Ordering::SeqCst) + 1;
        let touches = self.touches.clone();
        let quiet = self.quiet;
        tokio::spawn(async move {
            tokio::time::sleep(quiet).await;
            if touches.load(Ordering::SeqCst) == mine {
                // Under a millisecond: no blocking thread (it would linger, with its stack).
                release_start_pages();
            }
        });
    }
}

/// The address ranges of `file`'s mappings in `smaps` that are not writable and hold no
/// anonymous page.
fn clean_file_mappings(smaps: &str, file: &Path) -> Vec<(usize, usize)> {
    let file = file.to_string_lossy();
    let mut found = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-').and_then(|(s, e)| {
            Some((
                usize::from_str_radix(s, 16).ok()?,
                usize::from_str_radix(e, 16).ok()?,
            ))
        }) {
            let perms = fields.next().unwrap_or_default();
            current = (path_of(line) == file && !perms.contains('w')).then_some((start, end));
        } else if first == "Anonymous:" {
            if let Some(range) = current.take() {
                if fields.next() == Some("0") {
                    found.push(range);
                }
            }
        }
    }
    found
}

/// The path of a mapping line: what follows its fifth field (it may hold spaces).
fn path_of(line: &str) -> &str {
    let mut rest = line;
    for _ in 0..5 {
        rest = rest.trim_start();
        rest = rest.find(char::is_whitespace).map_or("", |i| &rest[i..]);
    }
    rest.trim()
}

/// Rss in KiB of `file`'s clean read-only mappings in `smaps`.
#[cfg(test)]
fn clean_rss_kb(smaps: &str, file: &Path) -> u64 {
    let ranges = clean_file_mappings(smaps, file);
    let mut total = 0;
    let mut counting = false;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((s, _)) = first.split_once('-') {
            counting = ranges
                .iter()
                .any(|(start, _)| usize::from_str_radix(s, 16).ok() == Some(*start));
        } else if counting && first == "Rss:" {
            total += fields
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
00200000-0095a000 r--p 00000000 fe:00 42 /opt/shim
Rss:                 100 kB
Anonymous:             0 kB
0095a000-021d9000 r-xp 0075a000 fe:00 42 /opt/shim
Rss:                 500 kB
Anonymous:             0 kB
021d9000-0230b000 r--p 01fd9000 fe:00 42 /opt/shim
Rss:                  60 kB
Anonymous:            12 kB
0230b000-02318000 rw-p 0210b000 fe:00 42 /opt/shim
Anonymous:            20 kB
7f00000000-7f00001000 r-xp 00000000 fe:00 7 /usr/lib/libc.so.6
Anonymous:             0 kB
7f00002000-7f00003000 rw-p 00000000 00:00 0
Anonymous:             4 kB
";

    #[test]
    fn only_the_programs_clean_read_only_mappings_are_released() {
        let found = clean_file_mappings(SMAPS, Path::new("/opt/shim"));
        assert_eq!(found, [(0x200000, 0x95a000), (0x95a000, 0x21d9000)]);
    }

    #[test]
    fn a_file_path_with_spaces_is_not_taken_for_another() {
        let smaps = "00200000-00300000 r-xp 00000000 fe:00 42 /opt/my shim\nAnonymous: 0 kB\n";
        assert!(clean_file_mappings(smaps, Path::new("/opt/my")).is_empty());
    }

    #[test]
    fn releasing_unmaps_most_of_the_programs_pages_and_the_code_runs_on() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let rss = || clean_rss_kb(&std::fs::read_to_string("/proc/self/smaps").unwrap(), &exe);
        let before = rss();
        release_start_pages();
        let after = rss();
        // Reading smaps again faults back the code it runs: far less than was mapped.
        assert!(before > 0, "no clean mapping of {} found", exe.display());
        assert!(
            after < before / 2,
            "{before} KiB mapped before, {after} KiB after"
        );
    }
}
