//! The SASL exchange on a client stream (RFC 6120 §6.4): `<auth/>`, any number of
//! `<challenge/>`/`<response/>` rounds, then `<success/>` or `<failure/>`; `<abort/>` at any
//! point. SCRAM needs one round (server-first / client-final), PLAIN none.
//!
//! Hazards handled here: unknown users get a fake SCRAM challenge, so user existence does not
//! leak; the authorization identity must be empty or the authenticated account itself
//! (`invalid-authzid` otherwise); failures are counted per client address and a throttled
//! address waits before its attempt is even looked at.

use super::connection::{Conn, Exit, Transport};
use crate::server::Server;
use crate::stream::sasl::credentials::{ScramCredential, StoredCredentials};
use crate::stream::sasl::scram::{ScramServer, parse_client_first};
use crate::stream::sasl::{
    ChannelBindings, Mechanism, SaslError, decode_payload, encode_payload, offered, parse_plain,
};
use crate::stream::{NS_SASL, StreamError};
use crate::xml::{Element, FrameEvent};
use jid::BareJid;

/// How one SASL attempt ended (a stream-level problem is an `Err(Exit)` instead).
pub enum AuthOutcome {
    /// Authenticated as this account.
    Success(BareJid),
    /// `<failure/>` was sent; the client may try again.
    Failed,
}

/// Runs one SASL exchange started by `auth`.
pub async fn authenticate<S: Transport>(
    server: &Server,
    conn: &mut Conn<S>,
    domain: &str,
    auth: &Element,
    bindings: &ChannelBindings,
) -> Result<AuthOutcome, Exit> {
    let ip = conn.peer.ip();
    let wait = server.throttle.delay_for(ip);
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let mechanism = auth
        .attr("mechanism")
        .and_then(Mechanism::from_name)
        .filter(|m| offered(conn.io.is_secure(), bindings).contains(m));
    let Some(mechanism) = mechanism else {
        send_failure(conn, "invalid-mechanism").await?;
        return Ok(AuthOutcome::Failed);
    };
    let outcome = match initial_response(conn, auth).await? {
        Err(e) => Err(e),
        Ok(initial) => match mechanism {
            Mechanism::Plain => check_plain(server, domain, &initial).await.map(|jid| (jid, None)),
            _ => scram(server, conn, domain, mechanism, &initial, bindings).await?,
        },
    };
    match outcome {
        Ok((jid, additional)) => {
            server.throttle.record_success(ip);
            let mut success = Element::new("success", NS_SASL);
            if let Some(data) = additional {
                success = success.with_text(encode_payload(&data));
            }
            conn.send_element(&success).await?;
            tracing::info!(account = %jid, peer = %conn.peer, mechanism = mechanism.name(), "authenticated");
            Ok(AuthOutcome::Success(jid))
        }
        Err(e) => {
            if e.condition() != "aborted" {
                server.throttle.record_failure(ip);
            }
            tracing::info!(peer = %conn.peer, mechanism = mechanism.name(), reason = %e, "authentication failed");
            send_failure(conn, e.condition()).await?;
            Ok(AuthOutcome::Failed)
        }
    }
}

/// The initial response: text of `<auth/>` (`=` means present but empty, RFC 6120 §6.4.2),
/// or, when absent, an empty challenge and the client's response.
async fn initial_response<S: Transport>(
    conn: &mut Conn<S>,
    auth: &Element,
) -> Result<Result<Vec<u8>, SaslError>, Exit> {
    let text = auth.text();
    if text.trim().is_empty() {
        conn.send(b"<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>").await?;
        return read_response(conn).await;
    }
    Ok(decode(&text))
}

fn decode(text: &str) -> Result<Vec<u8>, SaslError> {
    decode_payload(text.trim())
}

