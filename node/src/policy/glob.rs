//! Path-pattern matching for policy rules: `+` is one path segment, `*` is
//! any run of characters (including `/` and the empty run), everything else
//! is literal.
//!
//! Matching is a simulation of a small non-deterministic automaton, so it
//! costs at most `O(len(pattern) * len(path))` whatever the pattern. A
//! policy author (or whoever can write a policy) must not be able to stall
//! the authorisation path of every request with a pattern such as
//! `*a*a*a*a*b`, which makes naive backtracking matchers exponential.

/// One step of a compiled pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Exactly this byte.
    Byte(u8),
    /// Exactly one byte that is not `/` (the mandatory first character of a
    /// `+` segment, so that `+` never matches an empty segment).
    SegByte,
    /// Zero or more bytes that are not `/` (the rest of a `+` segment).
    SegStar,
    /// Zero or more arbitrary bytes (`*`).
    AnyStar,
}

impl Step {
    /// Whether the step may consume nothing, letting the automaton move on.
    fn can_skip(self) -> bool {
        matches!(self, Step::SegStar | Step::AnyStar)
    }
}

/// Compiles a pattern into steps. Matching works on bytes: `/` is ASCII, and
/// a UTF-8 multi-byte character never contains the byte `/`, so byte-wise
/// matching gives the same answers as character-wise matching.
fn compile(pattern: &str) -> Vec<Step> {
    let mut steps = Vec::with_capacity(pattern.len() + 1);
    for &byte in pattern.as_bytes() {
        match byte {
            b'+' => {
                steps.push(Step::SegByte);
                steps.push(Step::SegStar);
            }
            // `**` means the same as `*`; collapsing keeps the automaton small.
            b'*' if steps.last() == Some(&Step::AnyStar) => {}
            b'*' => steps.push(Step::AnyStar),
            other => steps.push(Step::Byte(other)),
        }
    }
    steps
}

/// Marks every state reachable from an active state without consuming input.
/// Skip edges only go forward (`i` to `i + 1`), so one forward pass suffices.
fn close(steps: &[Step], states: &mut [bool]) {
    for (i, step) in steps.iter().enumerate() {
        if states[i] && step.can_skip() {
            states[i + 1] = true;
        }
    }
}

/// Reports whether `path` matches `pattern` as a whole (anchored at both ends).
///
/// `+` matches one or more characters other than `/`, wherever it appears;
/// `*` matches any sequence, including `/` and the empty sequence. So
/// `prod/db/*` matches `prod/db/`, `prod/db/x` and `prod/db/x/y`, but not
/// `prod/db`: a grant on the children of a path must not silently extend to
/// the path itself.
///
/// The path is compared exactly as given; normalising it (for example
/// resolving `..`) is the caller's job, see [`super::allowed`].
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let steps = compile(pattern);
    let accept = steps.len();
    let mut current = vec![false; accept + 1];
    let mut next = vec![false; accept + 1];
    current[0] = true;
    close(&steps, &mut current);

    for &byte in path.as_bytes() {
        next.fill(false);
        let mut alive = false;
        for (i, step) in steps.iter().enumerate() {
            if !current[i] {
                continue;
            }
            let target = match *step {
                Step::Byte(expected) if expected == byte => Some(i + 1),
                Step::SegByte if byte != b'/' => Some(i + 1),
                Step::SegStar if byte != b'/' => Some(i),
                Step::AnyStar => Some(i),
                _ => None,
            };
            if let Some(target) = target {
                next[target] = true;
                alive = true;
            }
        }
        if !alive {
            return false;
        }
        close(&steps, &mut next);
        std::mem::swap(&mut current, &mut next);
    }
    current[accept]
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn literal_patterns_match_only_themselves() {
        assert!(glob_match("prod/db/config", "prod/db/config"));
        assert!(!glob_match("prod/db/config", "prod/db/config2"));
        assert!(!glob_match("prod/db/config", "prod/db/confi"));
        assert!(!glob_match("prod/db/config", "Prod/db/config"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
        assert!(!glob_match("a", ""));
    }

    #[test]
    fn regex_metacharacters_are_literal() {
        assert!(glob_match("a.b", "a.b"));
        assert!(!glob_match("a.b", "axb"));
        assert!(glob_match("a?b[c]", "a?b[c]"));
        assert!(!glob_match("a?b", "axb"));
        assert!(glob_match("^x$", "^x$"));
    }

    #[test]
    fn star_matches_any_suffix_including_slashes_and_empty() {
        assert!(glob_match("prod/db/*", "prod/db/x"));
        assert!(glob_match("prod/db/*", "prod/db/x/y"));
        assert!(glob_match("prod/db/*", "prod/db/"));
        assert!(!glob_match("prod/db/*", "prod/db"));
        assert!(!glob_match("prod/db/*", "prod/dbx"));
        assert!(!glob_match("prod/db/*", "staging/db/x"));
    }

    #[test]
    fn star_alone_and_in_the_middle() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything/at/all"));
        assert!(glob_match("**", "a/b"));
        assert!(glob_match("prod/*/config", "prod/a/b/config"));
        assert!(glob_match("prod/*/config", "prod//config"));
        assert!(!glob_match("prod/*/config", "prod/config"));
        assert!(glob_match("*.pem", "certs/web.pem"));
        assert!(!glob_match("*.pem", "certs/web.pem.bak"));
        assert!(glob_match("a*b*c", "abc"));
        assert!(glob_match("a*b*c", "a/x/b/y/c"));
        assert!(!glob_match("a*b*c", "acb"));
    }

    #[test]
    fn plus_matches_exactly_one_non_empty_segment() {
        assert!(glob_match("prod/+/config", "prod/x/config"));
        assert!(glob_match("prod/+/config", "prod/long-name/config"));
        assert!(!glob_match("prod/+/config", "prod//config"));
        assert!(!glob_match("prod/+/config", "prod/config"));
        assert!(!glob_match("prod/+/config", "prod/x/y/config"));
        assert!(glob_match("+", "a"));
        assert!(!glob_match("+", ""));
        assert!(!glob_match("+", "a/b"));
        assert!(glob_match("+/+", "a/b"));
        assert!(!glob_match("+/+", "a/"));
    }

    #[test]
    fn plus_inside_a_segment_and_combined_with_star() {
        assert!(glob_match("db-+", "db-main"));
        assert!(!glob_match("db-+", "db-"));
        assert!(!glob_match("db-+", "db-a/b"));
        assert!(glob_match("+/*", "a/"));
        assert!(glob_match("+/*", "a/b/c"));
        assert!(!glob_match("+/*", "/b"));
        assert!(glob_match("+*", "a/b"));
        assert!(glob_match("prod/+/*", "prod/x/y/z"));
        assert!(!glob_match("prod/+/*", "prod/x"));
    }

    #[test]
    fn non_ascii_paths() {
        assert!(glob_match("kv/+/x", "kv/émoji-🔑/x"));
        assert!(glob_match("kv/é*", "kv/été"));
        assert!(!glob_match("kv/é", "kv/e"));
    }

    #[test]
    fn pathological_patterns_finish_quickly() {
        let path = "a".repeat(20_000);
        let start = std::time::Instant::now();
        assert!(!glob_match("*a*a*a*a*a*a*a*a*a*a*b", &path));
        assert!(!glob_match("+a+a+a+a+a+a+a+a+a+b", &path));
        assert!(glob_match("*a*a*a*a*a*a*a*a*a*a", &path));
        // Linear-time matching takes milliseconds here; backtracking would
        // not finish at all. The bound is generous for slow CI machines.
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}
