//! The registry's storage: one record per identity, and the books the decision machine reads on
//! every call, kept current as records change so that no call scans every session.
//!
//! Records live in a slab (`Vec<Option<Entry>>` plus a free list) and are found through a hash
//! index of slot numbers keyed by `(kind, identity)`; a record costs its slab slot and about
//! five bytes of index. The books are:
//!
//! * open sessions per kind, in all and per stream (`stream_clients`, `total_clients`);
//! * each user's records per kind (the per-user limit, AMB-1; X-Unique);
//! * the records with a soft-limitation kick waiting (LIM-05).
//!
//! Every change to a record goes through [`EntryMut`], which notes whether the record was open
//! (and had a kick waiting) and fixes the books when it is dropped: the many places that open
//! or close a session cannot forget the bookkeeping. The user id changes only through
//! [`EntryMut::set_user`].
//!
//! Strings that many records repeat are stored once: stream names and user ids are interned
//! ([`Name`]), and everything a re-check sends besides the session's own fields is one shared
//! [`CallTemplate`] per stream setting and client profile.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::num::NonZeroU64;
use std::ops::{Add, Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hashbrown::{DefaultHashBuilder, HashMap, HashSet, HashTable};

use super::backend::CallKind;
use super::identity::Identity;
use super::machine::{CallId, State};
use super::session::SessionShared;

/// What a record is found by: the call kind and the identity (SESS-01).
pub type Key = (CallKind, Identity);

/// Shortest time a closed session's record is kept (AMB-13).
pub(super) const MIN_LINGER: Duration = Duration::from_secs(10);

/// A moment on the core's monotonic clock: nanoseconds since the core was made, plus one so
/// that an `Option<Tick>` is 8 bytes. Compared and added to exactly like the `Instant` it
/// stands for. The machine never reads a clock: its driver (or a test) hands it the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tick(NonZeroU64);

impl Tick {
    /// The moment `since_start` after the clock's start.
    pub fn from_start(since_start: Duration) -> Tick {
        Tick(NonZeroU64::MIN.saturating_add(u64::try_from(since_start.as_nanos()).unwrap_or(u64::MAX)))
    }

    fn nanos(self) -> u64 {
        self.0.get() - 1
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later.
    pub(super) fn duration_since(self, earlier: Tick) -> Duration {
        Duration::from_nanos(self.nanos().saturating_sub(earlier.nanos()))
    }
}

impl Add<Duration> for Tick {
    type Output = Tick;

    fn add(self, d: Duration) -> Tick {
        Tick(self.0.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
    }
}

/// Wall-clock time as nanoseconds since the Unix epoch (what session lists and records show).
#[derive(Debug, Clone, Copy)]
pub(super) struct Wall(u64);

impl Wall {
    pub(super) fn from_system_time(at: SystemTime) -> Wall {
        let since = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        Wall(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }

    pub(super) fn system_time(self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.0)
    }

    pub(super) fn unix_millis(self) -> u64 {
        self.0 / 1_000_000
    }
}

/// An interned string (a stream name, a user id): one allocation shared by every record that
/// names it, held through a thin pointer so that it costs a record 8 bytes.
#[derive(Debug, Clone)]
pub(super) struct Name(Arc<String>);

impl Name {
    fn new(text: &str) -> Name {
        Name(Arc::new(text.to_string()))
    }
}

impl Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        *self.0 == *other.0
    }
}

impl Eq for Name {}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that a `&str` finds its `Name` in a map.
        self.0.as_str().hash(state)
    }
}

/// A soft-limitation kick waiting for its grace to end (LIM-05).
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingKick {
    pub(super) at: Tick,
    /// The limit of the answer that flagged the session, and its ban duration.
    pub(super) limit: u32,
    pub(super) ban: Duration,
}

/// What a re-check sends besides the session's own fields. Shared: every session with the same
/// stream settings and the same client profile (user agent, referer, host) holds one.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct CallTemplate {
    pub(super) url: String,
    pub(super) user_agent: Option<String>,
    pub(super) referer: Option<String>,
    pub(super) host: Option<String>,
    pub(super) dvr: bool,
    pub(super) extra: BTreeMap<String, String>,
    pub(super) sign_key: Option<super::backend::SignKey>,
    pub(super) stream_max_sessions: Option<u32>,
    pub(super) soft_limitation: bool,
}

