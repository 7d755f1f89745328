//! Unit tests of the room's pure parts: configuration forms, history limits, roles.

use super::form::{apply_submission, config_form};
use super::presence::history_for;
use super::room::{Affiliation, HistoryItem, Role, Room, RoomConfig, Saved};
use crate::module_api::{BareJid, Element, FullJid, Jid, NS_CLIENT, Stanza, StanzaKind, datetime, now_micros};

fn form(fields: &[(&str, &str)]) -> Element {
    let mut x = Element::new("x", "jabber:x:data").with_attr("type", "submit");
    for (var, value) in fields {
        x.push_child(
            Element::new("field", "jabber:x:data")
                .with_attr("var", *var)
                .with_child(Element::new("value", "jabber:x:data").with_text(*value)),
        );
    }
    x
}

#[test]
fn an_empty_submission_keeps_everything_and_passwords_need_a_secret() {
    let mut config = RoomConfig::default();
    apply_submission(&form(&[]), &mut config, 1024).unwrap();
    assert_eq!(config, RoomConfig::default());
    let protect_without_secret = form(&[("muc#roomconfig_passwordprotectedroom", "1")]);
    assert!(apply_submission(&protect_without_secret, &mut config, 1024).is_err());
    let protect = form(&[("muc#roomconfig_passwordprotectedroom", "1"), ("muc#roomconfig_roomsecret", "s")]);
    apply_submission(&protect, &mut config, 1024).unwrap();
    assert_eq!(config.password.as_deref(), Some("s"));
    apply_submission(&form(&[("muc#roomconfig_passwordprotectedroom", "0")]), &mut config, 1024).unwrap();
    assert_eq!(config.password, None);
}

#[test]
fn limits_and_values_are_checked() {
    let mut config = RoomConfig::default();
    for bad in [
        ("muc#roomconfig_maxusers", "0"),
        ("muc#roomconfig_maxusers", "2000"),
        ("muc#roomconfig_whois", "everybody"),
        ("muc#roomconfig_membersonly", "maybe"),
        ("FORM_TYPE", "urn:other"),
    ] {
        assert!(apply_submission(&form(&[bad]), &mut config, 1024).is_err(), "{bad:?}");
    }
    apply_submission(
        &form(&[("muc#roomconfig_maxusers", "none"), ("muc#roomconfig_historylength", "5")]),
        &mut config,
        300,
    )
    .unwrap();
    assert_eq!((config.max_occupants, config.history_length), (300, 5));
    let shown = config_form(&config, &["a@b".into()], &[], 300).to_bytes("");
    let shown = String::from_utf8(shown).unwrap();
    assert!(shown.contains("<value>300</value>") && !shown.contains("<value>500</value>"), "{shown}");
}

fn room_with_history(ages_secs: &[i64]) -> Room {
    let mut saved = Saved::default();
    saved.config.history_length = 10;
    let mut room = Room::new(BareJid::new("r@conference.localhost").unwrap(), saved);
    let now = now_micros();
    for (n, age) in ages_secs.iter().enumerate() {
        let el = Element::new("message", NS_CLIENT)
            .with_attr("type", "groupchat")
            .with_child(Element::new("body", NS_CLIENT).with_text(format!("m{n}")));
        let mut item =
            HistoryItem::new("r@conference.localhost", &Stanza::new(StanzaKind::Message, el), now - age * 1_000_000);
        item.chars = 10;
        room.remember(item);
    }
    room
}

fn bodies(history: &[Stanza]) -> Vec<String> {
    history.iter().map(|s| s.el().get_child("body", NS_CLIENT).unwrap().text()).collect()
}

#[test]
fn history_limits_by_count_characters_and_age() {
    let room = room_with_history(&[300, 200, 100, 10]);
    let to = FullJid::new("u@localhost/r").unwrap();
    let ask = |attrs: &[(&str, &str)]| {
        let mut history = Element::new("history", super::NS_MUC);
        for (k, v) in attrs {
            history.set_attr(*k, *v);
        }
        bodies(&history_for(&room, Some(&history), &to))
    };
    assert_eq!(bodies(&history_for(&room, None, &to)), ["m0", "m1", "m2", "m3"]);
    assert_eq!(ask(&[("maxstanzas", "2")]), ["m2", "m3"]);
    assert_eq!(ask(&[("maxchars", "25")]), ["m2", "m3"]);
    assert_eq!(ask(&[("seconds", "150")]), ["m2", "m3"]);
    let since = datetime(now_micros() - 250 * 1_000_000);
    assert_eq!(ask(&[("since", since.as_str())]), ["m1", "m2", "m3"]);
    assert_eq!(ask(&[("maxstanzas", "0")]), Vec::<String>::new());
    let first = history_for(&room, None, &to);
    assert_eq!(first[0].to(), Some(Jid::from(to.clone())));
    assert!(first[0].el().has_child("delay", "urn:xmpp:delay"));
}

#[test]
fn roles_follow_affiliations_and_moderation() {
    let mut room = room_with_history(&[]);
    assert_eq!(room.default_role(Affiliation::Owner), Role::Moderator);
    assert_eq!(room.default_role(Affiliation::None), Role::Participant);
    room.saved.config.moderated = true;
    assert_eq!(room.default_role(Affiliation::None), Role::Visitor);
    assert_eq!(room.default_role(Affiliation::Member), Role::Participant);
    room.saved.config.members_only = true;
    assert!(!room.may_enter(Affiliation::None) && room.may_enter(Affiliation::Member));
    let alice = BareJid::new("alice@localhost").unwrap();
    room.set_affiliation(&alice, Affiliation::Member);
    assert_eq!(room.absent_members(), vec![alice.clone()]);
    room.set_affiliation(&alice, Affiliation::None);
    assert!(room.absent_members().is_empty() && room.saved.affiliations.is_empty());
}
