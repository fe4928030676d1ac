//! The download task: receives files the manager sends into this edge's local storage (for
//! recordings it holds for others, `held/` in the cache), as the pure [`crate::receive`] state
//! machine decides, and answers on the edge's `replies` topic.
//!
//! Per file: the core hands over an offer (`JobAction::Download`) it accepted (it decides the
//! room, reserving the file's size: `receive::Reservations`); this task opens
//! `held/.incoming/<id>/<file>.part`, hashes what an interrupted download left there (resume:
//! the accept names that length), answers `DownloadAccept{offset}`, then writes
//! each chunk from the `download` topic as the receiver says and acknowledges it
//! (`DownloadChunk{next_offset}`). At the last byte: a digest mismatch deletes the partial file
//! and answers `DownloadFailed`; a match syncs the file, renames it into `held/<id>/<file>`,
//! syncs the folder (on a blocking thread: the next file's chunks, which the manager sends
//! meanwhile, keep being written) and reports `Verified` to the core, which commits the index
//! and only then answers `DownloadStored`. Chunks of a transfer this task does not know (an
//! edge restart) are answered `DownloadFailed`, so the manager offers the file again and
//! resumes; so are those of a transfer the core abandoned (`Abandon`: its reservation expired or
//! a new offer replaced it). An offer of a file being placed is answered `DownloadFailed` (the
//! manager offers it again and then finds it held).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rumqttc::{AsyncClient, QoS};
use tapfleet_schemas::{JobReply, ReplyBody, Sha256, TransferChunk, encode};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::receive::{ChunkDecision, HeldFile, OfferDecision, Receiver, decide_offer};

/// Commands from the core.
#[derive(Debug)]
pub enum DownloadCmd {
    /// An offer the core did not answer itself (the file is not held yet).
    Offer {
        transfer_id: u64,
        recording_id: String,
        file: String,
        size: u64,
        sha256: Sha256,
        /// `held/.incoming/<id>/<file>.part`.
        part: PathBuf,
        /// `held/<id>/`.
        dest_dir: PathBuf,
        free_bytes: u64,
    },
    Chunk(TransferChunk),
    /// The core released the transfer's reservation (abandoned, or replaced by a new offer):
    /// stop it; its partial file stays (a later offer resumes it).
    Abandon {
        transfer_id: u64,
    },
}

/// What the task reports to the core.
#[derive(Debug)]
pub enum DownloadEvent {
    /// The file is synced in `held/<id>/<file>`: index it, then answer `DownloadStored`.
    Verified {
        transfer_id: u64,
        recording_id: String,
        file: String,
        size: u64,
        sha256: Sha256,
    },
    /// Bytes written (for the metrics).
    Received {
        bytes: u64,
    },
    Failed {
        transfer_id: u64,
        reason: String,
    },
}

struct Active {
    recording_id: String,
    file: String,
    part: PathBuf,
    dest_dir: PathBuf,
    out: std::fs::File,
    rx: Receiver,
}

