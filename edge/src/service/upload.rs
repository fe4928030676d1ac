//! The upload task: sends the accepted transfer's chunks on the bulk connection, as the pure
//! `transfer::Sender` decides, and feeds it the manager's chunk acks.
//!
//! Throughput: the window of unacknowledged bytes is [`UPLOAD_WINDOW_BYTES`] (the manager acks
//! each chunk as soon as its writer task has it, so the window covers the MQTT round trip, not
//! the disk); each chunk is read with one positioned read on the blocking pool straight into
//! its payload, behind the chunk's CBOR envelope (`TransferChunk::encoded_prefix`: no copy).
//! Payload buffers are reused ([`PayloadPool`]): rumqttc holds each QoS 1 payload until the
//! broker's PUBACK, and a fresh ~1 MiB allocation per chunk cost page faults and zeroing
//! (perf of a 1 GB delivery: about a quarter of the edge's CPU).

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, QoS};
use tapfleet_schemas::TransferChunk;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::transfer::{CAPPED_CHUNK_BYTES, RateLimiter, Sender, SenderConfig};

/// Most bytes sent and not yet acknowledged. It must stay well below what the broker keeps per
/// subscription (the embedded rumqttd: 8 MiB x 6 segments on the manager's upload filter; a
/// manager further behind than that loses chunks, which go-back-N sends again after a stall).
pub const UPLOAD_WINDOW_BYTES: u64 = 16 * 1024 * 1024;

/// Commands from the core.
#[derive(Debug)]
pub enum UploadCmd {
    Start {
        transfer_id: u64,
        path: PathBuf,
        size: u64,
        offset: u64,
    },
    Ack {
        transfer_id: u64,
        next_offset: u64,
    },
    /// Stop sending (reconnect, or the transfer ended).
    Cancel,
    /// The bandwidth cap in bytes per second (none: unlimited).
    SetRate(Option<u64>),
}

/// What the upload task reports back.
#[derive(Debug)]
pub enum UploadEvent {
    /// Every byte acknowledged: the core offers its next file while waiting for this one's
    /// `Stored` (the task sends one transfer at a time).
    AllAcked {
        transfer_id: u64,
    },
    Failed {
        transfer_id: u64,
        reason: String,
    },
    /// Bytes published (for the upload rate).
    Sent {
        bytes: u64,
    },
}

struct Active {
    transfer_id: u64,
    file: Arc<std::fs::File>,
    sender: Sender,
}

/// Free payload buffers kept for the next chunks (more are freed when their publish is done).
const POOL_KEEP: usize = 24;

/// Chunk payload buffers for reuse. A buffer goes back when rumqttc drops the payload (after
/// the broker's PUBACK); the pool is emptied whenever no transfer is active.
#[derive(Clone, Default)]
struct PayloadPool(Arc<Mutex<Vec<Vec<u8>>>>);

impl PayloadPool {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default()
    }

    fn clear(&self) {
        if let Ok(mut p) = self.0.lock() {
            p.clear();
        }
    }
}

/// A payload: the first `len` bytes of a pooled buffer, returned to the pool on drop.
struct Pooled {
    buf: Vec<u8>,
    len: usize,
    pool: PayloadPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if let Ok(mut p) = self.pool.0.lock()
            && p.len() < POOL_KEEP
        {
            p.push(buf);
        }
    }
}

/// Runs until the command channel closes.
pub async fn run(
    client: AsyncClient,
    topic: String,
    cfg: SenderConfig,
    mut rx: UnboundedReceiver<UploadCmd>,
    tx: UnboundedSender<UploadEvent>,
) {
    let mut active: Option<Active> = None;
    let mut limiter: Option<RateLimiter> = None;
    let pool = PayloadPool::default();
    loop {
        if active.is_none() {
            pool.clear();
        }
        if let Some(a) = active.as_mut() {
            if let Err(reason) = pump(a, &client, &topic, &tx, limiter.as_mut(), &pool).await {
                let _ = tx.send(UploadEvent::Failed {
                    transfer_id: a.transfer_id,
                    reason,
                });
                active = None;
            } else if a.sender.is_done() {
                let _ = tx.send(UploadEvent::AllAcked {
                    transfer_id: a.transfer_id,
                });
                active = None;
            }
        }
        let wait = active.as_ref().map_or(Duration::from_secs(3600), |a| {
            let ns = a
                .sender
                .deadline_ns()
                .saturating_sub(super::now_ns())
                .max(1_000_000);
            Duration::from_nanos(u64::try_from(ns).unwrap_or(1_000_000))
        });
        let cmd = tokio::select! {
            cmd = rx.recv() => match cmd { Some(c) => c, None => return },
            () = tokio::time::sleep(wait) => continue,
        };
        match cmd {
            UploadCmd::Start {
                transfer_id,
                path,
                size,
                offset,
            } => match tokio::fs::File::open(&path).await {
                Ok(file) => {
                    let cfg = sender_config(cfg, limiter.is_some());
                    active = Some(Active {
                        transfer_id,
                        file: Arc::new(file.into_std().await),
                        sender: Sender::new(cfg, size, offset, super::now_ns()),
                    });
                }
                Err(e) => {
                    let _ = tx.send(UploadEvent::Failed {
                        transfer_id,
                        reason: format!("{}: {e}", path.display()),
                    });
                }
            },
            UploadCmd::Ack {
                transfer_id,
                next_offset,
            } => {
                if let Some(a) = active.as_mut().filter(|a| a.transfer_id == transfer_id) {
                    a.sender.on_ack(next_offset, super::now_ns());
                }
            }
            UploadCmd::Cancel => active = None,
            UploadCmd::SetRate(rate) => {
                let chunk = sender_config(cfg, true).chunk_bytes;
                limiter = rate.map(|bps| RateLimiter::new(bps, chunk, super::now_ns()));
            }
        }
    }
}

