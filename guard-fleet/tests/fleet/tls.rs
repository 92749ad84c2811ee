//! HTTPS with rustls, and client certificates as host identities (certificates
//! made by rcgen for each run).

use crate::support;

use prost::Message as _;
use reqwest::StatusCode;
use support::{Db, Fleet, HOST_TOKEN, pki::Pki, records};

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
