//! A container's image wasm layers, fetched from containerd once, on first need.
//!
//! Most containers find their program in the rootfs and never ask; a container whose image
//! keeps its wasm as raw layers asks at Create, and its execs reuse the answer.

use std::sync::OnceLock;

use crate::error::Result;
use crate::image::{ImageError, WasmLayer};

/// How the layers are fetched (in the shim: [`crate::image::ImageSource`]).
pub type Fetch = Box<dyn Fn() -> std::result::Result<Vec<WasmLayer>, ImageError> + Send + Sync>;

/// The layers, or how to get them.
pub struct ImageLayers {
    fetch: Option<Fetch>,
    layers: OnceLock<Vec<WasmLayer>>,
}

impl ImageLayers {
    /// No image to look at: every program must be in the rootfs.
    pub fn none() -> Self {
        Self {
            fetch: None,
            layers: OnceLock::new(),
        }
    }

    /// Layers fetched by `fetch` when first needed.
    pub fn new(fetch: Fetch) -> Self {
        Self {
            fetch: Some(fetch),
            layers: OnceLock::new(),
        }
    }

    /// The layers (empty when the image has none). A failed fetch is not remembered.
    ///
    /// # Errors
    /// The fetch failed.
    pub fn get(&self) -> Result<&[WasmLayer]> {
        if let Some(layers) = self.layers.get() {
            return Ok(layers);
        }
        let fetched = match &self.fetch {
            Some(fetch) => fetch()?,
            None => Vec::new(),
        };
        Ok(self.layers.get_or_init(|| fetched))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    fn layer() -> WasmLayer {
        WasmLayer {
            media_type: "application/wasm".into(),
            digest: "sha256:00".into(),
            title: Some("hello.wasm".into()),
            bytes: b"\0asm".to_vec(),
        }
    }

    #[test]
    fn no_image_has_no_layers() {
        assert!(ImageLayers::none().get().unwrap().is_empty());
    }

    #[test]
    fn layers_are_fetched_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let layers = ImageLayers::new(Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(vec![layer()])
        }));
        assert_eq!(layers.get().unwrap(), [layer()]);
        assert_eq!(layers.get().unwrap(), [layer()]);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failed_fetch_is_an_error_and_is_retried() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let layers = ImageLayers::new(Box::new(move || {
            match counter.fetch_add(1, Ordering::SeqCst) {
                0 => Err(ImageError::Connect {
                    address: "/x.sock".into(),
                    reason: "refused".into(),
                }),
                _ => Ok(vec![layer()]),
            }
        }));
        let err = layers.get().unwrap_err();
        assert!(err.to_string().contains("/x.sock"), "{err}");
        assert_eq!(layers.get().unwrap().len(), 1);
    }
}
