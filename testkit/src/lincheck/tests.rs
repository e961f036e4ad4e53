//! Tests of the checker itself: it accepts linearizable histories and, as important, it
//! rejects the classic violations. Hand-written cases pin down each rule; a differential
//! test against a brute-force enumeration of orderings covers the corners nobody
//! thought of.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const K: &str = "k";

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn opt(v: Option<&str>) -> Option<String> {
    v.map(str::to_string)
}

fn done(client: usize, input: Input, call: u64, ret: u64, out: Output) -> Op {
    Op {
        client,
        key: K.into(),
        input,
        call,
        ret: Some((ret, out)),
    }
}

fn write(c: usize, v: &str, call: u64, ret: u64) -> Op {
    let prev = Prev::Unreported;
    done(c, Input::Write(v.into()), call, ret, Output::Written { prev })
}

fn write_prev(c: usize, v: &str, prev: Option<&str>, call: u64, ret: u64) -> Op {
    let prev = Prev::Was(opt(prev));
    done(c, Input::Write(v.into()), call, ret, Output::Written { prev })
}

fn cas(c: usize, expected: Option<&str>, new: &str, ok: bool, call: u64, ret: u64) -> Op {
    let input = Input::Cas {
        expected: opt(expected),
        new: new.into(),
    };
    let prev = Prev::Unreported;
    done(c, input, call, ret, Output::Swapped { ok, prev })
}

fn read(c: usize, v: Option<&str>, call: u64, ret: u64) -> Op {
    done(c, Input::Read, call, ret, Output::Read(opt(v)))
}

fn pending(c: usize, input: Input, call: u64) -> Op {
    Op {
        client: c,
        key: K.into(),
        input,
        call,
        ret: None,
    }
}

fn pending_write(c: usize, v: &str, call: u64) -> Op {
    pending(c, Input::Write(v.into()), call)
}

/// The verdict, asserting that pruning does not change it.
fn linearizable(ops: &[Op]) -> bool {
    let pruned = check(ops, Options::default());
    let full = check(
        ops,
        Options {
            prune: false,
            ..Options::default()
        },
    );
    assert!(pruned.gave_up.is_empty() && full.gave_up.is_empty());
    assert_eq!(pruned.ok(), full.ok(), "pruning changed the verdict on {ops:#?}");
    full.ok()
}

#[test]
fn empty_and_sequential_histories_are_linearizable() {
    assert!(linearizable(&[]));
    assert!(linearizable(&[
        read(0, None, 0, 1),
        write(0, "a", 2, 3),
        read(1, Some("a"), 4, 5),
        cas(1, Some("a"), "b", true, 6, 7),
        read(0, Some("b"), 8, 9),
        cas(0, Some("a"), "c", false, 10, 11),
        cas(0, None, "d", false, 12, 13),
        read(1, Some("b"), 14, 15),
    ]));
}

/// Concurrent operations may take effect in either order, each somewhere in its interval.
#[test]
fn concurrent_operations_may_take_effect_in_either_order() {
    // The read overlaps the write: it may see the old or the new value.
    assert!(linearizable(&[write(0, "a", 0, 10), read(1, None, 1, 2)]));
    assert!(linearizable(&[write(0, "a", 0, 10), read(1, Some("a"), 1, 2)]));
    // Two overlapping writes, then reads agreeing on the second-linearized one.
    assert!(linearizable(&[
        write(0, "a", 0, 10),
        write(1, "b", 1, 11),
        read(2, Some("a"), 12, 13),
        read(3, Some("a"), 14, 15),
    ]));
    // Reads inside a long write may see its value early; later reads then keep seeing it.
    assert!(linearizable(&[
        write(0, "a", 0, 1),
        write(1, "b", 2, 20),
        read(2, Some("b"), 3, 4),
        read(3, Some("b"), 5, 6),
    ]));
}

/// Intervals that only touch (one returns at the instant the other is called) are
/// treated as concurrent: the real intervals lie inside the recorded ones, so ordering
/// them would invent a precedence the system may not have had.
#[test]
fn touching_intervals_count_as_concurrent() {
    assert!(linearizable(&[write(0, "a", 0, 5), read(1, None, 5, 6)]));
    assert!(!linearizable(&[write(0, "a", 0, 5), read(1, None, 6, 7)]));
}

#[test]
fn stale_read_after_a_completed_write_is_rejected() {
    let h = [write(0, "a", 0, 1), write(1, "b", 2, 3), read(2, Some("a"), 4, 5)];
    assert!(!linearizable(&h));
    // Reading nothing after a completed write is the same violation.
    assert!(!linearizable(&[write(0, "a", 0, 1), read(1, None, 2, 3)]));
    // So is a value flickering back: b then a, with a written only once, before b.
    assert!(!linearizable(&[
        write(0, "a", 0, 1),
        write(1, "b", 2, 10),
        read(2, Some("b"), 3, 4),
        read(3, Some("a"), 5, 6),
    ]));
}

