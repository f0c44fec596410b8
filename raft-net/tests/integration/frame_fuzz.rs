//! The frame decoder and the hello check against arbitrary bytes: no panic, no allocation
//! beyond the frame limit. A proptest with 100k cases plus a seeded mutation loop over valid
//! frames (which reaches the body decoders far more often than uniform random bytes).

use super::common;

use bytes::BytesMut;
use common::Msg;
use proptest::prelude::*;
use raft_net::frame::{FrameDecoder, FrameKind, RawFrame, decode_message, encode_frame};
use raft_net::handshake::{Hello, ListenerIdentity};
use raft_net::{Lane, SplitMix64};

fn identity() -> ListenerIdentity {
    ListenerIdentity {
        cluster_id: 1,
        node_id: 1,
        lane: Lane::Data,
        peers: [2, 3].into_iter().collect(),
    }
}

/// Feeds `input` to a decoder in pieces of `step` bytes, decoding every frame as a message and
/// as a hello, until the input ends or the decoder refuses the stream.
fn drive(input: &[u8], max: usize, step: usize, id: &ListenerIdentity) -> usize {
    let dec = FrameDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut frames = 0;
    for piece in input.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    frames += 1;
                    check(&frame, id);
                }
                Ok(None) => {
                    // Growth is bounded by the announced length, itself at most `max`.
                    assert!(
                        buf.capacity() <= 2 * (input.len() + max + 8),
                        "{}",
                        buf.capacity()
                    );
                    break;
                }
                Err(_) => return frames,
            }
        }
    }
    let _ = dec.finish(&buf);
    frames
}

fn check(frame: &RawFrame, id: &ListenerIdentity) {
    assert!(frame.body.len() <= 1 << 20);
    let _ = decode_message::<Msg>(frame);
    let _ = decode_message::<u64>(frame);
    let _ = frame.decode_body::<Hello>(FrameKind::Hello);
    let _ = id.check_hello(frame);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 100_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(
        input in proptest::collection::vec(any::<u8>(), 0..96),
        max in 2usize..512,
        step in 1usize..32,
    ) {
        drive(&input, max, step, &identity());
    }
}

/// Valid frames of every kind, then bit flips, byte changes, truncations and splices.
#[test]
fn decoder_survives_mutated_valid_frames() {
    let id = identity();
    let mut seeds: Vec<Vec<u8>> = vec![
        encode_frame(FrameKind::Message, &(7u64, Msg::Ping(42))).unwrap(),
        encode_frame(
            FrameKind::Message,
            &(7u64, Msg::Stamp { seq: 1, sent_ns: 2 }),
        )
        .unwrap(),
        encode_frame(FrameKind::Message, &(7u64, Msg::Blob(vec![5; 40]))).unwrap(),
        encode_frame(
            FrameKind::Hello,
            &Hello {
                cluster_id: 1,
                from: 2,
                to: 1,
                lane: Lane::Data,
            },
        )
        .unwrap(),
    ];
    let joined: Vec<u8> = seeds.concat();
    seeds.push(joined);
    let mut rng = SplitMix64::new(0xF00D);
    let mut frames = 0;
    for _ in 0..200_000 {
        let mut input = seeds[rng.between(0, seeds.len() as u64 - 1) as usize].clone();
        for _ in 0..rng.between(1, 4) {
            let at = rng.between(0, input.len() as u64 - 1) as usize;
            match rng.between(0, 3) {
                0 => input[at] ^= 1 << rng.between(0, 7),
                1 => input[at] = rng.next_u64() as u8,
                2 => input.truncate(at),
                _ => input.insert(at, rng.next_u64() as u8),
            }
            if input.is_empty() {
                break;
            }
        }
        let max = rng.between(2, 256) as usize;
        let step = rng.between(1, 16) as usize;
        frames += drive(&input, max, step, &id);
    }
    assert!(
        frames > 100_000,
        "the mutations still reach the body decoders: {frames}"
    );
}
