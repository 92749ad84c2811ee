//! Alerts by e-mail: one SMTP transaction per message through the destination's
//! client (lettre, made at start-up: `config::alerts`), over STARTTLS or TLS (plain
//! SMTP only to a relay on this host).

use lettre::{AsyncTransport as _, message::header::ContentType};

use crate::config::Mail;

/// Sends `subject` and `text` to the destination's recipients.
pub(super) async fn send(mail: &Mail, subject: String, text: String) -> Result<(), String> {
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
    mail.transport
        .send(message)
        .await
        .map(drop)
        // lettre's errors name the server's answer, never the URL's password.
        .map_err(|e| format!("email: {e}"))
}
