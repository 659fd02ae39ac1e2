//! The reader against byte streams no client library would send: frames
//! declared past the limit, messages that never end, every way of cutting
//! a stream into chunks.

use futures_util::{stream, StreamExt};
use proptest::prelude::*;

use super::*;

/// A masked client frame header with a payload of `len` bytes (content not
/// included) and the given first byte.
fn header(first: u8, len: u64) -> Vec<u8> {
    let mut out = vec![first];
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    // A zero mask: the payload as it is.
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

fn frame(first: u8, len: usize) -> Vec<u8> {
    let mut out = header(first, len as u64);
    out.extend(std::iter::repeat_n(b'x', len));
    out
}

type Item = Result<AggregatedMessage, ProtocolError>;

fn reader(
    chunks: Vec<Vec<u8>>,
    limit: usize,
    budget: &Arc<Budget>,
) -> Reader<impl Stream<Item = Result<Bytes, PayloadError>> + Unpin> {
    let inner = stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c))));
    Reader::new(inner, limit, budget.clone())
}

async fn run(chunks: Vec<Vec<u8>>, limit: usize, budget: &Arc<Budget>) -> Vec<Item> {
    reader(chunks, limit, budget).collect().await
}

fn refusal(item: &Item) -> Option<Refused> {
    match item {
        Err(ProtocolError::Io(e)) => Refused::of(e),
        _ => None,
    }
}

/// A reader of `chunks` and then of nothing, ever: a client that stopped.
fn stalled(
    chunks: Vec<Vec<u8>>,
    budget: &Arc<Budget>,
) -> Reader<impl Stream<Item = Result<Bytes, PayloadError>> + Unpin> {
    let inner = stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c)))).chain(stream::pending());
    Reader::new(inner, 256 * 1024, budget.clone())
}

/// Polls `reader` until it has nothing ready.
fn drain<S: Stream<Item = Result<Bytes, PayloadError>> + Unpin>(reader: &mut Reader<S>) -> Vec<Item> {
    let mut out = Vec::new();
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    while let Poll::Ready(Some(item)) = Pin::new(&mut *reader).poll_next(&mut cx) {
        out.push(item);
    }
    out
}

#[tokio::test]
async fn a_huge_declared_frame_is_refused_at_its_header() {
    let budget = Budget::new(0);
    let got = run(vec![header(0x81, 1 << 62), vec![b'x'; 1000]], 256 * 1024, &budget).await;
    assert_eq!(got.len(), 1, "nothing after the header is read");
    assert_eq!(refusal(&got[0]), Some(Refused::TooLarge));
}

#[tokio::test]
async fn a_message_growing_past_the_limit_across_continuations_is_refused_at_the_header() {
    let budget = Budget::new(0);
    let first = frame(0x01, 200_000); // text, not final
    let next = header(0x80, 100_000); // final continuation: 300,000 in all
    let got = run(vec![first, next], 256 * 1024, &budget).await;
    assert_eq!(got.len(), 1);
    assert_eq!(refusal(&got[0]), Some(Refused::TooLarge));
    assert_eq!(budget.held(), 0, "the refused reader gave back what it held");
}

#[tokio::test]
async fn headers_the_decoder_would_refuse_are_refused_before_their_payload() {
    let budget = Budget::new(0);
    let mut unmasked = header(0x81, 100_000);
    unmasked[1] &= 0x7f;
    unmasked.truncate(unmasked.len() - 4);
    let got = run(vec![unmasked], 256 * 1024, &budget).await;
    assert!(matches!(got[..], [Err(ProtocolError::UnmaskedFrame)]), "{got:?}");
    let got = run(vec![header(0x89, 100_000)], 256 * 1024, &budget).await;
    assert!(matches!(got[..], [Err(ProtocolError::InvalidLength(100_000))]), "a control frame of 100 KB: {got:?}");
    let got = run(vec![header(0x83, 100_000)], 256 * 1024, &budget).await;
    assert!(matches!(got[..], [Err(ProtocolError::InvalidOpcode(3))]), "{got:?}");
}

#[tokio::test]
async fn unfinished_messages_of_all_sockets_share_one_budget() {
    let budget = Budget::new(500_000);
    // Two sockets each hold 200,000 bytes of an unfinished message (sent
    // in chunks the connection's first read buffer holds).
    let chunks = || frame(0x01, 200_000).chunks(4096).map(<[u8]>::to_vec).collect::<Vec<_>>();
    let mut a = stalled(chunks(), &budget);
    let mut b = stalled(chunks(), &budget);
    assert!(drain(&mut a).is_empty() && drain(&mut b).is_empty(), "no message yet");
    assert_eq!(budget.held(), 2 * (200_000 + 14), "what they hold, headers included");
    // A third would pass the budget: refused, and holds nothing.
    let got = run(chunks(), 256 * 1024, &budget).await;
    assert_eq!(refusal(&got[0]), Some(Refused::Busy));
    assert_eq!(budget.held(), 2 * 200_014);
    drop(a);
    assert_eq!(budget.held(), 200_014, "a socket that goes gives its bytes back");
    assert!(budget.peak() <= 500_000);
}

