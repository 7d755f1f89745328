//! Client stream negotiation (RFC 6120 §4–§7): stream header, features, STARTTLS, SASL,
//! stream restarts and resource binding.
//!
//! ```text
//! C: <stream:stream to='example.org'>       S: <stream:stream from='example.org'> + features
//! C: <starttls/>                            S: <proceed/>      (TLS handshake, restart)
//! C: <auth mechanism='SCRAM-SHA-256'>…      S: <challenge/> … <success/>   (restart)
//! C: <iq type='set'><bind>…</bind></iq>     S: <iq type='result'><bind><jid>…</jid></bind></iq>
//! ```
//! Before authentication only STARTTLS, SASL and the in-band registration IQ (XEP-0077) are
//! accepted; anything else ends the stream with `not-authorized`.

use super::auth::{AuthOutcome, authenticate};
use super::connection::{Conn, Exit, Transport};
use crate::module_api::{FeatureStage, IqKind, IqTarget, random_id};
use crate::router::bare::ToBare;
use crate::router::stanza::{NS_CLIENT, Stanza};
use crate::server::Server;
use crate::session::SessionRef;
use crate::session::sm::NS_SM;
use crate::stream::sasl::{ChannelBindings, channel_binding_types, offered};
use crate::stream::{self, NS_BIND, NS_SASL, NS_SASL_CB, NS_SESSION, NS_STREAMS, NS_TLS, StreamError};
use crate::xml::{Element, FrameEvent};
use jid::{BareJid, FullJid};

/// How negotiation ended well.
pub enum Step {
    /// The client asked for TLS; `<proceed/>` was sent.
    StartTls,
    /// A resource is bound.
    Bound {
        /// The session: new, or resumed (XEP-0198 §5).
        session: SessionRef,
        /// For a resumed session, the stanzas to send again.
        resend: Option<Vec<crate::router::stanza::Stanza>>,
    },
}

/// Failed SASL attempts allowed on one connection before it is closed.
const MAX_AUTH_ATTEMPTS: u32 = 5;

/// Negotiates from the (next) stream header until STARTTLS or a bound resource.
pub async fn negotiate<S: Transport>(server: &Server, conn: &mut Conn<S>) -> Result<Step, Exit> {
    let mut account: Option<BareJid> = None;
    let mut attempts = 0;
    loop {
        let (domain, mut reply) = open_stream(server, conn).await?;
        // Channel bindings matter to SASL only; after it, no mechanism is offered.
        let bindings = match account {
            None => server.channel_bindings(conn.io.tls_state()),
            Some(_) => ChannelBindings::default(),
        };
        let features = stream_features(server, &domain, conn.io.is_secure(), account.is_some(), &bindings);
        // Header and features leave in one write: one TLS record and one segment, not two.
        stream::write_features(&mut reply, &features, NS_CLIENT);
        conn.send(&reply).await?;
        if let Some(account) = &account {
            return bind(server, conn, account).await;
        }
        match pre_auth(server, conn, &domain, &bindings, &mut attempts).await? {
            PreAuth::StartTls => return Ok(Step::StartTls),
            PreAuth::Authenticated(jid) => {
                account = Some(jid);
                conn.restart();
            }
        }
    }
}

/// Reads the client's stream header and returns the domain with our header, for the caller to
/// send with the features. Errors in the header are answered at once, with a header first, as
/// RFC 6120 §4.9.1.2 requires.
async fn open_stream<S: Transport>(server: &Server, conn: &mut Conn<S>) -> Result<(String, Vec<u8>), Exit> {
    let header = match conn.next().await {
        Ok(FrameEvent::StreamOpen(header)) => header,
        Ok(_) => return Err(reply_header_then(conn, server, None, StreamError::new("not-well-formed")).await),
        Err(Exit::Error(e)) => return Err(reply_header_then(conn, server, None, e).await),
        Err(other) => return Err(other),
    };
    let domain = header.to.clone().map(|d| d.to_lowercase());
    let served = domain.as_deref().filter(|d| server.host(d).is_some()).map(str::to_owned);
    let problem = if header.ns != NS_STREAMS || header.default_ns.as_deref() != Some(NS_CLIENT) {
        Some(StreamError::new("invalid-namespace"))
    } else if header.version.as_deref().and_then(|v| v.split('.').next()?.parse::<u32>().ok()) != Some(1) {
        Some(StreamError::with_text("unsupported-version", "version='1.0' is required"))
    } else if served.is_none() {
        Some(StreamError::new("host-unknown"))
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(reply_header_then(conn, server, served.as_deref(), problem).await);
    }
    let domain = served.unwrap_or_default();
    let header = stream::header(NS_CLIENT, &domain, &random_id(12));
    Ok((domain, header))
}

