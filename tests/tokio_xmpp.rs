//! Interop with tokio-xmpp (crates.io), a Rust client library we did not write. Two accounts log
//! in over plain TCP on a listener that does not require TLS, so tokio-xmpp negotiates SCRAM;
//! both send initial presence and see it reflected to themselves (RFC 6121 §4.2.2); alice sends
//! 50 chat messages to bob's bare JID, which bob must receive once each and in order; bob replies;
//! alice queries disco#info of the domain (XEP-0030) and pings the server (XEP-0199).
//! Every wait is bounded, so a misbehaving server fails the test instead of hanging it.
//!
//! The clients are tokio-xmpp's `StanzaStream` (connection, SASL, resource binding and the
//! stanza queues) rather than its `Client` wrapper: in 6.0.0 the wrapper's background task can
//! miss a wake-up when a stanza arrives while a send holds the shared stream lock, and then never
//! delivers anything again (seen here as rare 30 s stalls with the server's reply on the wire).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use futures_util::StreamExt;
use std::time::Duration;
use tokio_xmpp::Stanza;
use tokio_xmpp::connect::{DnsConfig, ServerConnector, TcpServerConnector};
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::disco::{DiscoInfoQuery, DiscoInfoResult};
use tokio_xmpp::parsers::iq::{Iq, IqGetPayload};
use tokio_xmpp::parsers::message::{Lang, Message, MessageType};
use tokio_xmpp::parsers::ping::Ping;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::stanzastream::{Event, StanzaStage, StanzaState, StanzaStream, StreamEvent};
use tokio_xmpp::xmlstream::Timeouts;

/// Upper bound for any single wait on the server.
const WAIT: Duration = Duration::from_secs(30);
const MESSAGES: usize = 50;
/// Sent by alice after the batch: everything the server delivers to bob before it is counted,
/// so a duplicate of any batch message is caught.
const END_MARKER: &str = "end of batch";

/// One logged-in tokio-xmpp client.
struct Account {
    name: &'static str,
    jid: FullJid,
    stream: StanzaStream,
}

fn connector(port: u16) -> TcpServerConnector {
    TcpServerConnector::from(DnsConfig::addr(&format!("127.0.0.1:{port}")))
}

/// The SASL mechanisms the server offers on a fresh plain-TCP stream, read with tokio-xmpp's own
/// connector and stream-features parser.
async fn offered_mechanisms(port: u16) -> Vec<String> {
    let jid = Jid::from(BareJid::new("alice@localhost").unwrap());
    let probe = async {
        let (pending, _) = connector(port).connect(&jid, "jabber:client", Timeouts::default()).await.unwrap();
        let (features, _stream) = pending.recv_features::<Element>().await.unwrap();
        features.sasl_mechanisms.into_iter().collect()
    };
    tokio::time::timeout(WAIT, probe).await.expect("stream features did not arrive in time")
}

/// Connects over plain TCP, authenticates and waits until a resource is bound.
async fn login(port: u16, name: &'static str, password: &str) -> Account {
    let bare = BareJid::new(&format!("{name}@localhost")).unwrap();
    let mut stream =
        StanzaStream::new_c2s(connector(port), bare.clone().into(), password.to_owned(), Timeouts::default(), 16);
    let event = tokio::time::timeout(WAIT, stream.next())
        .await
        .unwrap_or_else(|_| panic!("{name}: login (SCRAM over TCP) did not complete in time"))
        .unwrap_or_else(|| panic!("{name}: stream ended during login"));
    let Event::Stream(StreamEvent::Reset { bound_jid, .. }) = event else {
        panic!("{name}: expected the stream to come up first, got {event:?}");
    };
    let jid = bound_jid.try_into_full().unwrap_or_else(|j| panic!("{name}: bound JID {j} is not a full JID"));
    assert_eq!(jid.to_bare(), bare, "bound JID belongs to another account");
    Account { name, jid, stream }
}

impl Account {
    /// Queues a stanza and waits until it has been written to the connection.
    async fn send(&self, stanza: impl Into<Stanza>) {
        let mut token = self.stream.send(Box::new(stanza.into())).await;
        let state = tokio::time::timeout(WAIT, token.wait_for(StanzaStage::Sent))
            .await
            .unwrap_or_else(|_| panic!("{}: stanza not sent in time", self.name));
        // With stream management (which Starling offers and tokio-xmpp enables) the server's
        // acknowledgement may already have arrived: Acked is past Sent.
        assert!(
            matches!(state, Some(StanzaState::Sent { .. } | StanzaState::Acked { .. })),
            "{}: stanza not sent: {state:?}",
            self.name
        );
    }

    /// The next stanza; panics on timeout, on the end of the stream, and on any change of the
    /// stream's state (tokio-xmpp reconnects silently after a lost stream, which must not happen).
    async fn next_stanza(&mut self, waiting_for: &str) -> Stanza {
        let name = self.name;
        let event = tokio::time::timeout(WAIT, self.stream.next())
            .await
            .unwrap_or_else(|_| panic!("{name}: timed out waiting for {waiting_for}"))
            .unwrap_or_else(|| panic!("{name}: stream ended while waiting for {waiting_for}"));
        match event {
            Event::Stanza(stanza) => stanza,
            Event::Stream(change) => panic!("{name}: stream changed ({change:?}) while waiting for {waiting_for}"),
        }
    }

