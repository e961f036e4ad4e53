//! A linearizability checker for a key-value store whose keys are registers with
//! put, compare-and-swap and get.
//!
//! The search is the Wing & Gong algorithm with Lowe's "just-in-time linearization" and
//! memoization, the one Knossos and Porcupine use:
//!
//! - The history of one key becomes a time-ordered list of call and return entries. At
//!   equal instants calls come before returns, so two operations whose recorded intervals
//!   merely touch count as concurrent (the real intervals lie inside the recorded ones, so
//!   this never invents an ordering the system did not have).
//! - Walking the list from the front, every call met before the first return is an
//!   operation that may take effect now. The search tries one: if the model accepts it
//!   (and the resulting (set of linearized operations, state) pair was never seen), the
//!   call and its return are lifted out of the list and the walk restarts at the front.
//! - Meeting a return means the operation it closes was not linearized before its
//!   response, which no extension of the current prefix can fix: undo the last choice and
//!   try the next candidate after it. An empty undo stack there proves the history is not
//!   linearizable.
//! - The memo of (linearized set, state) pairs prunes every prefix that reaches an
//!   already explored configuration, which is what keeps realistic histories cheap.
//!
//! Linearizability is compositional (Herlihy & Wing), so the history is split per key and
//! each key is checked on its own.
//!
//! Operations whose outcome is unknown (a write that timed out or lost its leader) have
//! no return entry: they may take effect at any point after their call, or never. Once
//! every completed operation is linearized the rest are placed at the end, where they
//! can observe nothing, so the search stops there.

#[cfg(test)]
mod tests;
pub mod workload;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// What a client asked for, on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Unconditional put of a value.
    Write(String),
    /// Put `new` if the key holds `expected` (`None`: the key is absent).
    Cas {
        /// The value the key must hold, `None` for absent.
        expected: Option<String>,
        /// The value to put.
        new: String,
    },
    /// Get the key.
    Read,
}

/// What the key held just before a write took effect, when the store reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prev {
    /// Not reported: the model accepts any previous value.
    Unreported,
    /// Reported: the model requires the register to have held exactly this.
    Was(Option<String>),
}

/// What a client was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// The write took effect.
    Written {
        /// The value it replaced.
        prev: Prev,
    },
    /// The compare-and-swap answered.
    Swapped {
        /// Whether the key held the expected value (and now holds the new one).
        ok: bool,
        /// The value the key held when the swap was decided.
        prev: Prev,
    },
    /// The read returned this value (`None`: absent).
    Read(Option<String>),
}

/// One operation of a history: who, on which key, what, and when (nanoseconds on one
/// clock shared by every client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// The client that issued it (for printing only).
    pub client: usize,
    /// The key.
    pub key: String,
    /// The request.
    pub input: Input,
    /// When it was invoked.
    pub call: u64,
    /// When it returned and what it returned; `None` when the outcome is unknown (it may
    /// take effect at any time after `call`, or never).
    pub ret: Option<(u64, Output)>,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |t: u64| t as f64 / 1e9;
        write!(f, "c{} [{:.6}s, ", self.client, secs(self.call))?;
        match &self.ret {
            Some((t, _)) => write!(f, "{:.6}s] ", secs(*t))?,
            None => write!(f, "pending] ")?,
        }
        match &self.input {
            Input::Write(v) => write!(f, "write({v:?})")?,
            Input::Cas { expected, new } => write!(f, "cas({expected:?} -> {new:?})")?,
            Input::Read => write!(f, "read")?,
        }
        match &self.ret {
            None => write!(f, " => ?"),
            Some((_, Output::Written { prev })) => write!(f, " => ok{}", PrevFmt(prev)),
            Some((_, Output::Swapped { ok, prev })) => write!(f, " => {ok}{}", PrevFmt(prev)),
            Some((_, Output::Read(v))) => write!(f, " => {v:?}"),
        }
    }
}

struct PrevFmt<'a>(&'a Prev);

impl fmt::Display for PrevFmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Prev::Unreported => Ok(()),
            Prev::Was(v) => write!(f, ", prev {v:?}"),
        }
    }
}

/// Knobs of the search.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Drop pending writes whose value nobody observed, when that is exact (see
    /// [`prune_unobserved_pending`]). Keeps the search small after faults that leave
    /// many writes of unknown outcome.
    pub prune: bool,
    /// Give up on a key after this many search steps.
    pub max_steps: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            prune: true,
            max_steps: 50_000_000,
        }
    }
}