/// What few records need at a time: a backend call in flight, a kick waiting, archive ranges,
/// a session limit. Kept out of [`Entry`] so the common record stays small.
#[derive(Debug, Default)]
struct Rare {
    inflight: Option<CallId>,
    pending_kick: Option<PendingKick>,
    /// `allowed_dvr_ranges` of the last answer (ADV-02): `None` = the field was absent.
    dvr_ranges: Option<serde_json::Value>,
    max_sessions: Option<u32>,
    /// The backend asked for ads (`ad_inject`) in this opening of the session; none are
    /// inserted (not supported), and the session list says so.
    ad_inject_ignored: bool,
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.inflight.is_none()
            && self.pending_kick.is_none()
            && self.dvr_ranges.is_none()
            && self.max_sessions.is_none()
            && !self.ad_inject_ignored
    }
}

/// One identity's record. The client's query string is kept with the token in
/// [`SessionShared`], where it usually contains it.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) shared: Arc<SessionShared>,
    pub(super) name: Name,
    user_id: Option<Name>,
    /// `None` for sessions admitted without a backend (no on_play, `true`, ADM token).
    pub(super) call: Option<Arc<CallTemplate>>,
    rare: Option<Box<Rare>>,
    pub(super) opened_at: Tick,
    pub(super) opened_wall: Wall,
    /// While open: when the session was last seen. While closed: when it closed (nothing reads
    /// the last sighting of a closed session, and every reopening sets it anew).
    seen: Tick,
    /// Allowed: end of freshness. Banned: end of the ban.
    pub(super) expires: Tick,
    /// The auth duration of the last decision (the retry period after "no decision").
    duration_ns: u64,
    pub(super) request_number: u64,
    pub(super) ip: IpAddr,
    pub(super) connections: u32,
    /// Where this record sits in its user's list (valid while `user_id` is set).
    user_pos: u32,
    pub(super) state: State,
    closed: bool,
    /// Admitted by an admin view token (ADM-01): `expires` is the token's end, when the
    /// session ends and its record is dropped (never resumed past it).
    pub(super) admin: bool,
}

impl Entry {
    /// An open-or-pending record with no user, no call in flight and nothing rare.
    pub(super) fn new(
        shared: Arc<SessionShared>,
        name: Name,
        ip: IpAddr,
        state: State,
        call: Option<Arc<CallTemplate>>,
        (now, wall): (Tick, Wall),
        (expires, duration): (Tick, Duration),
    ) -> Entry {
        Entry {
            shared,
            name,
            user_id: None,
            call,
            rare: None,
            opened_at: now,
            opened_wall: wall,
            seen: now,
            expires,
            duration_ns: u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
            request_number: 0,
            ip,
            connections: 0,
            user_pos: 0,
            state,
            closed: false,
            admin: false,
        }
    }

    pub(super) fn key(&self) -> Key {
        (self.shared.kind, self.shared.identity)
    }

    pub(super) fn is_open(&self) -> bool {
        self.state == State::Granted && !self.closed
    }

    pub(super) fn closed_at(&self) -> Option<Tick> {
        self.closed.then_some(self.seen)
    }

    /// When an open session was last seen.
    pub(super) fn last_seen(&self) -> Tick {
        self.seen
    }

    /// A request (or a backendless admission) sees the session: it is open again if it was
    /// closed.
    pub(super) fn touch(&mut self, now: Tick) {
        self.seen = now;
        self.closed = false;
    }

    /// A connection ends: an open session was last seen now; a closed one keeps its close time.
    pub(super) fn seen_at(&mut self, now: Tick) {
        if !self.closed {
            self.seen = now;
        }
    }

    /// A connection attaches to the session: it is open again.
    pub(super) fn reopen(&mut self) {
        self.closed = false;
    }

