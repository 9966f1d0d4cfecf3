//! Is this component an HTTP handler? Read from its top-level exports with wasmparser alone,
//! so the answer is known before the program is compiled (and by `wasmpod image inspect`).

use wasmparser::{Parser, Payload};

/// The interface an HTTP handler component exports (any 0.2.x version).
pub const INCOMING_HANDLER: &str = "wasi:http/incoming-handler@0.2";

/// Whether `bytes` is a component exporting `wasi:http/incoming-handler@0.2.x`. Invalid or
/// non-component bytes answer `false`; loading them reports the real error.
pub fn exports_http_handler(bytes: &[u8]) -> bool {
    if !Parser::is_component(bytes) {
        return false;
    }
    // Nested modules and components are entered by `parse_all` and left at their `End`;
    // only exports at depth 0 are the component's own.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else { return false };
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(exports) if depth == 0 => {
                for export in exports.into_iter().flatten() {
                    if is_incoming_handler(export.name.name) {
                        return true;
                    }
                }
            }
            _ => {}
        }
    }
    false
}

fn is_incoming_handler(name: &str) -> bool {
    name.strip_prefix(INCOMING_HANDLER)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_matched_by_interface_and_major_version() {
        assert!(is_incoming_handler("wasi:http/incoming-handler@0.2.0"));
        assert!(is_incoming_handler("wasi:http/incoming-handler@0.2.6"));
        assert!(!is_incoming_handler("wasi:http/incoming-handler@0.3.0"));
        assert!(!is_incoming_handler("wasi:http/incoming-handler@0.20.0"));
        assert!(!is_incoming_handler("wasi:cli/run@0.2.0"));
    }

    #[test]
    fn modules_and_garbage_are_not_handlers() {
        let module = wat::parse_str("(module (func (export \"_start\")))").unwrap();
        assert!(!exports_http_handler(&module));
        assert!(!exports_http_handler(b"\0asm\x0d\0\x01\0garbage"));
        assert!(!exports_http_handler(b""));
    }

    #[test]
    fn a_component_exporting_the_interface_is_a_handler() {
        let handler = wat::parse_str(
            r#"(component
                 (component $inner)
                 (instance $i (instantiate $inner))
                 (export "wasi:http/incoming-handler@0.2.3" (instance $i)))"#,
        )
        .unwrap();
        assert!(exports_http_handler(&handler));
        // The same export inside a nested component is not the outer component's.
        let nested = wat::parse_str(
            r#"(component
                 (component $inner
                   (component $c)
                   (instance $i (instantiate $c))
                   (export "wasi:http/incoming-handler@0.2.3" (instance $i))))"#,
        )
        .unwrap();
        assert!(!exports_http_handler(&nested));
    }
}
