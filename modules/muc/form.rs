//! Data forms of a room (XEP-0004): the owner's configuration form (`muc#roomconfig`,
//! XEP-0045 §10.2) and the room information in disco#info (`muc#roominfo`, §6.4).
//!
//! A submission may carry any subset of the fields; what it leaves out keeps its value, so an
//! empty `<x type='submit'/>` (the instant room of §10.1.2) accepts the room as it is.

use super::room::{AllowPm, RoomConfig, Whois};
use crate::module_api::{Element, StanzaError, ns};

pub const ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
pub const ROOMINFO: &str = "http://jabber.org/protocol/muc#roominfo";
/// Starling's own field: members not in the room get messages through their inbox.
pub const OFFLINE_MEMBERS: &str = "starling#offline_members";

fn field(var: &str, kind: &str, label: &str, values: &[&str]) -> Element {
    let mut field = Element::new("field", ns::DATA_FORMS).with_attr("var", var).with_attr("type", kind);
    if !label.is_empty() {
        field.set_attr("label", label);
    }
    for value in values {
        field.push_child(Element::new("value", ns::DATA_FORMS).with_text(*value));
    }
    field
}

fn with_options(mut field: Element, options: &[&str]) -> Element {
    for option in options {
        field.push_child(
            Element::new("option", ns::DATA_FORMS)
                .with_attr("label", *option)
                .with_child(Element::new("value", ns::DATA_FORMS).with_text(*option)),
        );
    }
    field
}

fn boolean(value: bool) -> &'static str {
    if value { "1" } else { "0" }
}

fn whois_str(whois: Whois) -> &'static str {
    match whois {
        Whois::Moderators => "moderators",
        Whois::Anyone => "anyone",
    }
}

fn allow_pm_str(allow: AllowPm) -> &'static str {
    match allow {
        AllowPm::Anyone => "anyone",
        AllowPm::Participants => "participants",
        AllowPm::Moderators => "moderators",
        AllowPm::None => "none",
    }
}

/// The configuration form with the room's current values; `max_cap` is the service's limit.
pub fn config_form(config: &RoomConfig, owners: &[String], admins: &[String], max_cap: usize) -> Element {
    let bool_field = |var: &str, label: &str, value: bool| field(var, "boolean", label, &[boolean(value)]);
    let max = config.max_occupants.to_string();
    let history = config.history_length.to_string();
    let owners: Vec<&str> = owners.iter().map(String::as_str).collect();
    let admins: Vec<&str> = admins.iter().map(String::as_str).collect();
    let cap = max_cap.to_string();
    let sizes: Vec<&str> = ["10", "20", "30", "50", "100", "200", "500", "1024"]
        .into_iter()
        .filter(|s| s.parse::<usize>().is_ok_and(|n| n <= max_cap))
        .chain(std::iter::once(cap.as_str()))
        .collect();
    let mut sizes_dedup = sizes.clone();
    sizes_dedup.dedup();
    Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "form")
        .with_child(Element::new("title", ns::DATA_FORMS).with_text("Room configuration"))
        .with_child(field("FORM_TYPE", "hidden", "", &[ROOMCONFIG]))
        .with_child(field("muc#roomconfig_roomname", "text-single", "Name", &[&config.name]))
        .with_child(field("muc#roomconfig_roomdesc", "text-single", "Description", &[&config.description]))
        .with_child(bool_field("muc#roomconfig_persistentroom", "Persistent", config.persistent))
        .with_child(bool_field("muc#roomconfig_publicroom", "Listed in the directory", config.public))
        .with_child(bool_field("muc#roomconfig_membersonly", "Members only", config.members_only))
        .with_child(bool_field("muc#roomconfig_moderatedroom", "Moderated", config.moderated))
        .with_child(bool_field("muc#roomconfig_passwordprotectedroom", "Password protected", config.password.is_some()))
        .with_child(field(
            "muc#roomconfig_roomsecret",
            "text-private",
            "Password",
            &[config.password.as_deref().unwrap_or_default()],
        ))
        .with_child(with_options(
            field("muc#roomconfig_maxusers", "list-single", "Most occupants", &[&max]),
            &sizes_dedup,
        ))
        .with_child(with_options(
            field("muc#roomconfig_whois", "list-single", "Who may see real JIDs", &[whois_str(config.whois)]),
            &["moderators", "anyone"],
        ))
        .with_child(field("muc#roomconfig_historylength", "text-single", "Messages of history", &[&history]))
        .with_child(bool_field("muc#roomconfig_allowinvites", "Occupants may invite", config.allow_invites))
        .with_child(with_options(
            field(
                "muc#roomconfig_allowpm",
                "list-single",
                "Who may send private messages",
                &[allow_pm_str(config.allow_pm)],
            ),
            &["anyone", "participants", "moderators", "none"],
        ))
        .with_child(bool_field(
            "muc#roomconfig_changesubject",
            "Occupants may change the subject",
            config.change_subject,
        ))
        .with_child(bool_field("muc#roomconfig_enablearchiving", "Archive messages", config.archive))
        .with_child(bool_field(
            OFFLINE_MEMBERS,
            "Members not in the room get messages when they next log in",
            config.offline_members,
        ))
        .with_child(field("muc#roomconfig_roomowners", "jid-multi", "Owners", &owners))
        .with_child(field("muc#roomconfig_roomadmins", "jid-multi", "Administrators", &admins))
}