    /// Closes the session now, or keeps its close time if it was closed already.
    pub(super) fn close(&mut self, now: Tick) {
        if !self.closed {
            self.seen = now;
            self.closed = true;
        }
    }

    pub(super) fn linger_until(&self) -> Option<Tick> {
        let closed = self.closed_at()?;
        let min = closed + MIN_LINGER;
        Some(if self.call.is_some() {
            self.expires.max(min)
        } else {
            min
        })
    }

    pub(super) fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    pub(super) fn duration(&self) -> Duration {
        Duration::from_nanos(self.duration_ns)
    }

    pub(super) fn set_duration(&mut self, d: Duration) {
        self.duration_ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    }

    pub(super) fn inflight(&self) -> Option<CallId> {
        self.rare.as_ref()?.inflight
    }

    pub(super) fn set_inflight(&mut self, call: Option<CallId>) {
        self.rare_mut(|r| r.inflight = call);
    }

    pub(super) fn pending_kick(&self) -> Option<&PendingKick> {
        self.rare.as_ref()?.pending_kick.as_ref()
    }

    pub(super) fn set_pending_kick(&mut self, kick: Option<PendingKick>) {
        self.rare_mut(|r| r.pending_kick = kick);
    }

    pub(super) fn dvr_ranges(&self) -> Option<&serde_json::Value> {
        self.rare.as_ref()?.dvr_ranges.as_ref()
    }

    pub(super) fn set_dvr_ranges(&mut self, ranges: Option<serde_json::Value>) {
        self.rare_mut(|r| r.dvr_ranges = ranges);
    }

    pub(super) fn ad_inject_ignored(&self) -> bool {
        self.rare.as_ref().is_some_and(|r| r.ad_inject_ignored)
    }

    pub(super) fn set_ad_inject_ignored(&mut self, ignored: bool) {
        self.rare_mut(|r| r.ad_inject_ignored = ignored);
    }

    pub(super) fn max_sessions(&self) -> Option<u32> {
        self.rare.as_ref()?.max_sessions
    }

    pub(super) fn set_max_sessions(&mut self, max: Option<u32>) {
        self.rare_mut(|r| r.max_sessions = max);
    }

    /// Changes the rare part, which exists only while something in it is set.
    fn rare_mut(&mut self, change: impl FnOnce(&mut Rare)) {
        let rare = self.rare.get_or_insert_with(Box::default);
        change(rare);
        if rare.is_empty() {
            self.rare = None;
        }
    }
}

/// Open sessions and records of one stream.
#[derive(Debug, Default)]
struct StreamBook {
    records: u64,
    open: [u64; 2],
}

fn kind_ix(kind: CallKind) -> usize {
    match kind {
        CallKind::Play => 0,
        CallKind::Publish => 1,
    }
}

#[derive(Debug, Default)]
pub(super) struct Registry {
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    len: usize,
    /// Open sessions per kind.
    open: [u64; 2],
    streams: HashMap<Name, StreamBook>,
    /// Per user id, its records' slots per kind.
    users: HashMap<Name, [Vec<u32>; 2]>,
    /// Slots of records with a soft-limitation kick waiting.
    kicks: HashSet<u32>,
    templates: HashTable<Arc<CallTemplate>>,
}

impl Registry {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// One past the highest slot in use: iterate `0..slot_count()` with [`slot_mut`](Self::slot_mut).
    pub(super) fn slot_count(&self) -> u32 {
        self.slots.len() as u32
    }

    fn hash(&self, key: &Key) -> u64 {
        self.hasher.hash_one(key)
    }

