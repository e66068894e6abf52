//! Whose clock is wrong when a follower and its leader disagree about the time.
//!
//! # Security
//!
//! The leader's clock stamps every entry (`Command::stamp`) and a follower refuses an entry
//! whose time is more than [`ENTRY_SKEW_SECS`] from its own clock (`raft::append_guard`). When
//! that happens one of the two clocks is wrong, and the follower asks the other voters for
//! theirs: if its own clock has more company than the leader's (itself included), the leader is
//! the one that is off, and the follower stops following it (no appends, no vote) for
//! [`DISTRUST`], so that the honest nodes elect a leader among themselves. Otherwise this node's
//! own clock is off and it says so; it still follows, taking entries once they are committed.
//! A node cannot make honest nodes distrust a leader with a good clock unless most voters lie
//! about the time, and a lying leader can at worst stall until it is deposed.

use std::time::Duration;

/// How far an entry's time may be from a follower's clock when it appends it, in seconds.
pub const ENTRY_SKEW_SECS: u64 = 10;

/// How long a follower ignores a leader whose clock it judged wrong.
pub const DISTRUST: Duration = Duration::from_secs(30);

/// What a follower concludes from the other voters' clocks.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The leader's clock is off: stop following it.
    LeaderIsOff,
    /// This node's clock is off (or nobody can tell): keep following.
    MineIsOff,
}

fn close(a: u64, b: u64) -> bool {
    a.abs_diff(b) <= ENTRY_SKEW_SECS * 1000
}

/// `mine` and `leader` are Unix milliseconds; `others` are the clocks the other voters
/// (the leader excluded) reported.
pub fn judge(mine: u64, leader: u64, others: &[u64]) -> Verdict {
    let with_me = 1 + others.iter().filter(|t| close(**t, mine)).count();
    let with_leader = 1 + others.iter().filter(|t| close(**t, leader)).count();
    if with_me > with_leader {
        Verdict::LeaderIsOff
    } else {
        Verdict::MineIsOff
    }
}

/// This node's clock, in Unix milliseconds.
pub fn now_millis() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000_000;

    #[test]
    fn the_clock_most_voters_share_decides() {
        // Three voters: a leader 60 s ahead, and the other follower agrees with me.
        assert_eq!(judge(T, T + 60_000, &[T + 500]), Verdict::LeaderIsOff);
        // I am 60 s ahead; the other follower agrees with the leader.
        assert_eq!(judge(T + 60_000, T, &[T + 300]), Verdict::MineIsOff);
        // Nobody else answered: a tie, keep following.
        assert_eq!(judge(T, T + 60_000, &[]), Verdict::MineIsOff);
        // Five voters, two of the three others with me.
        assert_eq!(
            judge(T, T + 60_000, &[T + 1_000, T - 2_000, T + 60_500]),
            Verdict::LeaderIsOff
        );
    }
}
