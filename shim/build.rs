//! Links the shim as a fixed-address (non-PIE) executable.
//!
//! In a PIE, the dynamic loader patches every pointer in `.data.rel.ro` (vtables, string
//! tables: about 1.1 MB in this binary, mostly wasmtime's) at start, which turns those pages
//! into private dirty memory in every shim and, shared copy-on-write, in every container
//! process forked from it. Without PIE the linker fills them in, and they stay clean pages of
//! the binary, shared by all shims on the node. containerd's own runc shim (a Go binary) is not
//! PIE either. The code stays position-independent; only the executable's load address is
//! fixed.
fn main() {
    println!("cargo:rustc-link-arg-bin=containerd-shim-wasmpod-v1=-no-pie");
}
