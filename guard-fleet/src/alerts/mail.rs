//! Alerts by e-mail: one SMTP transaction per message, through lettre, over
//! STARTTLS or TLS (plain SMTP only to a relay on this host: `config::alerts`).

use lettre::{
    AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor,
    message::header::ContentType,
    transport::smtp::client::{Certificate, Tls, TlsParameters},
};

use crate::config::{Destination, Mail};

/// Sends `subject` and `text` to the destination's recipients.
pub async fn send(
    destination: &Destination,
    mail: &Mail,
    subject: String,
    text: String,
) -> Result<(), String> {
    let mut message = lettre::Message::builder()
        .from(mail.from.clone())
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for to in &mail.to {
        message = message.to(to.clone());
    }
    let message = message
        .body(text)
        .map_err(|e| format!("email: the message: {e}"))?;
    transport(destination, mail)?
        .send(message)
        .await
        .map(drop)
        // lettre's errors name the server's answer, never the URL's password.
        .map_err(|e| format!("email: {e}"))
}

/// The SMTP client for the destination's URL, trusting its `ca_file` besides the
/// system's CAs.
fn transport(
    destination: &Destination,
    mail: &Mail,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let url = &destination.url;
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map_err(|e| format!("email: the url: {e}"))?
        .timeout(Some(super::SEND_TIMEOUT));
    if let Some(pem) = &mail.ca_pem {
        let parsed = url::Url::parse(url).map_err(|e| format!("email: the url: {e}"))?;
        let host = parsed.host_str().unwrap_or_default().to_owned();
        let ca = Certificate::from_pem(pem).map_err(|e| format!("email: ca_file: {e}"))?;
        let params = TlsParameters::builder(host)
            .add_root_certificate(ca)
            .build_rustls()
            .map_err(|e| format!("email: TLS: {e}"))?;
        let tls = parsed
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        builder = builder.tls(match (parsed.scheme(), tls.as_deref()) {
            ("smtps", _) => Tls::Wrapper(params),
            (_, Some("opportunistic")) => Tls::Opportunistic(params),
            _ => Tls::Required(params),
        });
    }
    Ok(builder.build())
}