/// The verdict on one key.
#[derive(Debug)]
pub enum Verdict {
    /// A linearization exists.
    Linearizable {
        /// Search steps taken.
        steps: u64,
    },
    /// None exists.
    Violation(Box<Violation>),
    /// The step budget ran out.
    GaveUp {
        /// Steps taken.
        steps: u64,
    },
}

/// Evidence that one key's history is not linearizable.
#[derive(Debug)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// Its history as checked (after pruning), ordered by call time.
    pub ops: Vec<Op>,
    /// The longest prefix of a linearization the search found, as indices into `ops`.
    pub longest_prefix: Vec<usize>,
    /// Completed operations left out of that prefix, earliest return first: the first one
    /// is where every attempt got stuck.
    pub stuck: Vec<usize>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "history of key {:?} is not linearizable", self.key)?;
        writeln!(f, "operations ({}), by call time:", self.ops.len())?;
        for (i, op) in self.ops.iter().enumerate() {
            writeln!(f, "  #{i:<4} {op}")?;
        }
        writeln!(
            f,
            "longest linearizable prefix ({} ops):",
            self.longest_prefix.len()
        )?;
        let mut state: Option<&str> = None;
        for &i in &self.longest_prefix {
            let op = &self.ops[i];
            writeln!(f, "  #{i:<4} {op}")?;
            // Track the register through the prefix so the reader sees what the next op met.
            match &op.input {
                Input::Write(v) => state = Some(v),
                Input::Cas { expected, new } if expected.as_deref() == state => state = Some(new),
                _ => {}
            }
        }
        writeln!(f, "register after that prefix: {state:?}")?;
        writeln!(
            f,
            "completed operations that could not follow it, earliest return first:"
        )?;
        for &i in self.stuck.iter().take(8) {
            writeln!(f, "  #{i:<4} {}", self.ops[i])?;
        }
        Ok(())
    }
}

/// The verdict on a whole history.
#[derive(Debug, Default)]
pub struct Report {
    /// Per key: (operations checked, pending ones pruned, search steps).
    pub keys: BTreeMap<String, (usize, usize, u64)>,
    /// Keys that are not linearizable.
    pub violations: Vec<Violation>,
    /// Keys on which the search gave up.
    pub gave_up: Vec<String>,
}

impl Report {
    /// Whether every key was proven linearizable.
    pub fn ok(&self) -> bool {
        self.violations.is_empty() && self.gave_up.is_empty()
    }
}

/// Checks a history of any number of keys, each on its own.
pub fn check(history: &[Op], opts: Options) -> Report {
    let mut per_key: BTreeMap<&str, Vec<Op>> = BTreeMap::new();
    for op in history {
        per_key.entry(op.key.as_str()).or_default().push(op.clone());
    }
    let mut report = Report::default();
    for (key, ops) in per_key {
        let before = ops.len();
        let ops = if opts.prune {
            prune_unobserved_pending(ops)
        } else {
            ops
        };
        let pruned = before - ops.len();
        match check_key(key, ops, opts) {
            Verdict::Linearizable { steps } => {
                report.keys.insert(key.to_string(), (before, pruned, steps));
            }
            Verdict::Violation(v) => {
                report.keys.insert(key.to_string(), (before, pruned, 0));
                report.violations.push(*v);
            }
            Verdict::GaveUp { steps } => {
                report.keys.insert(key.to_string(), (before, pruned, steps));
                report.gave_up.push(key.to_string());
            }
        }
    }
    report
}

