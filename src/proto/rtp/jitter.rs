//! Per-SSRC reorder window with loss detection and generic-NACK generation.
//!
//! Sequence numbers are extended to 64 bits with 16-bit serial arithmetic (RFC 1982 style, as in
//! RFC 3550 Appendix A.1), so rollover at 65535 → 0 is an ordinary step and never a loss burst.
//! Packets leave in order. A missing packet is declared lost only once `loss_threshold` newer
//! packets have arrived (janus's seq+16 rule); with NACK enabled it is then requested (at most
//! `max_outstanding_nacks` at a time, retried every `nack_retry`) and delivery waits for it until
//! `nack_timeout`; then the gap is given up and reported as [`Ready::Lost`] so the depacketiser can
//! drop the broken access unit. A forward jump larger than the window is a resync, not thousands
//! of losses: buffered packets are flushed, nothing is NACKed. Nothing here reads the clock.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::rtcp::build_nack;

/// Tuning for one [`ReorderBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReorderConfig {
    /// Packets held at most (the reorder window). A jump beyond it resynchronises.
    pub capacity: usize,
    /// A hole is declared lost once a packet this many sequence numbers newer has arrived.
    pub loss_threshold: u16,
    /// Send generic NACKs for declared losses and wait for the retransmission.
    pub nack: bool,
    /// Sequence numbers NACKed and not yet answered, at most.
    pub max_outstanding_nacks: usize,
    /// Interval between repeated NACKs for the same packet.
    pub nack_retry: Duration,
    /// How long after being declared lost a packet is waited for; bounds the added latency.
    pub nack_timeout: Duration,
}

impl Default for ReorderConfig {
    fn default() -> Self {
        ReorderConfig {
            capacity: 1024,
            loss_threshold: 16,
            nack: true,
            max_outstanding_nacks: 64,
            nack_retry: Duration::from_millis(500),
            nack_timeout: Duration::from_secs(2),
        }
    }
}

/// What comes out of the buffer, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready<T> {
    Packet(T),
    /// `count` consecutive packets were given up (0: a resync discontinuity).
    Lost {
        count: u64,
    },
}

/// Counters, snapshotted by the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReorderStats {
    /// Distinct packets accepted into the window.
    pub received: u64,
    /// Packets given up.
    pub lost: u64,
    /// Packets that arrived after being declared lost, in time to be delivered.
    pub recovered: u64,
    pub duplicates: u64,
    /// Packets that arrived after their slot was given up or were far older than the window.
    pub late: u64,
    /// Sequence numbers requested, retries included.
    pub nacks_sent: u64,
    /// NACK packets built.
    pub nack_packets: u64,
    pub resyncs: u64,
}

/// Recently given-up sequence numbers remembered to tell late packets from duplicates.
const GAVE_UP_MEMORY: usize = 256;
/// Extended sequence numbers start here so that early reordering never goes below zero.
const EXT_BASE: u64 = 1 << 32;

/// A bounded reorder buffer for one SSRC.
#[derive(Debug)]
pub struct ReorderBuffer<T> {
    config: ReorderConfig,
    sender_ssrc: u32,
    media_ssrc: u32,
    /// `slots[0]` holds extended sequence number `next`.
    slots: VecDeque<Option<T>>,
    next: u64,
    highest: u64,
    started: bool,
    /// Every sequence number below this has been checked for loss.
    scanned: u64,
    /// Declared-lost sequence numbers and when to give each up.
    declared: BTreeMap<u64, Instant>,
    /// NACK-eligible sequence numbers and when to (re)send.
    nacks: BTreeMap<u64, Instant>,
    gave_up: VecDeque<u64>,
    /// A far-backward packet's successor; if it arrives the sender restarted (RFC 3550 A.1).
    probation: Option<u64>,
    out: VecDeque<Ready<T>>,
    now: Option<Instant>,
    stats: ReorderStats,
}

