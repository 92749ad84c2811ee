//! HTTPS with rustls, and client certificates as host identities (certificates
//! made by rcgen for each run).

mod support;

use prost::Message as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use reqwest::StatusCode;
use support::{Db, Fleet, HOST_TOKEN, records};

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
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
    fn leaf(&self, sans: &[&str], cn: &str, client: bool) -> (String, String) {
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
    fn server_config(&self, client_auth: &str) -> String {
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
    fn client(&self, identity: Option<&(String, String)>) -> reqwest::Client {
        support::init();
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

async fn post(
    client: &reqwest::Client,
    base: &str,
    host: &str,
    token: Option<&str>,
) -> Result<reqwest::Response, reqwest::Error> {
    let req = records::request(
        host,
        vec![records::exec_event(
            host,
            1,
            1,
            "00000000000000a1",
            records::T0_NS,
            &["id"],
        )],
    );
    let mut r = client
        .post(format!("{base}/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec());
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_the_hosts_identity() {
    let pki = Pki::new();
    let fleet = Fleet::start(Db::Sqlite, &pki.server_config("optional")).await;
    let base = fleet.base.replace("http://", "https://");
    let build07 = pki.leaf(&[], "build-07", true);
    let with_cert = pki.client(Some(&build07));
    let without = pki.client(None);

    let r = post(&with_cert, &base, "build-07", None)
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("strict-transport-security"));
    assert_eq!(
        post(&with_cert, &base, "build-08", None)
            .await
            .expect("send")
            .status(),
        StatusCode::FORBIDDEN,
        "the certificate names build-07"
    );
    assert_eq!(
        post(&with_cert, &base, "build-01", Some(HOST_TOKEN))
            .await
            .expect("send")
            .status(),
        StatusCode::FORBIDDEN,
        "a token of another host than the certificate's"
    );
    assert_eq!(
        post(&without, &base, "build-07", None)
            .await
            .expect("send")
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&without, &base, "build-01", Some(HOST_TOKEN))
            .await
            .expect("send")
            .status(),
        StatusCode::OK,
        "optional: a token still works"
    );
    // A certificate from another CA does not get through the handshake.
    let other = Pki::new();
    let stranger = other.leaf(&[], "build-07", true);
    assert!(
        post(&pki.client(Some(&stranger)), &base, "build-07", None)
            .await
            .is_err()
    );
    // Plain HTTP on the TLS port gets nowhere.
    assert!(
        post(&without, &fleet.base, "build-01", Some(HOST_TOKEN))
            .await
            .map_or(true, |r| !r.status().is_success())
    );

    let hosts: guard_fleet::store::read::HostPage = {
        let r = without
            .get(format!("{base}/api/hosts"))
            .bearer_auth(support::DASH_TOKEN)
            .send()
            .await
            .expect("get");
        r.json().await.expect("json")
    };
    let names: Vec<&str> = hosts.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(names, ["build-01", "build-07"]);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_certificates_stop_the_handshake() {
    let pki = Pki::new();
    let fleet = Fleet::start(Db::Sqlite, &pki.server_config("required")).await;
    let base = fleet.base.replace("http://", "https://");
    assert!(
        post(&pki.client(None), &base, "build-01", Some(HOST_TOKEN))
            .await
            .is_err(),
        "no certificate, no connection"
    );
    let cert = pki.leaf(&["build-09"], "ignored-cn", true);
    let r = post(&pki.client(Some(&cert)), &base, "build-09", None)
        .await
        .expect("send");
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the DNS name, not the CN, is the identity"
    );
    fleet.stop().await;
}
