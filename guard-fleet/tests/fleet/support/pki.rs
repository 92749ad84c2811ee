//! A certificate authority made by rcgen for each run: the fleet's HTTPS and client
//! certificates (tests/fleet/tls.rs), an SMTP server's STARTTLS (tests/fleet/alerts.rs).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA made for the run, its directory, and what it signs.
pub(crate) struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub(crate) fn new() -> Self {
        let mut params = CertificateParams::new(Vec::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "guard fleet test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("key");
        let ca_pem = params.self_signed(&key).expect("ca").pem();
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            ca_pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate signed by the CA: (certificate PEM, key PEM).
    pub(crate) fn leaf(&self, sans: &[&str], cn: &str, client: bool) -> (String, String) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    /// The `[tls]` section of a server for 127.0.0.1 with this CA for clients.
    pub(crate) fn server_config(&self, client_auth: &str) -> String {
        let (cert, key) = self.leaf(&["127.0.0.1", "localhost"], "fleet", false);
        let p = |name: &str, text: &str| {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path.display().to_string()
        };
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\nclient_auth = \"{client_auth}\"\n",
            p("server.pem", &cert),
            p("server-key.pem", &key),
            p("ca.pem", &self.ca_pem)
        )
    }

    /// A client trusting the CA, presenting `identity` (certificate, key) if any.
    pub(crate) fn client(&self, identity: Option<&(String, String)>) -> reqwest::Client {
        super::init();
        let ca = reqwest::Certificate::from_pem_bundle(self.ca_pem.as_bytes()).expect("ca");
        let mut b = reqwest::Client::builder().tls_certs_only(ca);
        if let Some((cert, key)) = identity {
            b = b.identity(
                reqwest::Identity::from_pem(format!("{key}{cert}").as_bytes()).expect("identity"),
            );
        }
        b.build().expect("client")
    }
}