    fn find(&self, key: &Key) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(self.hash(key), |&s| {
                slots[s as usize].as_ref().is_some_and(|e| e.key() == *key)
            })
            .copied()
    }

    /// The slot of `key`'s record.
    pub(super) fn slot_of(&self, key: &Key) -> Option<u32> {
        self.find(key)
    }

    pub(super) fn get(&self, key: &Key) -> Option<&Entry> {
        self.find(key).and_then(|s| self.at(s))
    }

    pub(super) fn get_mut(&mut self, key: &Key) -> Option<EntryMut<'_>> {
        let slot = self.find(key)?;
        self.slot_mut(slot)
    }

    /// The record in `slot`, if any.
    pub(super) fn at(&self, slot: u32) -> Option<&Entry> {
        self.slots.get(slot as usize)?.as_ref()
    }

    pub(super) fn slot_mut(&mut self, slot: u32) -> Option<EntryMut<'_>> {
        let e = self.at(slot)?;
        let (was_open, had_kick) = (e.is_open(), e.pending_kick().is_some());
        Some(EntryMut {
            reg: self,
            slot,
            was_open,
            had_kick,
        })
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.slots.iter().flatten()
    }

    /// The interned form of a stream name, for a new record.
    pub(super) fn stream_name(&self, name: &str) -> Name {
        match self.streams.get_key_value(name) {
            Some((interned, _)) => interned.clone(),
            None => Name::new(name),
        }
    }

    /// The shared form of `template`.
    pub(super) fn template(&mut self, template: CallTemplate) -> Arc<CallTemplate> {
        let hash = self.hasher.hash_one(&template);
        if let Some(found) = self.templates.find(hash, |t| **t == template) {
            return found.clone();
        }
        let shared = Arc::new(template);
        let hasher = &self.hasher;
        self.templates
            .insert_unique(hash, shared.clone(), |t| hasher.hash_one(&**t));
        shared
    }

    /// Forgets templates no record holds any more.
    pub(super) fn collect_templates(&mut self) {
        self.templates.retain(|t| Arc::strong_count(t) > 1);
    }

    /// Adds a record, replacing (and returning) the one of the same key.
    pub(super) fn insert(&mut self, mut entry: Entry) -> Option<Entry> {
        let key = entry.key();
        let old = self.find(&key).and_then(|s| self.remove_slot(s));
        let user = entry.user_id.take();
        let (open, kick) = (entry.is_open(), entry.pending_kick().is_some());
        let book = self.streams.entry(entry.name.clone()).or_default();
        book.records += 1;
        if open {
            book.open[kind_ix(key.0)] += 1;
            self.open[kind_ix(key.0)] += 1;
        }
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(entry);
                s
            }
            None => {
                self.slots.push(Some(entry));
                (self.slots.len() - 1) as u32
            }
        };
        let hash = self.hash(&key);
        let Registry {
            index, slots, hasher, ..
        } = self;
        index.insert_unique(hash, slot, |&s| {
            hasher.hash_one(
                slots[s as usize]
                    .as_ref()
                    .map(Entry::key)
                    .expect("indexed slots hold records"),
            )
        });
        if kick {
            self.kicks.insert(slot);
        }
        if let Some(user) = user {
            self.link_user(slot, key.0, &user);
        }
        self.len += 1;
        old
    }

    pub(super) fn remove(&mut self, key: &Key) -> Option<Entry> {
        let slot = self.find(key)?;
        self.remove_slot(slot)
    }

    pub(super) fn remove_slot(&mut self, slot: u32) -> Option<Entry> {
        let e = self.at(slot)?;
        let key = e.key();
        let (open, kick, user) = (e.is_open(), e.pending_kick().is_some(), e.user_id.clone());
        let hash = self.hash(&key);
        if let Ok(found) = self.index.find_entry(hash, |&s| s == slot) {
            found.remove();
        }
        if let Some(user) = &user {
            self.unlink_user(slot, key.0, user);
        }
        if kick {
            self.kicks.remove(&slot);
        }
        let mut e = self.slots[slot as usize].take()?;
        // Unlinked above, but the caller may still report the session with its user.
        e.user_id = user;
        if let Some(book) = self.streams.get_mut(&*e.name) {
            book.records -= 1;
            if open {
                book.open[kind_ix(key.0)] -= 1;
            }
            if book.records == 0 {
                self.streams.remove(&*e.name);
            }
        }
        if open {
            self.open[kind_ix(key.0)] -= 1;
        }
        self.free.push(slot);
        self.len -= 1;
        Some(e)
    }

    /// Makes a record that is not open (a ban) keep only what its decision needs (BAN-01): the
    /// identity's digest, its state and times, its user. The token, the query, the stream name
    /// and the re-check's template (the client's headers) are let go, so that what a refused
    /// request holds does not grow with what it sent.
    pub(super) fn keep_decision_only(&mut self, slot: u32) {
        let Some(e) = self.at(slot) else { return };
        if e.is_open() {
            debug_assert!(false, "an open session keeps its values");
            return;
        }
        let old = e.name.clone();
        let bare = self.stream_name("");
        if *old != *bare {
            if let Some(book) = self.streams.get_mut(&*old) {
                book.records -= 1;
                if book.records == 0 {
                    self.streams.remove(&*old);
                }
            }
            self.streams.entry(bare.clone()).or_default().records += 1;
        }
        let Some(e) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        e.shared = Arc::new(e.shared.without_values());
        e.name = bare;
        e.call = None;
        // Guards of the former handle no longer match the record.
        e.connections = 0;
        e.set_dvr_ranges(None);
        e.set_max_sessions(None);
        e.set_ad_inject_ignored(false);
    }

    /// Open sessions of `except`'s kind, other than `except` itself: on `stream`, and in all
    /// (REQ-06). The session being checked never counts itself, on a `new_session` or an
    /// `update_session` alike (AMB-12 in decisions.md).
    pub(super) fn counts(&self, stream: &str, except: &Key) -> (u64, u64) {
        let k = kind_ix(except.0);
        let mut on_stream = self.streams.get(stream).map_or(0, |b| b.open[k]);
        let mut total = self.open[k];
        if let Some(e) = self.get(except)
            && e.is_open()
        {
            total -= 1;
            if &*e.name == stream {
                on_stream -= 1;
            }
        }
        (on_stream, total)
    }

    /// Slots of `user`'s records of `kind`.
    pub(super) fn user_slots(&self, kind: CallKind, user: &str) -> &[u32] {
        self.users.get(user).map_or(&[], |lists| &lists[kind_ix(kind)])
    }

    /// Slots of records with a soft-limitation kick waiting.
    pub(super) fn kick_slots(&self) -> Vec<u32> {
        self.kicks.iter().copied().collect()
    }

    fn link_user(&mut self, slot: u32, kind: CallKind, user: &str) {
        let name = match self.users.get_key_value(user) {
            Some((name, _)) => name.clone(),
            None => Name::new(user),
        };
        let list = &mut self.users.entry(name.clone()).or_default()[kind_ix(kind)];
        list.push(slot);
        let pos = (list.len() - 1) as u32;
        if let Some(e) = self.slots[slot as usize].as_mut() {
            e.user_pos = pos;
            e.user_id = Some(name);
        }
    }

    fn unlink_user(&mut self, slot: u32, kind: CallKind, user: &str) {
        let Some(pos) = self.at(slot).map(|e| e.user_pos as usize) else {
            return;
        };
        let Some(lists) = self.users.get_mut(user) else { return };
        let list = &mut lists[kind_ix(kind)];
        if list.get(pos) != Some(&slot) {
            debug_assert!(false, "user list out of step with its record");
            return;
        }
        list.swap_remove(pos);
        let moved = list.get(pos).copied();
        if lists.iter().all(Vec::is_empty) {
            self.users.remove(user);
        }
        if let Some(moved) = moved
            && let Some(e) = self.slots[moved as usize].as_mut()
        {
            e.user_pos = pos as u32;
        }
        if let Some(e) = self.slots[slot as usize].as_mut() {
            e.user_id = None;
        }
    }

    /// Recounts every book from the records and panics on a difference (debug builds: the
    /// sweeper calls it, so every in-process test checks the books as it goes).
    #[cfg(debug_assertions)]
    pub(super) fn audit(&self) {
        let mut open = [0u64; 2];
        let mut streams: HashMap<&str, (u64, [u64; 2])> = HashMap::new();
        let mut kicks = 0;
        for (slot, e) in self.slots.iter().enumerate() {
            let Some(e) = e else { continue };
            let k = kind_ix(e.shared.kind);
            let book = streams.entry(&*e.name).or_default();
            book.0 += 1;
            if e.is_open() {
                open[k] += 1;
                book.1[k] += 1;
            }
            if e.pending_kick().is_some() {
                assert!(self.kicks.contains(&(slot as u32)), "kick of slot {slot} not booked");
                kicks += 1;
            }
            if let Some(user) = &e.user_id {
                assert_eq!(
                    self.user_slots(e.shared.kind, user).get(e.user_pos as usize),
                    Some(&(slot as u32))
                );
            }
            assert_eq!(self.find(&e.key()), Some(slot as u32), "slot {slot} not indexed");
        }
        assert_eq!(open, self.open, "open sessions per kind");
        assert_eq!(kicks, self.kicks.len(), "booked kicks");
        assert_eq!(streams.len(), self.streams.len(), "streams booked");
        for (name, (records, open)) in streams {
            let book = &self.streams[name];
            assert_eq!((records, open), (book.records, book.open), "book of stream {name}");
        }
        let members: usize = self.users.values().map(|l| l[0].len() + l[1].len()).sum();
        assert_eq!(
            members,
            self.iter().filter(|e| e.user_id.is_some()).count(),
            "user lists"
        );
        assert_eq!(self.index.len(), self.len, "index size");
    }

    /// Fixes the books after a change to the record in `slot`.
    fn settle(&mut self, slot: u32, was_open: bool, had_kick: bool) {
        let Some(e) = self.slots.get(slot as usize).and_then(Option::as_ref) else {
            return;
        };
        let (open, kick) = (e.is_open(), e.pending_kick().is_some());
        if open != was_open {
            let k = kind_ix(e.shared.kind);
            let book = self.streams.get_mut(&*e.name);
            if open {
                self.open[k] += 1;
                if let Some(book) = book {
                    book.open[k] += 1;
                }
            } else {
                self.open[k] -= 1;
                if let Some(book) = book {
                    book.open[k] -= 1;
                }
            }
        }
        if kick != had_kick {
            if kick {
                self.kicks.insert(slot);
            } else {
                self.kicks.remove(&slot);
            }
        }
    }
}

