//! The dialogue scenario: a request answered by questions.
//!
//! The parent creates a request-response exchange ([`DIALOGUE`]) and starts
//! a server, then (once the server's port shows up) a client. The client
//! sends request [`TAG`] ([`OPENING`]); the server answers it with a
//! question ([`shmex::Request::ask`]) instead of a response, the client
//! answers the question ([`shmex::Client::answer`]), which reaches the same
//! server port as a request with [`shmex::Request::is_answer`] under the same
//! tag, and so on for the [`SCRIPT`]'s [`TURNS`] turns; then the server ends
//! the conversation with a plain response built from the answers.
//!
//! Correlation is checked on both sides: every question and the response
//! carry tag [`TAG`], and every question and answer its turn number
//! (`TURN|text`); the server checks each answer is an answer, of this
//! conversation, to the question it asked last; the client that each
//! question is the next one, and that the response sums up its answers.
//!
//! The client prints the conversation turn by turn, who said what: one
//! process prints all of it, so the lines come in the order things were
//! said (lines of two processes would reach the terminal in any order).

use super::child::{fail, text, Context, Ctx, Res};
use super::stats::format_ns;
use super::{check_idle, create, Demo, Role, DIALOGUE};
use shmex::{Node, Pattern};
use std::time::Instant;

/// The conversation's tag.
pub const TAG: u64 = 42;
/// What the client asks for.
pub const OPENING: &str = "I'd like a table for tonight.";
/// The server's questions, with the client's answers.
pub const SCRIPT: [(&str, &str); 5] = [
    ("For how many people?", "four"),
    ("At what time?", "eight o'clock"),
    ("Inside, or on the terrace?", "on the terrace"),
    ("Anything you cannot eat?", "peanuts"),
    ("Under which name?", "Ada"),
];
/// Questions asked (and answered) before the response.
pub const TURNS: u64 = SCRIPT.len() as u64;
/// Label of the client, whose `json:` line `shmex demo dialogue --json`
/// prints.
pub const CLIENT_LABEL: &str = "dialogue-client";

/// The server's closing response, from the client's answers.
fn closing<S: AsRef<str>>(tag: u64, answers: &[S]) -> String {
    let a = |i: usize| answers.get(i).map_or("?", |s| s.as_ref());
    format!(
        "Booked: a table for {} at {}, {}, without {}, under the name {} (booking {tag}, {} answers).",
        a(0),
        a(1),
        a(2),
        a(3),
        a(4),
        answers.len()
    )
}

/// A question's or answer's payload: `TURN|text`.
fn numbered(turn: u64, text: &str) -> String {
    format!("{turn}|{text}")
}

/// Splits a `TURN|text` payload.
fn parse_numbered(payload: &[u8]) -> Option<(u64, String)> {
    let s = std::str::from_utf8(payload).ok()?;
    let (turn, text) = s.split_once('|')?;
    Some((turn.parse().ok()?, text.to_string()))
}

/// The scenario (see the module doc).
pub(super) fn scenario(demo: &Demo, node: &Node) -> Result<(), String> {
    let ex = create(node, DIALOGUE, Pattern::RequestResponse)?;
    let mut kids = demo.children();
    kids.spawn(&demo.child(Role::DialogueServer))?;
    kids.wait_for("the dialogue server to attach", || ex.ports() >= 1)?;
    kids.spawn(&demo.child(Role::DialogueClient))?;
    kids.finish()?;
    check_idle(&ex)
}

/// One line of the transcript: who does what, under which tag and turn.
fn said(who_does: &str, turn: Option<u64>, text: &str) -> String {
    let detail = match turn {
        Some(t) => format!("(tag {TAG}, turn {t}):"),
        None => format!("(tag {TAG}):"),
    };
    format!("{who_does:<15} {detail:<17} {text}")
}

impl Ctx {
    /// Holds one conversation: asks the [`SCRIPT`]'s questions, checking
    /// each answer, then responds.
    pub(super) fn dialogue_server(&self) -> Res {
        let node = self.node("dialogue-server")?;
        let server = node.open_exchange(DIALOGUE)?.server()?;
        say!(self, "serving exchange {DIALOGUE}");
        let first = server
            .receive_timeout(self.timeout())
            .context(|| "waiting for a request".into())?;
        let tag = first.tag();
        if first.is_answer() {
            return fail(format!("the first request ({tag}) is an answer"));
        }
        say!(
            self,
            "conversation {tag} opened by {:?}: asking {TURNS} questions before responding",
            text(&first)
        );
        let mut answers: Vec<String> = Vec::new();
        let mut request = first;
        for (turn, (question, _)) in (1..).zip(SCRIPT) {
            request
                .ask(numbered(turn, question).as_bytes())
                .context(|| format!("asking question {turn}"))?;
            request = server
                .receive_timeout(self.timeout())
                .context(|| format!("waiting for the answer to question {turn}"))?;
            if !request.is_answer() || request.tag() != tag {
                return fail(format!(
                    "expected the answer to question {turn} of conversation {tag}, got {} request {} ({:?})",
                    if request.is_answer() { "an answer to" } else { "a new" },
                    request.tag(),
                    text(&request)
                ));
            }
            match parse_numbered(&request) {
                Some((t, answer)) if t == turn => answers.push(answer),
                _ => {
                    return fail(format!(
                        "answer {:?} is not numbered {turn}, the question asked",
                        text(&request)
                    ))
                }
            }
        }
        request
            .respond(closing(tag, &answers).as_bytes())
            .context(|| "responding".into())?;
        say!(
            self,
            "conversation {tag}: asked {TURNS} questions, each answered under tag {tag} with the turn asked; closed with a plain response"
        );
        Ok(())
    }

