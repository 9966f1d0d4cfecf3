//! Smallest WASI preview2 component (built with --target wasm32-wasip2,
//! which emits a component, not a core module).
fn main() {
    println!("hello from a wasmpod component");
}
