//! An agent's stdout read line by line with few wake-ups ([`AgentOutput`]).
//!
//! Reading each line as it is written costs a thread wake-up per line: with 100 agents writing
//! 100 lines a second each, the server's threads were woken 10,000 times a second, and the
//! context switches alone took about as much CPU as storing the events. So the reader has two
//! modes:
//! - **Waiting** (an agent that writes now and then): the pipe is registered with the runtime's
//!   poller and a line is read as soon as it is written — a question, a turn's end, a lone
//!   status line reach the server at once.
//! - **Paced** (an agent that keeps writing): after [`CHATTY_WAKES`] wake-ups in a row each less
//!   than [`PACE`] after the one before, the pipe leaves the poller and is read every [`PACE`]
//!   (one wake-up then reads everything written meanwhile). A read that finds the pipe filling
//!   fast reads again at once (the pipe is also enlarged to [`PIPE_SIZE`], so a fast writer does
//!   not block between reads); [`IDLE_TICKS`] reads in a row that find nothing put the pipe
//!   back in the poller. A line of a chatty agent reaches the server at most [`PACE`] late.
//!
//! Lines are split on `\n` (a trailing `\r` is the decoder's business), decoded as UTF-8 lossily,
//! and a line longer than [`MAX_LINE`] is cut there (the rest, up to its newline, is dropped).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::{Duration, Instant};

/// How often a chatty agent's pipe is read.
pub const PACE: Duration = Duration::from_millis(20);
/// Wake-ups in a row, each less than [`PACE`] after the previous one, that make an agent chatty:
/// a CLI's burst at the end of a turn (its last message, usage, result: a few lines close
/// together) stays below it, so its turn's end is read at once; an agent that keeps writing
/// for a third of a second or more is paced.
pub const CHATTY_WAKES: u32 = 16;
/// Reads in a row that find nothing before a paced pipe goes back to the poller.
pub const IDLE_TICKS: u32 = 3;
/// A read of at least this much reads again at once rather than after [`PACE`].
const BUSY_READ: usize = 16 * 1024;
/// The size asked for a paced pipe (Linux's default is 64 KiB): 100 paced agents take 6,400
/// pages, well under the default per-user soft limit of 16,384.
pub const PIPE_SIZE: i32 = 256 * 1024;
/// The longest line kept whole.
pub const MAX_LINE: usize = 32 * 1024 * 1024;

/// The reading end of an agent's stdout, as lines.
pub struct AgentOutput {
    mode: Mode,
    /// Bytes read and not yet returned as lines; `start` is where the next line begins.
    buf: Vec<u8>,
    start: usize,
    /// Where the search for the next newline goes on (every byte before it, from `start`, was
    /// searched): each byte is searched once, however long the line.
    scanned: usize,
    /// What each `read` fills, zeroed once.
    scratch: Box<[u8]>,
    /// Dropping the rest of an over-long line, up to its newline.
    skipping: bool,
    /// The last wake-up in waiting mode, and how many came in a row fast.
    last_wake: Option<Instant>,
    fast_wakes: u32,
    /// Paced mode: reads in a row that found nothing.
    idle_ticks: u32,
    /// The longest line kept whole ([`MAX_LINE`]).
    max_line: usize,
    /// How often the reader went paced (for tests and diagnostics).
    paced_spells: u32,
    /// Whether a chatty agent may be read paced (not while draining).
    pacing: bool,
}

enum Mode {
    /// Registered with the poller.
    Waiting(AsyncFd<File>),
    /// Read at `next` (not registered).
    Paced { file: File, next: Instant },
    /// Gone (closed, or an error left nothing to read).
    Closed,
}

impl AgentOutput {
    /// Takes over the pipe of a child's stdout.
    pub fn new(stdout: tokio::process::ChildStdout) -> io::Result<Self> {
        let fd: OwnedFd = stdout.into_owned_fd()?;
        let file = File::from(fd);
        set_nonblocking(&file)?;
        Ok(Self {
            mode: Mode::Waiting(watch(file).map_err(|(_, err)| err)?),
            buf: Vec::with_capacity(8 * 1024),
            start: 0,
            scanned: 0,
            scratch: vec![0; 64 * 1024].into_boxed_slice(),
            skipping: false,
            last_wake: None,
            fast_wakes: 0,
            idle_ticks: 0,
            max_line: MAX_LINE,
            paced_spells: 0,
            pacing: true,
        })
    }