    /// Starts the conversation, answers every question, checks the closing
    /// response; prints it all turn by turn.
    pub(super) fn dialogue_client(&self) -> Res {
        let node = self.node("dialogue-client")?;
        let client = node.open_exchange(DIALOGUE)?.client()?;
        let mut transcript = vec![said("client requests", None, OPENING)];
        let outcome = self.converse(&client, &mut transcript);
        // Everything said so far, also when the conversation went wrong.
        for line in &transcript {
            say!(self, "{line}");
        }
        let (questions, elapsed) = outcome?;
        if client.outstanding() != 0 {
            return fail(format!(
                "{} requests still outstanding after the response",
                client.outstanding()
            ));
        }
        let round_trips = questions + 1;
        let per = elapsed.as_nanos() as u64 / round_trips;
        self.result(format!(
            "dialogue: {questions} turns (ask, answer) under tag {TAG}, closed by a plain response; tags and turn numbers checked on both sides; {round_trips} round trips in {} ({} each)",
            format_ns(elapsed.as_nanos() as u64),
            format_ns(per)
        ));
        self.json(&format!(
            "{{\"tag\":{TAG},\"turns\":{TURNS},\"questions\":{questions},\"answers\":{questions},\"closed\":true,\"nanos_per_round_trip\":{per}}}"
        ));
        Ok(())
    }

    /// The conversation itself; returns the questions answered and how long
    /// it took. Adds each turn to `transcript` as it happens (printed after,
    /// so printing does not slow the exchange down).
    fn converse(
        &self,
        client: &shmex::Client,
        transcript: &mut Vec<String>,
    ) -> Result<(u64, std::time::Duration), Box<dyn std::error::Error>> {
        let start = Instant::now();
        client
            .send(TAG, OPENING.as_bytes())
            .context(|| "sending the request".into())?;
        let mut answered: Vec<&str> = Vec::new();
        loop {
            let expected = answered.len() as u64 + 1;
            let s = client
                .receive_timeout(self.timeout())
                .context(|| format!("waiting for question {expected} or the response"))?;
            if s.tag() != TAG {
                return Err(format!("a message of tag {} in conversation {TAG}", s.tag()).into());
            }
            if s.is_stream_chunk() || s.is_stream_end() {
                return Err(format!("a stream event in conversation {TAG}: {s:?}").into());
            }
            if !s.is_question() {
                // The plain response: the conversation is over.
                let elapsed = start.elapsed();
                let response = text(&s);
                transcript.push(said("server responds", None, &response));
                if answered.len() as u64 != TURNS {
                    return Err(format!(
                        "the response came after {} of {TURNS} questions",
                        answered.len()
                    )
                    .into());
                }
                if response != closing(TAG, &answered) {
                    return Err("the response does not sum up the answers".into());
                }
                return Ok((answered.len() as u64, elapsed));
            }
            let Some((turn, question)) = parse_numbered(&s) else {
                return Err(format!("question {:?} has no turn number", text(&s)).into());
            };
            transcript.push(said("server asks", Some(turn), &question));
            let Some(&(scripted, answer)) = SCRIPT.get(answered.len()) else {
                return Err(format!("question {turn}: more than {TURNS} questions").into());
            };
            if turn != expected || question != scripted {
                return Err(format!(
                    "question {turn} {question:?}, expected question {expected} {scripted:?}"
                )
                .into());
            }
            client
                .answer(&s, numbered(turn, answer).as_bytes())
                .context(|| format!("answering question {turn}"))?;
            transcript.push(said("client answers", Some(turn), answer));
            answered.push(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_payloads_round_trip() {
        let p = numbered(3, "on the terrace | please");
        assert_eq!(
            parse_numbered(p.as_bytes()),
            Some((3, "on the terrace | please".to_string()))
        );
        assert_eq!(parse_numbered(b"no turn"), None);
        assert_eq!(parse_numbered(b"x|y"), None);
    }

    #[test]
    fn closing_sums_up_the_answers() {
        let answers: Vec<&str> = SCRIPT.iter().map(|(_, a)| *a).collect();
        let c = closing(TAG, &answers);
        assert!(c.contains("a table for four at eight o'clock"), "{c}");
        assert!(
            c.contains("under the name Ada (booking 42, 5 answers)"),
            "{c}"
        );
    }
}
