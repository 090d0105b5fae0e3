//! The SQS adapter against the moto emulator: the same behaviour the in-memory queue promises.

use e2e_tests::emulator;
use queue::{DeadLetter, Outgoing, Queue};
use std::time::Duration;

const VIS: Duration = Duration::from_secs(30);

#[tokio::test]
async fn send_receive_delete_with_attributes() {
    let (q, _) = emulator::queue(None).await;
    q.send(Outgoing::new(r#"{"n":1}"#).with_attribute("attempt", "3"))
        .await
        .unwrap();
    let got = q.receive(10, Duration::from_secs(2), VIS).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, r#"{"n":1}"#);
    assert_eq!(got[0].attribute("attempt"), Some("3"));
    assert_eq!(got[0].receive_count, 1);
    q.delete(&got[0].receipt).await.unwrap();
    assert!(q
        .receive(10, Duration::from_secs(1), VIS)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn visibility_change_makes_a_message_come_back() {
    let (q, _) = emulator::queue(None).await;
    q.send(Outgoing::new("again")).await.unwrap();
    let first = q.receive(1, Duration::from_secs(2), VIS).await.unwrap();
    q.change_visibility(&first[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    let second = q.receive(1, Duration::from_secs(2), VIS).await.unwrap();
    assert_eq!(second[0].body, "again");
    assert_eq!(second[0].receive_count, 2);
}

#[tokio::test]
async fn redrive_moves_a_poison_message_to_the_dead_letter_queue() {
    let (q, dlq) = emulator::queue(Some(2)).await;
    let dlq = dlq.unwrap();
    q.send(Outgoing::new("poison")).await.unwrap();
    for _ in 0..2 {
        let m = q.receive(1, Duration::from_secs(2), VIS).await.unwrap();
        assert_eq!(m.len(), 1);
        q.change_visibility(&m[0].receipt, Duration::ZERO)
            .await
            .unwrap();
    }
    assert!(q
        .receive(1, Duration::from_secs(1), VIS)
        .await
        .unwrap()
        .is_empty());
    let dead = dlq.receive(1, Duration::from_secs(2), VIS).await.unwrap();
    assert_eq!(dead[0].body, "poison");
}

#[tokio::test]
async fn dead_letters_carry_a_readable_reason() {
    let (dlq, _) = emulator::queue(None).await;
    let letter = DeadLetter::new(
        "malformed",
        "field order.total: required but missing",
        "orders",
        "{}",
    );
    dlq.send(letter.to_outgoing()).await.unwrap();
    let got = dlq.receive(1, Duration::from_secs(2), VIS).await.unwrap();
    assert_eq!(
        got[0].attribute("reason"),
        Some("field order.total: required but missing")
    );
    let parsed: DeadLetter = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(parsed.kind, "malformed");
    assert_eq!(parsed.original, "{}");
}

#[tokio::test]
async fn delayed_messages_wait() {
    let (q, _) = emulator::queue(None).await;
    q.send(Outgoing::new("later").delayed(Duration::from_secs(2)))
        .await
        .unwrap();
    assert!(q.receive(1, Duration::ZERO, VIS).await.unwrap().is_empty());
    let got = q.receive(1, Duration::from_secs(5), VIS).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(q.approximate_len().await.unwrap() >= 1);
}