/// A record being changed; the registry's books are fixed when it drops.
pub(super) struct EntryMut<'a> {
    reg: &'a mut Registry,
    slot: u32,
    was_open: bool,
    had_kick: bool,
}

impl EntryMut<'_> {
    /// Sets (or clears) the record's user id, moving it between users' lists.
    pub(super) fn set_user(&mut self, user: Option<&str>) {
        if self.user_id() == user {
            return;
        }
        let kind = self.shared.kind;
        if let Some(old) = self.user_id.clone() {
            self.reg.unlink_user(self.slot, kind, &old);
        }
        if let Some(user) = user {
            self.reg.link_user(self.slot, kind, user);
        }
    }
}

impl Deref for EntryMut<'_> {
    type Target = Entry;

    fn deref(&self) -> &Entry {
        self.reg.slots[self.slot as usize]
            .as_ref()
            .expect("an EntryMut's slot holds its record")
    }
}

impl DerefMut for EntryMut<'_> {
    fn deref_mut(&mut self) -> &mut Entry {
        self.reg.slots[self.slot as usize]
            .as_mut()
            .expect("an EntryMut's slot holds its record")
    }
}

impl Drop for EntryMut<'_> {
    fn drop(&mut self) {
        self.reg.settle(self.slot, self.was_open, self.had_kick);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_add_and_compare_like_instants() {
        let a = Tick::from_start(Duration::from_millis(1500));
        let b = a + Duration::from_secs(3);
        assert!(b > a);
        assert_eq!(b.duration_since(a), Duration::from_secs(3));
        assert_eq!(a.duration_since(b), Duration::ZERO);
        assert_eq!(std::mem::size_of::<Option<Tick>>(), 8);
    }

    #[test]
    fn a_record_stays_small() {
        // The memory bench's budget (docs/performance.md) rests on this.
        assert!(
            std::mem::size_of::<Option<Entry>>() <= 120,
            "{}",
            std::mem::size_of::<Option<Entry>>()
        );
    }
}
