//! The replies a client is owed, in request order.
//!
//! Every request takes a slot at the back, numbered by `seq`. Backends fill
//! slots in whatever order they answer; finished slots at the front move to
//! the output queue and are written in one vectored write. So each client
//! gets its replies in request order whatever the backends do.

use std::collections::VecDeque;
use std::io;

use bytes::{Bytes, BytesMut};

use crate::net::sock;
use crate::protocol::multikey::Gather;
use crate::protocol::resp;

pub(crate) enum Slot {
    Waiting,
    Ready(Bytes),
    Gather(Box<Gather>),
    /// An (un)subscribe confirmation, the proxy's own (`reply`), given once
    /// `awaiting` servers have confirmed: the subscription is active (or
    /// gone) on each of them. A server's error is given instead.
    /// `before`: messages of a subscription being left that its servers
    /// sent before confirming, given ahead of the confirmation.
    Confirm {
        reply: Bytes,
        awaiting: usize,
        before: Vec<Bytes>,
    },
}

#[derive(Default)]
pub(super) struct Replies {
    slots: VecDeque<Slot>,
    /// The sequence number of `slots[0]`.
    first_seq: u64,
    out: VecDeque<Bytes>,
    out_bytes: usize,
    /// `Slot::Confirm`s not given yet.
    confirming: usize,
}

impl Replies {
    /// Requests unanswered (slots not yet moved to the output queue).
    pub(super) fn unanswered(&self) -> usize {
        self.slots.len()
    }

    /// Unsent reply bytes.
    pub(super) fn unsent(&self) -> usize {
        self.out_bytes
    }

    pub(super) fn confirming(&self) -> bool {
        self.confirming > 0
    }

    /// Nothing owed and nothing unsent.
    pub(super) fn idle(&self) -> bool {
        self.slots.is_empty() && self.out.is_empty()
    }

    pub(super) fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Takes the next slot; returns its sequence number.
    pub(super) fn push(&mut self, slot: Slot) -> u64 {
        if matches!(slot, Slot::Confirm { .. }) {
            self.confirming += 1;
        }
        let seq = self.first_seq + self.slots.len() as u64;
        self.slots.push_back(slot);
        self.promote();
        seq
    }

    /// Puts a reply (or one part of a split command's reply) in its slot.
    /// A slot that is gone or already full is left alone: a reply is never
    /// delivered twice.
    pub(super) fn fill(&mut self, seq: u64, part: u32, reply: Bytes) {
        let Some(idx) = seq.checked_sub(self.first_seq) else {
            return;
        };
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return;
        };
        match slot {
            Slot::Waiting => *slot = Slot::Ready(reply),
            Slot::Gather(g) => {
                if let Some(merged) = g.fill(part, reply) {
                    *slot = Slot::Ready(merged);
                }
            }
            Slot::Confirm {
                reply: own,
                awaiting,
                before,
            } => {
                *awaiting = awaiting.saturating_sub(1);
                if resp::is_error(&reply) {
                    *slot = Slot::Ready(joined(before, &reply));
                } else if *awaiting == 0 {
                    *slot = Slot::Ready(joined(before, own));
                }
                if matches!(slot, Slot::Ready(_)) {
                    self.confirming = self.confirming.saturating_sub(1);
                }
            }
            Slot::Ready(_) => return,
        }
        if idx == 0 {
            self.promote();
        }
    }

    /// A message to give ahead of the (un)subscribe confirmation in slot
    /// `seq`, not yet given; false when that slot is not one.
    pub(super) fn hold_before(&mut self, seq: u64, msg: Bytes) -> bool {
        let slot = seq
            .checked_sub(self.first_seq)
            .and_then(|i| self.slots.get_mut(i as usize));
        match slot {
            Some(Slot::Confirm { before, .. }) => {
                before.push(msg);
                true
            }
            _ => false,
        }
    }

    /// Moves finished slots at the front to the output queue.
    fn promote(&mut self) {
        while let Some(Slot::Ready(_)) = self.slots.front() {
            if let Some(Slot::Ready(b)) = self.slots.pop_front() {
                self.out_bytes += b.len();
                self.out.push_back(b);
                self.first_seq += 1;
            }
        }
    }

    /// Writes what is owed, until done or the socket is full.
    pub(super) fn write(&mut self, sock: &mut impl std::os::fd::AsRawFd) -> io::Result<()> {
        let n = sock::write_queue(sock, &mut self.out)?;
        self.out_bytes -= n.min(self.out_bytes);
        if self.out.is_empty() {
            self.out_bytes = 0;
        }
        Ok(())
    }

    #[cfg(test)]
    pub(super) fn output(&self) -> impl Iterator<Item = &Bytes> {
        self.out.iter()
    }
}

/// The messages held ahead of a confirmation, then `last`: one buffer
/// (rare: only messages racing an unsubscribe are held).
fn joined(before: &[Bytes], last: &Bytes) -> Bytes {
    if before.is_empty() {
        return last.clone();
    }
    let mut out =
        BytesMut::with_capacity(before.iter().map(Bytes::len).sum::<usize>() + last.len());
    for b in before {
        out.extend_from_slice(b);
    }
    out.extend_from_slice(last);
    out.freeze()
}