    /// Sends available presence and waits for the server to reflect it back to this very resource.
    async fn send_initial_presence(&mut self) {
        self.send(Presence::available()).await;
        let me = Jid::from(self.jid.clone());
        loop {
            match self.next_stanza("its own initial presence").await {
                Stanza::Presence(p) if p.from.as_ref() == Some(&me) => {
                    assert_eq!(p.type_, PresenceType::None, "{}: reflected presence is not available", self.name);
                    return;
                }
                other => eprintln!("{}: ignoring {other:?} before own presence", self.name),
            }
        }
    }

    /// The next `<message/>` with a body, skipping presence and anything bodiless.
    async fn next_message(&mut self, waiting_for: &str) -> Message {
        loop {
            match self.next_stanza(waiting_for).await {
                Stanza::Message(m) if !m.bodies.is_empty() => return m,
                other => eprintln!("{}: ignoring {other:?}", self.name),
            }
        }
    }

    /// Sends an IQ get to the domain and returns the payload of its `result`.
    async fn iq_get_domain(&mut self, id: &str, payload: impl IqGetPayload) -> Option<Element> {
        let domain = Jid::from(BareJid::new("localhost").unwrap());
        self.send(Iq::from_get(id, payload).with_to(domain.clone())).await;
        loop {
            match self.next_stanza(&format!("the response to IQ {id}")).await {
                Stanza::Iq(Iq::Result { id: got, from, payload, .. }) if got == id => {
                    assert_eq!(from, Some(domain), "{}: IQ {id} answered by the wrong entity", self.name);
                    return payload;
                }
                Stanza::Iq(Iq::Error { id: got, error, .. }) if got == id => {
                    panic!("{}: IQ {id} failed: {error:?}", self.name)
                }
                other => eprintln!("{}: ignoring {other:?}", self.name),
            }
        }
    }

    async fn close(self) {
        tokio::time::timeout(WAIT, self.stream.close())
            .await
            .unwrap_or_else(|_| panic!("{}: close timed out", self.name));
    }
}

fn body(message: &Message) -> &str {
    message.get_best_body(vec![]).map(|(_, b)| b.as_str()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_xmpp_clients_chat_and_query_the_server() {
    let server = support::start("require_encryption = false", "").await;
    server.add_user("alice@localhost", "wonderland").await;
    server.add_user("bob@localhost", "builder").await;
    let port = server.starttls_port();

    // Without TLS only SCRAM may be offered; tokio-xmpp then picks SCRAM-SHA-256.
    let mechanisms = offered_mechanisms(port).await;
    assert!(mechanisms.iter().any(|m| m == "SCRAM-SHA-256"), "{mechanisms:?}");
    assert!(mechanisms.iter().all(|m| m.starts_with("SCRAM-SHA-") && !m.ends_with("-PLUS")), "{mechanisms:?}");

    let (mut alice, mut bob) = tokio::join!(login(port, "alice", "wonderland"), login(port, "bob", "builder"));
    assert_ne!(alice.jid, bob.jid);

    alice.send_initial_presence().await;
    bob.send_initial_presence().await;

    // alice → bob's bare JID, 50 messages then the end marker, while bob reads concurrently.
    let bob_bare = Jid::from(bob.jid.to_bare());
    let alice_full = Jid::from(alice.jid.clone());
    let send = async {
        let bodies = (1..=MESSAGES).map(|i| format!("message {i}")).chain([END_MARKER.to_owned()]);
        for text in bodies {
            alice.send(Message::chat(bob_bare.clone()).with_body(Lang::new(), text)).await;
        }
    };
    let receive = async {
        let mut received = Vec::new();
        loop {
            let message = bob.next_message(&format!("message {}", received.len() + 1)).await;
            assert_eq!(message.type_, MessageType::Chat, "{message:?}");
            assert_eq!(message.from.as_ref(), Some(&alice_full), "sender must be alice's full JID");
            if body(&message) == END_MARKER {
                return received;
            }
            received.push(body(&message).to_owned());
        }
    };
    let ((), received) = tokio::join!(send, receive);
    let expected: Vec<String> = (1..=MESSAGES).map(|i| format!("message {i}")).collect();
    assert_eq!(received, expected, "bob must get every message exactly once, in order");

    // bob → alice's full JID.
    bob.send(Message::chat(alice_full.clone()).with_body(Lang::new(), "got all 50".to_owned())).await;
    let reply = alice.next_message("bob's reply").await;
    assert_eq!(body(&reply), "got all 50");
    assert_eq!(reply.from, Some(Jid::from(bob.jid.clone())));
    assert_eq!(reply.type_, MessageType::Chat);

    // XEP-0030: disco#info on the domain lists XEP-0199.
    let info = alice.iq_get_domain("disco-1", DiscoInfoQuery { node: None }).await.expect("disco#info without a query");
    let info = DiscoInfoResult::try_from(info).unwrap();
    assert!(info.features.contains("urn:xmpp:ping"), "features: {:?}", info.features);
    assert!(info.features.contains("http://jabber.org/protocol/disco#info"), "features: {:?}", info.features);
    assert!(!info.identities.is_empty(), "a server must have an identity");

    // XEP-0199: client-to-server ping.
    let pong = alice.iq_get_domain("ping-1", Ping).await;
    assert!(pong.is_none(), "a ping result carries no payload: {pong:?}");

    alice.close().await;
    bob.close().await;
}