impl<T> ReorderBuffer<T> {
    /// A buffer for packets of `media_ssrc`; NACKs carry `sender_ssrc` as the packet sender.
    pub fn new(config: ReorderConfig, sender_ssrc: u32, media_ssrc: u32) -> Self {
        let config = ReorderConfig {
            capacity: config.capacity.clamp(1, 16_384),
            ..config
        };
        ReorderBuffer {
            config,
            sender_ssrc,
            media_ssrc,
            slots: VecDeque::new(),
            next: 0,
            highest: 0,
            started: false,
            scanned: 0,
            declared: BTreeMap::new(),
            nacks: BTreeMap::new(),
            gave_up: VecDeque::new(),
            probation: None,
            out: VecDeque::new(),
            now: None,
            stats: ReorderStats::default(),
        }
    }

    pub fn stats(&self) -> ReorderStats {
        self.stats
    }

    /// The SSRC this buffer orders.
    pub fn media_ssrc(&self) -> u32 {
        self.media_ssrc
    }

    /// Extends a 16-bit sequence number around the highest one seen (serial arithmetic).
    fn extend(&self, seq: u16) -> u64 {
        let delta = i64::from(seq.wrapping_sub(self.highest as u16) as i16);
        self.highest.saturating_add_signed(delta)
    }

    /// Accepts one packet with its RTP sequence number.
    pub fn push(&mut self, now: Instant, seq: u16, item: T) {
        self.now = Some(now);
        if !self.started {
            self.started = true;
            self.restart_at(EXT_BASE + u64::from(seq));
        }
        let ext = self.extend(seq);
        let capacity = self.config.capacity as u64;
        if ext < self.next {
            if self.next - ext > capacity {
                if self.probation == Some(ext) {
                    self.resync(ext);
                } else {
                    self.probation = Some(ext.saturating_add(1));
                    self.stats.late += 1;
                    return;
                }
            } else {
                if self.gave_up.contains(&ext) {
                    self.stats.late += 1;
                } else {
                    self.stats.duplicates += 1;
                }
                return;
            }
        } else if ext > self.highest.saturating_add(capacity) {
            self.resync(ext);
        }
        self.probation = None;
        while ext - self.next >= capacity {
            self.release_front(true);
        }
        let idx = (ext - self.next) as usize;
        if self.slots.len() <= idx {
            self.slots.resize_with(idx + 1, || None);
        }
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        if slot.is_some() {
            self.stats.duplicates += 1;
            return;
        }
        *slot = Some(item);
        self.stats.received += 1;
        if self.declared.remove(&ext).is_some() {
            self.stats.recovered += 1;
            self.nacks.remove(&ext);
        }
        if ext > self.highest {
            self.highest = ext;
        }
        self.declare_losses(now);
    }

    fn restart_at(&mut self, ext: u64) {
        self.next = ext;
        self.highest = ext;
        self.scanned = ext;
    }

    /// A jump too large to be loss: flush what is buffered, forget pending NACKs, start over.
    fn resync(&mut self, ext: u64) {
        while !self.slots.is_empty() {
            self.release_front(false);
        }
        if !matches!(self.out.back(), Some(Ready::Lost { .. })) {
            self.out.push_back(Ready::Lost { count: 0 });
        }
        self.declared.clear();
        self.nacks.clear();
        self.gave_up.clear();
        self.probation = None;
        self.restart_at(ext);
        self.stats.resyncs += 1;
    }

    /// Moves the front slot to the output, as a packet or (merged) loss.
    fn release_front(&mut self, count_loss: bool) {
        let seq = self.next;
        self.next += 1;
        match self.slots.pop_front() {
            Some(Some(item)) => self.out.push_back(Ready::Packet(item)),
            _ => {
                self.declared.remove(&seq);
                self.nacks.remove(&seq);
                if count_loss {
                    self.stats.lost += 1;
                    if self.gave_up.len() == GAVE_UP_MEMORY {
                        self.gave_up.pop_front();
                    }
                    self.gave_up.push_back(seq);
                    match self.out.back_mut() {
                        Some(Ready::Lost { count }) => *count += 1,
                        _ => self.out.push_back(Ready::Lost { count: 1 }),
                    }
                }
            }
        }
        self.scanned = self.scanned.max(self.next);
    }

