//! Error classification and reference mapping.

use super::*;
use oci_client::errors::OciEnvelope;

fn envelope(code: &str) -> OciDistributionError {
    let json = format!(r#"{{"errors":[{{"code":"{code}","message":"m"}}]}}"#);
    OciDistributionError::RegistryError {
        envelope: serde_json::from_str::<OciEnvelope>(&json).unwrap(),
        url: "http://r/v2/".into(),
    }
}

#[test]
fn oci_client_errors_are_classified() {
    let server = |code| OciDistributionError::ServerError {
        code,
        url: String::new(),
        message: String::new(),
    };
    assert_eq!(classify(&server(503)), Class::Transient);
    assert_eq!(classify(&server(429)), Class::Transient);
    assert_eq!(classify(&server(400)), Class::Fatal);
    let unauthorized = OciDistributionError::UnauthorizedError { url: String::new() };
    assert_eq!(classify(&unauthorized), Class::Unauthorized);
    assert_eq!(classify(&envelope("MANIFEST_UNKNOWN")), Class::NotFound);
    assert_eq!(classify(&envelope("NAME_UNKNOWN")), Class::NotFound);
    assert_eq!(classify(&envelope("DENIED")), Class::Forbidden);
    assert_eq!(classify(&envelope("TOOMANYREQUESTS")), Class::Transient);
    assert_eq!(classify(&envelope("MANIFEST_INVALID")), Class::Fatal);
    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    assert_eq!(classify(&reset.into()), Class::Transient);
}

#[test]
fn references_map_to_oci_client() {
    let r = oci_reference(&Reference::parse("127.0.0.1:5000/a/b:t").unwrap());
    assert_eq!(
        (r.registry(), r.repository(), r.tag()),
        ("127.0.0.1:5000", "a/b", Some("t"))
    );
    let hex = "a".repeat(64);
    let r = oci_reference(&Reference::parse(&format!("hello@sha256:{hex}")).unwrap());
    assert_eq!(r.repository(), "library/hello");
    assert_eq!(r.digest(), Some(format!("sha256:{hex}").as_str()));
}