/// The sender's tuning: a window of [`UPLOAD_WINDOW_BYTES`] (at least); under a bandwidth cap,
/// chunks of at most [`CAPPED_CHUNK_BYTES`].
fn sender_config(cfg: SenderConfig, capped: bool) -> SenderConfig {
    let cfg = SenderConfig {
        window_bytes: cfg.window_bytes.max(UPLOAD_WINDOW_BYTES),
        ..cfg
    };
    if capped {
        SenderConfig {
            chunk_bytes: cfg.chunk_bytes.min(CAPPED_CHUNK_BYTES),
            ..cfg
        }
    } else {
        cfg
    }
}

/// The payload of the chunk of `len` bytes at `offset`: its CBOR envelope, then the file's bytes
/// read straight into the payload (no copy), on the blocking pool, in a buffer of `pool`.
async fn read_chunk(
    file: &Arc<std::fs::File>,
    transfer_id: u64,
    offset: u64,
    len: usize,
    pool: &PayloadPool,
) -> Result<Bytes, String> {
    let file = file.clone();
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let prefix = TransferChunk::encoded_prefix(transfer_id, offset, len);
        let head = prefix.len();
        let mut buf = pool.take();
        if buf.len() < head + len {
            // Zeroed once per buffer; a reused buffer is overwritten in place.
            buf.resize(head + len, 0);
        }
        let (env, rest) = buf.split_at_mut(head);
        env.copy_from_slice(&prefix);
        let data = rest.get_mut(..len).unwrap_or_default();
        file.read_exact_at(data, offset)?;
        Ok::<_, std::io::Error>(Bytes::from_owner(Pooled {
            buf,
            len: head + len,
            pool,
        }))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

/// Publishes every chunk the window allows now.
async fn pump(
    a: &mut Active,
    client: &AsyncClient,
    topic: &str,
    tx: &UnboundedSender<UploadEvent>,
    mut limiter: Option<&mut RateLimiter>,
    pool: &PayloadPool,
) -> Result<(), String> {
    while let Some(range) = a.sender.poll_chunk(super::now_ns()) {
        if let Some(l) = limiter.as_deref_mut() {
            let wait = l.take(u64::from(range.len), super::now_ns());
            if wait > 0 {
                tokio::time::sleep(Duration::from_nanos(wait.unsigned_abs())).await;
            }
        }
        let len = range.len as usize;
        let payload = read_chunk(&a.file, a.transfer_id, range.offset, len, pool).await?;
        client
            .publish_bytes(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| e.to_string())?;
        let _ = tx.send(UploadEvent::Sent {
            bytes: u64::from(range.len),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::MAX_CHUNK_BYTES;

    /// Chunks read into pooled buffers decode to the file's bytes, also when a buffer is reused
    /// for a shorter chunk (nothing of the longer one leaks into the payload), and a payload's
    /// buffer goes back to the pool when the payload is dropped.
    #[tokio::test]
    async fn pooled_chunks_carry_the_files_bytes() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/captures/sipp-scenarios/h264.pcap"
        );
        let bytes = std::fs::read(path).expect("capture");
        let file = Arc::new(std::fs::File::open(path).expect("open"));
        let pool = PayloadPool::default();
        for (offset, len) in [(0usize, 1 << 20), (4097, 1000), (bytes.len() - 77, 77)] {
            let payload = read_chunk(&file, 9, offset as u64, len, &pool)
                .await
                .expect("read");
            let chunk: TransferChunk = tapfleet_schemas::decode(&payload).expect("decode");
            assert_eq!((chunk.transfer_id, chunk.offset), (9, offset as u64));
            assert!(
                chunk.data == bytes[offset..offset + len],
                "chunk at {offset}"
            );
            drop(payload);
            assert_eq!(pool.0.lock().expect("pool").len(), 1, "buffer reused");
        }
        let past_end = read_chunk(&file, 9, bytes.len() as u64 - 10, 20, &pool).await;
        assert!(past_end.is_err(), "a read past the end is an error");
    }

    #[test]
    fn chunks_are_large_unless_a_bandwidth_cap_is_set() {
        let cfg = SenderConfig::default();
        assert_eq!(sender_config(cfg, false).chunk_bytes, MAX_CHUNK_BYTES);
        assert_eq!(sender_config(cfg, true).chunk_bytes, CAPPED_CHUNK_BYTES);
        assert_eq!(sender_config(cfg, true).window_bytes, UPLOAD_WINDOW_BYTES);
        assert_eq!(sender_config(cfg, false).window_bytes, UPLOAD_WINDOW_BYTES);
        // The largest chunk with its envelope fits the MQTT packet limit of both sides.
        let chunk = TransferChunk::new(u64::MAX, u64::MAX, vec![0xa5; MAX_CHUNK_BYTES as usize]);
        let bytes = tapfleet_schemas::encode(&chunk).expect("encode");
        assert!(
            bytes.len() + 1024 < super::super::net::MAX_PACKET,
            "{}",
            bytes.len()
        );
    }
}