#[test]
fn two_successful_swaps_from_the_same_value_are_rejected() {
    let base = write(0, "a", 0, 1);
    // Both claim to have replaced "a", concurrently: only one can have.
    assert!(!linearizable(&[
        base.clone(),
        cas(1, Some("a"), "b", true, 2, 6),
        cas(2, Some("a"), "c", true, 3, 7),
    ]));
    // The same race with one loser is fine.
    assert!(linearizable(&[
        base.clone(),
        cas(1, Some("a"), "b", true, 2, 6),
        cas(2, Some("a"), "c", false, 3, 7),
    ]));
    // Two acquisitions of an absent key.
    assert!(!linearizable(&[
        cas(1, None, "b", true, 2, 6),
        cas(2, None, "c", true, 3, 7),
    ]));
}

#[test]
fn a_read_of_a_value_never_written_is_rejected() {
    assert!(!linearizable(&[read(0, Some("ghost"), 0, 1)]));
    assert!(!linearizable(&[
        write(0, "a", 0, 10),
        read(1, Some("ghost"), 1, 2)
    ]));
    // A value only a failed swap proposed was never written either.
    assert!(!linearizable(&[
        write(0, "a", 0, 1),
        cas(1, Some("x"), "b", false, 2, 3),
        read(2, Some("b"), 4, 5),
    ]));
}

#[test]
fn swap_results_must_match_the_register() {
    // It failed although the key held the expected value.
    assert!(!linearizable(&[
        write(0, "a", 0, 1),
        cas(1, Some("a"), "b", false, 2, 3)
    ]));
    // It succeeded although the key was absent.
    assert!(!linearizable(&[cas(1, Some("a"), "b", true, 2, 3)]));
    // A successful swap's value is what later reads see.
    assert!(!linearizable(&[
        write(0, "a", 0, 1),
        cas(1, Some("a"), "b", true, 2, 3),
        read(2, Some("a"), 4, 5),
    ]));
}

/// A write's reported previous value is an observation like a read.
#[test]
fn reported_previous_values_are_checked() {
    assert!(linearizable(&[
        write_prev(0, "a", None, 0, 1),
        write_prev(1, "b", Some("a"), 2, 3),
    ]));
    assert!(!linearizable(&[
        write_prev(0, "a", None, 0, 1),
        write_prev(1, "b", None, 2, 3),
    ]));
    let failed = done(
        1,
        Input::Cas {
            expected: s("x"),
            new: "b".into(),
        },
        2,
        3,
        Output::Swapped {
            ok: false,
            prev: Prev::Was(s("z")),
        },
    );
    assert!(!linearizable(&[write(0, "a", 0, 1), failed]));
}

/// A write of unknown outcome may take effect any time after its call, or never: it
/// makes an otherwise impossible read legal, but only after its invocation, and it takes
/// effect at most once.
#[test]
fn a_pending_write_may_take_effect_late_or_never() {
    let a = write(0, "a", 0, 1);
    // Without the pending write, "b" was never written.
    assert!(!linearizable(&[a.clone(), read(2, Some("b"), 10, 11)]));
    // With it, the read is legal, however long after the call.
    assert!(linearizable(&[
        a.clone(),
        pending_write(1, "b", 2),
        read(2, Some("a"), 5, 6),
        read(2, Some("b"), 10, 11),
        read(3, Some("b"), 100, 101),
    ]));
    // Never taking effect is legal too.
    assert!(linearizable(&[
        a.clone(),
        pending_write(1, "b", 2),
        read(2, Some("a"), 100, 101),
    ]));
    // But not before it was invoked.
    assert!(!linearizable(&[
        a.clone(),
        read(2, Some("b"), 3, 4),
        pending_write(1, "b", 5),
    ]));
    // And not twice: once "b" was seen, "a" cannot come back.
    assert!(!linearizable(&[
        a,
        pending_write(1, "b", 2),
        read(2, Some("b"), 3, 4),
        read(3, Some("a"), 5, 6),
    ]));
}

#[test]
fn a_pending_swap_takes_effect_only_if_its_condition_held() {
    let a = write(0, "a", 0, 1);
    let swap = |expected: &str| {
        pending(
            1,
            Input::Cas {
                expected: s(expected),
                new: "b".into(),
            },
            2,
        )
    };
    assert!(linearizable(&[a.clone(), swap("a"), read(2, Some("b"), 5, 6)]));
    assert!(!linearizable(&[a, swap("z"), read(2, Some("b"), 5, 6)]));
}

