//! What `ps`, `top` and `docker top` show for a process whose workload runs in process: its own
//! `process.args`, as an exec'd process would show, not the shim's command line (it is a fork of
//! the shim) and libcontainer's thread name.
//!
//! The command line the kernel reports (`/proc/PID/cmdline`) is the process's own memory from
//! `arg_start` to `arg_end`: the shim's argument strings. A fork has that memory at the same
//! addresses, so the shim reads the bounds once, before any fork ([`ArgArea::of_this_process`]),
//! and the container process overwrites the strings ([`set`]), as setproctitle(3) does: no
//! capability is needed, which matters since the container's are dropped by then. Arguments
//! longer than the area are cut; the shim's own arguments (namespace, id, socket address) leave
//! room for most.

use std::ffi::CString;
use std::sync::OnceLock;

/// The bounds of this process's argument strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ArgArea {
    start: usize,
    len: usize,
}

impl ArgArea {
    /// The area of this process (read once from `/proc/self/stat`); `None` if unreadable.
    pub(super) fn of_this_process() -> Option<Self> {
        static AREA: OnceLock<Option<ArgArea>> = OnceLock::new();
        *AREA.get_or_init(|| {
            let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
            parse_stat(&stat)
        })
    }
}

/// `arg_start` and `arg_end` are fields 48 and 49 of `/proc/PID/stat` (proc(5)). Field 2, the
/// command name, is in parentheses and may itself hold spaces and parentheses: count from the
/// last `)`, after which field 3 comes.
fn parse_stat(stat: &str) -> Option<ArgArea> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(48 - 3);
    let start: usize = fields.next()?.parse().ok()?;
    let end: usize = fields.next()?.parse().ok()?;
    (end > start).then_some(ArgArea {
        start,
        len: end - start,
    })
}

/// Makes this (single-threaded, forked) process show as `args`: thread name and command line.
pub(super) fn set(args: &[String], area: Option<ArgArea>) {
    let Some(first) = args.first() else { return };
    if let Ok(name) = CString::new(comm(first)) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
    }
    if let Some(area) = area {
        let bytes = cmdline(args, area.len);
        // SAFETY: `area` was read from this process's /proc/self/stat before the fork, so it
        // is the argument strings' memory, writable and `area.len` bytes long, in this copy of
        // the address space. Nothing else runs in this process; the new contents are
        // NUL-terminated within the area, so any pointer into it still ends within it.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), area.start as *mut u8, area.len) };
    }
}

/// Makes this process's command line `args`, held in memory of its own (leaked: the kernel
/// reads it for the process's whole life). The shim that `start` forks shows the arguments
/// an exec'd one would have, and its containers get an area that fits them. Call it only
/// while the process has one thread.
///
/// PR_SET_MM_MAP, the call made for checkpoint/restore, replaces all of the memory map's
/// bounds at once and needs no capability (PR_SET_MM_ARG_START needs CAP_SYS_RESOURCE, which
/// container hosts often drop); the other bounds are given as they are.
///
/// # Errors
/// `/proc/self/stat` is unreadable or the kernel refused: the command line is unchanged.
pub fn replace_command_line(args: &[String]) -> std::io::Result<()> {
    let bytes: Vec<u8> = args
        .iter()
        .flat_map(|a| a.bytes().filter(|b| *b != 0).chain([0]))
        .collect();
    let area: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let bad_stat = || std::io::Error::other("/proc/self/stat: unexpected format");
    let mut map = memory_map(&stat).ok_or_else(bad_stat)?;
    map.arg_start = area.as_ptr() as u64;
    map.arg_end = map.arg_start + area.len() as u64;
    // The kernel sets brk too: read it last, with no allocation after it (one thread).
    // SAFETY: sbrk(0) only reads the current break.
    map.brk = unsafe { libc::sbrk(0) } as u64;
    // SAFETY: `map` is a prctl_mm_map of the size given; the kernel only reads it.
    let done = unsafe {
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_MAP,
            &map as *const MemoryMap,
            std::mem::size_of::<MemoryMap>(),
            0,
        )
    };
    match done {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// `struct prctl_mm_map` of <linux/prctl.h>.
#[repr(C)]
#[derive(Debug, PartialEq, Eq)]
struct MemoryMap {
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    auxv: *const u64,
    /// 0: the auxiliary vector is left as it is.
    auxv_size: u32,
    /// -1: /proc/self/exe is left as it is.
    exe_fd: u32,
}

/// The memory map's bounds as `/proc/PID/stat` gives them (fields 26 to 28 and 45 to 51 of
/// proc(5)), brk left 0: the file does not hold it.
fn memory_map(stat: &str) -> Option<MemoryMap> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<u64> = after_name
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // Field 3 comes first after the name.
    let field = |n: usize| fields.get(n - 3).copied();
    Some(MemoryMap {
        start_code: field(26)?,
        end_code: field(27)?,
        start_stack: field(28)?,
        start_data: field(45)?,
        end_data: field(46)?,
        start_brk: field(47)?,
        brk: 0,
        arg_start: field(48)?,
        arg_end: field(49)?,
        env_start: field(50)?,
        env_end: field(51)?,
        auxv: std::ptr::null(),
        auxv_size: 0,
        exe_fd: u32::MAX,
    })
}
/// The thread name: the program's file name, cut to the kernel's 15 bytes.
fn comm(program: &str) -> Vec<u8> {
    let name = program
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or(program);
    name.bytes().filter(|b| *b != 0).take(15).collect()
}