#[tokio::test]
async fn what_the_budget_holds_is_what_is_allocated_as_bytes_arrive() {
    let budget = Budget::new(0);
    // A frame of 250,000 declared, 100,000 of it sent in chunks of 4 KiB.
    let mut bytes = frame(0x81, 250_000);
    bytes.truncate(14 + 100_000);
    let chunks: Vec<Vec<u8>> = bytes.chunks(4096).map(<[u8]>::to_vec).collect();
    let mut r = stalled(chunks, &budget);
    assert!(drain(&mut r).is_empty());
    let held = budget.held();
    assert!((100_014..=2 * 100_014).contains(&held), "grown by doubling from what came: {held}");
    assert_eq!(r.frames.paid(), (held, held), "the buffer's capacity is what is paid");
    // The header alone of a large frame pays a small first allocation, not
    // the declared length.
    let header_only = Budget::new(0);
    let mut r = stalled(vec![header(0x81, 250_000)], &header_only);
    assert!(drain(&mut r).is_empty());
    assert!(header_only.held() <= 4096, "{}", header_only.held());
}

#[test]
fn a_burst_grows_the_connections_read_buffer_to_the_next_power_of_two() {
    assert_eq!(read_buffer(0), 8 * 1024);
    assert_eq!(read_buffer(7_000), 8 * 1024);
    assert_eq!(read_buffer(7_500), 16 * 1024, "less than 1 KiB left: it doubles");
    assert_eq!(read_buffer(100_000), 128 * 1024);
    assert_eq!(read_buffer(128 * 1024), 256 * 1024);
    assert_eq!(read_buffer(1 << 30), 256 * 1024, "it parses past 128 KiB");
}

#[tokio::test]
async fn the_read_buffer_a_burst_grew_is_paid_for_the_life_of_the_connection() {
    let budget = Budget::new(0);
    // A whole message of 120,000 bytes in one chunk: its frame is given
    // back, the read buffer's growth stays paid.
    let mut r = stalled(vec![frame(0x81, 120_000)], &budget);
    assert!(matches!(drain(&mut r)[..], [Ok(AggregatedMessage::Text(_))]));
    assert_eq!(budget.held(), 128 * 1024 - 8 * 1024);
    // Small chunks after it cost nothing more.
    drop(r);
    assert_eq!(budget.held(), 0);
    let small: Vec<Vec<u8>> = frame(0x81, 120_000).chunks(4096).map(<[u8]>::to_vec).collect();
    let mut r = stalled(small, &budget);
    assert_eq!(drain(&mut r).len(), 1);
    assert_eq!(budget.held(), 0, "chunks that fit the first read buffer grow nothing");
}

#[tokio::test]
async fn finished_messages_hold_nothing_and_come_whole() {
    let budget = Budget::new(0);
    let bytes: Vec<u8> = [frame(0x81, 100), frame(0x89, 10), frame(0x01, 50), frame(0x8a, 0), frame(0x80, 60)].concat();
    let got = run(vec![bytes], 256 * 1024, &budget).await;
    let kinds: Vec<String> = got
        .iter()
        .map(|m| match m {
            Ok(AggregatedMessage::Text(t)) => format!("text {}", t.len()),
            Ok(AggregatedMessage::Ping(p)) => format!("ping {}", p.len()),
            Ok(AggregatedMessage::Pong(p)) => format!("pong {}", p.len()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["text 100", "ping 10", "pong 0", "text 110"]);
    assert_eq!(budget.held(), 0);
}

proptest! {
    #[test]
    fn any_split_of_the_stream_is_read_alike(cuts in proptest::collection::vec(0usize..600, 0..8)) {
        let bytes: Vec<u8> =
            [frame(0x81, 130), frame(0x01, 70), frame(0x89, 3), frame(0x00, 200), frame(0x80, 5)].concat();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % bytes.len()).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut chunks = Vec::new();
        let mut from = 0;
        for c in cuts.into_iter().chain([bytes.len()]) {
            chunks.push(bytes[from..c].to_vec());
            from = c;
        }
        let budget = Budget::new(0);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let got = runtime.block_on(run(chunks, 400, &budget));
        let sizes: Vec<usize> = got.iter().map(|m| match m {
            Ok(AggregatedMessage::Text(t)) => t.len(),
            Ok(AggregatedMessage::Ping(p)) => p.len(),
            _ => usize::MAX,
        }).collect();
        prop_assert_eq!(sizes, vec![130, 3, 275]);
        prop_assert_eq!(budget.held(), 0);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let limited = runtime.block_on(run(vec![bytes.clone()], 270, &budget));
        prop_assert!(limited.last().is_some_and(|m| refusal(m) == Some(Refused::TooLarge)), "70 + 200 + 5 > 270");
        prop_assert_eq!(budget.held(), 0);
    }
}