    /// The next line, or `None` once the pipe is closed and every line was returned.
    /// Cancel-safe: a call dropped while waiting loses nothing.
    pub async fn next_line(&mut self) -> Option<String> {
        // Lines already read come without waiting: give the runtime (and the supervisor's other
        // branches) their turn now and then, as a pipe read would. Before anything is taken
        // from the buffer, so that a call dropped at this point loses no line.
        tokio::task::consume_budget().await;
        loop {
            if let Some(line) = self.cut_line() {
                return Some(line);
            }
            match &mut self.mode {
                Mode::Closed => return self.rest(),
                Mode::Waiting(fd) => {
                    let Ok(mut guard) = fd.readable().await else {
                        self.close();
                        continue;
                    };
                    let mut file = fd.get_ref();
                    let (_, result) = read_available(&mut file, &mut self.scratch, &mut self.buf);
                    if matches!(result, Ok(ReadEnd::WouldBlock)) {
                        guard.clear_ready();
                    }
                    drop(guard);
                    self.after_read(result);
                    self.note_wake();
                }
                Mode::Paced { file, next } => {
                    tokio::time::sleep_until(*next).await;
                    let (read, result) = read_available(file, &mut self.scratch, &mut self.buf);
                    self.after_read(result);
                    self.next_tick(read);
                }
            }
        }
    }

    /// Reads every line as soon as it is written from now on (no more paced reads): for the
    /// drain after the agent exited, whose end should not wait for a tick.
    pub fn read_at_once(&mut self) {
        self.pacing = false;
        if let Mode::Paced { .. } = self.mode
            && let Mode::Paced { file, .. } = std::mem::replace(&mut self.mode, Mode::Closed)
        {
            match watch(file) {
                Ok(fd) => self.mode = Mode::Waiting(fd),
                Err((file, _)) => {
                    self.mode = Mode::Paced {
                        file,
                        next: Instant::now(),
                    }
                }
            }
        }
    }

    /// How many times the reader switched to paced reads.
    pub fn paced_spells(&self) -> u32 {
        self.paced_spells
    }

    /// Whether the pipe is read paced right now.
    pub fn is_paced(&self) -> bool {
        matches!(self.mode, Mode::Paced { .. })
    }

    /// A waiting-mode wake-up: chatty agents switch to paced reads.
    fn note_wake(&mut self) {
        let now = Instant::now();
        let fast = self.last_wake.is_some_and(|last| now - last < PACE);
        self.last_wake = Some(now);
        self.fast_wakes = if fast { self.fast_wakes + 1 } else { 0 };
        if self.pacing
            && self.fast_wakes >= CHATTY_WAKES
            && let Mode::Waiting(_) = self.mode
            && let Mode::Waiting(fd) = std::mem::replace(&mut self.mode, Mode::Closed)
        {
            self.fast_wakes = 0;
            self.idle_ticks = 0;
            self.paced_spells += 1;
            let file = fd.into_inner();
            enlarge(&file);
            self.mode = Mode::Paced {
                file,
                next: now + PACE,
            };
        }
    }

    /// After a paced read of `read` bytes: when to read next, or back to waiting.
    fn next_tick(&mut self, read: usize) {
        let now = Instant::now();
        self.idle_ticks = if read == 0 { self.idle_ticks + 1 } else { 0 };
        let back_to_waiting = self.idle_ticks >= IDLE_TICKS;
        match std::mem::replace(&mut self.mode, Mode::Closed) {
            Mode::Paced { file, .. } if back_to_waiting => match watch(file) {
                Ok(fd) => {
                    self.last_wake = None;
                    self.mode = Mode::Waiting(fd);
                }
                // Not registered (the poller refused it): go on reading it paced.
                Err((file, _)) => {
                    self.mode = Mode::Paced {
                        file,
                        next: now + PACE,
                    }
                }
            },
            Mode::Paced { file, .. } => {
                let next = if read >= BUSY_READ || !self.pacing {
                    now
                } else {
                    now + PACE
                };
                self.mode = Mode::Paced { file, next };
            }
            other => self.mode = other,
        }
    }

    fn after_read(&mut self, result: io::Result<ReadEnd>) {
        match result {
            Ok(ReadEnd::WouldBlock | ReadEnd::More) => {}
            // End of file, or an error: nothing more will come.
            Ok(ReadEnd::Eof) | Err(_) => self.close(),
        }
    }