/// `args` as the kernel lays out a command line, in exactly `len` bytes: NUL after each
/// argument, cut to fit, NUL-padded (the last byte stays NUL, so the kernel does not read on
/// into the environment).
fn cmdline(args: &[String], len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = args
        .iter()
        .flat_map(|a| a.bytes().filter(|b| *b != 0).chain([0]))
        .take(len.saturating_sub(1))
        .collect();
    bytes.resize(len, 0);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let tail: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        let stat = format!("42 (a) (b) c) {}\n", tail.join(" "));
        assert_eq!(parse_stat(&stat), Some(ArgArea { start: 48, len: 1 }));
        assert_eq!(parse_stat("42 (short) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn the_memory_map_is_read_from_its_stat_fields() {
        let tail: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        let stat = format!("42 (a) b) {}\n", tail.join(" "));
        let map = memory_map(&stat).unwrap();
        assert_eq!(
            (map.start_code, map.end_code, map.start_stack),
            (26, 27, 28)
        );
        assert_eq!((map.start_data, map.end_data, map.start_brk), (45, 46, 47));
        assert_eq!((map.arg_start, map.arg_end), (48, 49));
        assert_eq!((map.env_start, map.env_end), (50, 51));
        assert_eq!((map.brk, map.auxv_size, map.exe_fd), (0, 0, u32::MAX));
        assert_eq!(memory_map("42 (short) S 1 2"), None);
        assert_eq!(std::mem::size_of::<MemoryMap>(), 104, "struct prctl_mm_map");
    }

    #[test]
    fn this_process_has_an_area_holding_its_arguments() {
        let area = ArgArea::of_this_process().expect("/proc/self/stat");
        let own = std::fs::read("/proc/self/cmdline").unwrap();
        assert_eq!(area.len, own.len());
    }

    #[test]
    fn the_thread_name_is_the_program_file_name_cut_to_15_bytes() {
        assert_eq!(comm("/app.wasm"), b"app.wasm");
        assert_eq!(comm("bin/tool.wasm/"), b"tool.wasm");
        assert_eq!(comm("a-very-long-program-name.wasm"), b"a-very-long-pro");
        assert_eq!(comm("/"), b"/");
    }

    #[test]
    fn the_command_line_fills_the_area_and_ends_in_nul() {
        assert_eq!(
            cmdline(&args(&["/app.wasm", "1"]), 16),
            b"/app.wasm\x001\0\0\0\0\0"
        );
        // Cut to fit, the last byte still NUL.
        assert_eq!(cmdline(&args(&["/app.wasm", "12345"]), 8), b"/app.wa\0");
        // NULs inside an argument would split it: they are dropped.
        assert_eq!(cmdline(&args(&["a\0b"]), 4), b"ab\0\0");
        assert!(cmdline(&args(&["x"]), 0).is_empty());
    }
}
