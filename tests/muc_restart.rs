//! Persistent rooms survive a restart (XEP-0045 §10.1.3 `muc#roomconfig_persistentroom`):
//! configuration, affiliations, subject and history come back from the database; temporary
//! rooms do not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../conformance/client.rs"]
mod client;

use client::Client;
use starling::config::Config;
use starling::server::{Running, Server, serve};
use std::sync::Arc;

async fn start(dir: &std::path::Path) -> (Running, Arc<Server>) {
    let toml = format!(
        "[server]\ndomains = [\"localhost\"]\ndata_dir = {:?}\n[c2s]\nlisten = [\"127.0.0.1:0\"]\n\
         direct_tls_listen = [\"127.0.0.1:0\"]\n[http]\nlisten = []\n[s2s]\nlisten = []\n",
        dir.display().to_string()
    );
    let config = Config::parse(&toml, &starling::modules::config_checks()).unwrap();
    let server = Server::build(config).await.unwrap();
    let running = serve(server.clone()).await.unwrap();
    (running, server)
}

async fn connect(running: &Running, user: &str) -> Client {
    Client::connect(running.c2s_direct_tls[0], "localhost", user, "pw", "desk").await.unwrap()
}

async fn iq(client: &mut Client, xml: &str) -> String {
    client.send_raw(xml).await.unwrap();
    client.recv_named("iq").await.unwrap().to_string()
}

/// Enters a room and returns everything up to and including the subject message.
async fn enter(client: &mut Client, room_nick: &str) -> Vec<String> {
    client
        .send_raw(&format!("<presence to='{room_nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let el = client.recv().await.unwrap();
        let done = el.name == "message" && el.get_child("subject", "jabber:client").is_some();
        let failed = el.attr("type") == Some("error");
        seen.push(el.to_string());
        if done || failed {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_rooms_keep_configuration_members_subject_and_history() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (running, server) = start(dir.path()).await;
        for user in ["romeo", "juliet", "nurse"] {
            server.accounts.create(&jid::BareJid::new(&format!("{user}@localhost")).unwrap(), "pw").await.unwrap();
        }
        let mut romeo = connect(&running, "romeo").await;
        enter(&mut romeo, "keep@conference.localhost/romeo").await;
        let result = iq(
            &mut romeo,
            "<iq type='set' id='c' to='keep@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'>\
             <x xmlns='jabber:x:data' type='submit'>\
             <field var='muc#roomconfig_persistentroom'><value>1</value></field>\
             <field var='muc#roomconfig_membersonly'><value>1</value></field>\
             <field var='muc#roomconfig_roomname'><value>Kept</value></field></x></query></iq>",
        )
        .await;
        assert!(result.contains("type='result'"), "{result}");
        let result = iq(
            &mut romeo,
            "<iq type='set' id='m' to='keep@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#admin'>\
             <item affiliation='member' jid='juliet@localhost'/></query></iq>",
        )
        .await;
        assert!(result.contains("type='result'"), "{result}");
        romeo
            .send_raw(
                "<message type='groupchat' to='keep@conference.localhost'><subject>Kept subject</subject></message>",
            )
            .await
            .unwrap();
        romeo.recv_named("message").await.unwrap();
        romeo
            .send_raw(
                "<message type='groupchat' to='keep@conference.localhost'><body>before the restart</body></message>",
            )
            .await
            .unwrap();
        romeo.recv_named("message").await.unwrap();
        enter(&mut romeo, "temp@conference.localhost/romeo").await;
        romeo.close().await.unwrap();
        // The room's writes go through the group commit; a clean stop waits for them.
        server.storage.commits().flush().await;
        running.stop();
    }
    let (running, _server) = start(dir.path()).await;
    let mut juliet = connect(&running, "juliet").await;
    let seen = enter(&mut juliet, "keep@conference.localhost/juliet").await.join("\n");
    assert!(seen.contains("affiliation='member'"), "membership kept:\n{seen}");
    assert!(seen.contains("before the restart") && seen.contains("urn:xmpp:delay"), "history kept:\n{seen}");
    assert!(seen.contains("Kept subject"), "subject kept:\n{seen}");
    let info = iq(
        &mut juliet,
        "<iq type='get' id='i' to='keep@conference.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    )
    .await;
    assert!(info.contains("name='Kept'") && info.contains("muc_membersonly"), "{info}");
    let mut nurse = connect(&running, "nurse").await;
    let refused = enter(&mut nurse, "keep@conference.localhost/nurse").await.join("\n");
    assert!(refused.contains("registration-required"), "members only kept:\n{refused}");
    let temp = iq(
        &mut nurse,
        "<iq type='get' id='t' to='temp@conference.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    )
    .await;
    assert!(temp.contains("item-not-found"), "temporary rooms end with the server: {temp}");
}