/// Each key is checked on its own, and only the bad key is reported.
#[test]
fn keys_are_checked_separately_and_the_violation_names_the_stuck_operation() {
    let mut h = vec![write(0, "a", 0, 1), read(1, Some("a"), 2, 3)];
    let other = |mut op: Op| {
        op.key = "other".into();
        op
    };
    h.push(other(write(0, "x", 0, 1)));
    h.push(other(write(1, "y", 2, 3)));
    h.push(other(read(2, Some("x"), 4, 5)));
    let report = check(&h, Options::default());
    assert!(!report.ok());
    assert_eq!(report.violations.len(), 1);
    let v = &report.violations[0];
    assert_eq!(v.key, "other");
    // The stale read is where every attempt got stuck.
    assert_eq!(v.ops[v.stuck[0]].input, Input::Read);
    assert_eq!(v.longest_prefix.len(), 2);
    let text = v.to_string();
    assert!(text.contains("not linearizable") && text.contains("read => Some(\"x\")"));
}

/// Pruning keeps a pending write somebody observed and drops one nobody did.
#[test]
fn pruning_drops_only_unobserved_pending_writes() {
    let h = vec![
        write_prev(0, "a", None, 0, 1),
        pending_write(1, "seen", 2),
        pending_write(2, "unseen", 2),
        pending(3, Input::Read, 2),
        read(4, Some("seen"), 5, 6),
    ];
    let kept = prune_unobserved_pending(h.clone());
    assert_eq!(kept.len(), 3);
    assert!(kept.contains(&h[1]) && !kept.contains(&h[2]) && !kept.contains(&h[3]));
    // A completed write without a reported previous value disables pruning.
    let mut h2 = h.clone();
    h2[0] = write(0, "a", 0, 1);
    assert_eq!(prune_unobserved_pending(h2).len(), h.len());
}

/// A generated history and the ground truth of whether it can be linearized.
struct Generated {
    ops: Vec<Op>,
}

/// Runs a random execution of a correct register: each op takes effect at a random
/// instant inside its interval (a pending one: somewhere after its call, or never), so
/// the history is linearizable by construction.
fn generate(rng: &mut StdRng, clients: usize, per_client: usize, pending_p: f64) -> Generated {
    struct Planned {
        op: Op,
        at: Option<u64>,
    }
    let mut planned: Vec<Planned> = Vec::new();
    for c in 0..clients {
        let mut t = rng.gen_range(0..20u64);
        for i in 0..per_client {
            let call = t;
            let ret = call + rng.gen_range(1..40u64);
            let input = match rng.gen_range(0..10) {
                0..=3 => Input::Read,
                4..=6 => Input::Write(format!("c{c}-{i}")),
                _ => Input::Cas {
                    // Expected values: recent ones of any client, so some swaps succeed.
                    expected: if rng.gen_bool(0.2) {
                        None
                    } else {
                        let oc = rng.gen_range(0..clients);
                        let oi = i.saturating_sub(rng.gen_range(0..3));
                        Some(format!("c{oc}-{oi}"))
                    },
                    new: format!("c{c}-{i}"),
                },
            };
            let is_pending = input != Input::Read && rng.gen_bool(pending_p);
            let at = if is_pending {
                rng.gen_bool(0.5).then(|| call + rng.gen_range(0..200u64))
            } else {
                Some(rng.gen_range(call..=ret))
            };
            planned.push(Planned {
                op: Op {
                    client: c,
                    key: K.into(),
                    input,
                    call,
                    ret: (!is_pending).then_some((ret, Output::Read(None))),
                },
                at,
            });
            t = ret + rng.gen_range(0..10u64);
        }
    }
    // Apply in order of effect; outputs follow from the register.
    let mut order: Vec<usize> = (0..planned.len()).filter(|&i| planned[i].at.is_some()).collect();
    order.sort_by_key(|&i| planned[i].at);
    let mut reg: Option<String> = None;
    for i in order {
        let p = &mut planned[i];
        let prev = Prev::Was(reg.clone());
        let out = match &p.op.input {
            Input::Read => Output::Read(reg.clone()),
            Input::Write(v) => {
                reg = Some(v.clone());
                Output::Written { prev }
            }
            Input::Cas { expected, new } => {
                let ok = *expected == reg;
                if ok {
                    reg = Some(new.clone());
                }
                Output::Swapped { ok, prev }
            }
        };
        if let Some((_, o)) = &mut p.op.ret {
            *o = out;
        }
    }
    Generated {
        ops: planned.into_iter().map(|p| p.op).collect(),
    }
}