async fn read_response<S: Transport>(conn: &mut Conn<S>) -> Result<Result<Vec<u8>, SaslError>, Exit> {
    let el = match conn.next().await? {
        FrameEvent::Element(el) => el,
        FrameEvent::StreamClose => return Err(Exit::Closed),
        FrameEvent::StreamOpen(_) => return Err(StreamError::new("not-well-formed").into()),
    };
    match (el.ns.as_str(), el.name.as_str()) {
        (NS_SASL, "response") => Ok(decode(&el.text())),
        (NS_SASL, "abort") => Ok(Err(SaslError::Aborted)),
        _ => Err(StreamError::new("not-authorized").into()),
    }
}

async fn send_failure<S: Transport>(conn: &mut Conn<S>, condition: &str) -> Result<(), Exit> {
    let failure = Element::new("failure", NS_SASL).with_child(Element::new(condition, NS_SASL));
    conn.send_element(&failure).await
}

fn account_jid(domain: &str, username: &str) -> Result<BareJid, SaslError> {
    BareJid::new(&format!("{username}@{domain}")).map_err(|_| SaslError::NotAuthorized)
}

fn check_authzid(authzid: Option<&str>, account: &BareJid) -> Result<(), SaslError> {
    match authzid {
        None | Some("") => Ok(()),
        Some(z) if BareJid::new(z).is_ok_and(|z| &z == account) => Ok(()),
        Some(_) => Err(SaslError::InvalidAuthzid),
    }
}

async fn lookup(server: &Server, account: &BareJid) -> Result<Option<StoredCredentials>, SaslError> {
    server.accounts.credentials(account).await.map_err(|e| {
        tracing::error!(error = %e, "credential lookup failed");
        SaslError::Temporary("storage unavailable".into())
    })
}

async fn check_plain(server: &Server, domain: &str, message: &[u8]) -> Result<BareJid, SaslError> {
    let parsed = parse_plain(message)?;
    let account = account_jid(domain, &parsed.authcid)?;
    check_authzid(parsed.authzid.as_deref(), &account)?;
    let Some(credentials) = lookup(server, &account).await? else {
        return Err(SaslError::NotAuthorized);
    };
    let password = parsed.password.clone();
    // PBKDF2 takes milliseconds of CPU: run it off the async workers.
    let valid = tokio::task::spawn_blocking(move || credentials.verify_plain(&password)).await.unwrap_or(false);
    if valid { Ok(account) } else { Err(SaslError::NotAuthorized) }
}

type ScramResult = Result<(BareJid, Option<Vec<u8>>), SaslError>;

async fn scram<S: Transport>(
    server: &Server,
    conn: &mut Conn<S>,
    domain: &str,
    mechanism: Mechanism,
    client_first: &[u8],
    bindings: &ChannelBindings,
) -> Result<ScramResult, Exit> {
    let first = match parse_client_first(mechanism, client_first, bindings) {
        Ok(first) => first,
        Err(e) => return Ok(Err(e)),
    };
    let Some(hash) = mechanism.scram_hash() else {
        return Ok(Err(SaslError::InvalidMechanism));
    };
    let account = account_jid(domain, &first.username);
    let stored = match &account {
        Ok(account) => match lookup(server, account).await {
            Ok(stored) => stored,
            Err(e) => return Ok(Err(e)),
        },
        Err(_) => None,
    };
    let known = stored.is_some();
    let credential = match stored {
        Some(stored) => stored.get(hash).clone(),
        None => {
            ScramCredential::fake_for(&first.username, hash, &server.fake_secret, server.config.c2s.scram_iterations)
        }
    };
    let authzid = first.authzid.clone();
    let (state, server_first) = match ScramServer::start(first, &credential) {
        Ok(started) => started,
        Err(e) => return Ok(Err(e)),
    };
    let challenge = Element::new("challenge", NS_SASL).with_text(encode_payload(&server_first));
    conn.send_element(&challenge).await?;
    let client_final = match read_response(conn).await? {
        Ok(data) => data,
        Err(e) => return Ok(Err(e)),
    };
    let verdict = state.finish(&client_final);
    Ok(match (verdict, account, known) {
        (Ok(server_final), Ok(account), true) => {
            check_authzid(authzid.as_deref(), &account).map(|()| (account, Some(server_final)))
        }
        (Err(e), _, _) => Err(e),
        _ => Err(SaslError::NotAuthorized),
    })
}