    fn close(&mut self) {
        self.mode = Mode::Closed;
    }

    /// The next complete line of `buf`, if there is one (the rest of an over-long line is
    /// dropped up to its newline).
    fn cut_line(&mut self) -> Option<String> {
        loop {
            let from = self.scanned.max(self.start);
            let Some(at) = memchr(b'\n', &self.buf[from..]) else {
                self.scanned = self.buf.len();
                return self.cut_over_long();
            };
            let end = from + at;
            let line_start = self.start;
            self.start = end + 1;
            self.scanned = self.start;
            let line = if self.skipping {
                self.skipping = false;
                None
            } else {
                let cut = end.min(line_start + self.max_line);
                Some(String::from_utf8_lossy(&self.buf[line_start..cut]).into_owned())
            };
            self.compact();
            if line.is_some() {
                return line;
            }
        }
    }

    /// An unterminated line longer than `max_line`: its first `max_line` bytes as a line, the
    /// rest dropped as it comes.
    fn cut_over_long(&mut self) -> Option<String> {
        if self.buf.len() - self.start <= self.max_line {
            return None;
        }
        let line = (!self.skipping).then(|| {
            let cut = self.start + self.max_line;
            String::from_utf8_lossy(&self.buf[self.start..cut]).into_owned()
        });
        self.skipping = true;
        self.start = self.buf.len();
        self.scanned = self.start;
        self.compact();
        line
    }

    /// Drops the bytes already returned once they are most of the buffer.
    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
        } else if self.start > self.buf.len() / 2 && self.start > 64 * 1024 {
            self.buf.drain(..self.start);
        } else {
            return;
        }
        self.scanned -= self.start.min(self.scanned);
        self.start = 0;
    }

    /// What is left after the pipe closed: an unterminated last line, once.
    fn rest(&mut self) -> Option<String> {
        let line = (!self.skipping && self.start < self.buf.len())
            .then(|| String::from_utf8_lossy(&self.buf[self.start..]).into_owned());
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
        line
    }
}

/// How a read of what the pipe holds ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    /// Everything written so far was read.
    WouldBlock,
    /// [`MAX_READ`] was read: there may be more.
    More,
    /// The writer closed the pipe.
    Eof,
}

/// At most this much is read at once (then the lines are handed on before reading more).
const MAX_READ: usize = 1 << 20;

/// Reads what the pipe holds into `buf` (through `scratch`), at most about [`MAX_READ`]:
/// `(bytes read, how it ended)`.
fn read_available(
    file: &mut impl Read,
    scratch: &mut [u8],
    buf: &mut Vec<u8>,
) -> (usize, io::Result<ReadEnd>) {
    let mut total = 0;
    while total < MAX_READ {
        match file.read(scratch) {
            Ok(0) => return (total, Ok(ReadEnd::Eof)),
            Ok(n) => {
                buf.extend_from_slice(&scratch[..n]);
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return (total, Ok(ReadEnd::WouldBlock));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (total, Err(e)),
        }
    }
    (total, Ok(ReadEnd::More))
}

/// Registers the pipe with the runtime's poller (read readiness only).
fn watch(file: File) -> Result<AsyncFd<File>, (File, io::Error)> {
    // SAFETY: `file` owns its descriptor, which stays open and the same while the `AsyncFd`
    // owns `file` (until `into_inner` or drop): `as_raw_fd` always returns it.
    unsafe { AsyncFd::register_with_interest(file, Interest::READABLE) }
        .map_err(|err| err.into_parts())
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|b| *b == needle)
}