/// Owner and admin lists given in a submission (applied by the caller, who checks them).
#[derive(Debug, Default)]
pub struct AffiliationLists {
    pub owners: Option<Vec<String>>,
    pub admins: Option<Vec<String>>,
}

fn parse_bool(value: &str) -> Result<bool, StanzaError> {
    match value {
        "1" | "true" => Ok(true),
        "0" | "false" | "" => Ok(false),
        _ => Err(StanzaError::bad_request().with_text(format!("'{value}' is not a boolean"))),
    }
}

fn parse_count(value: &str, what: &str) -> Result<usize, StanzaError> {
    value.parse::<usize>().map_err(|_| StanzaError::bad_request().with_text(format!("{what} must be a number")))
}

/// Applies a submitted form to `config`. Unknown fields are ignored (clients send other
/// servers' fields); values out of range are errors.
pub fn apply_submission(
    form: &Element,
    config: &mut RoomConfig,
    max_cap: usize,
) -> Result<AffiliationLists, StanzaError> {
    let mut lists = AffiliationLists::default();
    let mut password_protected = None;
    let mut secret = None;
    for field in form.child_elements().filter(|f| f.is("field", ns::DATA_FORMS)) {
        let var = field.attr("var").unwrap_or_default();
        let values: Vec<String> = field
            .child_elements()
            .filter(|v| v.is("value", ns::DATA_FORMS))
            .map(|v| v.text().trim().to_owned())
            .collect();
        let value = values.first().cloned().unwrap_or_default();
        match var {
            "FORM_TYPE" if value != ROOMCONFIG && !value.is_empty() => {
                return Err(StanzaError::bad_request().with_text("FORM_TYPE must be muc#roomconfig"));
            }
            "muc#roomconfig_roomname" => config.name = value,
            "muc#roomconfig_roomdesc" => config.description = value,
            "muc#roomconfig_persistentroom" => config.persistent = parse_bool(&value)?,
            "muc#roomconfig_publicroom" => config.public = parse_bool(&value)?,
            "muc#roomconfig_membersonly" => config.members_only = parse_bool(&value)?,
            "muc#roomconfig_moderatedroom" => config.moderated = parse_bool(&value)?,
            "muc#roomconfig_passwordprotectedroom" => password_protected = Some(parse_bool(&value)?),
            "muc#roomconfig_roomsecret" => secret = Some(value),
            "muc#roomconfig_maxusers" => {
                let max = if value == "none" || value.is_empty() { max_cap } else { parse_count(&value, "maxusers")? };
                if max == 0 || max > max_cap {
                    return Err(StanzaError::not_acceptable().with_text(format!("maxusers must be 1 to {max_cap}")));
                }
                config.max_occupants = max;
            }
            "muc#roomconfig_whois" => {
                config.whois = match value.as_str() {
                    "anyone" => Whois::Anyone,
                    "moderators" => Whois::Moderators,
                    _ => return Err(StanzaError::bad_request().with_text("whois must be moderators or anyone")),
                }
            }
            "muc#roomconfig_historylength" | "muc#maxhistoryfetch" => {
                config.history_length = parse_count(&value, "historylength")?.min(1000);
            }
            "muc#roomconfig_allowinvites" => config.allow_invites = parse_bool(&value)?,
            "muc#roomconfig_allowpm" => {
                config.allow_pm = match value.as_str() {
                    "anyone" => AllowPm::Anyone,
                    "participants" => AllowPm::Participants,
                    "moderators" => AllowPm::Moderators,
                    "none" => AllowPm::None,
                    _ => return Err(StanzaError::bad_request().with_text("allowpm: unknown value")),
                }
            }
            "muc#roomconfig_changesubject" => config.change_subject = parse_bool(&value)?,
            "muc#roomconfig_enablearchiving" | "muc#roomconfig_enablelogging" => config.archive = parse_bool(&value)?,
            OFFLINE_MEMBERS => config.offline_members = parse_bool(&value)?,
            "muc#roomconfig_roomowners" => lists.owners = Some(values),
            "muc#roomconfig_roomadmins" => lists.admins = Some(values),
            _ => {}
        }
    }
    match (password_protected, secret) {
        (Some(false), _) => config.password = None,
        (_, Some(secret)) if !secret.is_empty() => config.password = Some(secret),
        (Some(true), _) if config.password.is_none() => {
            return Err(StanzaError::not_acceptable().with_text("a password-protected room needs a password"));
        }
        (None, Some(_)) => config.password = None,
        _ => {}
    }
    Ok(lists)
}

