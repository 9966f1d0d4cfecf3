//! What a process of the shim gives back once it has started its work and waits: the heap its
//! start freed (`malloc_trim`), and the pages of its own program file that starting mapped.
//!
//! Starting a container runs code an idle shim or guest never runs again: request decoding,
//! libcontainer's setup, the loader. The kernel maps each page of the binary a process runs,
//! and 64 KiB around it, and they stay mapped (and counted in its PSS) for the process's life.
//! `madvise(MADV_DONTNEED)` on the binary's clean file mappings unmaps them: the page cache keeps
//! the file as it keeps any file (the other processes that run the same binary share it), and
//! what the process runs again faults back in. Only the program's read-only segments are
//! released: those are the file's bytes exactly (what the dynamic loader relocates, the GOT,
//! lies in its writable segment and is left alone).

#[cfg(test)]
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// What the shim let go of but dropping would cost a request now (see [`drop_when_quiet`]).
static HELD: Mutex<Vec<Box<dyn Send>>> = Mutex::new(Vec::new());

/// At most this many held: past it the oldest is dropped at once (a busy group's shim that is
/// never quiet for long must not hold every container it made).
const HELD_AT_MOST: usize = 4;

/// Drops `item` once the shim is quiet ([`IdleRelease`]), not now: a Create lets go of the
/// shim's handle of the guest this way, whose drop (unmapping its code) took 0.2-0.3 ms of
/// Create. Where no release comes (the process ends first), it is never dropped, at no cost.
pub fn drop_when_quiet(item: Box<dyn Send>) {
    let oldest = {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        held.push(item);
        (held.len() > HELD_AT_MOST).then(|| held.remove(0))
    };
    drop(oldest);
}

/// Drops what [`drop_when_quiet`] held; returns how many.
fn drop_held() -> usize {
    let held = std::mem::take(&mut *HELD.lock().unwrap_or_else(|p| p.into_inner()));
    held.len()
}

/// Releases the clean pages of this process's program file and the freed heap.
pub fn release_start_pages() {
    for &(start, end) in program_code() {
        // The kernel's fault-around stays: the code run again (a Kill, a Delete) comes back
        // 64 KiB at a time. Mapping page by page (`MADV_RANDOM`) lowered no PSS at 20 idle
        // containers and made every later request fault many times more.
        // SAFETY: the range lies in a read-only segment of the program file, mapped from it
        // and never written: unmapping its pages loses nothing, the next access reads the
        // file again.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
    // SAFETY: plain libc call; the allocator takes its own lock.
    unsafe { libc::malloc_trim(0) };
}

/// The address ranges of this program's read-only segments (its code and constants: the
/// file's bytes, never written), whole pages only. Found once, from the program headers, not
/// from `/proc`: a wasm guest's container has no `/proc`. A process forked after the first
/// call inherits the answer, so call it before forking a process that will release (the
/// loader's lock, which finding them takes, may be held by another thread at the fork).
pub fn program_code() -> &'static [(usize, usize)] {
    static CODE: OnceLock<Vec<(usize, usize)>> = OnceLock::new();
    CODE.get_or_init(read_only_segments)
}

fn read_only_segments() -> Vec<(usize, usize)> {
    unsafe extern "C" fn first_object(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid info for the call's duration, and `data` is
        // the Vec below; the main program is the first object it reports.
        let (info, found) = unsafe { (&*info, &mut *(data as *mut Vec<(usize, usize)>)) };
        // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers.
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        let page = page_size();
        for header in headers {
            if header.p_type == libc::PT_LOAD && header.p_flags & libc::PF_W == 0 {
                let start = info.dlpi_addr as usize + header.p_vaddr as usize;
                let end = start + header.p_memsz as usize;
                // Inward at the end: a last partial page may be the next segment's too.
                let range = (start & !(page - 1), end & !(page - 1));
                if range.0 < range.1 {
                    found.push(range);
                }
            }
        }
        1
    }
    let mut found: Vec<(usize, usize)> = Vec::new();
    // SAFETY: the callback only reads the headers it is given and writes into `found`.
    unsafe {
        libc::dl_iterate_phdr(
            Some(first_object),
            &mut found as *mut _ as *mut libc::c_void,
        )
    };
    found
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
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
                drop_held();
                release_start_pages();
            }
        });
    }
}

/// The address ranges of `file`'s mappings in `smaps` that are not writable and hold no
/// anonymous page: what the tests check [`program_code`] against.
#[cfg(test)]
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
#[cfg(test)]
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

    /// Counts its drops in the shared counter.
    struct Counted(Arc<AtomicU64>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn what_is_held_is_dropped_when_quiet_and_the_oldest_past_the_bound() {
        let dropped = Arc::new(AtomicU64::new(0));
        drop_when_quiet(Box::new(Counted(dropped.clone())));
        assert_eq!(dropped.load(Ordering::SeqCst), 0, "held, not dropped");
        for _ in 0..HELD_AT_MOST {
            drop_when_quiet(Box::new(Counted(dropped.clone())));
        }
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            1,
            "the oldest went past the bound"
        );
        assert!(drop_held() >= HELD_AT_MOST);
        assert_eq!(dropped.load(Ordering::SeqCst), HELD_AT_MOST as u64 + 1);
    }

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
    fn the_program_code_is_what_smaps_calls_its_clean_read_only_mappings() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let clean = clean_file_mappings(&smaps, &exe);
        let code = program_code();
        assert!(!code.is_empty());
        for &(start, end) in code {
            assert!(
                clean.iter().any(|&(s, e)| s <= start && end <= e),
                "{start:#x}-{end:#x} is not within a clean read-only mapping of {}: {clean:x?}",
                exe.display()
            );
        }
        let size = |ranges: &[(usize, usize)]| ranges.iter().map(|(s, e)| e - s).sum::<usize>();
        assert!(
            size(code) >= size(&clean) * 9 / 10,
            "the headers found {} bytes, smaps {}",
            size(code),
            size(&clean)
        );
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
