//! Password checks for the bundled IMAP and SMTP servers, made so that one
//! client cannot slow down or out-guess the others.
//!
//! Before any hashing, an attempt is counted against its client address
//! (IPv4, or the IPv6 /64: [`AddrKey`]) and against the account it names,
//! in leaky buckets ([`FailureTable`]); past either limit it is refused at
//! once. Against the address, failures count, and the checks it has in
//! flight are capped at [`ADDR_IN_FLIGHT`]: parallel connections cannot
//! multiply the guesses (at most `ADDR_BURST - 1 + ADDR_IN_FLIGHT` before
//! the address is refused), while a client that opens several connections
//! at once with the right password is not refused for it. Against the
//! account, an attempt is counted when it starts and given back when it
//! succeeds. The account limit is waived for
//! an address that logged in to that account recently, so guessing from
//! elsewhere does not lock its owner out. Admitted checks wait in a bounded
//! queue (full: "busy, try later", still before hashing) for a small pool
//! of threads, each with its own argon2 memory reused from check to check.
//!
//! Invariants: no argon2 work is done for a refused attempt or for a client
//! that went away while its check was queued; at most [`Logins::pending`]
//! checks wait; memory is bounded by the tables' capacities and one argon2
//! buffer per pool thread.

use std::net::IpAddr;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::accounts::{normalize_address, AccountError, Accounts, Argon2Memory};
use crate::throttle::{AddrKey, FailureTable};

/// Failed attempts (in flight included) an address may have before it is
/// refused; one is forgotten every [`ADDR_LEAK`] (10 a minute, as mox).
pub const ADDR_BURST: u32 = 10;
pub const ADDR_LEAK: Duration = Duration::from_secs(6);
/// Checks one address may have in flight at once.
pub const ADDR_IN_FLIGHT: u32 = 16;
/// The same per account name, from addresses that have not logged in to it.
pub const ACCOUNT_BURST: u32 = 30;
pub const ACCOUNT_LEAK: Duration = Duration::from_secs(12);
/// An address that logged in to an account is trusted for it this long.
const KNOWN_FOR: Duration = Duration::from_secs(7 * 24 * 3600);
/// Remembered addresses, account names and (account, address) pairs.
const ADDR_TABLE: usize = 65_536;
const ACCOUNT_TABLE: usize = 16_384;
const KNOWN_TABLE: usize = 16_384;
/// Longest account name kept as a throttle key (longer ones are cut).
const MAX_KEY: usize = 128;
/// Queued checks per pool thread.
const PENDING_PER_THREAD: usize = 16;
/// Largest pool.
const MAX_THREADS: usize = 4;

/// Why an attempt was not checked.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("too many failed logins from {0}: refused before checking")]
    ThrottledAddress(AddrKey),
    #[error("too many failed logins for {0:?}: refused before checking")]
    ThrottledAccount(String),
    #[error("too many password checks waiting: refused before checking")]
    Busy,
    #[error("accounts: {0}")]
    Account(#[from] AccountError),
    #[error("password check pool stopped")]
    Gone,
}

impl LoginError {
    /// Refused by a limit (the client's doing), as opposed to a server fault.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            LoginError::ThrottledAddress(_) | LoginError::ThrottledAccount(_) | LoginError::Busy
        )
    }
}

struct Tables {
    by_addr: FailureTable<AddrKey>,
    /// Checks in flight per address (entries removed at zero; bounded by
    /// the connections that are checking).
    in_flight: std::collections::HashMap<AddrKey, u32>,
    by_account: FailureTable<String>,
    /// (account, address) pairs that logged in.
    known: FailureTable<(String, AddrKey)>,
}

type Job = Box<dyn FnOnce(&mut Argon2Memory) + Send>;

/// The password checks of one process (shared by its IMAP and SMTP servers).
pub struct Logins {
    accounts: Accounts,
    tables: Mutex<Tables>,
    jobs: SyncSender<Job>,
    threads: usize,
    pending: usize,
}

impl std::fmt::Debug for Logins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logins")
            .field("threads", &self.threads)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

fn account_key(user: &str) -> String {
    let mut k = normalize_address(user).unwrap_or_else(|| user.trim().to_lowercase());
    if k.len() > MAX_KEY {
        let mut cut = MAX_KEY;
        while !k.is_char_boundary(cut) {
            cut -= 1;
        }
        k.truncate(cut);
    }
    k
}

fn worker(rx: Arc<Mutex<Receiver<Job>>>) {
    let mut memory = Argon2Memory::new();
    loop {
        let job = {
            let rx = match rx.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        // A panic in one check must not shrink the pool.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut memory)));
        if r.is_err() {
            tracing::error!("password check panicked");
            memory = Argon2Memory::new();
        }
    }
}

/// What an admitted attempt holds until it is decided.
struct Admitted<'a> {
    logins: &'a Logins,
    addr: Option<AddrKey>,
    account: String,
    /// Given back unless the attempt turns out to be a failure.
    refund: bool,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut t = self.logins.lock();
        if let Some(a) = &self.addr {
            if let Some(n) = t.in_flight.get_mut(a) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    t.in_flight.remove(a);
                }
            }
            if !self.refund && t.by_addr.add(a, now, 2 * ADDR_BURST) == ADDR_BURST {
                tracing::warn!(client = %a, limit = ADDR_BURST, "password failure limit reached for this address: further logins from it are refused before checking until older failures age out");
            }
        }
        if self.refund {
            t.by_account.sub(&self.account, now);
        }
    }
}

