//! TLS for clients (the `tls` feature): rustls client configurations that
//! trust the platform's roots, a PEM file of CAs, or a root store of your
//! own. The server name checked is the URL's host (SNI included).

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// The roots the platform trusts (the system's CA bundle, as
/// `rustls-native-certs` finds it). An error if none could be loaded.
pub fn platform_roots() -> io::Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or("none found".to_string(), |e| e.to_string());
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no trusted root certificates on this system ({why})"),
        ));
    }
    Ok(roots)
}

/// The CA certificates of a PEM file (for a hub with a private CA or a
/// self-signed certificate).
pub fn roots_from_pem(path: &Path) -> io::Result<RootCertStore> {
    let bad = |e: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: {e}", path.display()),
        )
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&e))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad(&"no CA certificate found"));
    }
    Ok(roots)
}

/// A client configuration trusting `roots` (TLS 1.2 and 1.3, the `ring`
/// provider, ALPN `http/1.1` as RFC 6455 §4.1's upgrade is HTTP/1.1).
pub fn client_config(roots: RootCertStore) -> io::Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