    fn declare_losses(&mut self, now: Instant) {
        let threshold = u64::from(self.config.loss_threshold);
        let Some(limit) = self.highest.checked_sub(threshold) else {
            return;
        };
        let start = self.scanned.max(self.next);
        for ext in start..=limit {
            let idx = (ext - self.next) as usize;
            if matches!(self.slots.get(idx), Some(Some(_))) {
                continue;
            }
            let nack = self.config.nack && self.nacks.len() < self.config.max_outstanding_nacks;
            if nack {
                self.nacks.insert(ext, now);
                let deadline = now.checked_add(self.config.nack_timeout).unwrap_or(now);
                self.declared.insert(ext, deadline);
            } else {
                self.declared.insert(ext, now);
            }
        }
        self.scanned = self.scanned.max(limit + 1);
    }

    /// Moves everything deliverable at the front to the output queue.
    fn advance(&mut self) {
        loop {
            match self.slots.front() {
                Some(Some(_)) => self.release_front(true),
                Some(None) => {
                    let due = match (self.declared.get(&self.next), self.now) {
                        (Some(deadline), Some(now)) => *deadline <= now,
                        _ => false,
                    };
                    if !due {
                        return;
                    }
                    self.release_front(true);
                }
                None => return,
            }
        }
    }

    /// The next packet (or given-up gap) in sequence order, if one is ready.
    pub fn pop_ready(&mut self) -> Option<Ready<T>> {
        if self.out.is_empty() {
            self.advance();
        }
        self.out.pop_front()
    }