impl Logins {
    /// A pool of `threads` (0: one per CPU, at most 4) for `accounts`.
    pub fn new(accounts: Accounts, threads: usize) -> Arc<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_THREADS)
        } else {
            threads
        };
        let pending = threads * PENDING_PER_THREAD;
        let (tx, rx) = mpsc::sync_channel::<Job>(pending);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            if let Err(e) = std::thread::Builder::new()
                .name(format!("password-check-{i}"))
                .spawn(move || worker(rx))
            {
                tracing::error!("cannot start a password check thread: {e}");
            }
        }
        Arc::new(Self {
            accounts,
            tables: Mutex::new(Tables {
                by_addr: FailureTable::new(ADDR_TABLE, ADDR_LEAK),
                in_flight: std::collections::HashMap::new(),
                by_account: FailureTable::new(ACCOUNT_TABLE, ACCOUNT_LEAK),
                known: FailureTable::new(KNOWN_TABLE, KNOWN_FOR),
            }),
            jobs: tx,
            threads,
            pending,
        })
    }

    /// Most checks that wait for a thread.
    pub fn pending(&self) -> usize {
        self.pending
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        match self.tables.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Count the attempt up front, or refuse it.
    fn admit(&self, client: Option<IpAddr>, user: &str) -> Result<Admitted<'_>, LoginError> {
        let addr = client.map(AddrKey::from);
        let account = account_key(user);
        let now = Instant::now();
        let mut t = self.lock();
        if let Some(a) = &addr {
            let in_flight = t.in_flight.get(a).copied().unwrap_or(0);
            if t.by_addr.level(a, now) >= ADDR_BURST || in_flight >= ADDR_IN_FLIGHT {
                return Err(LoginError::ThrottledAddress(*a));
            }
        }
        if t.by_account.level(&account, now) >= ACCOUNT_BURST {
            let known = addr.is_some_and(|a| t.known.level(&(account.clone(), a), now) > 0);
            if !known {
                return Err(LoginError::ThrottledAccount(account));
            }
        }
        if let Some(a) = &addr {
            *t.in_flight.entry(*a).or_insert(0) += 1;
        }
        if t.by_account.add(&account, now, 2 * ACCOUNT_BURST) == ACCOUNT_BURST {
            tracing::warn!(account = %account, limit = ACCOUNT_BURST, "password failure limit reached for this account: logins from addresses that have not used it are refused before checking for a while");
        }
        Ok(Admitted {
            logins: self,
            addr,
            account,
            refund: true,
        })
    }

    /// Check `user`'s `password` for a client at `client`: the account on
    /// success, `None` for wrong credentials.
    pub async fn check(
        &self,
        client: Option<IpAddr>,
        user: &str,
        password: &str,
    ) -> Result<Option<String>, LoginError> {
        self.check_inner(client, user, password, true).await
    }

    /// [`Logins::check`] that never creates an account on a first login
    /// (the web account page: only existing accounts log in there). Counted
    /// in the same tables as IMAP and SMTP logins.
    pub async fn check_existing(
        &self,
        client: Option<IpAddr>,
        user: &str,
        password: &str,
    ) -> Result<Option<String>, LoginError> {
        self.check_inner(client, user, password, false).await
    }

    async fn check_inner(
        &self,
        client: Option<IpAddr>,
        user: &str,
        password: &str,
        create: bool,
    ) -> Result<Option<String>, LoginError> {
        let mut admitted = match self.admit(client, user) {
            Ok(a) => a,
            Err(e) => {
                let refused_by = match &e {
                    LoginError::ThrottledAddress(_) => "address",
                    LoginError::ThrottledAccount(_) => "account",
                    LoginError::Busy => "busy",
                    _ => "other",
                };
                tracing::info!(client = ?client, refused_by, "login throttled: {e}");
                return Err(e);
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let accounts = self.accounts.clone();
        let (u, p) = (user.to_owned(), password.to_owned());
        let job: Job = Box::new(move |memory| {
            // The client went away while queued: no hashing for nobody.
            if tx.is_closed() {
                return;
            }
            let r = if create {
                accounts.authenticate_with(&u, &p, memory)
            } else {
                accounts.authenticate_existing_with(&u, &p, memory)
            };
            let _ = tx.send(r);
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!(client = ?client, pending = self.pending, "password check queue full: login refused before checking, try later");
                return Err(LoginError::Busy);
            }
            Err(TrySendError::Disconnected(_)) => return Err(LoginError::Gone),
        }
        let res = rx.await.map_err(|_| LoginError::Gone)??;
        match &res {
            Some(account) => {
                if let Some(a) = admitted.addr {
                    let now = Instant::now();
                    self.lock()
                        .known
                        .add(&(admitted.account.clone(), a), now, 1);
                    if *account != admitted.account {
                        // Logged in by an alias: the account's own name too.
                        self.lock().known.add(&(account.clone(), a), now, 1);
                    }
                }
            }
            None => admitted.refund = false,
        }
        Ok(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Arc<Logins>) {
        let d = tempfile::tempdir().unwrap();
        let a = Accounts::new(d.path(), &["example.org".into()], false);
        a.add("alice@example.org", "alice-pw").unwrap();
        a.add("bob@example.org", "bob-pw").unwrap();
        let l = Logins::new(a, 2);
        (d, l)
    }

    #[tokio::test]
    async fn an_address_is_refused_before_hashing_past_its_limit_and_others_are_not() {
        let (_d, l) = setup();
        let bad: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2::99".parse().unwrap();
        let good: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..ADDR_BURST {
            assert_eq!(
                l.check(Some(bad), "bob@example.org", "wrong")
                    .await
                    .unwrap(),
                None
            );
        }
        let t0 = Instant::now();
        let r = l
            .check(Some(same_64), "alice@example.org", "alice-pw")
            .await;
        assert!(matches!(r, Err(LoginError::ThrottledAddress(_))), "{r:?}");
        assert!(t0.elapsed() < Duration::from_millis(5), "no hashing");
        assert_eq!(
            l.check(Some(good), "alice@example.org", "alice-pw")
                .await
                .unwrap()
                .as_deref(),
            Some("alice@example.org")
        );
        // Successes are given back: an address may log in any number of times.
        for _ in 0..2 * ADDR_BURST {
            assert!(l
                .check(Some(good), "alice@example.org", "alice-pw")
                .await
                .unwrap()
                .is_some());
        }
    }

    #[tokio::test]
    async fn parallel_attempts_from_one_address_are_capped_in_flight() {
        let (_d, l) = setup();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let l = l.clone();
            tasks.push(tokio::spawn(async move {
                l.check(Some(ip), "bob@example.org", "wrong").await
            }));
        }
        let mut checked = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(None) => checked += 1,
                Err(e) => assert!(e.is_limit(), "{e}"),
                Ok(Some(_)) => panic!("accepted"),
            }
        }
        // Guesses stop once the failures reach the limit; what was already
        // in flight (at most ADDR_IN_FLIGHT) is checked.
        assert!(
            checked >= ADDR_BURST as usize && checked < (ADDR_BURST + ADDR_IN_FLIGHT) as usize,
            "{checked}"
        );
        assert!(matches!(
            l.check(Some(ip), "alice@example.org", "alice-pw").await,
            Err(LoginError::ThrottledAddress(_))
        ));
    }

    #[tokio::test]
    async fn parallel_right_passwords_after_some_failures_all_log_in() {
        let (_d, l) = setup();
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        for _ in 0..ADDR_BURST / 2 {
            assert_eq!(
                l.check(Some(ip), "bob@example.org", "wrong").await.unwrap(),
                None
            );
        }
        let mut tasks = Vec::new();
        for _ in 0..ADDR_BURST {
            let l = l.clone();
            tasks.push(tokio::spawn(async move {
                l.check(Some(ip), "alice@example.org", "alice-pw").await
            }));
        }
        for t in tasks {
            assert_eq!(
                t.await.unwrap().unwrap().as_deref(),
                Some("alice@example.org")
            );
        }
    }

    #[tokio::test]
    async fn guessing_from_many_addresses_hits_the_account_limit_but_not_its_owner() {
        let (_d, l) = setup();
        let owner: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(l
            .check(Some(owner), "alice@example.org", "alice-pw")
            .await
            .unwrap()
            .is_some());
        for i in 0..ACCOUNT_BURST {
            let ip = IpAddr::from([203, 0, 113, i as u8]);
            assert_eq!(
                l.check(Some(ip), "Alice@example.org", "guess")
                    .await
                    .unwrap(),
                None
            );
        }
        let stranger = IpAddr::from([203, 0, 113, 200]);
        let r = l
            .check(Some(stranger), "alice@example.org", "alice-pw")
            .await;
        assert!(matches!(r, Err(LoginError::ThrottledAccount(_))), "{r:?}");
        assert!(l
            .check(Some(owner), "alice@example.org", "alice-pw")
            .await
            .unwrap()
            .is_some());
        // Other accounts are untouched.
        assert!(l
            .check(Some(stranger), "bob@example.org", "bob-pw")
            .await
            .unwrap()
            .is_some());
    }

    #[test]
    fn account_keys_are_normalised_and_bounded() {
        assert_eq!(account_key(" Alice@Example.ORG "), "alice@example.org");
        let long = "é".repeat(200);
        let k = account_key(&long);
        assert!(k.len() <= MAX_KEY && long.starts_with(&k));
    }
}