/// Publishes replies on the edge's `replies` topic; knows the partial files being placed.
#[derive(Clone)]
struct Replies {
    client: AsyncClient,
    topic: String,
    /// Partial files being synced and renamed on a blocking thread.
    placing: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Replies {
    fn is_placing(&self, part: &std::path::Path) -> bool {
        self.placing.lock().is_ok_and(|p| p.contains(part))
    }

    fn set_placing(&self, part: &std::path::Path, on: bool) {
        if let Ok(mut p) = self.placing.lock() {
            if on {
                p.insert(part.to_path_buf());
            } else {
                p.remove(part);
            }
        }
    }

    async fn publish(&self, body: ReplyBody) {
        match encode(&JobReply::new(None, body)) {
            Ok(payload) => {
                if let Err(e) = self
                    .client
                    .publish(&self.topic, QoS::AtLeastOnce, false, payload)
                    .await
                {
                    tracing::warn!(error = %e, "download reply not published");
                }
            }
            Err(e) => tracing::error!(error = %e, "download reply not encoded"),
        }
    }
}

/// Runs until the command channel closes.
pub async fn run(
    client: AsyncClient,
    replies: String,
    mut cmds: UnboundedReceiver<DownloadCmd>,
    events: UnboundedSender<DownloadEvent>,
) {
    let out = Replies {
        client,
        topic: replies,
        placing: Arc::default(),
    };
    let mut active: HashMap<u64, Active> = HashMap::new();
    while let Some(cmd) = cmds.recv().await {
        // File IO blocks: each step runs in `block_in_place` (the service's runtime is
        // multi-threaded), so the state stays here without locks.
        let replies_out: Vec<ReplyBody> = match cmd {
            DownloadCmd::Offer {
                transfer_id,
                recording_id,
                file,
                part,
                ..
            } if out.is_placing(&part) => vec![ReplyBody::DownloadFailed {
                transfer_id,
                recording_id,
                file,
                reason: "the file is being stored: offer it again".into(),
            }],
            DownloadCmd::Offer {
                transfer_id,
                recording_id,
                file,
                size,
                sha256,
                part,
                dest_dir,
                free_bytes,
            } => {
                // A new offer of a file replaces any open transfer of it.
                active.retain(|_, a| !(a.recording_id == recording_id && a.file == file));
                let (rid, f) = (recording_id.clone(), file.clone());
                let opened = tokio::task::block_in_place(|| {
                    open_part(&part, size, sha256, free_bytes).map(|(out, rx)| Active {
                        recording_id: rid,
                        file: f,
                        part,
                        dest_dir,
                        out,
                        rx,
                    })
                });
                match opened {
                    Ok(a) => {
                        let offset = a.rx.next_offset();
                        tracing::info!(transfer_id, recording = %recording_id, file, size, offset, "download accepted");
                        let complete = a.rx.is_complete();
                        active.insert(transfer_id, a);
                        let mut replies = vec![ReplyBody::DownloadAccept {
                            transfer_id,
                            offset,
                        }];
                        if complete {
                            // Every byte was already here (or the file is empty): finish now.
                            replies.extend(finish(&mut active, transfer_id, &events, &out));
                        }
                        replies
                    }
                    Err(reason) => vec![ReplyBody::DownloadFailed {
                        transfer_id,
                        recording_id,
                        file,
                        reason,
                    }],
                }
            }
            DownloadCmd::Chunk(chunk) => on_chunk(&mut active, chunk, &events, &out),
            DownloadCmd::Abandon { transfer_id } => {
                if let Some(a) = active.remove(&transfer_id) {
                    tracing::info!(transfer_id, recording = %a.recording_id, file = %a.file, "download stopped");
                }
                Vec::new()
            }
        };
        for body in replies_out {
            if let ReplyBody::DownloadFailed {
                transfer_id,
                reason,
                ..
            } = &body
            {
                let _ = events.send(DownloadEvent::Failed {
                    transfer_id: *transfer_id,
                    reason: reason.clone(),
                });
            }
            out.publish(body).await;
        }
    }
}

/// Opens (or creates) the partial file and rebuilds the receiver over the bytes it holds.
fn open_part(
    part: &std::path::Path,
    size: u64,
    sha256: Sha256,
    free_bytes: u64,
) -> Result<(std::fs::File, Receiver), String> {
    let io = |e: std::io::Error| format!("{}: {e}", part.display());
    let have = match std::fs::metadata(part) {
        Ok(m) => HeldFile::Partial(m.len()),
        Err(_) => HeldFile::Nothing,
    };
    let offset = match decide_offer(size, sha256, have, true, free_bytes) {
        OfferDecision::Accept { offset } => offset,
        OfferDecision::AlreadyHeld => 0,
        OfferDecision::Refuse { reason } => return Err(reason),
    };
    if let Some(dir) = part.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut out = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(part)
        .map_err(io)?;
    out.set_len(offset).map_err(io)?;
    let mut rx = Receiver::new(size, sha256);
    let mut buf = vec![0u8; 1024 * 1024];
    let mut at = 0u64;
    while at < offset {
        let n = out.read(&mut buf).map_err(io)?;
        let Some(bytes) = buf.get(..n).filter(|b| !b.is_empty()) else {
            break;
        };
        let _ = rx.on_chunk(at, bytes);
        at += n as u64;
    }
    out.seek(std::io::SeekFrom::Start(rx.next_offset()))
        .map_err(io)?;
    Ok((out, rx))
}

fn on_chunk(
    active: &mut HashMap<u64, Active>,
    chunk: TransferChunk,
    events: &UnboundedSender<DownloadEvent>,
    replies: &Replies,
) -> Vec<ReplyBody> {
    let id = chunk.transfer_id;
    let Some(mut a) = active.remove(&id) else {
        return vec![ReplyBody::DownloadFailed {
            transfer_id: id,
            recording_id: String::new(),
            file: String::new(),
            reason: "no such download open (the edge may have restarted): offer the file again"
                .into(),
        }];
    };
    let decision = a.rx.on_chunk(chunk.offset, &chunk.data);
    match decision {
        ChunkDecision::ReAck { next_offset, .. } => {
            active.insert(id, a);
            vec![ReplyBody::DownloadChunk {
                transfer_id: id,
                next_offset,
            }]
        }
        ChunkDecision::Overrun { reason } => {
            let _ = std::fs::remove_file(&a.part);
            vec![ReplyBody::DownloadFailed {
                transfer_id: id,
                recording_id: a.recording_id,
                file: a.file,
                reason,
            }]
        }
        ChunkDecision::Write {
            skip,
            next_offset,
            done,
        } => {
            let data = chunk.data;
            let written =
                tokio::task::block_in_place(|| a.out.write_all(data.get(skip..).unwrap_or(&[])));
            if let Err(e) = written {
                let _ = std::fs::remove_file(&a.part);
                return vec![ReplyBody::DownloadFailed {
                    transfer_id: id,
                    recording_id: a.recording_id,
                    file: a.file,
                    reason: format!("writing {}: {e}", a.part.display()),
                }];
            }
            let _ = events.send(DownloadEvent::Received {
                bytes: next_offset.saturating_sub(chunk.offset.saturating_add(skip as u64)),
            });
            active.insert(id, a);
            let mut out = vec![ReplyBody::DownloadChunk {
                transfer_id: id,
                next_offset,
            }];
            if done.is_some() {
                out.extend(finish(active, id, events, replies));
            }
            out
        }
    }
}

/// The last byte is in: verify; then sync and rename into place on a blocking thread (this
/// task goes on with the next file's chunks) and report `Verified` to the core, or answer
/// `DownloadFailed`.
fn finish(
    active: &mut HashMap<u64, Active>,
    id: u64,
    events: &UnboundedSender<DownloadEvent>,
    replies: &Replies,
) -> Vec<ReplyBody> {
    let Some(a) = active.remove(&id) else {
        return Vec::new();
    };
    let done = a.rx.completion();
    let size = a.rx.size();
    let (rid, file) = (a.recording_id.clone(), a.file.clone());
    if !done.matches {
        let _ = std::fs::remove_file(&a.part);
        return vec![ReplyBody::DownloadFailed {
            transfer_id: id,
            recording_id: rid,
            file,
            reason: format!("sha256 mismatch: received {}", done.sha256),
        }];
    }
    let (events, replies) = (events.clone(), replies.clone());
    let part = a.part.clone();
    replies.set_placing(&part, true);
    tokio::spawn(async move {
        let placed = match tokio::task::spawn_blocking(move || place(a)).await {
            Ok(r) => r,
            Err(e) => Err(format!("placing the file: {e}")),
        };
        replies.set_placing(&part, false);
        match placed {
            // The core answers `DownloadStored` once the index has it.
            Ok(()) => {
                let _ = events.send(DownloadEvent::Verified {
                    transfer_id: id,
                    recording_id: rid,
                    file,
                    size,
                    sha256: done.sha256,
                });
            }
            Err(reason) => {
                let _ = events.send(DownloadEvent::Failed {
                    transfer_id: id,
                    reason: reason.clone(),
                });
                replies
                    .publish(ReplyBody::DownloadFailed {
                        transfer_id: id,
                        recording_id: rid,
                        file,
                        reason,
                    })
                    .await;
            }
        }
    });
    Vec::new()
}

/// fsync the file, rename it into `held/<id>/`, fsync the folder.
fn place(a: Active) -> Result<(), String> {
    let io = |what: &std::path::Path, e: std::io::Error| format!("{}: {e}", what.display());
    a.out.sync_all().map_err(|e| io(&a.part, e))?;
    drop(a.out);
    std::fs::create_dir_all(&a.dest_dir).map_err(|e| io(&a.dest_dir, e))?;
    let dest = a.dest_dir.join(&a.file);
    std::fs::rename(&a.part, &dest).map_err(|e| io(&dest, e))?;
    std::fs::File::open(&a.dest_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(&a.dest_dir, e))?;
    if let Some(incoming) = a.part.parent() {
        let _ = std::fs::remove_dir(incoming); // only when empty
    }
    Ok(())
}