    /// Advances virtual time: gaps whose wait expired become deliverable as losses.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = Some(now);
        let declared = &self.declared;
        self.nacks
            .retain(|seq, _| declared.get(seq).is_some_and(|deadline| *deadline > now));
    }

    /// When [`handle_timeout`](Self::handle_timeout) or [`poll_nack`](Self::poll_nack) next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let nack = self.nacks.values().min().copied();
        let give_up = match self.slots.front() {
            Some(None) => self.declared.get(&self.next).copied(),
            _ => None,
        };
        match (nack, give_up) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A generic NACK for every declared loss that is due a (re)request, if any.
    pub fn poll_nack(&mut self, now: Instant) -> Option<Bytes> {
        self.handle_timeout(now);
        let retry = now.checked_add(self.config.nack_retry).unwrap_or(now);
        let mut due = Vec::new();
        for (ext, next_send) in self.nacks.iter_mut() {
            if *next_send <= now {
                due.push(*ext as u16);
                *next_send = retry;
            }
        }
        let nack = build_nack(self.sender_ssrc, self.media_ssrc, &due)?;
        self.stats.nacks_sent += due.len() as u64;
        self.stats.nack_packets += 1;
        Some(nack)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::proto::rtp::rtcp::parse_nack;

    fn drain(buf: &mut ReorderBuffer<u16>) -> Vec<Ready<u16>> {
        std::iter::from_fn(|| buf.pop_ready()).collect()
    }

    fn no_nack() -> ReorderConfig {
        ReorderConfig {
            nack: false,
            ..ReorderConfig::default()
        }
    }

    #[test]
    fn reorders_across_rollover() {
        let t = Instant::now();
        let mut buf = ReorderBuffer::new(ReorderConfig::default(), 0, 1);
        for seq in [65533u16, 65535, 65534, 1, 0, 2] {
            buf.push(t, seq, seq);
        }
        let out: Vec<_> = drain(&mut buf);
        let expect: Vec<_> = [65533u16, 65534, 65535, 0, 1, 2]
            .into_iter()
            .map(Ready::Packet)
            .collect();
        assert_eq!(out, expect);
        assert!(buf.poll_nack(t).is_none());
        assert_eq!(buf.stats().lost, 0);
    }

    #[test]
    fn loss_declared_only_after_threshold() {
        let t = Instant::now();
        let mut buf = ReorderBuffer::new(ReorderConfig::default(), 0, 1);
        buf.push(t, 10, 10);
        for seq in 12..=26u16 {
            buf.push(t, seq, seq);
        }
        // 26 = 10 + 16: 11 is not yet 16 behind the highest.
        assert!(buf.poll_nack(t).is_none());
        buf.push(t, 27, 27);
        let nack = parse_nack(&buf.poll_nack(t).unwrap()).unwrap();
        assert_eq!(nack.lost, vec![11]);
        assert_eq!(drain(&mut buf), vec![Ready::Packet(10)]);
        // The retransmission fills the gap and everything comes out in order.
        buf.push(t, 11, 11);
        let out = drain(&mut buf);
        assert_eq!(out.len(), 17);
        assert_eq!(buf.stats().recovered, 1);
        assert_eq!(buf.stats().lost, 0);
    }

    #[test]
    fn gap_given_up_after_timeout_and_late_packet_counted() {
        let t = Instant::now();
        let mut buf = ReorderBuffer::new(ReorderConfig::default(), 0, 1);
        buf.push(t, 0, 0);
        for seq in 2..=20u16 {
            buf.push(t, seq, seq);
        }
        assert!(buf.poll_nack(t).is_some());
        assert_eq!(buf.poll_timeout(), Some(t + Duration::from_millis(500)));
        let later = t + Duration::from_secs(3);
        buf.handle_timeout(later);
        let out = drain(&mut buf);
        assert_eq!(out[1], Ready::Lost { count: 1 });
        assert_eq!(out.len(), 21);
        buf.push(later, 1, 1);
        assert_eq!(buf.stats().late, 1);
        assert_eq!(buf.stats().lost, 1);
    }

    #[test]
    fn without_nack_gap_is_skipped_at_threshold() {
        let t = Instant::now();
        let mut buf = ReorderBuffer::new(no_nack(), 0, 1);
        buf.push(t, 100, 100);
        for seq in 102..=117u16 {
            buf.push(t, seq, seq);
        }
        assert!(buf.poll_nack(t).is_none());
        let out = drain(&mut buf);
        assert_eq!(out[1], Ready::Lost { count: 1 });
    }

    #[test]
    fn duplicates_dropped() {
        let t = Instant::now();
        let mut buf = ReorderBuffer::new(ReorderConfig::default(), 0, 1);
        buf.push(t, 5, 5);
        buf.push(t, 7, 7);
        buf.push(t, 7, 7);
        buf.push(t, 6, 6);
        assert_eq!(drain(&mut buf).len(), 3);
        buf.push(t, 6, 6);
        assert_eq!(buf.stats().duplicates, 2);
    }

    #[test]
    fn huge_forward_jump_resyncs_without_nacks() {
        let t = Instant::now();
        let mut buf = ReorderBuffer::new(ReorderConfig::default(), 0, 1);
        buf.push(t, 0, 0);
        buf.push(t, 1, 1);
        for seq in 20_000..20_040u16 {
            buf.push(t, seq, seq);
        }
        assert!(buf.poll_nack(t).is_none());
        let out = drain(&mut buf);
        assert_eq!(out.len(), 43);
        assert_eq!(out[2], Ready::Lost { count: 0 });
        assert_eq!(buf.stats().resyncs, 1);
        assert_eq!(buf.stats().lost, 0);
    }

    #[test]
    fn nacks_capped_at_max_outstanding() {
        let t = Instant::now();
        let mut buf = ReorderBuffer::new(ReorderConfig::default(), 0, 1);
        // Every other packet missing: 200 holes.
        for seq in (0..600u16).step_by(2) {
            buf.push(t, seq, seq);
        }
        let nack = parse_nack(&buf.poll_nack(t).unwrap()).unwrap();
        assert_eq!(nack.lost.len(), 64);
    }

    #[test]
    fn restarted_sender_resyncs_after_probation() {
        let t = Instant::now();
        let mut buf = ReorderBuffer::new(no_nack(), 0, 1);
        for seq in 30_000..30_010u16 {
            buf.push(t, seq, seq);
        }
        buf.push(t, 10, 10);
        buf.push(t, 11, 11);
        let out = drain(&mut buf);
        assert_eq!(out.last(), Some(&Ready::Packet(11)));
        assert_eq!(buf.stats().resyncs, 1);
    }
}
