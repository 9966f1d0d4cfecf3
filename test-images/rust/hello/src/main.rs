//! Smallest WASI preview1 command: prints one line and exits 0.
fn main() {
    println!("hello from wasmpod");
}