/// The `muc#roominfo` form of disco#info (XEP-0045 §6.4).
pub fn room_info(config: &RoomConfig, occupants: usize, subject: &str) -> Element {
    Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "result")
        .with_child(field("FORM_TYPE", "hidden", "", &[ROOMINFO]))
        .with_child(field("muc#roominfo_description", "text-single", "Description", &[&config.description]))
        .with_child(field("muc#roominfo_subject", "text-single", "Subject", &[subject]))
        .with_child(field("muc#roominfo_occupants", "text-single", "Occupants", &[&occupants.to_string()]))
        .with_child(field("muc#maxhistoryfetch", "text-single", "History", &[&config.history_length.to_string()]))
        .with_child(field("muc#roomconfig_allowinvites", "boolean", "", &[boolean(config.allow_invites)]))
        .with_child(field("muc#roomconfig_changesubject", "boolean", "", &[boolean(config.change_subject)]))
}

/// The disco features that describe a room's configuration (XEP-0045 §15.4 registered
/// features).
pub fn features(config: &RoomConfig) -> Vec<&'static str> {
    let pick = |on: bool, yes: &'static str, no: &'static str| if on { yes } else { no };
    vec![
        pick(config.persistent, "muc_persistent", "muc_temporary"),
        pick(config.public, "muc_public", "muc_hidden"),
        pick(config.members_only, "muc_membersonly", "muc_open"),
        pick(config.moderated, "muc_moderated", "muc_unmoderated"),
        pick(config.password.is_some(), "muc_passwordprotected", "muc_unsecured"),
        pick(config.whois == Whois::Anyone, "muc_nonanonymous", "muc_semianonymous"),
    ]
}