/// `O_NONBLOCK` on the pipe (the runtime's handle gave it back blocking).
fn set_nonblocking(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is a valid descriptor owned by `file` for the duration of these calls;
    // F_GETFL/F_SETFL take and return plain integers and touch no memory.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A larger pipe buffer for a paced pipe, when the kernel allows it (a failure is harmless: the
/// pipe keeps its size). Only paced pipes grow: each counts against the user's pipe pages.
fn enlarge(file: &File) {
    // SAFETY: the descriptor is owned by `file` for the call; F_SETPIPE_SZ takes an integer and
    // touches no memory.
    let _ = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    fn child(script: &str) -> (tokio::process::Child, AgentOutput) {
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let output = AgentOutput::new(child.stdout.take().unwrap()).unwrap();
        (child, output)
    }

    async fn all_lines(output: &mut AgentOutput) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(line) = output.next_line().await {
            lines.push(line);
        }
        lines
    }

    #[tokio::test]
    async fn lines_split_across_writes_an_unterminated_last_line_and_bad_utf8_come_whole() {
        let (_child, mut output) = child(r"printf 'one\ntw'; printf 'o\n\nthr\377ee\nlast'");
        assert_eq!(
            all_lines(&mut output).await,
            vec!["one", "two", "", "thr\u{fffd}ee", "last"]
        );
        assert_eq!(output.next_line().await, None, "the end stays the end");
    }

    #[tokio::test]
    async fn an_over_long_line_is_cut_and_the_next_line_is_whole() {
        let (_child, mut output) = child("printf '0123456789abcdef\nshort\n'");
        output.max_line = 10;
        assert_eq!(all_lines(&mut output).await, vec!["0123456789", "short"]);
    }

    #[tokio::test]
    async fn a_chatty_agent_is_read_paced_then_waited_for_again_once_quiet() {
        // 150 lines 2 ms apart, a pause, then one more line.
        let (_child, mut output) = child(
            "i=0; while [ $i -lt 150 ]; do echo line $i; sleep 0.002; i=$((i+1)); done; sleep 0.3; echo after",
        );
        let lines = all_lines_until(&mut output, "after").await;
        let expected: Vec<String> = (0..150)
            .map(|i| format!("line {i}"))
            .chain(["after".to_string()])
            .collect();
        assert_eq!(lines, expected, "every line, in order");
        assert!(output.paced_spells() >= 1, "a chatty agent is read paced");
        assert!(
            !output.is_paced(),
            "after a quiet spell the pipe is waited for again"
        );
    }

    async fn all_lines_until(output: &mut AgentOutput, last: &str) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(line) = output.next_line().await {
            let done = line == last;
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    }

    #[tokio::test]
    async fn a_fast_writer_is_not_held_back_by_the_pace() {
        // 200,000 lines as fast as the shell's printf can write them: read at once, not every
        // PACE (64 KiB every 20 ms would take over 10 s for these 2.5 MB).
        let (_child, mut output) = child("seq 1 200000");
        let started = Instant::now();
        let lines = all_lines(&mut output).await;
        assert_eq!(lines.len(), 200_000);
        assert_eq!(lines.last().map(String::as_str), Some("200000"));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "read in {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_long_line_written_in_pieces_is_searched_once_and_many_empty_lines_cost_no_queue() {
        // 4 MiB in one line written in 4 KiB pieces, then 1 MiB of empty lines: the reader
        // searches each byte once and cuts lines as they are asked for.
        let (_child, mut output) = child(
            "head -c 4194304 /dev/zero | tr '\\0' x; echo; head -c 1048576 /dev/zero | tr '\\0' '\\n'; echo end",
        );
        let first = output.next_line().await.unwrap();
        assert_eq!(first.len(), 4 * 1024 * 1024);
        assert!(output.buf.len() <= 6 * 1024 * 1024, "{}", output.buf.len());
        let mut empty = 0;
        while let Some(line) = output.next_line().await {
            if line == "end" {
                break;
            }
            assert!(line.is_empty());
            empty += 1;
        }
        assert_eq!(empty, 1024 * 1024);
    }

    #[tokio::test]
    async fn a_turns_closing_burst_is_read_at_once_and_a_drain_stops_pacing() {
        // Ten lines close together (a CLI's last message, usage and result): never paced.
        let (_child, mut output) =
            child("i=0; while [ $i -lt 10 ]; do echo line $i; sleep 0.002; i=$((i+1)); done");
        assert_eq!(all_lines(&mut output).await.len(), 10);
        assert_eq!(output.paced_spells(), 0);
        // A chatty agent read paced, then drained: read as it comes from then on.
        let (_child, mut output) = child(
            "i=0; while [ $i -lt 100 ]; do echo line $i; sleep 0.002; i=$((i+1)); done; echo paced; sleep 0.2; echo drained",
        );
        all_lines_until(&mut output, "paced").await;
        assert!(output.paced_spells() >= 1);
        output.read_at_once();
        assert!(!output.is_paced());
        assert_eq!(output.next_line().await.as_deref(), Some("drained"));
        assert!(!output.is_paced(), "a drain never goes paced again");
    }
}
