//! [`HungRemote`]: a git remote that never answers — a loopback TCP listener that accepts every
//! connection and holds it open without a byte in reply, the way a remote behind a broken
//! network or a stuck server looks to git.

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A hung HTTP remote on `127.0.0.1`; the connections it accepted stay open for the life of the
/// test process.
#[derive(Debug, Clone)]
pub struct HungRemote {
    url: String,
    accepted: Arc<AtomicUsize>,
}

impl HungRemote {
    /// Binds `127.0.0.1:0` and accepts (and holds) connections on a background thread.
    pub fn start() -> anyhow::Result<HungRemote> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}/hung.git", listener.local_addr()?);
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        held.push(stream);
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => continue,
                }
            }
        });
        Ok(HungRemote { url, accepted })
    }

    /// The remote's URL, for `git remote add`/`set-url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many connections it has accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}
