//! A room's state: its configuration and affiliations (kept for persistent rooms), its
//! occupants with their roles, its subject and recent history (XEP-0045 §5, §7).

use crate::module_api::{BareJid, Element, FullJid, Stanza};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// A long-lived association of a bare JID with the room (XEP-0045 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affiliation {
    /// Banned.
    Outcast,
    /// No affiliation.
    None,
    /// A member (may enter a members-only room).
    Member,
    /// An administrator.
    Admin,
    /// An owner.
    Owner,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }

    pub fn parse(text: &str) -> Option<Affiliation> {
        Some(match text {
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            "member" => Affiliation::Member,
            "admin" => Affiliation::Admin,
            "owner" => Affiliation::Owner,
            _ => return None,
        })
    }
}

/// A role, held for the length of a visit (XEP-0045 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Not in the room.
    None,
    /// Present, may not speak in a moderated room.
    Visitor,
    /// Present, may speak.
    Participant,
    /// May kick and grant voice.
    Moderator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Some(match text {
            "none" => Role::None,
            "visitor" => Role::Visitor,
            "participant" => Role::Participant,
            "moderator" => Role::Moderator,
            _ => return None,
        })
    }
}

/// Who may see occupants' real JIDs (`muc#roomconfig_whois`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Whois {
    /// Semi-anonymous: moderators only.
    Moderators,
    /// Non-anonymous: every occupant.
    Anyone,
}

/// Who may send private messages to occupants (`muc#roomconfig_allowpm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllowPm {
    Anyone,
    Participants,
    Moderators,
    None,
}

/// The room configuration (XEP-0045 §10.2, the `muc#roomconfig` form).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomConfig {
    pub name: String,
    pub description: String,
    pub persistent: bool,
    pub public: bool,
    pub members_only: bool,
    pub moderated: bool,
    /// `None`: no password.
    pub password: Option<String>,
    pub max_occupants: usize,
    pub whois: Whois,
    /// Messages kept for people who join.
    pub history_length: usize,
    pub allow_invites: bool,
    pub allow_pm: AllowPm,
    /// Participants may change the subject (moderators always may).
    pub change_subject: bool,
    /// Messages go to the room archive (XEP-0313 on the room JID).
    pub archive: bool,
    /// Members with no occupant in the room get each message through their inbox (only
    /// in members-only rooms).
    pub offline_members: bool,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            moderated: false,
            password: None,
            max_occupants: 1024,
            whois: Whois::Moderators,
            history_length: 20,
            allow_invites: false,
            allow_pm: AllowPm::Anyone,
            change_subject: false,
            archive: true,
            offline_members: true,
        }
    }
}

/// What a persistent room keeps across restarts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Saved {
    pub config: RoomConfig,
    /// Bare JID → affiliation (never `None`: those are removed).
    pub affiliations: BTreeMap<String, Affiliation>,
    pub subject: Option<Subject>,
    /// Secret behind the occupant ids (XEP-0421), stable for the room's life.
    pub occupant_id_secret: String,
}

/// The room subject and who set it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Subject {
    pub text: String,
    /// The nick of the occupant who set it (empty: the room).
    pub by: String,
}

/// A message kept for the history sent on join (XEP-0045 §7.2.15).
#[derive(Clone)]
pub struct HistoryItem {
    /// The message as broadcast (from the occupant JID, no `to`) with its `<delay/>`, ready
    /// to be copied to whoever enters.
    pub stanza: Stanza,
    /// Unix microseconds.
    pub when: i64,
    /// Its length in characters, for `maxchars`.
    pub chars: usize,
}

impl HistoryItem {
    /// The history copy of a broadcast message, stamped with `<delay from=room/>` once.
    pub fn new(room: &str, message: &Stanza, when: i64) -> HistoryItem {
        let mut stanza = message.clone();
        stanza.el_mut().push_child(
            Element::new("delay", crate::module_api::ns::DELAY)
                .with_attr("from", room)
                .with_attr("stamp", crate::module_api::datetime(when)),
        );
        stanza.prepare_wire();
        let chars = stanza.to_bytes().len();
        HistoryItem { stanza, when, chars }
    }
}

/// Most bytes of history a room keeps, whatever its configured length.
pub const HISTORY_MAX_BYTES: usize = 1024 * 1024;

/// One session in the room under a nick (several sessions of one account may share a nick).
#[derive(Clone)]
pub struct Visit {
    pub jid: FullJid,
    /// The session's last presence (children kept, addressing dropped).
    pub presence: Element,
}

/// An occupant: a nick with its account and sessions.
#[derive(Clone)]
pub struct Occupant {
    pub nick: String,
    pub account: BareJid,
    pub role: Role,
    pub visits: Vec<Visit>,
    /// XEP-0421 id: the same for the account whatever its nick.
    pub occupant_id: String,
    /// Its presence as shown to others, built at each change.
    pub views: Option<std::sync::Arc<super::occupant::PresenceViews>>,
}

