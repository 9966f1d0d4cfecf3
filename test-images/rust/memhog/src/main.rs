//! Grows memory in 8 MiB steps up to a target given in MiB (arg 1, default
//! 512), writing every 4096th byte of each step so the pages are really
//! touched. Prints `allocated N MiB` after each step (flushed) and, at the
//! end, `sum=S` of all touched bytes so the optimiser cannot drop the work,
//! then `done`.
//!
//! If an allocation is refused (memory.grow fails, e.g. a store limit), it
//! prints `error: allocation failed after N MiB` to stderr and exits 2
//! instead of aborting with a trap. (A cgroup OOM kill is of course not
//! observable from inside.) With `--abort` as arg 2 it aborts instead, as
//! ordinary Rust code does when the allocator fails (`handle_alloc_error`).
use std::alloc::{handle_alloc_error, Layout};
use std::io::Write;

const STEP: usize = 8 << 20;
const PAGE: usize = 4096;

fn main() {
    let target_mib: usize = match std::env::args().nth(1) {
        None => 512,
        Some(s) => match s.parse() {
            Ok(n) => n,
            Err(e) => {
                eprintln!("error: bad size {s:?}: {e}");
                std::process::exit(1);
            }
        },
    };
    let abort = std::env::args().nth(2).as_deref() == Some("--abort");
    let target = target_mib.saturating_mul(1 << 20);
    let mut out = std::io::stdout();
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut total: usize = 0;
    let mut sum: u64 = 0;
    while total < target {
        let size = STEP.min(target - total);
        let mut block: Vec<u8> = Vec::new();
        if block.try_reserve_exact(size).is_err() {
            let _ = out.flush();
            if abort {
                handle_alloc_error(Layout::array::<u8>(size).expect("8 MiB fits a layout"));
            }
            eprintln!("error: allocation failed after {} MiB", total >> 20);
            std::process::exit(2);
        }
        // Fits the reservation, so this cannot reallocate (or abort).
        block.resize(size, 0);
        let mut i = 0;
        while i < size {
            block[i] = (((total + i) / PAGE) % 251 + 1) as u8;
            i += PAGE;
        }
        let mut i = 0;
        while i < size {
            sum += u64::from(std::hint::black_box(block[i]));
            i += PAGE;
        }
        total += size;
        blocks.push(block);
        let _ = writeln!(out, "allocated {} MiB", total >> 20);
        let _ = out.flush();
    }
    let _ = writeln!(out, "sum={sum}");
    let _ = writeln!(out, "done");
    let _ = out.flush();
    std::hint::black_box(&blocks);
}