/// Drops pending writes and swaps whose new value no operation ever observed.
///
/// Exact, under two conditions checked here (otherwise nothing is dropped): every value
/// is written by at most one operation, and every completed write and swap reports its
/// previous value. Then a pending write `w` of an unobserved value `v` can be moved to
/// the end of any linearization: between `w` and the next change of the register, any
/// completed operation would have observed `v` (a read returns it, a write or swap
/// reports it as previous), and any pending swap that expected `v` counts as an
/// observation too; a pending swap that `w` made fail can move to the end as well, as
/// its own unique value could not be observed. At the end a pending operation observes
/// nothing, which is the same as never taking effect. The converse (a linearization
/// without `w` is one with `w` at the end) always holds.
pub fn prune_unobserved_pending(ops: Vec<Op>) -> Vec<Op> {
    let mut written: HashSet<&str> = HashSet::new();
    let mut observed: HashSet<&str> = HashSet::new();
    for op in &ops {
        let new = match &op.input {
            Input::Write(v) => Some(v),
            Input::Cas { expected, new } => {
                if let Some(e) = expected {
                    observed.insert(e);
                }
                Some(new)
            }
            Input::Read => None,
        };
        if let Some(v) = new {
            if !written.insert(v) {
                return ops; // Values are not unique: keep everything.
            }
        }
        match &op.ret {
            Some((_, Output::Read(Some(v)))) => {
                observed.insert(v);
            }
            Some((_, Output::Written { prev } | Output::Swapped { prev, .. })) => match prev {
                Prev::Was(Some(v)) => {
                    observed.insert(v);
                }
                Prev::Was(None) => {}
                Prev::Unreported => return ops,
            },
            _ => {}
        }
    }
    let keep = |op: &Op| match (&op.ret, &op.input) {
        (Some(_), _) => true,
        // A pending read changes nothing and can answer anything.
        (None, Input::Read) => false,
        (None, Input::Write(v) | Input::Cas { new: v, .. }) => observed.contains(v.as_str()),
    };
    let keep: Vec<bool> = ops.iter().map(keep).collect();
    ops.into_iter()
        .zip(keep)
        .filter_map(|(op, k)| k.then_some(op))
        .collect()
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// An operation with its values replaced by small integers (0: absent).
#[derive(Clone, Copy)]
enum Step {
    Write {
        new: u32,
        prev: Option<u32>,
    },
    Cas {
        expected: u32,
        new: u32,
        result: Option<(bool, Option<u32>)>,
    },
    Read {
        seen: Option<u32>,
    },
}

impl Step {
    /// The model: the register's next state if the operation may take effect in `state`
    /// with the output it reported. An unknown output accepts anything.
    fn apply(self, state: u32) -> Option<u32> {
        match self {
            Step::Write { new, prev } => prev.is_none_or(|p| p == state).then_some(new),
            Step::Cas {
                expected,
                new,
                result,
            } => {
                let holds = state == expected;
                match result {
                    Some((ok, prev)) if ok != holds || prev.is_some_and(|p| p != state) => None,
                    _ => Some(if holds { new } else { state }),
                }
            }
            Step::Read { seen } => seen.is_none_or(|s| s == state).then_some(state),
        }
    }
}

/// Numbers values so the model's state is a `u32`; 0 is "absent".
#[derive(Default)]
struct Interner(HashMap<String, u32>);

impl Interner {
    fn value(&mut self, v: &str) -> u32 {
        let next = self.0.len() as u32 + 1;
        *self.0.entry(v.to_string()).or_insert(next)
    }

    fn opt(&mut self, v: &Option<String>) -> u32 {
        v.as_deref().map_or(0, |v| self.value(v))
    }

    fn prev(&mut self, p: &Prev) -> Option<u32> {
        match p {
            Prev::Unreported => None,
            Prev::Was(v) => Some(self.opt(v)),
        }
    }
}

/// One entry of the doubly linked call/return list.
struct Entry {
    op: usize,
    is_call: bool,
    /// For a call: its return entry (NIL when pending).
    ret: usize,
    prev: usize,
    next: usize,
}

/// Checks the history of one key, starting from an absent key.
pub fn check_key(key: &str, mut ops: Vec<Op>, opts: Options) -> Verdict {
    ops.sort_by_key(|o| o.call);
    let n = ops.len();

    let mut ids = Interner::default();
    let model: Vec<Step> = ops
        .iter()
        .map(|op| match (&op.input, op.ret.as_ref().map(|r| &r.1)) {
            (Input::Write(v), None) => Step::Write {
                new: ids.value(v),
                prev: None,
            },
            (Input::Write(v), Some(Output::Written { prev })) => Step::Write {
                new: ids.value(v),
                prev: ids.prev(prev),
            },
            (Input::Cas { expected, new }, out) => Step::Cas {
                expected: ids.opt(expected),
                new: ids.value(new),
                result: match out {
                    None => None,
                    Some(Output::Swapped { ok, prev }) => Some((*ok, ids.prev(prev))),
                    Some(o) => panic!("a cas cannot return {o:?}"),
                },
            },
            (Input::Read, None) => Step::Read { seen: None },
            (Input::Read, Some(Output::Read(v))) => Step::Read {
                seen: Some(ids.opt(v)),
            },
            (i, Some(o)) => panic!("{i:?} cannot return {o:?}"),
        })
        .collect();

    // The call/return list, time ordered, calls first at equal instants.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, false, i));
        if let Some((t, _)) = &op.ret {
            assert!(*t >= op.call, "op returns before its call: {op}");
            events.push((*t, true, i));
        }
    }
    events.sort_by_key(|&(t, is_ret, i)| (t, is_ret, i));
    let mut list: Vec<Entry> = Vec::with_capacity(events.len() + 1);
    list.push(Entry {
        op: NIL,
        is_call: false,
        ret: NIL,
        prev: NIL,
        next: NIL,
    });
    let mut call_entry = vec![NIL; n];
    for (k, &(_, is_ret, op)) in events.iter().enumerate() {
        let at = k + 1;
        list[at - 1].next = at;
        list.push(Entry {
            op,
            is_call: !is_ret,
            ret: NIL,
            prev: at - 1,
            next: NIL,
        });
        if is_ret {
            list[call_entry[op]].ret = at;
        } else {
            call_entry[op] = at;
        }
    }

    let mut remaining = ops.iter().filter(|o| o.ret.is_some()).count();
    let mut linearized = vec![0u64; n.div_ceil(64)];
    let mut seen: HashSet<(Vec<u64>, u32)> = HashSet::new();
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let mut longest: Vec<usize> = Vec::new();
    let mut state = 0u32;
    let mut cur = list[HEAD].next;
    let mut steps = 0u64;

    while remaining > 0 {
        steps += 1;
        if steps > opts.max_steps {
            return Verdict::GaveUp { steps };
        }
        // While completed ops remain, their returns are in the list, so the walk meets one
        // before running off the end; NIL is treated like a return all the same.
        if cur != NIL && list[cur].is_call {
            let op = list[cur].op;
            if let Some(next) = model[op].apply(state) {
                set_bit(&mut linearized, op, true);
                if seen.insert((linearized.clone(), next)) {
                    stack.push((cur, state));
                    state = next;
                    lift(&mut list, cur);
                    if ops[op].ret.is_some() {
                        remaining -= 1;
                    }
                    if stack.len() > longest.len() {
                        longest = stack.iter().map(|&(e, _)| list[e].op).collect();
                    }
                    cur = list[HEAD].next;
                    continue;
                }
                set_bit(&mut linearized, op, false);
            }
            cur = list[cur].next;
        } else {
            // The op this return closes was not linearized in time: revisit the last choice.
            let Some((call, before)) = stack.pop() else {
                return Verdict::Violation(Box::new(violation(key, ops, longest)));
            };
            let op = list[call].op;
            set_bit(&mut linearized, op, false);
            state = before;
            unlift(&mut list, call);
            if ops[op].ret.is_some() {
                remaining += 1;
            }
            cur = list[call].next;
        }
    }
    Verdict::Linearizable { steps }
}