/// A room in memory.
pub struct Room {
    pub jid: BareJid,
    pub saved: Saved,
    /// A new room stays locked until its owner configures it (XEP-0045 §10.1.2).
    pub locked: bool,
    /// Nick → occupant, in join order of first arrival.
    pub occupants: HashMap<String, Occupant>,
    /// Session → nick.
    pub by_session: HashMap<FullJid, String>,
    pub history: VecDeque<HistoryItem>,
    /// Destroyed or unloaded: whoever waited for its lock must look the room up again.
    pub gone: bool,
    /// IQs relayed between occupants and not answered yet: the id given to the addressee, the
    /// requester's session and its own id. Bounded; the oldest are forgotten.
    pub relays: VecDeque<(String, FullJid, String)>,
}

impl Room {
    pub fn new(jid: BareJid, saved: Saved) -> Room {
        Room {
            jid,
            saved,
            locked: false,
            occupants: HashMap::new(),
            by_session: HashMap::new(),
            history: VecDeque::new(),
            gone: false,
            relays: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &RoomConfig {
        &self.saved.config
    }

    pub fn affiliation(&self, account: &BareJid) -> Affiliation {
        self.saved.affiliations.get(account.as_str()).copied().unwrap_or(Affiliation::None)
    }

    /// Sets an affiliation (`None` removes the entry).
    pub fn set_affiliation(&mut self, account: &BareJid, affiliation: Affiliation) {
        if affiliation == Affiliation::None {
            self.saved.affiliations.remove(account.as_str());
        } else {
            self.saved.affiliations.insert(account.to_string(), affiliation);
        }
    }

    /// The role an affiliation gets on entering (XEP-0045 §5.1.2 defaults).
    pub fn default_role(&self, affiliation: Affiliation) -> Role {
        match affiliation {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::Member => Role::Participant,
            Affiliation::None if self.config().moderated => Role::Visitor,
            Affiliation::None => Role::Participant,
            Affiliation::Outcast => Role::None,
        }
    }

    /// The occupant a session is joined as.
    pub fn occupant_of(&self, session: &FullJid) -> Option<&Occupant> {
        self.by_session.get(session).and_then(|nick| self.occupants.get(nick))
    }

    /// The occupant JID (`room@service/nick`).
    pub fn occupant_jid(&self, nick: &str) -> Option<FullJid> {
        self.jid.with_resource_str(nick).ok()
    }

    /// Rebuilds the shown presence of an occupant after a change.
    pub fn refresh(&mut self, nick: &str) {
        let views = self.occupants.get(nick).map(|o| super::occupant::PresenceViews::build(self, o));
        if let Some(occupant) = self.occupants.get_mut(nick) {
            occupant.views = views.map(std::sync::Arc::new);
        }
    }

    /// Every session in the room with the role of its occupant.
    pub fn sessions(&self) -> impl Iterator<Item = (&FullJid, Role)> {
        self.occupants.values().flat_map(|o| o.visits.iter().map(move |v| (&v.jid, o.role)))
    }

    /// A copy of `stanza` for every session in the room; the copies share one body and its
    /// wire bytes, made once here.
    pub fn copies_for_all(&self, stanza: &Stanza) -> Vec<Stanza> {
        stanza.prepare_wire();
        self.sessions()
            .map(|(jid, _)| {
                let mut copy = stanza.clone();
                copy.set_to(crate::module_api::Jid::from(jid.clone()));
                copy
            })
            .collect()
    }

    /// Keeps a broadcast message for history, dropping the oldest beyond the configured length.
    pub fn remember(&mut self, item: HistoryItem) {
        let keep = self.config().history_length;
        if keep == 0 {
            self.history.clear();
            return;
        }
        self.history.push_back(item);
        let mut bytes: usize = self.history.iter().map(|i| i.chars).sum();
        while self.history.len() > keep || bytes > HISTORY_MAX_BYTES {
            match self.history.pop_front() {
                Some(dropped) => bytes -= dropped.chars,
                None => break,
            }
        }
    }

    /// Whether someone with this affiliation may enter: not banned, and a member in a
    /// members-only room.
    pub fn may_enter(&self, affiliation: Affiliation) -> bool {
        match affiliation {
            Affiliation::Outcast => false,
            Affiliation::None => !self.config().members_only,
            _ => true,
        }
    }

    /// Whether `viewer` sees real JIDs of occupants.
    pub fn shows_real_jids_to(&self, viewer_role: Role) -> bool {
        self.config().whois == Whois::Anyone || viewer_role == Role::Moderator
    }

    /// The bare JIDs of members (and admins, owners) with no occupant in the room.
    pub fn absent_members(&self) -> Vec<BareJid> {
        let present: std::collections::HashSet<&BareJid> = self.occupants.values().map(|o| &o.account).collect();
        self.saved
            .affiliations
            .iter()
            .filter(|(_, a)| **a >= Affiliation::Member)
            .filter_map(|(jid, _)| BareJid::new(jid).ok())
            .filter(|jid| !present.contains(jid))
            .collect()
    }
}
