//! Stream management (XEP-0198) on a client stream: `<enable/>`, acknowledgement requests
//! and answers, and the unacknowledged-stanza queue.
//!
//! Counting (§4): `handled` is the number of stanzas received from the client and routed;
//! `sent` the number written to it. `handled` is only reported (in `<a/>` and `<resumed/>`)
//! once the storage writes made while routing those stanzas are committed, so an acknowledged
//! message survives a crash (see [`crate::storage::GroupCommit`]). The client acknowledges with `<a h='…'/>`, and every
//! stanza it has not acknowledged when the stream ends is handed back to the router, so that
//! it reaches another resource or offline storage instead of being lost with the connection.
//! Resumption (§5): with `<enable resume='true'/>` the session gets an id; when its
//! connection dies, the session stays bound for the resumption timeout, keeps queueing, and a
//! new connection may take it over with `<resume previd='…' h='…'/>`, receiving every stanza
//! it had not acknowledged.

use crate::router::stanza::{Stanza, StanzaKind};
use crate::stream::StreamError;
use crate::xml::Element;
use std::collections::VecDeque;

/// `urn:xmpp:sm:3`
pub const NS_SM: &str = "urn:xmpp:sm:3";

/// Per-connection stream-management state.
#[derive(Debug, Default)]
pub struct StreamManagement {
    enabled: bool,
    /// The resumption id, when the client asked for resumption.
    resume_id: Option<String>,
    handled: u32,
    sent: u32,
    acked: u32,
    unacked: VecDeque<Stanza>,
    ack_requested: bool,
    /// Messages known to have reached the client (acknowledged, or written without stream
    /// management) and not yet reported to the modules.
    delivered: Vec<Stanza>,
    /// The group-commit sequence number covering the writes of every stanza routed so far;
    /// `<a/>` and `<resumed/>` wait for it to be committed (durable before acknowledged).
    routed_seq: u64,
    /// An answer to `<r/>` waiting for that commit: (sequence number, handled count then).
    owed: Option<(u64, u32)>,
}

impl StreamManagement {
    /// Handles an element in the SM namespace; returns bytes to send back, if any.
    pub fn on_nonza(&mut self, el: &Element) -> Result<Option<Vec<u8>>, StreamError> {
        match el.name.as_str() {
            "enable" if self.enabled => Ok(Some(failed("unexpected-request"))),
            "enable" => {
                self.enabled = true;
                Ok(Some(format!("<enabled xmlns='{NS_SM}'/>").into_bytes()))
            }
            "resume" => Ok(Some(failed("unexpected-request"))),
            "r" if self.enabled => Ok(Some(answer(self.handled))),
            "a" if self.enabled => self.on_ack(el).map(|()| None),
            "r" | "a" => Ok(Some(failed("unexpected-request"))),
            _ => Err(StreamError::new("unsupported-stanza-type")),
        }
    }

    /// Enables stream management with resumption under `id`; returns `<enabled/>`.
    pub fn enable_resumable(&mut self, id: String, max_seconds: u64) -> Vec<u8> {
        self.enabled = true;
        let reply = format!("<enabled xmlns='{NS_SM}' id='{id}' resume='true' max='{max_seconds}'/>");
        self.resume_id = Some(id);
        reply.into_bytes()
    }

    /// Whether this stream may be resumed, and under which id.
    pub fn resume_id(&self) -> Option<&str> {
        self.resume_id.as_deref()
    }

    /// Whether stream management is on.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `h` is a count the client could have handled (not beyond what was sent).
    pub fn can_resume(&self, h: u32) -> bool {
        self.resume_id.is_some() && (h.wrapping_sub(self.acked) as usize) <= self.unacked.len()
    }

    /// Resumption (§5): applies the client's `h`, returns `<resumed/>` and the stanzas to send
    /// again, in order.
    pub fn resume(&mut self, h: u32) -> Result<(Vec<u8>, Vec<Stanza>), StreamError> {
        self.apply_ack(h)?;
        let id = self.resume_id.clone().unwrap_or_default();
        let reply = format!("<resumed xmlns='{NS_SM}' h='{}' previd='{id}'/>", self.handled);
        Ok((reply.into_bytes(), self.unacked.iter().cloned().collect()))
    }

    /// `<a h='…'/>`: drops the acknowledged stanzas (counts wrap at 2^32, §4).
    fn on_ack(&mut self, el: &Element) -> Result<(), StreamError> {
        let h = el.attr("h").and_then(|h| h.parse::<u32>().ok()).ok_or_else(|| StreamError::new("invalid-xml"))?;
        self.apply_ack(h)
    }

    fn apply_ack(&mut self, h: u32) -> Result<(), StreamError> {
        self.ack_requested = false;
        let newly = h.wrapping_sub(self.acked) as usize;
        if newly > self.unacked.len() {
            return Err(StreamError::with_text(
                "undefined-condition",
                format!("handled-count-too-high: h={h}, send-count={}", self.sent),
            ));
        }
        let acknowledged = self.unacked.drain(..newly).filter(|s| s.kind == StanzaKind::Message);
        self.delivered.extend(acknowledged);
        self.acked = h;
        Ok(())
    }