async fn reply_header_then<S: Transport>(
    conn: &mut Conn<S>,
    server: &Server,
    domain: Option<&str>,
    error: StreamError,
) -> Exit {
    let from = domain.unwrap_or_else(|| server.default_domain());
    match conn.send(&stream::header(NS_CLIENT, from, &random_id(12))).await {
        Ok(()) => Exit::Error(error),
        Err(e) => e,
    }
}

/// The features offered at this point of negotiation (RFC 6120 §4.3.2).
fn stream_features(
    server: &Server,
    domain: &str,
    secure: bool,
    authenticated: bool,
    bindings: &ChannelBindings,
) -> Vec<Element> {
    let mut features = Vec::new();
    let module_stage = if authenticated { FeatureStage::Bound } else { FeatureStage::PreAuth };
    if authenticated {
        features.push(Element::new("bind", NS_BIND));
        features.push(Element::new("session", NS_SESSION).with_child(Element::new("optional", NS_SESSION)));
        features.push(Element::new("sm", crate::session::sm::NS_SM));
    } else {
        let require = server.config.c2s.require_encryption;
        if !secure && server.tls_available() {
            let mut starttls = Element::new("starttls", NS_TLS);
            if require {
                starttls.push_child(Element::new("required", NS_TLS));
            }
            features.push(starttls);
        }
        if secure || !require {
            let mut mechanisms = Element::new("mechanisms", NS_SASL);
            for mechanism in offered(secure, bindings) {
                mechanisms.push_child(Element::new("mechanism", NS_SASL).with_text(mechanism.name()));
            }
            features.push(mechanisms);
            let mut cb = Element::new("sasl-channel-binding", NS_SASL_CB);
            for kind in channel_binding_types(bindings) {
                cb.push_child(Element::new("channel-binding", NS_SASL_CB).with_attr("type", kind.name()));
            }
            if !cb.children.is_empty() {
                features.push(cb);
            }
        }
        if !secure && require {
            return features; // nothing else before TLS
        }
    }
    if let Some(host) = server.host(domain) {
        features.extend(host.stream_features.iter().filter(|(s, _)| *s == module_stage).map(|(_, f)| f()));
    }
    features
}

enum PreAuth {
    StartTls,
    Authenticated(BareJid),
}