/// Changes one completed op's output to something else plausible.
fn mutate(rng: &mut StdRng, ops: &mut [Op]) {
    let done: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].ret.is_some()).collect();
    if done.is_empty() {
        return;
    }
    let i = done[rng.gen_range(0..done.len())];
    let values: Vec<Option<String>> = std::iter::once(None)
        .chain(ops.iter().filter_map(|o| match &o.input {
            Input::Write(v) | Input::Cas { new: v, .. } => Some(Some(v.clone())),
            Input::Read => None,
        }))
        .collect();
    let pick = values[rng.gen_range(0..values.len())].clone();
    if let Some((_, out)) = &mut ops[i].ret {
        match out {
            Output::Read(v) => *v = pick,
            Output::Written { prev } => *prev = Prev::Was(pick),
            Output::Swapped { ok, prev } => {
                if rng.gen_bool(0.5) {
                    *ok = !*ok;
                } else {
                    *prev = Prev::Was(pick);
                }
            }
        }
    }
}

/// Ground truth by enumeration: some order of the ops that respects real time (an op
/// that returned before another was called comes first), includes every completed op and
/// any subset of the pending ones, and that a register can produce.
fn brute_force(ops: &[Op]) -> bool {
    fn go(ops: &[Op], placed: &mut Vec<bool>, reg: Option<String>) -> bool {
        if (0..ops.len()).all(|i| placed[i] || ops[i].ret.is_none()) {
            return true;
        }
        for i in 0..ops.len() {
            if placed[i] {
                continue;
            }
            // Every unplaced completed op that returned before i's call must go first.
            let blocked = (0..ops.len())
                .any(|j| !placed[j] && j != i && matches!(&ops[j].ret, Some((t, _)) if *t < ops[i].call));
            if blocked {
                continue;
            }
            let out = ops[i].ret.as_ref().map(|r| &r.1);
            let prev_ok = |p: &Prev| match p {
                Prev::Unreported => true,
                Prev::Was(v) => *v == reg,
            };
            let next = match (&ops[i].input, out) {
                (Input::Read, None) => Some(reg.clone()),
                (Input::Read, Some(Output::Read(v))) => (*v == reg).then(|| reg.clone()),
                (Input::Write(v), None) => Some(Some(v.clone())),
                (Input::Write(v), Some(Output::Written { prev })) => prev_ok(prev).then(|| Some(v.clone())),
                (Input::Cas { expected, new }, out) => {
                    let holds = *expected == reg;
                    let fits = match out {
                        None => true,
                        Some(Output::Swapped { ok, prev }) => *ok == holds && prev_ok(prev),
                        Some(_) => false,
                    };
                    fits.then(|| if holds { Some(new.clone()) } else { reg.clone() })
                }
                _ => None,
            };
            if let Some(next) = next {
                placed[i] = true;
                if go(ops, placed, next) {
                    return true;
                }
                placed[i] = false;
            }
        }
        false
    }
    go(ops, &mut vec![false; ops.len()], None)
}

/// On thousands of small random histories, half of them with one output tampered with,
/// the checker (with and without pruning) agrees with brute force, and both verdicts
/// occur often: the checker is neither always-yes nor always-no.
#[test]
fn agrees_with_brute_force_on_small_random_histories() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let (mut yes, mut no) = (0, 0);
    for round in 0..4000 {
        let clients = rng.gen_range(1..=3);
        let per_client = rng.gen_range(1..=7 / clients);
        let mut g = generate(&mut rng, clients, per_client, 0.25);
        let tampered = round % 2 == 1;
        if tampered {
            mutate(&mut rng, &mut g.ops);
        }
        let truth = brute_force(&g.ops);
        if !tampered {
            assert!(truth, "a generated history must be linearizable: {:#?}", g.ops);
        }
        assert_eq!(linearizable(&g.ops), truth, "disagreement on {:#?}", g.ops);
        if truth {
            yes += 1;
        } else {
            no += 1;
        }
    }
    assert!(yes > 2000 && no > 500, "verdicts: {yes} yes, {no} no");
}

/// Histories of the size the cluster test produces are checked quickly, and one tampered
/// output among hundreds is still found.
#[test]
fn large_histories_are_checked_fast_and_one_bad_output_is_found() {
    let mut rng = StdRng::seed_from_u64(42);
    let started = std::time::Instant::now();
    let mut caught = 0;
    for _ in 0..10 {
        let mut g = generate(&mut rng, 6, 60, 0.03);
        let report = check(&g.ops, Options::default());
        assert!(report.ok(), "{}", report.violations[0]);
        // Tamper with reads until one lie is certainly detectable: a value never written.
        let reads: Vec<usize> = (0..g.ops.len())
            .filter(|&i| matches!(g.ops[i].ret, Some((_, Output::Read(_)))))
            .collect();
        let i = reads[rng.gen_range(0..reads.len())];
        g.ops[i].ret.as_mut().unwrap().1 = Output::Read(s("never-written"));
        let report = check(&g.ops, Options::default());
        assert!(report.gave_up.is_empty());
        if !report.ok() {
            caught += 1;
        }
    }
    assert_eq!(caught, 10);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "checking took {:?}",
        started.elapsed()
    );
}
