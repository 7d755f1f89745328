//! Contract: TLS session-ticket keys kept in storage are the same for every node.

use rustls::server::ProducesTickets;
use starling::storage::Storage;
use starling::stream::tls::TicketKeys;

/// Nodes starting together on an empty database race to create the keys; each must end up
/// with the winner's, so that a ticket from any of them opens on all of them.
pub async fn tls_ticket_keys_agree_across_nodes(s: Storage) {
    let starting = (0..4).map(|_| {
        let s = s.clone();
        tokio::spawn(async move { TicketKeys::from_storage(&s).await.unwrap() })
    });
    let mut nodes = Vec::new();
    for node in starting.collect::<Vec<_>>() {
        nodes.push(node.await.unwrap());
    }
    for (n, sealer) in nodes.iter().enumerate() {
        let ticket = sealer.encrypt(format!("session of node {n}").as_bytes()).unwrap();
        for opener in &nodes {
            assert_eq!(opener.decrypt(&ticket), Some(format!("session of node {n}").into_bytes()));
        }
    }
    // The current epoch's key and the next one's, nothing else.
    assert_eq!(s.map("", "tls").get_all("").await.unwrap().len(), 2);
    // A node started later (or restarted) reads the same keys.
    let later = TicketKeys::from_storage(&s).await.unwrap();
    let ticket = nodes[0].encrypt(b"before the restart").unwrap();
    assert_eq!(later.decrypt(&ticket), Some(b"before the restart".to_vec()));
}
