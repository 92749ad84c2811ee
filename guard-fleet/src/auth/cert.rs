//! A client certificate's host identity. rustls has already verified the chain
//! against `tls.client_ca` by the time a request reaches a handler; this only names
//! the host: the first DNS subject alternative name, else the subject's common name.

use x509_parser::{certificate::X509Certificate, extensions::GeneralName, prelude::FromDer as _};

use super::tokens::{Scope, check_name};

/// The host a DER certificate names, if it names a valid one.
pub fn host_name(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|ext| {
            ext.value.general_names.iter().find_map(|n| match n {
                GeneralName::DNSName(d) => Some((*d).to_owned()),
                _ => None,
            })
        });
    let name = san.or_else(|| {
        cert.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned)
    })?;
    check_name(&name, Scope::Host).ok()?;
    Some(name)
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    use super::*;

    fn der(sans: &[&str], cn: Option<&str>) -> Vec<u8> {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .expect("params");
        let mut dn = DistinguishedName::new();
        if let Some(cn) = cn {
            dn.push(DnType::CommonName, cn);
        }
        params.distinguished_name = dn;
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn the_dns_name_wins_then_the_common_name() {
        assert_eq!(
            host_name(&der(&["build-01.corp"], Some("other"))),
            Some("build-01.corp".into())
        );
        assert_eq!(
            host_name(&der(&[], Some("build-02"))),
            Some("build-02".into())
        );
        assert_eq!(host_name(&der(&[], None)), None);
        assert_eq!(host_name(&der(&[], Some("a/b"))), None, "not a host name");
        assert_eq!(host_name(b"not a certificate"), None);
    }
}