    /// Counts a stanza received from the client and routed.
    pub fn on_handled(&mut self) {
        if self.enabled {
            self.handled = self.handled.wrapping_add(1);
        }
    }

    /// Records a stanza written to the client.
    pub fn on_sent(&mut self, stanza: &Stanza) {
        if !self.enabled {
            // Without stream management, written is as delivered as it gets.
            if stanza.kind == StanzaKind::Message {
                self.delivered.push(stanza.clone());
            }
        } else {
            self.sent = self.sent.wrapping_add(1);
            self.unacked.push_back(stanza.clone());
        }
    }

    /// Takes the messages that reached the client since the last call.
    pub fn take_delivered(&mut self) -> Vec<Stanza> {
        std::mem::take(&mut self.delivered)
    }

    /// Records the group-commit sequence number after routing a stanza.
    pub fn mark_routed(&mut self, seq: u64) {
        self.routed_seq = seq;
    }

    /// The sequence number that must be committed before the handled count is acknowledged.
    pub fn routed_seq(&self) -> u64 {
        self.routed_seq
    }

    /// `<r/>` while writes are still being committed: the answer is owed until sequence number
    /// `seq` is committed, with the count as it is now. A later request replaces an earlier
    /// one (its answer acknowledges at least as much).
    pub fn owe_ack(&mut self) {
        self.owed = Some((self.routed_seq, self.handled));
    }

    /// The sequence number an owed answer waits for.
    pub fn owed_seq(&self) -> Option<u64> {
        self.owed.map(|(seq, _)| seq)
    }

    /// The owed `<a/>`, once `committed` covers it.
    pub fn take_owed_answer(&mut self, committed: u64) -> Option<Vec<u8>> {
        match self.owed {
            Some((seq, h)) if seq <= committed => {
                self.owed = None;
                Some(answer(h))
            }
            _ => None,
        }
    }

    /// An ack request to append after a batch of stanzas, when one is due.
    pub fn ack_request(&mut self) -> Option<&'static [u8]> {
        if self.enabled && !self.unacked.is_empty() && !self.ack_requested {
            self.ack_requested = true;
            return Some(b"<r xmlns='urn:xmpp:sm:3'/>");
        }
        None
    }

    /// The stanzas written but never acknowledged (empty without stream management: then a
    /// written stanza counts as delivered).
    pub fn take_unacked(&mut self) -> Vec<Stanza> {
        self.unacked.drain(..).collect()
    }
}

/// `<a h='…'/>`, the answer to an ack request.
fn answer(handled: u32) -> Vec<u8> {
    format!("<a xmlns='{NS_SM}' h='{handled}'/>").into_bytes()
}

fn failed(condition: &str) -> Vec<u8> {
    format!("<failed xmlns='{NS_SM}'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        Element::parse(xml.as_bytes()).unwrap()
    }

    fn stanza(xml: &str) -> Stanza {
        Stanza::from_element(el(xml)).unwrap()
    }

    #[test]
    fn acks_drop_acknowledged_stanzas_and_the_rest_stay_queued() {
        let mut sm = StreamManagement::default();
        assert!(sm.on_nonza(&el("<enable xmlns='urn:xmpp:sm:3'/>")).unwrap().is_some());
        for id in ["1", "2", "3"] {
            sm.on_sent(&stanza(&format!("<message xmlns='jabber:client' id='{id}'/>")));
        }
        assert!(sm.ack_request().is_some());
        assert!(sm.ack_request().is_none(), "one request outstanding at a time");
        sm.on_nonza(&el("<a xmlns='urn:xmpp:sm:3' h='2'/>")).unwrap();
        let left: Vec<_> = sm.take_unacked().iter().map(|s| s.id().unwrap().to_owned()).collect();
        assert_eq!(left, vec!["3"]);
    }

    #[test]
    fn answers_requests_with_the_handled_count() {
        let mut sm = StreamManagement::default();
        sm.on_nonza(&el("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")).unwrap();
        sm.on_handled();
        sm.on_handled();
        let reply = sm.on_nonza(&el("<r xmlns='urn:xmpp:sm:3'/>")).unwrap().unwrap();
        assert_eq!(String::from_utf8(reply).unwrap(), "<a xmlns='urn:xmpp:sm:3' h='2'/>");
    }

    #[test]
    fn an_ack_beyond_what_was_sent_ends_the_stream() {
        let mut sm = StreamManagement::default();
        sm.on_nonza(&el("<enable xmlns='urn:xmpp:sm:3'/>")).unwrap();
        sm.on_sent(&stanza("<message xmlns='jabber:client'/>"));
        assert!(sm.on_nonza(&el("<a xmlns='urn:xmpp:sm:3' h='5'/>")).is_err());
    }

    #[test]
    fn without_enable_nothing_is_counted_and_a_second_enable_fails() {
        let mut sm = StreamManagement::default();
        sm.on_sent(&stanza("<message xmlns='jabber:client'/>"));
        assert!(sm.take_unacked().is_empty());
        sm.on_nonza(&el("<enable xmlns='urn:xmpp:sm:3'/>")).unwrap();
        let again = sm.on_nonza(&el("<enable xmlns='urn:xmpp:sm:3'/>")).unwrap().unwrap();
        assert!(String::from_utf8(again).unwrap().starts_with("<failed"));
    }
}
