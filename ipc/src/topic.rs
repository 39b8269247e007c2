//! AMQP topic matching.
//!
//! A routing key is a list of words separated by `.`; the empty key has no
//! words, `a..b` has three (the middle one empty). A topic pattern is such a
//! list where a word may also be `*` (exactly one word) or `#` (zero or more
//! words). Wildcards are whole words: `a*` is a literal word, not a wildcard.
//! Keys may not contain `*` or `#` words, so a key never looks like a pattern.

use crate::layout::MAX_KEY_LEN;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Word {
    Literal(Box<str>),
    One,
    Many,
}

/// A parsed topic pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    words: Vec<Word>,
}

fn words(s: &str) -> impl Iterator<Item = &str> {
    // "" has no words; otherwise split on every '.'.
    let empty = s.is_empty();
    s.split('.').filter(move |_| !empty)
}

impl Topic {
    /// Parses a pattern of at most 192 bytes.
    pub fn parse(pattern: &str) -> Result<Topic, &'static str> {
        if pattern.len() > MAX_KEY_LEN {
            return Err("longer than 192 bytes");
        }
        let mut out: Vec<Word> = Vec::new();
        for w in words(pattern) {
            let word = match w {
                "*" => Word::One,
                "#" => Word::Many,
                lit => Word::Literal(lit.into()),
            };
            // `#.#` means the same as `#`; collapsing keeps matching linear.
            if word == Word::Many && out.last() == Some(&Word::Many) {
                continue;
            }
            out.push(word);
        }
        Ok(Topic { words: out })
    }

    /// True when `key` matches the pattern. Allocation-free, O(pattern ×
    /// key) words in the worst case.
    pub fn matches(&self, key: &str) -> bool {
        // Greedy glob matching with one backtrack point: `#` behaves like a
        // glob `*` over words, `*` like `?`. One backtrack point suffices
        // because `#` is the only variable-length element. Key positions are
        // suffixes of the key (`None`: no words left).
        let p = &self.words;
        let mut k = (!key.is_empty()).then_some(key);
        let mut pi = 0usize;
        let mut backtrack: Option<(usize, &str)> = None;
        while let Some(rest) = k {
            let (word, next) = split_word(rest);
            match p.get(pi) {
                Some(Word::Many) => {
                    backtrack = Some((pi, rest));
                    pi += 1;
                    continue;
                }
                Some(Word::One) => {
                    pi += 1;
                    k = next;
                    continue;
                }
                Some(Word::Literal(l)) if **l == *word => {
                    pi += 1;
                    k = next;
                    continue;
                }
                _ => {}
            }
            let Some((bp, from)) = backtrack else {
                return false;
            };
            // Let the last `#` swallow one more word.
            let after = split_word(from).1;
            pi = bp + 1;
            k = after;
            backtrack = after.map(|a| (bp, a));
        }
        p[pi..].iter().all(|w| *w == Word::Many)
    }
}

/// First word of a non-empty word list and the rest (`None`: no more words).
fn split_word(s: &str) -> (&str, Option<&str>) {
    match s.find('.') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// Checks a routing key: at most 192 bytes, no `*` or `#` word.
pub fn check_key(key: &str) -> Result<(), &'static str> {
    if key.len() > MAX_KEY_LEN {
        return Err("longer than 192 bytes");
    }
    if words(key).any(|w| w == "*" || w == "#") {
        return Err("a routing key may not contain '*' or '#' words");
    }
    Ok(())
}

/// True when `key` matches `pattern` (a convenience; parse once with
/// [`Topic::parse`] to match many keys).
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    Topic::parse(pattern).is_ok_and(|t| t.matches(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, k: &str) -> bool {
        topic_matches(p, k)
    }

    #[test]
    fn literal_words_match_exactly() {
        assert!(m("a.b", "a.b"));
        assert!(!m("a.b", "a.c"));
        assert!(!m("a.b", "a.b.c"));
        assert!(!m("a.b.c", "a.b"));
        assert!(!m("a", "ab"));
    }

    #[test]
    fn star_is_exactly_one_word() {
        assert!(m("a.*", "a.b"));
        assert!(!m("a.*", "a"));
        assert!(!m("a.*", "a.b.c"));
        assert!(m("*.b", "x.b"));
        assert!(m("*", "x"));
        assert!(!m("*", ""));
        assert!(m("a.*.c", "a..c"), "an empty word is a word");
    }

    #[test]
    fn hash_is_zero_or_more_words() {
        assert!(m("a.#", "a"), "# matches zero words");
        assert!(m("a.#", "a.b"));
        assert!(m("a.#", "a.b.c.d"));
        assert!(!m("a.#", "b.a"));
        assert!(m("#", ""));
        assert!(m("#", "x.y.z"));
        assert!(m("#.z", "z"));
        assert!(m("#.z", "a.b.z"));
        assert!(!m("#.z", "a.z.b"));
    }

    #[test]
    fn hash_in_the_middle() {
        assert!(m("a.#.b", "a.b"));
        assert!(m("a.#.b", "a.x.b"));
        assert!(m("a.#.b", "a.x.y.b"));
        assert!(m("a.#.b", "a.b.b"));
        assert!(!m("a.#.b", "a.x.y"));
        assert!(!m("a.#.b", "b.a.b"));
        assert!(m("#.a.#", "x.a.y"));
        assert!(m("a.#.#.b", "a.b"));
        assert!(m("#.*", "x"));
        assert!(!m("#.*", ""));
        assert!(m("*.#.*", "a.b"));
        assert!(!m("*.#.*", "a"));
    }

    #[test]
    fn empty_words_and_empty_key() {
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(!m("a", ""));
        assert!(m("a..b", "a..b"));
        assert!(!m("a..b", "a.b"));
        assert!(m(".", "."), "two empty words");
        assert!(m("*.*", "."));
        assert!(m("a.#", "a."), "trailing empty word");
    }

    #[test]
    fn wildcards_are_whole_words_only() {
        assert!(m("a*", "a*"));
        assert!(!m("a*", "ab"));
        assert!(!m("a#", "a.b"));
    }

    #[test]
    fn keys_are_checked() {
        assert!(check_key("a.b").is_ok());
        assert!(check_key("").is_ok());
        assert!(check_key("a.*").is_err());
        assert!(check_key("#").is_err());
        assert!(check_key(&"x".repeat(193)).is_err());
        assert!(Topic::parse(&"x".repeat(193)).is_err());
    }
}