async fn pre_auth<S: Transport>(
    server: &Server,
    conn: &mut Conn<S>,
    domain: &str,
    bindings: &ChannelBindings,
    attempts: &mut u32,
) -> Result<PreAuth, Exit> {
    loop {
        let el = match conn.next().await? {
            FrameEvent::Element(el) => el,
            FrameEvent::StreamClose => return Err(Exit::Closed),
            FrameEvent::StreamOpen(_) => return Err(StreamError::new("not-well-formed").into()),
        };
        let secure = conn.io.is_secure();
        match (el.ns.as_str(), el.name.as_str()) {
            (NS_TLS, "starttls") if !secure && server.tls_available() => {
                conn.send(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await?;
                return Ok(PreAuth::StartTls);
            }
            (NS_TLS, "starttls") => {
                conn.send(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>").await?;
                return Err(Exit::Closed);
            }
            (NS_SASL, "auth") if !secure && server.config.c2s.require_encryption => {
                conn.send(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><encryption-required/></failure>")
                    .await?;
            }
            (NS_SASL, "auth") => match authenticate(server, conn, domain, &el, bindings).await? {
                AuthOutcome::Success(jid) => return Ok(PreAuth::Authenticated(jid)),
                AuthOutcome::Failed => {
                    *attempts += 1;
                    if *attempts >= MAX_AUTH_ATTEMPTS {
                        return Err(StreamError::with_text("policy-violation", "too many failed logins").into());
                    }
                }
            },
            (NS_CLIENT, "iq") if secure || !server.config.c2s.require_encryption => {
                pre_auth_iq(server, conn, domain, el).await?;
            }
            _ => return Err(StreamError::new("not-authorized").into()),
        }
    }
}

/// IQs before authentication: only handlers registered for [`IqTarget::PreAuth`]
/// (in-band registration). Replies go straight back on this connection.
async fn pre_auth_iq<S: Transport>(server: &Server, conn: &mut Conn<S>, domain: &str, el: Element) -> Result<(), Exit> {
    let Ok(stanza) = Stanza::from_element(el) else {
        return Err(StreamError::new("not-authorized").into());
    };
    let Some(kind) = IqKind::from_type(stanza.type_attr()) else {
        return Ok(());
    };
    let Some(host) = server.host(domain) else {
        return Err(StreamError::new("host-unknown").into());
    };
    let to = jid::Jid::new(domain).map_err(|_| StreamError::new("host-unknown"))?;
    let outcome = crate::router::dispatch_iq(host, kind, IqTarget::PreAuth, &stanza, to, None).await;
    if let Some(reply) = crate::router::iq::reply(&stanza, outcome) {
        conn.send_stanza(&reply).await?;
    }
    Ok(())
}

/// Resource binding (RFC 6120 §7). An empty resource gets a generated one; a resource in use
/// by the same account replaces the older session, which is closed with `conflict`.
async fn bind<S: Transport>(server: &Server, conn: &mut Conn<S>, account: &BareJid) -> Result<Step, Exit> {
    loop {
        let el = match conn.next().await? {
            FrameEvent::Element(el) => el,
            FrameEvent::StreamClose => return Err(Exit::Closed),
            FrameEvent::StreamOpen(_) => return Err(StreamError::new("not-well-formed").into()),
        };
        if el.ns == NS_SM && el.name == "resume" {
            match resume(server, conn, account, &el).await? {
                Some(step) => return Ok(step),
                None => continue,
            }
        }
        let Ok(stanza) = Stanza::from_element(el) else {
            return Err(StreamError::new("not-authorized").into());
        };
        let Some(request) = stanza.el().get_child("bind", NS_BIND).filter(|_| stanza.type_attr() == Some("set")) else {
            if let Some(reply) = crate::module_api::StanzaError::not_authorized().reply_to(&stanza) {
                conn.send_stanza(&reply).await?;
            }
            continue;
        };
        let wanted = request.get_child("resource", NS_BIND).map(Element::text).unwrap_or_default();
        let resource = if wanted.trim().is_empty() { random_id(9) } else { wanted };
        let Ok(full) = FullJid::new(&format!("{account}/{resource}")) else {
            let error = crate::module_api::StanzaError::bad_request().with_text("resource is not valid");
            if let Some(reply) = error.reply_to(&stanza) {
                conn.send_stanza(&reply).await?;
            }
            continue;
        };
        let (session, replaced) = server.sessions.bind(full.clone());
        if let Some(old) = replaced {
            old.close("conflict");
        }
        let result = Element::new("bind", NS_BIND).with_child(Element::new("jid", NS_BIND).with_text(full.as_str()));
        if let Some(reply) = crate::router::iq::reply(&stanza, Ok(Some(result)))
            && let Err(e) = conn.send_stanza(&reply).await
        {
            server.sessions.unbind(&session);
            return Err(e);
        }
        return Ok(Step::Bound { session, resend: None });
    }
}

/// `<resume previd='…' h='…'/>` (XEP-0198 §5) in place of binding: takes over a session of
/// the same account that is still within its resumption window. `None` (after `<failed/>`)
/// when it cannot be resumed; the client then binds a new resource.
async fn resume<S: Transport>(
    server: &Server,
    conn: &mut Conn<S>,
    account: &BareJid,
    request: &Element,
) -> Result<Option<Step>, Exit> {
    let h = request.attr("h").and_then(|h| h.parse::<u32>().ok());
    let found = request.attr("previd").and_then(|id| server.sessions.resumable(id));
    let session = match (found, h) {
        (Some(session), Some(h)) if &session.jid.bare() == account && session.sm().can_resume(h) => session,
        _ => {
            conn.send(
                format!(
                    "<failed xmlns='{NS_SM}'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
                )
                .as_bytes(),
            )
            .await?;
            return Ok(None);
        }
    };
    // The serving connection, if it still runs (a silent death not yet noticed), lets go;
    // the bumped generation tells it, and a detached task, that the session moved on.
    session.take_over();
    let guard = session.attached.lock().await;
    if session.is_closed() {
        drop(guard);
        conn.send(
            format!("<failed xmlns='{NS_SM}'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>")
                .as_bytes(),
        )
        .await?;
        return Ok(None);
    }
    // `<resumed h/>` acknowledges what the old connection routed: only once it is durable.
    let seq = session.sm().routed_seq();
    server.storage.commits().committed(seq).await;
    let resumed = session.sm().resume(h.unwrap_or_default());
    drop(guard);
    let (reply, resend) = resumed?;
    super::bound::report_delivered(server, &session).await;
    conn.send(&reply).await?;
    tracing::info!(jid = %session.jid, "stream resumed");
    Ok(Some(Step::Bound { session, resend: Some(resend) }))
}