fn set_bit(bits: &mut [u64], i: usize, on: bool) {
    if on {
        bits[i / 64] |= 1 << (i % 64);
    } else {
        bits[i / 64] &= !(1 << (i % 64));
    }
}

/// Takes a call and its return (if any) out of the list; their own links stay as they
/// were so `unlift` can put them back.
fn lift(list: &mut [Entry], call: usize) {
    unlink(list, call);
    let ret = list[call].ret;
    if ret != NIL {
        unlink(list, ret);
    }
}

fn unlink(list: &mut [Entry], e: usize) {
    let (p, n) = (list[e].prev, list[e].next);
    list[p].next = n;
    if n != NIL {
        list[n].prev = p;
    }
}

/// Undoes `lift`, in reverse order.
fn unlift(list: &mut [Entry], call: usize) {
    let ret = list[call].ret;
    if ret != NIL {
        relink(list, ret);
    }
    relink(list, call);
}

fn relink(list: &mut [Entry], e: usize) {
    let (p, n) = (list[e].prev, list[e].next);
    list[p].next = e;
    if n != NIL {
        list[n].prev = e;
    }
}

fn violation(key: &str, ops: Vec<Op>, longest: Vec<usize>) -> Violation {
    let mut stuck: Vec<usize> = (0..ops.len())
        .filter(|i| ops[*i].ret.is_some() && !longest.contains(i))
        .collect();
    stuck.sort_by_key(|&i| ops[i].ret.as_ref().map(|r| r.0));
    Violation {
        key: key.to_string(),
        ops,
        longest_prefix: longest,
        stuck,
    }
}
